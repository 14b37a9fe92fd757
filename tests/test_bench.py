"""bench/bench_throughput.py runs the real fit and encode, so that it works when a GPU is lent."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hhlib import HybridHash, HybridHashConfig

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_of_the_cpu_preset_on_a_cpu(bench, tmp_path, capsys):
    out = tmp_path / "throughput.json"
    result = bench.main(
        [
            "--preset",
            "cpu",
            "--device",
            "cpu",
            "--bits",
            "16",
            "--epochs",
            "2",
            "--train-images",
            "64",
            "--encode-images",
            "64",
            "--json",
            str(out),
        ]
    )
    assert result["parameters"] == HybridHash(HybridHashConfig.cpu(bits=16)).num_parameters()
    assert result["batch_size"] == 32 and result["img_size"] == 32  # the CPU recipe and model
    assert result["train_images_per_second"] > 0 and result["encode_images_per_second"] > 0
    assert json.loads(out.read_text()) == result
    printed = capsys.readouterr().out
    assert "training" in printed and "encoding" in printed and "images/s" in printed


def test_one_epoch_is_refused(bench):
    with pytest.raises(SystemExit, match="at least 2"):
        bench.main(["--preset", "cpu", "--device", "cpu", "--epochs", "1"])


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_bench_prints_its_table_with_recall_against_brute_force(tmp_path, capsys):
    out = tmp_path / "search.json"
    rows = _load("bench_search").main(["--sizes", "3000", "--queries", "40", "--centres", "30", "--json", str(out)])
    assert [row["index"] for row in rows] == ["faiss IndexBinaryFlat", "HammingIndex exact"] + [
        "HammingIndex ivf"
    ] * 2 + ["HammingIndex mih"] * 2
    assert [row["recall"] for row in rows[:2]] == [1.0, 1.0]  # brute force against itself
    assert all(0 < row["recall"] <= 1 and row["queries_per_second"] > 0 for row in rows)
    assert rows[2]["options"] == {"nlist": 76, "nprobe": 16} and rows[5]["options"]["nflip"] == 2
    assert json.loads(out.read_text())["rows"] == rows
    printed = capsys.readouterr().out
    assert "3,000 codes of 64 bits" in printed and "recall@10" in printed and "HammingIndex mih nhash=" in printed


def test_tie_aware_recall_counts_any_code_tied_at_the_kth_distance():
    recall = _load("bench_search").tie_aware_recall
    dist, ids = np.array([[0, 2, 3], [1, 1, -1]]), np.array([[5, 9, 4], [7, 8, -1]])
    assert recall(dist, ids, np.array([2, 1])) == pytest.approx(4 / 6)  # a 3 past the 2, and a missing place


def test_stream_bench_measures_both_resize_places(tmp_path, capsys):
    out = tmp_path / "stream.json"
    result = _load("bench_stream").main(["--count", "24", "--size", "64", "48", "--device", "cpu", "--json", str(out)])
    assert result["preset"] == "cpu" and set(result["rows"]) == {"worker", "device"}
    assert all(rate > 0 for row in result["rows"].values() for rate in row.values())
    assert json.loads(out.read_text()) == result
    assert "device / worker: worker " in capsys.readouterr().out and set(result["rows"]["device"]) == {
        "worker",
        "pipeline_1",
        "pipeline",
        "encode",
    }
