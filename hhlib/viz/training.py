"""Plots: the weighted likelihood loss and training curves (see hhlib.viz).

- :func:`plot_pair_loss`: the loss of one pair against theta, similar vs dissimilar.
- :func:`plot_class_balance_weights`: the class-balance weights S / S1 and
  S / S0 of :class:`hhlib.losses.WeightedLikelihoodLoss`
  (:func:`hhlib.analysis.class_balance_weights` counts them for real labels).
- :func:`plot_code_scale_loss`: the loss as codes shrink to zero
  (:func:`hhlib.analysis.code_scale_loss`), which shows the saddle at 2 log 2.
- :func:`plot_training_curves`: a finished run's recorded loss, learning rate and
  mAP (several runs side by side); :class:`LiveCurves`: loss and mAP redrawn
  live during training (``on_epoch=LiveCurves()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from hhlib.analysis import code_scale_loss
from hhlib.losses import pairwise_likelihood
from hhlib.train import COLLAPSED_LOSS  # 2 log 2: every code zero, every pair at theta = 0
from hhlib.viz._figure import STYLE, figure, panel

__all__ = [
    "plot_pair_loss",
    "plot_class_balance_weights",
    "plot_code_scale_loss",
    "plot_training_curves",
    "LiveCurves",
]

# The figures here are not tracked by pyplot: a notebook cell shows the one it returns, once.
UNTRACKED = {"pyplot": False}


# -- the loss of one pair -------------------------------------------------------


def plot_pair_loss(
    theta_max: float = 10.0, bits: int | None = None, alpha: float = 0.5, ax: Axes | None = None
) -> Figure:
    """The negative log-likelihood of one pair against theta, for s = 1 and s = 0.

    ``l = log(1 + e^theta) - s * theta`` (:func:`hhlib.losses.pairwise_likelihood`):
    a similar pair pays for a small or negative theta, a dissimilar pair for
    a positive one, and both pay log 2 at theta = 0.

    Args:
        theta_max: the plot spans theta in [-theta_max, theta_max].
        bits: when given, dotted lines mark theta = +-alpha * bits, the range
            that +-1 codes of that length can reach.
        alpha: the loss's scale of the inner product (0.5 in the paper).
        ax: draw there instead of in a new figure.

    Returns:
        The Figure; its axes hold the similar line, then the dissimilar line.
    """
    if not theta_max > 0:
        raise ValueError(f"theta_max must be positive, got {theta_max!r}")
    figure, ax = panel(ax, (6, 3.5), **UNTRACKED)
    theta = torch.linspace(-theta_max, theta_max, 401, dtype=torch.float64)  # (401,)
    for similar, label in ((1.0, "similar pair (s = 1)"), (0.0, "dissimilar pair (s = 0)")):
        loss = pairwise_likelihood(theta, torch.full_like(theta, similar))
        ax.plot(theta.numpy(), loss.numpy(), label=label)
    ax.plot([0], [math.log(2)], "ko")
    ax.annotate("log 2 at theta = 0", (0, math.log(2)), xytext=(8, 12), textcoords="offset points")
    if bits is not None:
        for side in (-1, 1):
            ax.axvline(side * alpha * bits, color="grey", linestyle=":", linewidth=1)
        ax.text(
            alpha * bits,
            ax.get_ylim()[1] * 0.9,
            f" alpha*bits = {alpha * bits:g}",
            color="grey",
            ha="right" if alpha * bits >= theta_max * 0.8 else "left",
        )
    ax.set_xlabel("theta = alpha * u_i . U_j")
    ax.set_ylabel("loss of the pair")
    ax.set_title("Pairwise likelihood loss")
    ax.legend()
    return figure


# -- class-balance weights ------------------------------------------------------


def plot_class_balance_weights(
    num_classes: Sequence[int] = tuple(range(2, 101)), marks: Sequence[int] = (10, 100), ax: Axes | None = None
) -> Figure:
    """S / S1 and S / S0 against the number of balanced, single-label classes.

    With C equally frequent classes a random pair is similar with probability
    1 / C, so S / S1 = C and S / S0 = C / (C - 1): each similar pair weighs
    C - 1 times as much as a dissimilar one, and both kinds of pair then
    contribute equally to the loss.

    Args:
        num_classes: the values of C drawn (each at least 2).
        marks: values of C to label on the curves (10: CIFAR-10, Fashion-MNIST).
        ax: draw there instead of in a new figure.

    Returns:
        The Figure; its axes hold the S/S1 line, then the S/S0 line.
    """
    classes = np.asarray(list(num_classes), dtype=np.float64)
    if classes.ndim != 1 or not len(classes) or np.any(classes < 2):
        raise ValueError(f"num_classes must be a non-empty sequence of values >= 2, got {num_classes!r}")
    figure, ax = panel(ax, (6, 3.5), **UNTRACKED)
    ax.plot(classes, classes, label="S / S1 (similar pairs)")
    ax.plot(classes, classes / (classes - 1), label="S / S0 (dissimilar pairs)")
    for c in marks:
        ax.plot([c, c], [c, c / (c - 1)], "ko", markersize=4)
        ax.annotate(
            f"C = {c}: {c:g} and {c / (c - 1):.3f}",
            (c, c),
            xytext=(-6, 4),
            textcoords="offset points",
            ha="right",
            va="bottom",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylim(0.8, classes.max() * 3)  # room for the labels above the S/S1 line
    ax.set_xlabel("number of balanced classes C")
    ax.set_ylabel("weight of one pair")
    ax.set_title("Class-balance weights")
    ax.legend()
    return figure


# -- the saddle at zero -----------------------------------------------------------


def plot_code_scale_loss(
    codes: Mapping[str, Any],
    labels: Any,
    scales: Sequence[float] | None = None,
    alpha: float = 0.5,
    ax: Axes | None = None,
) -> Figure:
    """The loss along the line from all-zero codes (t = 0) to each set of codes (t = 1).

    All curves start at 2 log 2 with zero slope: the all-zero point is a
    stationary point. Codes that follow the classes lead down from it,
    random codes lead up, so it is a saddle, not a minimum.

    Args:
        codes: name -> (N, bits) codes of the same N items.
        labels: (N, C) 0/1 label vectors of those items.
        scales: the factors t (default 0..1 in 21 steps).
        alpha: the loss's scale of the inner product.
        ax: draw there instead of in a new figure.

    Returns:
        The Figure; one line per entry of ``codes``, in order, then the 2 log 2 line.
    """
    if not codes:
        raise ValueError("codes must name at least one set of codes")
    scales = np.linspace(0.0, 1.0, 21) if scales is None else np.asarray(scales, dtype=np.float64)
    figure, ax = panel(ax, (6, 3.5), **UNTRACKED)
    for name, values in codes.items():
        ax.plot(scales, code_scale_loss(values, labels, scales, alpha), label=name)
    ax.axhline(COLLAPSED_LOSS, color="grey", linestyle="--", linewidth=1, label="2 log 2 (all codes zero)")
    ax.set_xlabel("scale t of the codes (t = 0: every code is zero)")
    ax.set_ylabel("weighted loss")
    ax.set_title("The loss along a line through zero")
    ax.legend()
    return figure


# -- training curves --------------------------------------------------------------


def _history_lists(history: Any) -> tuple[list[dict], list[dict]]:
    """(epochs, evals) of a :class:`hhlib.train.History` or of its dict (``metrics["history"]``)."""
    if isinstance(history, Mapping):
        epochs, evals = history.get("epochs"), history.get("evals")
    else:
        epochs, evals = getattr(history, "epochs", None), getattr(history, "evals", None)
    if epochs is None or evals is None:
        raise ValueError("history must be a hhlib.train.History or a dict with 'epochs' and 'evals' lists")
    return list(epochs), list(evals)


def _draw_curves(history: Any, loss_ax: Axes, map_ax: Axes) -> None:
    """LiveCurves' two panels: the loss of every epoch so far and the mAP of every evaluation."""
    epochs, evals = _history_lists(history)
    _draw_loss(loss_ax, {"loss": epochs})
    last_epoch = max([e["epoch"] for e in epochs] + [e["epoch"] for e in evals] + [1])
    _epoch_axis(map_ax, last_epoch)
    map_ax.plot([e["epoch"] for e in evals], [e["map"] for e in evals], "s-", color="C2", label="mAP")
    for e in evals:
        at_the_edge = e["epoch"] == last_epoch and last_epoch > 1
        map_ax.annotate(
            f"{e['map']:.3f}",
            (e["epoch"], e["map"]),
            xytext=(0, 6),
            textcoords="offset points",
            ha="right" if at_the_edge else "center",
        )
    map_ax.set_ylim(0, 1)
    map_ax.set_ylabel("mAP (query vs database)")
    map_ax.set_title("Retrieval mAP" if evals else "Retrieval mAP (not evaluated yet)")


