"""Run folders (hhlib.runs) and the notebooks' setup (hhlib.tutorial)."""

import json

import numpy as np
import pytest
import torch

import hhlib.runs as runs
from hhlib.data import get_dataset
from hhlib.tutorial import FAST_LIMIT, is_fast, setup


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits", img_size=32, limit=60)


def test_train_or_load_trains_once_then_loads(tmp_path, digits, monkeypatch):
    run_dir = tmp_path / "bits16"
    model, metrics = runs.train_or_load(digits, 16, "cpu", run_dir, epochs=1, progress=False)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["bits"] == metrics["bits"] == 16 and saved["epochs"] == 1
    assert saved["sizes"] == {"train": 60, "query": 60, "database": 60}
    # where the run's recipe differs from the cpu preset's common one: the flag, and HybridHash's own quantiser
    assert saved["recipe_changes"] == {"epochs": 1, "quantizer": "rotation"}
    assert 0 < saved["map"] <= 1 and len(saved["history"]["epochs"]) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must be loaded, not trained again")

    monkeypatch.setattr(runs, "train_run", no_training)
    loaded, again = runs.train_or_load(digits, 16, "cpu", run_dir)
    assert again == saved
    # the best (evaluated) weights come back
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_a_finished_run_on_other_data_is_not_reused(tmp_path, digits):
    run_dir = tmp_path / "bits16"
    runs.train_or_load(digits, 16, "cpu", run_dir, epochs=1, progress=False)
    smaller = get_dataset("digits", img_size=32, limit=30)
    with pytest.raises(ValueError, match="remove it or choose another folder"):
        runs.train_or_load(smaller, 16, "cpu", run_dir)
    with pytest.raises(ValueError, match="with 16 bits, not digits .* with 32 bits"):
        runs.train_or_load(digits, 32, "cpu", run_dir)


def test_runs_from_before_supervision_was_recorded_get_it_on_load(tmp_path, digits):
    run_dir = tmp_path / "bits16"
    _, metrics = runs.train_or_load(digits, 16, "cpu", run_dir, epochs=1, progress=False)
    assert metrics["supervision"] == "training labels"
    old = {k: v for k, v in metrics.items() if k != "supervision"}
    (run_dir / "metrics.json").write_text(json.dumps({**old, "method": "adsh"}))
    assert runs.load_run(run_dir)[1]["supervision"] == "database labels"  # ADSH learns from the database's labels
    (run_dir / "metrics.json").write_text(json.dumps({k: v for k, v in old.items() if k != "method"}))
    assert runs.load_run(run_dir)[1]["supervision"] == "training labels"  # runs from before methods were HybridHash's


def test_learned_database_codes_are_the_ones_the_run_was_scored_with(tmp_path, digits):
    from hhlib.metrics import retrieval_scores
    from hhlib.train import encode

    run_dir = tmp_path / "bits16"
    options = {"inner_epochs": 1, "samples": 40}
    model, metrics = runs.train_or_load(
        digits, 16, "cpu", run_dir, method="adsh", backbone="cnn", epochs=2, method_options=options, progress=False
    )
    codes = runs.learned_database_codes(run_dir)
    assert codes.shape == (60, 16) and codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 1}
    query = encode(model, digits.query, progress=False)
    scores = retrieval_scores(query, codes, digits.query.labels, digits.database.labels)
    assert scores.map_index == pytest.approx(metrics["map"], abs=1e-12)
    # V is learned, not the network's encoding of the database
    assert not np.array_equal(codes, encode(model, digits.database, progress=False))


def test_a_network_encoded_database_has_no_learned_codes(tmp_path, digits):
    runs.train_or_load(digits, 16, "cpu", tmp_path, method="dsh", backbone="cnn", epochs=1, progress=False)
    assert runs.learned_database_codes(tmp_path) is None


def test_load_run_of_an_unfinished_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished"):
        runs.load_run(tmp_path)


