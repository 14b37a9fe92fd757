"""Plots: retrieval quality of hash codes (see hhlib.viz).

:func:`hhlib.metrics.retrieval_scores` computes, for one set of query and
database codes, every number the plots draw (it is re-exported here for the
notebooks); the plots take those scores for several methods and code lengths::

    scores = {bits: {"HybridHash": retrieval_scores(q, db, q_labels, db_labels), "LSH": ...}}
    plot_precision_recall(scores)       # one panel per code length
    plot_precision_at_k(scores)
    plot_map_bars(scores)
    scores_table(scores)                # a pandas DataFrame
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hhlib.metrics import RetrievalScores, retrieval_scores
from hhlib.viz import _figure

__all__ = [
    "RetrievalScores",
    "retrieval_scores",
    "scores_table",
    "plot_precision_recall",
    "plot_precision_at_k",
    "plot_map_bars",
]

Scores = Mapping[int, Mapping[str, RetrievalScores]]  # bits -> method -> scores


def _check_scores(scores: Scores) -> list[int]:
    if not scores or not all(scores.values()):
        raise ValueError("scores must map each code length to a non-empty {method: RetrievalScores}")
    return sorted(scores)


def _methods(scores: Scores) -> list[str]:
    """Every method name, in first-seen order: the same colour for a method in every panel."""
    names: list[str] = []
    for by_method in scores.values():
        names += [name for name in by_method if name not in names]
    return names


def _shared_legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend for all panels, below them when the figure is laid out by constrained layout, so it hides no curve."""
    handles, labels = axes[0].get_legend_handles_labels()
    if figure.get_layout_engine() is not None and len(axes) > 1:
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
    else:
        axes[0].legend(handles, labels, fontsize=8)


def _target_axes(ax: Axes | Sequence[Axes] | None, count: int) -> tuple[Figure, list[Axes]]:
    """One panel per code length: the given axes, or a new row of them (:func:`hhlib.viz._figure.panels`)."""
    axes = [ax] if isinstance(ax, Axes) else ax
    return _figure.panels(axes, count, (4.0, 3.6), what="one per code length", pyplot=False)


def plot_precision_recall(scores: Scores, ax: Axes | Sequence[Axes] | None = None) -> Figure:
    """Precision against recall of Hamming-ball retrieval, radius 0..bits, one panel per code length.

    Each curve runs from radius 0 (few items retrieved, high precision if
    the codes are good) to radius = bits (everything retrieved: recall 1,
    precision = the share of relevant items). The point at radius 2 (the
    usual P@r=2) is circled.

    Args:
        scores: bits -> method -> :class:`RetrievalScores`.
        ax: one axes per code length to draw in (default a new figure).

    Returns:
        The Figure; each panel has one line per method (and one circle each).
    """
    bits_list = _check_scores(scores)
    figure, axes = _target_axes(ax, len(bits_list))
    colours = {name: f"C{i}" for i, name in enumerate(_methods(scores))}
    for panel, bits in zip(axes, bits_list):
        for name, result in scores[bits].items():
            panel.plot(result.recall, result.precision, ".-", color=colours[name], label=name, markersize=3)
            radius = min(2, result.bits)
            panel.plot(
                result.recall[radius],
                result.precision[radius],
                "o",
                color=colours[name],
                markerfacecolor="none",
                markersize=8,
            )
        panel.set_xlim(-0.02, 1.02)
        panel.set_ylim(0, 1.02)
        panel.set_xlabel("recall")
        panel.set_ylabel("precision")
        panel.set_title(f"{bits} bits (o: radius 2)")
    _shared_legend(figure, axes)
    return figure


def plot_precision_at_k(scores: Scores, ax: Axes | Sequence[Axes] | None = None) -> Figure:
    """Precision of the top K against K, one panel per code length.

    Args:
        scores: bits -> method -> :class:`RetrievalScores`.
        ax: one axes per code length to draw in (default a new figure).

    Returns:
        The Figure; each panel has one line per method.
    """
    bits_list = _check_scores(scores)
    figure, axes = _target_axes(ax, len(bits_list))
    colours = {name: f"C{i}" for i, name in enumerate(_methods(scores))}
    for panel, bits in zip(axes, bits_list):
        for name, result in scores[bits].items():
            panel.plot(result.ks, result.precision_at, ".-", color=colours[name], label=name, markersize=3)
        panel.set_ylim(0, 1.02)
        panel.set_xlabel("K (items retrieved)")
        panel.set_ylabel("precision@K")
        panel.set_title(f"{bits} bits")
    _shared_legend(figure, axes)
    return figure


def plot_map_bars(scores: Scores, ties: str = "index", ax: Axes | None = None) -> Figure:
    """mAP of every method at every code length as grouped bars, the value written on each.

    Args:
        scores: bits -> method -> :class:`RetrievalScores`.
        ties: ``"index"`` or ``"expected"``: which mAP to draw.
        ax: draw there instead of in a new figure.

    Returns:
        The Figure; one bar container per method, one bar per code length
        (height 0 where a method lacks that length).
    """
    if ties not in ("index", "expected"):
        raise ValueError(f"ties must be 'index' or 'expected', got {ties!r}")
    bits_list = _check_scores(scores)
    methods = _methods(scores)
    figure, ax = _figure.panel(ax, (max(6.0, 0.8 * len(bits_list) * max(1, len(methods))), 3.8), pyplot=False)
    width = 0.8 / len(methods)
    positions = np.arange(len(bits_list))
    for i, name in enumerate(methods):
        values = [getattr(scores[b][name], f"map_{ties}") if name in scores[b] else 0.0 for b in bits_list]
        bars = ax.bar(positions + (i - (len(methods) - 1) / 2) * width, values, width, label=name, color=f"C{i}")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(positions, [f"{b} bits" for b in bits_list])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mAP" + (" (ties by index)" if ties == "index" else " (expected over tie orders)"))
    ax.set_title("mAP per method and code length")
    ax.legend(loc="upper left", ncols=min(4, len(methods)), fontsize=8)
    return figure


def scores_table(scores: Scores):
    """The headline numbers as a pandas DataFrame, one row per (bits, method).

    Columns: ``bits``, ``method``, ``mAP (ties by index)``, ``mAP (expected)``,
    ``difference`` (expected minus index), ``P@r<=2`` and ``P@K`` for the
    largest K computed.
    """
    import pandas as pd

    rows = []
    for bits in _check_scores(scores):
        for name, result in scores[bits].items():
            rows.append(
                {
                    "bits": bits,
                    "method": name,
                    "mAP (ties by index)": result.map_index,
                    "mAP (expected)": result.map_expected,
                    "difference": result.map_expected - result.map_index,
                    "P@r<=2": result.precision_radius2,
                    f"P@{int(result.ks[-1])}": float(result.precision_at[-1]),
                }
            )
    return pd.DataFrame(rows)
