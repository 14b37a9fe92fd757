"""Every method of the registry: it prefers aligned codes, it trains through the CLI, it round-trips.

The per-method files (test_method_NAME.py) check each loss on hand-computed
cases; this file checks what the engine relies on for all of them at once
(docs/DESIGN.md, "Methods and backbones").
"""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from hhlib.__main__ import main
from hhlib.backbones import build_model
from hhlib.cnn import HashCNNConfig
from hhlib.data import get_dataset
from hhlib.methods import METHODS, OUTPUTS, Method, make_method
from hhlib.metrics import mean_average_precision
from hhlib.model import HybridHashConfig
from hhlib.presets import get_preset
from hhlib.train import load_model

BITS = 16


def labelled_batch(n=40, classes=4):
    labels = torch.eye(classes)[torch.arange(n) % classes]  # (n, classes), balanced
    return labels, torch.arange(n)


def codes_for(method: Method, labels: torch.Tensor, aligned: bool, generator: torch.Generator) -> torch.Tensor:
    """Aligned: one Hadamard row per class (CNNH: its target codes; central methods: their centres); random: signs."""
    if aligned and method.name == "cnnh":
        codes = method.targets(torch.arange(len(labels)))
    elif aligned and method.family == "central":
        codes = method.targets(labels)
    elif aligned:
        rows = torch.tensor(hadamard(BITS)[1 : labels.shape[1] + 1], dtype=torch.float32)
        codes = rows[labels.argmax(1)]
    else:
        codes = torch.randint(0, 2, (len(labels), BITS), generator=generator).float() * 2 - 1
    return 0.9 * codes  # inside (-1, 1): a tanh output could reach it


@pytest.mark.parametrize("name", sorted(METHODS))
def test_aligned_codes_score_a_lower_loss_than_random_ones(name):
    generator = torch.Generator().manual_seed(0)
    labels, ind = labelled_batch()
    losses = {}
    for aligned in (True, False):
        method = make_method(name, BITS)
        method.setup(labels)
        method.prepare(labels)
        u = codes_for(method, labels, aligned, generator)
        for epoch in (1, 2, 3):  # epochs through the engine's hooks fill banks and learned codes (ADSH: V)
            method.begin_epoch(epoch, 4)
            method(u, labels, ind)
            method.end_epoch(epoch)
        method.begin_epoch(4, 4)
        losses[aligned] = method(u, labels, ind).item()
    assert np.isfinite(list(losses.values())).all()
    assert losses[True] < losses[False], losses


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_states_what_the_engine_needs(name):
    cls = METHODS[name]
    assert cls.name == name and cls.family in {"symmetric", "asymmetric", "central"}
    assert cls.output in OUTPUTS and cls.database in {"network", "learned"} and cls.stages
    assert cls.citation.count(",") >= 1 and any(str(year) in cls.citation for year in range(2010, 2030))
    assert cls.__doc__ and cls.__module__ == f"hhlib.methods.{name}" or name == "hybridhash"
    assert set(make_method(name, BITS).options()) == set(cls.defaults())
    with pytest.raises(ValueError, match="takes the options"):
        make_method(name, BITS, {"not_an_option": 1})
    with pytest.raises(ValueError, match="bits"):
        make_method(name, 0)


BAD_BATCHES = [
    (torch.zeros(4, BITS - 2), torch.eye(4), torch.arange(4), rf"u must have shape \(B, {BITS}\)"),
    (torch.zeros(BITS), torch.eye(4), torch.arange(4), rf"u must have shape \(B, {BITS}\)"),
    (torch.zeros(4, BITS), torch.eye(3), torch.arange(4), r"y must have shape \(4, num_classes\)"),
    (torch.zeros(4, BITS), torch.eye(4), torch.arange(3), r"ind must have shape \(4,\)"),
]


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("u, y, ind, message", BAD_BATCHES)
def test_a_batch_of_the_wrong_shape_is_one_clear_error(name, u, y, ind, message):
    method = make_method(name, BITS)
    method.setup(torch.eye(4))
    method.prepare(torch.eye(4))
    with pytest.raises(ValueError, match=message):
        method(u, y, ind)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_adapt_fits_either_backbone(name):
    for backbone, config in {"hybridhash": HybridHashConfig.cpu(bits=BITS), "cnn": HashCNNConfig(bits=BITS)}.items():
        model = build_model(backbone, config)
        method = make_method(name, BITS)
        method.adapt(model)
        u = model(torch.randn(2, 3, 32, 32))
        assert u.shape == (2, BITS) and torch.isfinite(u).all()
        with pytest.raises(ValueError, match="bits"):
            make_method(name, BITS * 2).adapt(model)


