"""The fit loop: it learns, it resumes exactly, it stops on a non-finite loss (on scikit-learn's digits)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import synthetic_data

from hhlib import HybridHash, HybridHashConfig
from hhlib.checkpoint import load_checkpoint
from hhlib.methods.hybridhash import HybridHashLoss
from hhlib.metrics import mean_average_precision
from hhlib.presets import PRESETS
from hhlib.quantize import make_quantizer
from hhlib.train import NonFiniteLossError, TrainConfig, fit, load_model

cpu_recipe = PRESETS["cpu"].train_config
REPO = Path(__file__).resolve().parents[1]


def tiny_model(bits: int = 16) -> HybridHash:
    torch.manual_seed(0)
    return HybridHash(HybridHashConfig.cpu(bits=bits, embed_dims=(16, 32, 64), num_heads=(2, 4, 8), depths=(1, 1, 1)))


@pytest.fixture(scope="module")
def fashion_subset():
    return synthetic_data()  # 400 train, 160 query, 400 database, 32 px, made by the test


def test_a_short_run_learns_and_beats_random_codes(fashion_subset, tmp_path):
    data = fashion_subset
    model = tiny_model()
    seen = []
    # Small batches: from scratch the codes need a few hundred steps to leave the
    # all-zero saddle of the loss (2 log 2), where every code is equally (un)likely.
    config = cpu_recipe(epochs=5, eval_every=2, lr=1e-3, warmup_epochs=0.5, batch_size=16)
    history = fit(model, data, config, out_dir=tmp_path, progress=False, on_epoch=lambda h: seen.append(len(h.epochs)))
    assert seen == [1, 2, 3, 4, 5]
    losses = [e["loss"] for e in history.epochs]
    assert losses[-1] < min(losses[0], 2 * np.log(2)) - 0.05
    assert [e["epoch"] for e in history.evals] == [2, 4, 5]
    rng = np.random.default_rng(0)
    random_map = mean_average_precision(
        rng.choice([-1, 1], (len(data.query), 16)),
        rng.choice([-1, 1], (len(data.database), 16)),
        data.query.labels,
        data.database.labels,
    )
    assert history.best_map > random_map + 0.05
    assert all(e["images_per_second"] > 0 for e in history.epochs)
    # the model ends with the best weights, and the checkpoint keeps them
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 5 and state["best"]["epoch"] == history.best_epoch
    restored, _ = load_model(tmp_path / "checkpoint.pt")
    for name, value in restored.state_dict().items():
        assert torch.equal(value, model.state_dict()[name])


def test_non_finite_loss_stops_with_epoch_and_batch_and_keeps_the_last_checkpoint(fashion_subset, tmp_path):
    model = tiny_model()
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 13th training batch = epoch 2, batch 3 (10 batches of 40)
        if module.training:
            calls["n"] += 1
            if calls["n"] == 13:
                return output * float("nan")
        return None

    model.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, batch 3.*holds epoch 1"):
        fit(
            model,
            fashion_subset,
            cpu_recipe(epochs=3, eval_every=5, batch_size=40),
            out_dir=tmp_path,
            progress=False,
        )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_resume_refuses_another_recipe(fashion_subset, tmp_path):
    fit(tiny_model(), fashion_subset, cpu_recipe(epochs=1), out_dir=tmp_path, progress=False)
    with pytest.raises(
        ValueError, match=r"cannot resume: the checkpoint was made with another training configuration \(lr\)"
    ):
        fit(
            tiny_model(),
            fashion_subset,
            cpu_recipe(epochs=1, lr=1e-4),
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_the_cpu_preset_keeps_the_signs_of_the_codes_in_the_bank(fashion_subset, tmp_path):
    fit(tiny_model(), fashion_subset, cpu_recipe(epochs=1), out_dir=tmp_path / "binary", progress=False)
    bank = load_checkpoint(tmp_path / "binary" / "checkpoint.pt")["method_state"]["U"]
    assert set(bank.unique().tolist()) == {-1.0, 1.0}  # every training image seen once
    fit(
        tiny_model(),
        fashion_subset,
        cpu_recipe(epochs=1, method_options={"binary_bank": False}),
        out_dir=tmp_path / "relaxed",
        progress=False,
    )
    bank = load_checkpoint(tmp_path / "relaxed" / "checkpoint.pt")["method_state"]["U"]
    assert bank.abs().max() < 1 and bank.abs().min() > 0


def test_a_checkpoint_from_before_a_new_field_resumes_with_its_default(fashion_subset, tmp_path):
    config = cpu_recipe(epochs=1, quantizer="sign")
    fit(tiny_model(), fashion_subset, config, out_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["train_config"]["quantizer"]  # as written before the field existed
    torch.save(state, tmp_path / "checkpoint.pt")
    fit(tiny_model(), fashion_subset, config, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"training configuration \(quantizer\)"):
        fit(tiny_model(), fashion_subset, cpu_recipe(epochs=1), out_dir=tmp_path, resume=True, progress=False)


def _train_command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hhlib",
        "train",
        "--dataset",
        "digits",
        "--limit",
        "192",
        "--bits",
        "16",
        "--epochs",
        "4",
        "--eval-every",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--resume",
    ]


def test_a_killed_run_resumes_to_the_same_final_state(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    process = subprocess.Popen(_train_command(killed), env=env, cwd=REPO)
    checkpoint = killed / "bits16" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if checkpoint.is_file() and load_checkpoint(checkpoint)["epoch"] >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    epoch_at_kill = load_checkpoint(checkpoint)["epoch"]
    assert 2 <= epoch_at_kill < 4
    subprocess.run(_train_command(killed), env=env, cwd=REPO, check=True)
    subprocess.run(_train_command(straight), env=env, cwd=REPO, check=True)
    resumed, uninterrupted = load_checkpoint(checkpoint), load_checkpoint(straight / "bits16" / "checkpoint.pt")
    assert resumed["epoch"] == uninterrupted["epoch"] == 4
    for name, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    assert torch.equal(resumed["method_state"]["U"], uninterrupted["method_state"]["U"])
    assert resumed["history"]["best_map"] == uninterrupted["history"]["best_map"]
    assert [e["loss"] for e in resumed["history"]["epochs"]] == [e["loss"] for e in uninterrupted["history"]["epochs"]]


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match=r"optimizer must be one of \('rmsprop', 'adamw'\), got 'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="amp must be"):
        TrainConfig(amp="fp8")


def test_paper_recipe_is_the_papers():
    config = PRESETS["paper"].train_config()
    assert config == TrainConfig()
    assert (
        config.optimizer,
        config.lr,
        config.weight_decay,
        config.batch_size,
        config.method,
        config.method_options,
        config.eval_every,
        config.epochs,
    ) == ("rmsprop", 2.5e-5, 1e-5, 64, "hybridhash", {}, 3, 15)
    assert HybridHashLoss.defaults() == {"alpha": 0.5, "binary_bank": False, "smoothing": 0.0}  # the paper's
    assert cpu_recipe().method_options["binary_bank"]  # the CPU preset's bank holds signs


def test_collapsed_codes_are_reported(fashion_subset):
    model = tiny_model()
    model.register_forward_hook(lambda module, inputs, output: output * 0)  # every code zero
    with pytest.warns(UserWarning, match=r"epoch 2: the loss sits at 2 log 2 = 1.3863"):
        history = fit(model, fashion_subset, cpu_recipe(epochs=2, eval_every=5), progress=False)
    assert history.epochs[-1]["loss"] == pytest.approx(2 * np.log(2), abs=1e-6)


def test_encode_refuses_a_batch_size_below_one(fashion_subset):
    from hhlib.train import encode

    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        encode(tiny_model(), fashion_subset.query, batch_size=0, progress=False)


def test_encode_uses_the_models_quantizer(fashion_subset):
    from hhlib.train import encode

    model = tiny_model().eval()
    model.quantizer = make_quantizer("rotation", 16)
    codes = encode(model, fashion_subset.query, progress=False)
    with torch.no_grad():
        u = model(torch.stack([fashion_subset.query[i][0] for i in range(len(fashion_subset.query))]))
    np.testing.assert_array_equal(codes, np.where((u @ model.quantizer.rotation).numpy() >= 0, 1, -1))
    assert (codes != np.where(u.numpy() >= 0, 1, -1)).any()


def test_the_quantizer_is_saved_beside_the_weights_and_restored(fashion_subset, tmp_path):
    model = tiny_model()
    model.quantizer = make_quantizer("rotation", 16)
    fit(model, fashion_subset, cpu_recipe(epochs=1), out_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["format"] == 3 and state["quantizer"]["kind"] == "rotation" and "rng" not in state
    assert not any("rotation" in name for name in state["model"])
    restored, _ = load_model(tmp_path / "checkpoint.pt")
    assert torch.equal(restored.quantizer.rotation, model.quantizer.rotation)
    # a resumed run must quantise as it did
    with pytest.raises(ValueError, match=r"quantizer \(rotation in the checkpoint, sign now\)"):
        fit(tiny_model(), fashion_subset, cpu_recipe(epochs=2, quantizer="sign"), out_dir=tmp_path, resume=True)


def test_a_format_1_checkpoint_loads_with_its_rotation(fashion_subset, tmp_path):
    """Run folders written before the quantiser left the model still load."""
    model = tiny_model()
    model.quantizer = make_quantizer("rotation", 16)
    fit(model, fashion_subset, cpu_recipe(epochs=1), out_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    rotation = state.pop("quantizer")["rotation"]
    for weights in (state["model"], state["ema"], state["best"]["model"]):
        weights["code_rotation"] = rotation
    state.update(format=1, rng={"numpy": np.random.get_state(), "torch": torch.get_rng_state()})
    state["model_config"]["code_rotation"] = True
    torch.save(state, tmp_path / "old.pt")
    restored, upgraded = load_model(tmp_path / "old.pt")
    assert upgraded["format"] == 3 and "rng" not in upgraded and "code_rotation" not in upgraded["model_config"]
    assert torch.equal(restored.quantizer.rotation, rotation)
    x = fashion_subset.query[0][0][None]
    assert torch.equal(restored.encode(x), load_model(tmp_path / "checkpoint.pt")[0].encode(x))


def test_schedule_warms_up_linearly_then_follows_a_cosine():
    from hhlib.train import _schedule

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = _schedule(optimizer, TrainConfig(epochs=2, schedule="cosine", warmup_epochs=0.4, lr=1.0), 10)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # 4 warm-up steps, (step + 1) / 4
    assert lrs[4:] == pytest.approx([0.5 * (1 + np.cos(np.pi * s / 16)) for s in range(16)])


def test_no_weight_decay_on_biases_norms_and_position_embeddings():
    from hhlib.train import _optimizer

    model = tiny_model()
    groups = {g["weight_decay"]: g["params"] for g in _optimizer(model, cpu_recipe()).param_groups}
    free = {id(p) for p in groups[0.0]}
    for name, p in model.named_parameters():
        exempt = p.ndim <= 1 or name.endswith("pos_embed")
        assert (id(p) in free) == exempt, name
    assert sum(len(g) for g in groups.values()) == len(list(model.parameters()))


def test_encode_in_bfloat16_on_a_cpu_when_asked(fashion_subset):
    from hhlib.train import encode

    model = tiny_model()
    dtypes = []
    model.hash_head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    exact = encode(model, fashion_subset.query, device="cpu", progress=False)
    assert set(dtypes) == {torch.float32}  # "auto" stays float32 on a CPU
    dtypes.clear()
    fast = encode(model, fashion_subset.query, device="cpu", amp="bf16", progress=False)
    assert set(dtypes) == {torch.bfloat16}
    assert fast.dtype == np.int8 and set(np.unique(fast)) <= {-1, 1}
    # rounding flips only bits whose relaxed value sits next to zero
    assert (fast == exact).mean() > 0.9
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        encode(model, fashion_subset.query, device="cpu", amp="fp16", progress=False)
    with pytest.raises(ValueError, match=r"amp must be one of \('auto', 'bf16', 'fp16', 'off'\), got 'bfloat16'"):
        encode(model, fashion_subset.query, device="cpu", amp="bfloat16", progress=False)
