"""Run folders: one trained model per code length, trained once and then reused.

A run folder ``OUT/bits{B}/`` holds ``checkpoint.pt`` (written after every
epoch) and, once training has finished, ``metrics.json``. The command line
(``python -m hhlib train``) and the notebooks share this layout, so a model
trained by one is loaded by the other instead of being trained again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hhlib import distributed
from hhlib.backbones import build_model
from hhlib.checkpoint import load_checkpoint, write_json
from hhlib.methods import METHODS, make_method
from hhlib.model import HashModel, HybridHash
from hhlib.presets import get_preset
from hhlib.train import History, TrainConfig, fit, load_model, resolve_device

__all__ = ["run_name", "nest_initialiser", "train_run", "load_run", "train_or_load", "learned_database_codes"]


def run_name(dataset: str, preset: str, method: str = "hybridhash", backbone: str = "hybridhash") -> str:
    """The run folder's name: ``DATASET-PRESET``, with ``-METHOD-BACKBONE`` unless both are HybridHash's."""
    own = (method, backbone) != ("hybridhash", "hybridhash")
    return "-".join([dataset, preset, *((method, backbone) if own else ())])


def nest_initialiser(
    source: str | os.PathLike = "auto", say: Callable[[str], None] = print
) -> Callable[[HybridHash], str | None]:
    """What ``train_run(pretrained=...)`` takes: start the paper preset from ImageNet NesT-B.

    Args:
        source: ``"auto"`` downloads the weights through timm and, when that
            fails (offline), warns on stderr and leaves the model as it is
            (from scratch); ``"none"`` never loads; a path loads a saved
            state_dict (a missing or wrong file raises).
        say: where the load report goes.
    """
    from hhlib.weights import load_nest_weights

    def initialise(model: HybridHash) -> str | None:
        if str(source) == "none":
            return None
        if str(source) == "auto":
            try:
                report = load_nest_weights(model)
            except RuntimeError as error:
                if not distributed.is_main():  # every process tried; one says so
                    return None
                print(
                    f"warning: {str(error).splitlines()[0]} Training from scratch; pass a saved copy "
                    "(--pretrained PATH) to start from ImageNet.",
                    file=sys.stderr,
                )
                return None
            name = "nest_base_jx.goog_in1k"
        else:
            report = load_nest_weights(model, source)
            name = str(source)
        say(f"NesT-B weights from {name}: {report}")
        return name

    return initialise


def train_run(
    data,
    bits: int,
    preset: str,
    run_dir: str | os.PathLike,
    *,
    method: str = "hybridhash",
    backbone: str = "hybridhash",
    resume: bool = True,
    device=None,
    progress: bool = True,
    seed: int = 0,
    pretrained=None,
    meta: dict | None = None,
    on_epoch=None,
    load_seconds: float = 0.0,
    **train_overrides,
) -> tuple[HashModel, dict]:
    """Train one model into ``run_dir`` and write ``metrics.json`` there.

    Args:
        data: a :func:`hhlib.data.get_dataset` result whose images fit the preset.
        bits, preset: the code length and ``"cpu"`` or ``"paper"``.
        run_dir: the run folder (``OUT/bits{B}``).
        method, backbone: the hashing method (:data:`hhlib.methods.METHODS`) and the
            network (:data:`hhlib.backbones.BACKBONES`).
        resume: continue from ``run_dir/checkpoint.pt`` if a run was cut short.
        pretrained: a callable given the fresh model (NesT-B initialisation);
            it returns a short description of the weights it loaded, or None.
        meta: facts stored in the checkpoint and metrics (split seed, limit...).
        load_seconds: time spent loading the data, counted in ``total_seconds``.
        train_overrides: TrainConfig fields (epochs, lr, batch_size...).

    Returns:
        The best model and the metrics written to ``metrics.json``.
    """
    run_dir, device, start = Path(run_dir), resolve_device(device), time.perf_counter()
    spec = get_preset(preset)
    model_config = spec.model_config(bits, backbone)
    train_config = spec.train_config(method, backbone, seed=seed, **train_overrides)
    if model_config.img_size != data.img_size:
        raise ValueError(
            f"the {preset} preset takes {model_config.img_size} px images; the data was loaded at {data.img_size} px"
        )
    torch.manual_seed(seed)
    model = build_model(backbone, model_config)
    source = pretrained(model) if pretrained is not None and isinstance(model, HybridHash) else None
    meta = {"dataset": data.name, "preset": preset, **(meta or {})}
    history = fit(model, data, train_config, run_dir, resume, device, progress, meta, on_epoch)
    metrics = {
        "bits": bits,
        **run_metrics(data, history, train_config.epochs),
        "total_seconds": round(time.perf_counter() - start + load_seconds, 1),
        "device": str(device),
        "pretrained": source,
        "method": method,
        "backbone": backbone,
        "family": METHODS[method].family,
        "supervision": supervision(method),
        "method_options": make_method(method, bits, train_config.method_options).options(),  # every one, as used
        "recipe_changes": recipe_changes(spec.common_config(method, seed=seed), train_config),
        **meta,
        "history": history.to_dict(),
    }
    if distributed.is_main():  # one writer under torchrun
        write_json(run_dir / "metrics.json", metrics)
    return model, metrics


def supervision(method: str) -> str:
    """The labels a method learns from: ADSH's are the database's, which the other families never see."""
    return "database labels" if METHODS[method].trains_on == "database" else "training labels"


def recipe_changes(preset: TrainConfig, used: TrainConfig) -> dict:
    """Where a run's recipe differs from the preset's common one (say, ``{"lr": 0.0003}``); options aside.

    Both the preset's own entries for a method (``Preset.methods``) and the flags given count.
    """
    base, now = asdict(preset), asdict(used)
    return {key: now[key] for key in now if key != "method_options" and now[key] != base[key]}


def run_metrics(data, history: History, epochs: int) -> dict:
    """The headline numbers of a finished run: its best evaluation, its sizes and speeds."""
    best = history.best_eval()
    return {
        "map": best["map"],
        "topk": data.topk,
        "precision_radius2": best["precision_radius2"],
        "best_epoch": history.best_epoch,
        "epochs": epochs,
        "train_seconds": round(history.train_seconds, 1),
        "encode_seconds": round(best["encode_seconds"], 1),
        "train_images_per_second": round(sum(e["images_per_second"] for e in history.epochs) / len(history.epochs), 1),
        "encode_images_per_second": round((len(data.query) + len(data.database)) / best["encode_seconds"], 1),
        "sizes": {"train": len(data.train), "query": len(data.query), "database": len(data.database)},
    }


def load_run(run_dir: str | os.PathLike) -> tuple[HashModel, dict]:
    """The best model and the metrics of a finished run folder."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} does not exist: the run in {run_dir} has not finished")
    model, _ = load_model(run_dir / "checkpoint.pt")
    metrics = json.loads(metrics_path.read_text())
    metrics.setdefault("supervision", supervision(metrics.get("method", "hybridhash")))  # runs before it was written
    return model, metrics