def _epoch_axis(ax: Axes, last_epoch: int) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, last_epoch + 0.5)
    ax.set_xlabel("epoch")


def _draw_loss(ax: Axes, runs: Mapping[str, list[dict]]) -> None:
    for name, epochs in runs.items():
        ax.plot([e["epoch"] for e in epochs], [e["loss"] for e in epochs], "o-", markersize=2, label=name)
    ax.axhline(COLLAPSED_LOSS, color="grey", linestyle="--", linewidth=1, label="2 log 2 (collapsed)")
    _epoch_axis(ax, max(e["epoch"] for epochs in runs.values() for e in epochs))
    ax.set_ylabel("mean training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)


def _runs(history: Any) -> dict[str, tuple[list[dict], list[dict]]]:
    """name -> (epochs, evals): one history (named "run"), or a mapping of names to histories."""
    single = not isinstance(history, Mapping) or "epochs" in history
    runs = {"run": history} if single else dict(history)
    if not runs:
        raise ValueError("no history to draw")
    return {name: _history_lists(h) for name, h in runs.items()}


def plot_training_curves(history: Any) -> Figure:
    """A run's recorded curves: the loss and learning rate of every epoch, and the mAP of its evaluations.

    ``history`` is a :class:`hhlib.train.History` or its dict (``metrics["history"]``), or a mapping of
    names to histories drawn side by side (a CPU and a GPU run). The mAP gets a panel only when a run
    was evaluated at least twice; a single evaluation (the CPU preset evaluates once, at the end) is
    written in the legend instead of drawn as a lone point.
    """
    runs = _runs(history)
    if any(not epochs for epochs, _ in runs.values()):
        raise ValueError("a history without epochs has no curves to draw")
    curves = any(len(evals) > 1 for _, evals in runs.values())
    fig, axes = figure(3 if curves else 2, (4.2, 3.2), **UNTRACKED)
    labels = {name: _run_label(name, evals, len(runs) > 1) for name, (_, evals) in runs.items()}
    _draw_loss(axes[0], {labels[name]: epochs for name, (epochs, _) in runs.items()})
    for name, (epochs, _) in runs.items():
        axes[1].plot([e["epoch"] for e in epochs], [e["lr"] for e in epochs], label=labels[name])
    _epoch_axis(axes[1], max(e["epoch"] for epochs, _ in runs.values() for e in epochs))
    axes[1].set_yscale("log")
    axes[1].set_ylabel("learning rate at the epoch's end")
    axes[1].set_title("Schedule (log scale)")
    if curves:
        _draw_map_curves(axes[2], {labels[name]: evals for name, (_, evals) in runs.items()})
    return fig


def _run_label(name: str, evals: list[dict], named: bool) -> str:
    prefix = f"{name}: " if named else ""
    if len(evals) == 1:
        return f"{prefix}loss (mAP {evals[0]['map']:.3f} at epoch {evals[0]['epoch']})"
    return f"{prefix}loss" if not named else name


def _draw_map_curves(ax: Axes, runs: Mapping[str, list[dict]]) -> None:
    for name, evals in runs.items():
        ax.plot([e["epoch"] for e in evals], [e["map"] for e in evals], "s-", markersize=3, label=name)
    _epoch_axis(ax, max(e["epoch"] for evals in runs.values() for e in evals))
    ax.set_ylim(0, 1)
    ax.set_ylabel("mAP (query vs database)")
    ax.set_title("Retrieval mAP at each evaluation")


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (not in a terminal IPython, not in plain Python)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveCurves:
    """An ``on_epoch`` callback that redraws the training curves in place.

    ``tut.trained_model(64, data, on_epoch=LiveCurves())`` or
    ``fit(..., on_epoch=LiveCurves())``: after every epoch its two panels (the
    loss so far, the mAP of each evaluation) are redrawn and, in a notebook, the one
    output it was first shown in is updated (an IPython display handle), so
    the cell shows one figure that grows. Outside a notebook nothing is
    displayed; the figure is still kept up to date in :attr:`figure`.

    Args:
        title: a title above both panels.

    Attributes:
        figure: the Figure redrawn at every call.
        calls: how many epochs it has been called for.
    """

    def __init__(self, title: str | None = None) -> None:
        self.title = title
        self.figure, axes = figure(2, (5, 3.5), **UNTRACKED)
        self._axes = tuple(axes)
        self._handle = None
        self.calls = 0

    def __call__(self, history: Any) -> None:
        with matplotlib.rc_context(STYLE):  # clearing resets an axes to the rcParams in force
            for ax in self._axes:
                ax.clear()
        _draw_curves(history, *self._axes)
        if self.title:
            self.figure.suptitle(self.title)
        self.calls += 1
        if _in_notebook():
            self._show()

    def _show(self) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)
