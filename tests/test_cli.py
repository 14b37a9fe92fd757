"""python -m hhlib: train, evaluate, encode and search end to end; errors in one line."""

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from hhlib.__main__ import main
from hhlib.data import get_dataset

HAS_FASHION = Path("/usr/share/datasets/fashion-mnist").is_dir() or bool(os.environ.get("HH_DATA"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not HAS_FASHION, reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_train_evaluate_encode_search_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys,
        "train",
        "--dataset",
        "fashion-mnist",
        "--limit",
        "256",
        "--bits",
        "8",
        "16",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stdout
    for bits in (8, 16):
        metrics = json.loads((out / f"bits{bits}" / "metrics.json").read_text())
        assert metrics["bits"] == bits and metrics["dataset"] == "fashion-mnist" and metrics["epochs"] == 1
        for key in ("map", "precision_radius2", "train_seconds", "total_seconds"):
            assert isinstance(metrics[key], float) and metrics[key] >= 0
        assert (out / f"bits{bits}" / "checkpoint.pt").is_file()
    assert "bits=16: mAP@all" in stdout

    checkpoint = out / "bits16" / "checkpoint.pt"
    code, stdout, _ = run(capsys, "evaluate", "--checkpoint", str(checkpoint), "--quiet")
    assert code == 0
    result = json.loads((out / "bits16" / "evaluation.json").read_text())
    # the same split, model and tie policy as at the end of training
    assert result["map"] == pytest.approx(json.loads((out / "bits16" / "metrics.json").read_text())["map"], abs=1e-12)
    assert set(result["precision_at_k"]) == {"1", "10", "100"}
    assert "precision within radius 2" in stdout
    # bfloat16 encoding on a CPU: the same metrics up to the few bits that sit next to zero
    code, _, _ = run(
        capsys,
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--amp",
        "bf16",
        "--out",
        str(tmp_path / "bf16.json"),
        "--quiet",
    )
    assert code == 0
    assert json.loads((tmp_path / "bf16.json").read_text())["map"] == pytest.approx(result["map"], abs=0.05)
    code, _, stderr = run(capsys, "evaluate", "--checkpoint", str(checkpoint), "--device", "cpu", "--amp", "fp16")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "amp='fp16' needs a CUDA device" in stderr

    index_file = tmp_path / "database.npz"
    code, stdout, _ = run(capsys, "encode", "--checkpoint", str(checkpoint), "--out", str(index_file), "--quiet")
    assert code == 0 and "256 codes of 16 bits" in stdout

    # a database image, saved as a file, finds itself at distance 0
    data = get_dataset("fashion-mnist", limit=256)
    image_file = tmp_path / "query.png"
    Image.fromarray(data.database.raw_image(7)[:, :, 0]).save(image_file)
    # (-k 256: a barely trained model gives many images the same code, and ties go by id)
    code, stdout, _ = run(capsys, "search", "--index", str(index_file), "--image", str(image_file), "-k", "256")
    assert code == 0
    rows = [line.split() for line in stdout.splitlines()[2:]]
    assert len(rows) == 256
    distances = [int(r[2]) for r in rows]
    assert distances == sorted(distances) and distances[0] == 0
    assert 7 in [int(r[1]) for r in rows if int(r[2]) == 0]

    # a query item instead of a file
    code, stdout, _ = run(capsys, "search", "--index", str(index_file), "--query", "3", "-k", "3")
    assert code == 0 and stdout.startswith("query 3 (") and len(stdout.splitlines()) == 5
    code, _, stderr = run(capsys, "search", "--index", str(index_file), "--query", "999")
    assert code == 2 and "--query must lie in [0, 256), got 999" in stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "fashion-mnist", "--bitz", "8"], "unrecognized arguments: --bitz 8"),
        (["train", "--dataset", "fashion-mnist", "--preset", "huge"], "invalid choice: 'huge'"),
        (["train", "--dataset", "fashion-mnist", "--bits", "eight"], "invalid int value: 'eight'"),
        (["train"], "the following arguments are required: --dataset"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags_give_one_line(capsys, argv, message):
    code, stdout, stderr = run(capsys, *argv)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr and "--help" in stderr


def test_missing_dataset_gives_a_clear_error_without_traceback(tmp_path, capsys):
    code, _, stderr = run(capsys, "train", "--dataset", "nuswide_21", "--root", str(tmp_path / "nothing"), "--quiet")
    assert code == 2
    assert stderr.startswith("hhlib train: error:") and "Traceback" not in stderr
    assert "nuswide_21" in stderr


def test_unknown_dataset_and_missing_checkpoint(tmp_path, capsys):
    code, _, stderr = run(capsys, "train", "--dataset", "mnist-ish", "--quiet")
    assert code == 2 and "mnist-ish" in stderr and "fashion-mnist" in stderr
    code, _, stderr = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == 2 and "no checkpoint at" in stderr


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--bits", "--preset", "--epochs", "--out", "--resume", "--device", "--pretrained"):
        assert flag in text


def test_presets_choose_the_model_and_recipe():
    from hhlib.model import HybridHashConfig
    from hhlib.runs import preset_configs
    from hhlib.train import TrainConfig

    model_config, train_config = preset_configs("paper", 32)
    assert model_config == HybridHashConfig.paper(bits=32)
    assert (train_config.optimizer, train_config.lr, train_config.eval_every) == ("rmsprop", 2.5e-5, 3)
    model_config, train_config = preset_configs("cpu", 64, epochs=7, lr=None)
    assert model_config == HybridHashConfig.cpu(bits=64)
    assert train_config.epochs == train_config.eval_every == 7  # evaluated once, at the end
    assert train_config.lr == TrainConfig.cpu().lr  # None means the preset's value
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_configs("gpu", 64)


def test_search_needs_an_image_or_a_query(capsys):
    code, _, stderr = run(capsys, "search", "--index", "x.npz")
    assert code == 2 and "one of the arguments --image --query is required" in stderr
