"""python -m hhlib: train, evaluate, encode and search end to end; errors in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hhlib.__main__ import main
from hhlib.data import get_dataset

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_evaluate_encode_search_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(
        capsys,
        "train",
        "--dataset",
        "digits",
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
        assert metrics["bits"] == bits and metrics["dataset"] == "digits" and metrics["epochs"] == 1
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
    data = get_dataset("digits", limit=256)
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
    assert code == 2 and "--query must lie in [0, 200), got 999" in stderr


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
    from hhlib import HybridHashConfig, TrainConfig
    from hhlib.presets import PRESETS, preset_configs

    model_config, train_config = preset_configs("paper", 32)
    assert model_config == HybridHashConfig.paper(bits=32) and train_config == TrainConfig()
    model_config, train_config = preset_configs("cpu", 64, epochs=7)
    assert model_config == HybridHashConfig.cpu(bits=64) and train_config.epochs == 7
    assert train_config.eval_every is None and train_config.evaluates_after(7) and not train_config.evaluates_after(6)
    assert train_config.lr == PRESETS["cpu"].recipe["lr"]
    assert PRESETS["paper"].augments("fashion-mnist") and not PRESETS["paper"].augments("cifar10")
    assert PRESETS["cpu"].augments("cifar10") and PRESETS["cpu"].quantizer == "rotation"
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_configs("gpu", 64)


def test_a_preset_entry_can_be_for_a_method_on_one_backbone():
    from hhlib.presets import PRESETS, preset_configs

    cpu = PRESETS["cpu"]
    # DPSH learns on HybridHash's network at 3e-4 (docs/methods.md); on the CNN it keeps the common 1e-3
    assert preset_configs("cpu", 64, "dpsh", "hybridhash")[1].lr == 3e-4
    assert preset_configs("cpu", 64, "dpsh", "cnn")[1].lr == cpu.recipe["lr"]
    assert preset_configs("cpu", 64, "dpsh", "hybridhash", lr=1e-2)[1].lr == 1e-2  # a flag still wins
    assert cpu.train_config("adsh").epochs == 150 and cpu.common_config("adsh").epochs == cpu.recipe["epochs"]
    # method options merge layer by layer: the preset's for HybridHash, then the caller's
    merged = cpu.train_config("hybridhash", "cnn", method_options={"alpha": 2.0}).method_options
    assert merged == {"alpha": 2.0, "binary_bank": True, "smoothing": 0.03}


def test_every_recipe_field_has_a_flag_that_reaches_the_recipe(monkeypatch):
    import hhlib.runs
    from hhlib.train import TrainConfig

    seen = {}

    def fake_train_run(data, bits, preset, run_dir, **kwargs):
        seen.update(kwargs)
        return None, {"map": 0.5, "precision_radius2": 0.5, "train_seconds": 1.0, "total_seconds": 1.0}

    monkeypatch.setattr(hhlib.runs, "train_run", fake_train_run)
    flags = [
        "--lr",
        "1e-4",
        "--grad-clip",
        "none",
        "--method-option",
        "binary_bank=False",
        "--optimizer",
        "rmsprop",
        "--seed",
        "3",
        "--eval-every",
        "2",
        "--warmup-epochs",
        "0.5",
        "--workers",
        "1",
    ]
    assert main(["train", "--dataset", "digits", "--limit", "32", "--quiet", "--out", "/tmp/unused", *flags]) == 0
    assert {k: seen[k] for k in ("lr", "grad_clip", "method_options", "optimizer", "seed", "eval_every")} == {
        "lr": 1e-4,
        "grad_clip": None,
        "method_options": {"binary_bank": False},
        "optimizer": "rmsprop",
        "seed": 3,
        "eval_every": 2,
    }
    assert seen["warmup_epochs"] == 0.5 and seen["num_workers"] == 1
    assert "epochs" not in seen  # unset flags leave the preset's value
    parser_help = __import__("hhlib.__main__", fromlist=["build_parser"]).build_parser()
    train_help = parser_help._subparsers._group_actions[0].choices["train"].format_help()
    for name in TrainConfig.help():
        flag = {"num_workers": "--workers", "method_options": "--method-option"}.get(
            name, "--" + name.replace("_", "-")
        )
        assert flag in train_help, flag


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
        (["--optimizer", "sgd"], "argument --optimizer: invalid choice: 'sgd'"),
        (["--lr", "-1"], "lr must be positive, got -1.0"),
        (["--method-option", "smoothing=2"], "smoothing must be in [0, 1), got 2"),
        (
            ["--method-option", "beta=2"],
            "hybridhash takes the options ['alpha', 'binary_bank', 'smoothing'], not ['beta']",
        ),
        (["--method-option", "alpha"], "--method-option takes KEY=VALUE, got 'alpha'"),
        (["--method", "nope"], "argument --method: invalid choice: 'nope'"),
        (["--backbone", "vgg"], "argument --backbone: invalid choice: 'vgg'"),
    ],
)
def test_a_bad_recipe_value_is_one_line(capsys, tmp_path, flags, message):
    code, _, stderr = run(
        capsys, "train", "--dataset", "digits", "--limit", "32", "--quiet", "--out", str(tmp_path), *flags
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and message in stderr, stderr


class _Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoints_that_hold_code_or_are_broken_are_refused_in_one_line(tmp_path):
    marker = tmp_path / "it-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 2, "model": {}, "payload": _Payload(marker)}, evil)
    good = tmp_path / "good.pt"
    torch.save({"format": 2, "model": {"w": torch.ones(1000)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:3000])
    foreign = tmp_path / "foreign.pt"
    foreign.write_text("1,2,3\n")
    expected = {evil: "nothing in it ran", truncated: "is truncated or damaged", foreign: "is not a torch checkpoint"}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for path, message in expected.items():
        for command in (["evaluate", "--checkpoint", str(path)], ["encode", "--checkpoint", str(path), "--out", "x"]):
            done = subprocess.run([sys.executable, "-m", "hhlib", *command], capture_output=True, text=True, env=env)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert str(path) in lines[0] and message in lines[0], lines[0]
    assert not marker.exists()  # the payload never ran


def test_search_needs_an_image_or_a_query(capsys):
    code, _, stderr = run(capsys, "search", "--index", "x.npz")
    assert code == 2 and "one of the arguments --image --query is required" in stderr