def learned_database_codes(run_dir: str | os.PathLike) -> np.ndarray | None:
    """The database codes a run's method learned directly (ADSH's V), int8 (n, bits); None where the network encodes.

    They are the codes the run was evaluated with: the method's state after the
    last epoch, saved in the checkpoint beside the network.
    """
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    if METHODS[state["train_config"]["method"]].database != "learned":
        return None
    return state["method_state"]["V"].numpy()  # the buffer Method.database_codes returns


def train_or_load(data, bits: int, preset: str, run_dir: str | os.PathLike, **kwargs) -> tuple[HashModel, dict]:
    """Load a finished run from ``run_dir``, or train it there (resuming a cut-short run).

    A finished run made on other data (another dataset, split seed or size)
    is not silently reused: that raises ValueError.
    """
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        model, metrics = load_run(run_dir)
        sizes = {"train": len(data.train), "query": len(data.query), "database": len(data.database)}
        wanted = {"method": kwargs.get("method", "hybridhash"), "backbone": kwargs.get("backbone", "hybridhash")}
        found = {k: metrics.get(k, "hybridhash") for k in wanted}  # runs from before methods were HybridHash's
        if metrics.get("dataset") != data.name or metrics.get("sizes") != sizes or metrics.get("bits") != bits:
            raise ValueError(
                f"{run_dir} holds a run on {metrics.get('dataset')} {metrics.get('sizes')} "
                f"with {metrics.get('bits')} bits, not {data.name} {sizes} with {bits} bits; "
                "remove it or choose another folder"
            )
        if found != wanted:
            raise ValueError(f"{run_dir} holds a {found} run, not {wanted}; remove it or choose another folder")
        return model, metrics
    return train_run(data, bits, preset, run_dir, **kwargs)