def test_data_at_the_wrong_size_is_refused(tmp_path):
    data = get_dataset("digits", img_size=16, limit=20)
    with pytest.raises(ValueError, match="the cpu preset takes 32 px images; the data was loaded at 16 px"):
        runs.train_run(data, 16, "cpu", tmp_path, epochs=1, progress=False)


@pytest.mark.parametrize("value, fast", [("1", True), ("yes", True), ("", False), ("0", False), ("False", False)])
def test_fast_switch(monkeypatch, value, fast):
    monkeypatch.setenv("HH_FAST", value)
    assert is_fast() is fast


def test_setup_fast_mode_seeds_and_separates_runs(tmp_path, capsys):
    tut = setup(fast=True, device="cpu", runs=tmp_path, seed=3)
    first = torch.rand(3)
    assert "fast mode" in capsys.readouterr().out
    assert (tut.limit, tut.epochs, tut.preset, tut.img_size) == (FAST_LIMIT, 1, "cpu", 32)
    assert tut.runs == tmp_path / "fast" / "fashion-mnist-cpu"
    assert tut.run_dir(48) == tut.runs / "bits48"
    setup(fast=True, device="cpu", runs=tmp_path, seed=3, quiet=True)
    assert torch.equal(torch.rand(3), first)
    full = setup(fast=False, device="cpu", runs=tmp_path, dataset="digits", quiet=True)
    assert (full.limit, full.epochs, full.runs) == (None, None, tmp_path / "digits-cpu")


def test_paths_are_shown_relative_to_the_checkout(tmp_path):
    from hhlib.tutorial import _CHECKOUT

    tut = setup(fast=True, device="cpu", quiet=True, runs=_CHECKOUT / "runs")
    assert tut.show(tut.run_dir(64)) == "runs/fast/fashion-mnist-cpu/bits64"
    assert str(tut).endswith("runs in runs/fast/fashion-mnist-cpu/")
    assert tut.show(tmp_path / "x") == str(tmp_path / "x")  # outside the checkout: unchanged


def test_a_shortened_tutorial_trains_into_a_folder_of_its_own(tmp_path):
    tut = setup(fast=False, device="cpu", runs=tmp_path, quiet=True)
    short = tut.shortened(6)
    assert (short.epochs, short.runs) == (6, tmp_path / "fashion-mnist-cpu-6epochs")
    assert (short.preset, short.seed, short.limit) == (tut.preset, tut.seed, tut.limit)
    with pytest.raises(ValueError, match="epochs must be positive"):
        tut.shortened(0)


def test_a_tutorial_finds_the_command_lines_run_folders(tmp_path):
    tut = setup(fast=False, device="cpu", runs=tmp_path, quiet=True)
    assert tut.run_dir(64) == tmp_path / "fashion-mnist-cpu" / "bits64"
    assert tut.run_dir(64, "dch", "cnn") == tmp_path / "fashion-mnist-cpu-dch-cnn" / "bits64"
    assert tut.shortened(6).run_dir(32, "csq", "cnn") == tmp_path / "fashion-mnist-cpu-csq-cnn-6epochs" / "bits32"
    assert runs.run_name("fashion-mnist", "cpu", "hybridhash", "cnn") == "fashion-mnist-cpu-hybridhash-cnn"


def test_notebook_training_logs_its_epochs_for_the_terminal(tmp_path, monkeypatch, digits):
    log = tmp_path / "progress.log"
    monkeypatch.setenv("HH_PROGRESS_LOG", str(log))
    tut = setup(fast=True, device="cpu", runs=tmp_path, dataset="digits", quiet=True)
    seen = []
    _, metrics = tut.trained_model(
        16, digits, epochs=2, progress=False, on_epoch=lambda history: seen.append(len(history.epochs))
    )
    assert seen == [1, 2]  # the notebook's own callback still runs
    lines = log.read_text().splitlines()
    losses = [e["loss"] for e in metrics["history"]["epochs"]]
    assert [line.split(": ", 1)[1].rsplit(",", 1)[0] for line in lines] == [
        f"epoch {n}, loss {loss:.4f}" for n, loss in enumerate(losses, 1)
    ]
    assert lines[0].startswith(tut.show(tut.run_dir(16)))
