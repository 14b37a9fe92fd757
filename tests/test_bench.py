"""bench/bench_throughput.py runs the real fit and encode, so that it works when a GPU is lent."""

import importlib.util
import json
from pathlib import Path

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
