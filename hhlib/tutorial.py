"""The first cell of every tutorial notebook: fast switch, device, seeds, run folders.

    from hhlib.tutorial import setup
    tut = setup()                      # reads HH_FAST, picks the device, seeds everything
    data = tut.data()                  # the tutorial's dataset, tiny in fast mode
    model, metrics = tut.trained_model(64, data)   # loaded when trained before

``HH_FAST=1`` (what the tests use) keeps 500 items of each split and trains
for one epoch, so a notebook runs in seconds; without it a notebook does the
real thing: the CPU preset on a CPU, the paper recipe on a GPU. Both write
run folders that the command line shares (see :mod:`hhlib.runs`).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hhlib.data import get_dataset
from hhlib.presets import get_preset
from hhlib.runs import nest_initialiser, run_name, train_or_load
from hhlib.train import resolve_device

__all__ = ["Tutorial", "setup", "is_fast", "seed_everything", "default_runs", "FAST_LIMIT"]

FAST_LIMIT = 500  # items kept in each split in fast mode
_CHECKOUT = Path(__file__).resolve().parent.parent  # the repository, when hhlib runs from a checkout


def default_runs() -> Path:
    """``$HH_RUNS``, else ``runs/`` of the checkout (wherever the notebook runs), else ``./runs``."""
    if os.environ.get("HH_RUNS"):
        return Path(os.environ["HH_RUNS"]).expanduser()
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / "runs"
    return Path.cwd() / "runs"


def is_fast() -> bool:
    """True when ``HH_FAST`` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get("HH_FAST", "").strip().lower() not in ("", "0", "false", "no")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Tutorial:
    """The settings a notebook runs with; made by :func:`setup`.

    Attributes:
        fast: the fast switch (tiny splits, one epoch).
        device: where models run.
        seed: the seed of everything random.
        dataset: the dataset name (a key of ``hhlib.data.DATASETS``).
        preset: "cpu" (32 px, from scratch) or "paper" (224 px), by device.
        runs: the folder of run folders, ``runs/{dataset}-{preset}`` (under
            ``runs/fast/`` in fast mode, so the two never mix).
        limit: items kept in each split (None: all of them).
        epochs: epochs to train (None: the preset's).
    """

    fast: bool
    device: torch.device
    seed: int
    dataset: str
    preset: str
    runs: Path
    limit: int | None
    epochs: int | None

    @property
    def img_size(self) -> int:
        return get_preset(self.preset).img_size

    def data(self, augment: bool | None = None, **kwargs):
        """The tutorial's dataset at the preset's image size, augmented as the preset says (None)."""
        augment = get_preset(self.preset).augments(self.dataset) if augment is None else augment
        kwargs = {"img_size": self.img_size, "limit": self.limit, "augment": augment, **kwargs}
        return get_dataset(self.dataset, **kwargs)

    def run_dir(self, bits: int, method: str = "hybridhash", backbone: str = "hybridhash") -> Path:
        """``runs/{dataset}-{preset}[-{method}-{backbone}]/bits{bits}``: the command line's folder for the run."""
        name = run_name(self.dataset, self.preset, method, backbone)
        return self.runs.with_name(self.runs.name.replace(f"{self.dataset}-{self.preset}", name, 1)) / f"bits{bits}"

    def shortened(self, epochs: int) -> Tutorial:
        """The same settings, training ``epochs`` epochs into ``runs/{name}-{epochs}epochs``.

        A short run gets a folder of its own, so it never passes for a full
        run of the preset (which the command line and other notebooks load).
        """
        if epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        return replace(self, runs=self.runs.with_name(f"{self.runs.name}-{epochs}epochs"), epochs=epochs)

    @staticmethod
    def show(path: str | os.PathLike) -> str:
        """A path as printed in notebooks: relative to the checkout when inside it."""
        path = Path(path)
        try:
            return str(path.resolve().relative_to(_CHECKOUT))
        except ValueError:
            return str(path)

    def trained_model(
        self,
        bits: int = 64,
        data=None,
        progress: bool = True,
        on_epoch=None,
        pretrained: str | os.PathLike = "auto",
        method: str = "hybridhash",
        backbone: str = "hybridhash",
        **overrides,
    ):
        """The model of ``run_dir(bits)``: loaded when it finished before, else trained there.

        A run that was cut short resumes where it stopped. ``overrides`` are
        TrainConfig fields (``epochs`` defaults to one in fast mode); ``method``
        and ``backbone`` pick another method or network, in the folder the
        command line gives that run. The paper
        preset starts from ImageNet NesT-B as the command line does
        (``pretrained``: "auto", "none" or a saved state_dict's path).
        Returns ``(model, metrics)`` with the model in eval mode on ``device``.
        """
        data = data if data is not None else self.data()
        if self.epochs is not None:
            overrides.setdefault("epochs", self.epochs)
        model, metrics = train_or_load(
            data,
            bits,
            self.preset,
            self.run_dir(bits, method, backbone),
            method=method,
            backbone=backbone,
            device=self.device,
            progress=progress,
            seed=self.seed,
            on_epoch=_logging_epochs(self.run_dir(bits, method, backbone), on_epoch),
            meta={"split_seed": 0, "limit": self.limit},
            pretrained=nest_initialiser(pretrained)
            if get_preset(self.preset).initialisation == "nest" and backbone == "hybridhash"
            else None,
            **overrides,
        )
        return model.to(self.device).eval(), metrics

    def __str__(self) -> str:
        mode = f"fast mode ({self.limit} items per split, {self.epochs} epoch)" if self.fast else "full mode"
        return f"{mode}; device {self.device}; preset {self.preset}; seed {self.seed}; runs in {self.show(self.runs)}/"