@pytest.fixture(scope="module")
def random_codes_map():
    """mAP@all of random codes on the split the CLI runs use: the number every method must beat."""
    data = get_dataset("digits")
    rng = np.random.default_rng(0)
    scores = [
        mean_average_precision(
            rng.choice([-1, 1], (len(data.query), BITS)),
            rng.choice([-1, 1], (len(data.database), BITS)),
            data.query.labels,
            data.database.labels,
        )
        for _ in range(5)
    ]
    return max(scores)


# ADSH alternates 3 network epochs with a step on the database codes; 2 epochs need 1 per step
SHORT_RUN_OPTIONS = {"adsh": {"inner_epochs": 1}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_epochs_on_digits_beat_random_codes(name, tmp_path, capsys, random_codes_map):
    out = tmp_path / name
    args = ["train", "--dataset", "digits", "--bits", str(BITS), "--epochs", "2", "--batch-size", "16"]
    args += ["--method", name, "--backbone", "cnn", "--lr", "1e-3", "--out", str(out), "--quiet"]
    own = SHORT_RUN_OPTIONS.get(name, {})
    args += [f"--method-option={key}={value}" for key, value in own.items()]
    assert main(args) == 0, capsys.readouterr().err
    metrics = json.loads((out / f"bits{BITS}" / "metrics.json").read_text())
    assert metrics["method"] == name and metrics["backbone"] == "cnn"
    recipe = {**get_preset("cpu").train_config(name).method_options, **own}  # the preset's options for the method
    assert metrics["method_options"] == make_method(name, BITS, recipe).options()  # every option, as used
    assert metrics["map"] > random_codes_map + 0.03, (metrics["map"], random_codes_map)
    # a stage before the network (CNNH's target codes, hash centres) is timed and counted as training
    prepare = metrics["history"]["prepare_seconds"]
    assert prepare > 0 if len(METHODS[name].stages) > 1 else prepare < 0.01
    assert metrics["train_seconds"] >= metrics["history"]["prepare_seconds"]


def test_a_method_with_its_own_head_reloads(tmp_path, capsys):
    """DNNH replaces the hash head: load_model must rebuild it before loading the weights."""
    out = tmp_path / "dnnh"
    args = ["train", "--dataset", "digits", "--limit", "64", "--bits", "16", "--epochs", "1", "--method", "dnnh"]
    assert main([*args, "--backbone", "cnn", "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    model, _ = load_model(out / "bits16" / "checkpoint.pt")
    assert type(model.hash_head).__name__ == "DivideAndEncode"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        u = model.eval()(x)
    assert u.shape == (3, 16) and bool((u.abs() <= 1).all())


def test_the_methods_tables_match_their_record():
    """README.md and docs/methods.md show what docs/results/ records (tools/methods_table.py write)."""
    tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "methods_table.py"), run_name="methods_table")
    assert tool["main"](["check"]) == 0
    record = json.loads(tool["RECORD"].read_text())
    for row in record["rows"]:
        assert row["method"] in METHODS and 0 < row["map"] <= 1
        recipe = tool["recipe"](row)  # "preset", or what the run changed ("lr 0.0003")
        assert recipe == "preset" or row["recipe_changes"]
        labels = "database" if row["method"] == "adsh" else "training"  # whose labels it learned from
        cells = f"| `{row['method']}` | {row['family']} | {row['backbone']} | {labels} | {recipe} | {row['map']:.4f} |"
        assert cells in tool["table"](record)