def _logging_epochs(run_dir: Path, on_epoch):
    """``on_epoch``, which also appends each epoch to ``$HH_PROGRESS_LOG`` when it is set.

    ``tools/notebooks.py`` sets it and prints the file's lines, so whoever runs
    the notebooks headless sees a long training advance.
    """
    log = os.environ.get("HH_PROGRESS_LOG")
    if not log:
        return on_epoch

    def logged(history):
        e = history.epochs[-1]
        with open(log, "a") as file:
            file.write(f"{Tutorial.show(run_dir)}: epoch {e['epoch']}, loss {e['loss']:.4f}, {e['seconds']:.1f} s\n")
        if on_epoch is not None:
            on_epoch(history)

    return logged


def setup(
    dataset: str | None = None,
    seed: int = 0,
    fast: bool | None = None,
    device=None,
    runs: str | os.PathLike | None = None,
    quiet: bool = False,
) -> Tutorial:
    """Read the fast switch, pick the device, seed everything and say so.

    Args:
        dataset: default ``$HH_DATASET`` or ``"fashion-mnist"`` (offline).
        seed: seeds Python, NumPy and torch.
        fast: default ``HH_FAST`` from the environment.
        device: default CUDA when available, else the CPU.
        runs: the top folder of run folders (default: :func:`default_runs`),
            shared with ``python -m hhlib train`` run from the checkout.
        quiet: do not print the settings.
    """
    fast = is_fast() if fast is None else fast
    device = resolve_device(device)
    dataset = dataset or os.environ.get("HH_DATASET", "fashion-mnist")
    preset = "paper" if device.type == "cuda" and not fast else "cpu"
    runs = Path(runs) if runs is not None else default_runs()
    top = runs / "fast" if fast else runs
    seed_everything(seed)
    tutorial = Tutorial(
        fast,
        device,
        seed,
        dataset,
        preset,
        top / f"{dataset}-{preset}",
        FAST_LIMIT if fast else None,
        1 if fast else None,
    )
    if not quiet:
        print(tutorial)
    return tutorial
