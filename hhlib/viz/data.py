"""Plots: retrieval protocols, class counts, example images and relevance (notebook 01).

The numbers (rankings, protocol layouts, class counts, relevance) come from :mod:`hhlib.analysis`;
every plot function returns its matplotlib Figure, and those that draw a single panel take an
optional ``ax``.

- :func:`plot_ranking`: a ranked database, relevant items marked, and the
  average precision read off it (the mAP preview).
- :func:`plot_protocol_layout`: how a protocol cuts the pooled dataset into
  query, train and database (and where train and database overlap).
- :func:`plot_split_counts`: images per class in each part of a split, as bars;
  :func:`plot_protocols`: the same counts for several protocols in one table
  (both from :func:`hhlib.analysis.split_class_counts`).
- :func:`plot_example_grid`: a few raw images per class of a split.
- :func:`plot_label_matrix` / :func:`plot_relevance`: multi-label vectors and
  the query x database relevance they define.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from hhlib.analysis import (
    SPLIT_PARTS,
    protocol_layout,
    ranking_table,
    relevance_matrix,
    shared_label_counts,
    split_class_counts,
)
from hhlib.data.protocols import Split
from hhlib.viz._figure import figure, panel, panels

__all__ = [
    "PART_COLORS",
    "plot_ranking",
    "plot_protocol_layout",
    "plot_split_counts",
    "plot_protocols",
    "plot_example_grid",
    "plot_label_matrix",
    "plot_relevance",
]

PART_COLORS = {
    "query": "tab:orange",
    "train": "tab:blue",
    "database": "tab:green",
    "train and database": "tab:cyan",
    "unused": "lightgrey",
}
RELEVANT_COLOR, IRRELEVANT_COLOR = "tab:green", "lightgrey"


# -- the retrieval task ---------------------------------------------------------


def plot_ranking(
    distances: np.ndarray, relevant: np.ndarray, ax: Axes | None = None, labels: Sequence[str] | None = None
) -> Figure:
    """Draw one query's ranking and how its average precision is computed.

    Items are drawn left to right in rank order as squares, green when
    relevant, with their Hamming distance inside; under the k-th relevant
    item at rank r the precision k / r is written. The title gives
    AP = mean of those precisions (0 when nothing is relevant), the number
    :func:`hhlib.mean_average_precision` averages over queries.

    Args:
        distances: (N,) Hamming distances of the database items to the query.
        relevant: (N,) booleans, True where an item shares a label with the query.
        ax: where to draw; a new figure when None.
        labels: optional (N,) names of the items, written above the squares (a newline
            in a name makes two short lines).

    Returns:
        The Figure.
    """
    table = ranking_table(distances, relevant)
    if labels is not None and len(labels) != len(table):
        raise ValueError(f"{len(labels)} labels for {len(table)} items")
    fig, ax = panel(ax, (max(4.0, (0.95 if labels is not None else 0.7) * len(table)), 2.1))
    hits = 0
    for row in table.itertuples():
        x = row.rank - 0.55
        ax.add_patch(Rectangle((row.rank - 1, 0), 0.9, 0.9, color=RELEVANT_COLOR if row.relevant else IRRELEVANT_COLOR))
        ax.text(x, 0.45, str(row.distance), ha="center", va="center", fontsize=10)
        if labels is not None:
            ax.text(x, 1.0, str(labels[row.item]), ha="center", va="bottom", fontsize=8)
        if row.relevant:
            hits += 1
            ax.text(x, -0.15, f"{hits}/{row.rank}", ha="center", va="top", fontsize=9)
    precisions = table["precision"].dropna().tolist()
    ap = float(np.mean(precisions)) if precisions else 0.0
    ax.set_xlim(-0.2, len(table) + 0.1)
    ax.set_ylim(-0.7, 1.6 if labels is not None else 1.1)
    ax.set_xticks(np.arange(len(table)) + 0.45, [str(r) for r in table["rank"]])
    ax.set_xlabel("rank (number in a square: Hamming distance; below: precision at each relevant item)")
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_title(f"AP = mean({', '.join(f'{p:.2f}' for p in precisions) or '-'}) = {ap:.4f}")
    return fig


# -- protocols -----------------------------------------------------------------


def plot_protocol_layout(
    splits: Mapping[str, Split], pool_sizes: int | Mapping[str, int], ax: Axes | None = None
) -> Figure:
    """One horizontal bar per protocol: the pooled dataset cut into its parts.

    Args:
        splits: protocol name -> split.
        pool_sizes: the pool size of every split, or one per name.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure; bars are in the order of ``splits``, top to bottom.
    """
    if not splits:
        raise ValueError("no splits to draw")
    fig, ax = panel(ax, (9.0, 0.6 + 0.55 * len(splits)))
    names = list(splits)
    for row, name in enumerate(names):
        size = pool_sizes if isinstance(pool_sizes, int) else pool_sizes[name]
        left = 0
        for part, count in protocol_layout(splits[name], size).items():
            if count:
                ax.barh(row, count, left=left, color=PART_COLORS[part], edgecolor="white")
                if count >= 0.05 * size:
                    ax.text(left + count / 2, row, f"{count:,}", ha="center", va="center", fontsize=8)
                left += count
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("images of the pooled dataset")
    ax.legend(
        handles=[Patch(color=c, label=p) for p, c in PART_COLORS.items()],
        ncol=5,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        frameon=False,
        fontsize=8,
    )
    return fig


def plot_split_counts(
    split: Split, labels: np.ndarray, class_names: Sequence[str] | None = None, axes: Sequence[Axes] | None = None
) -> Figure:
    """Three bar charts: images per class in query, train and database.

    Args:
        split: the split.
        labels: the labels it was drawn from (see :func:`hhlib.analysis.split_class_counts`).
        class_names: one name per class (the x tick labels).
        axes: three axes to draw in; a new 1 x 3 figure when None.

    Returns:
        The Figure.
    """
    counts = split_class_counts(split, labels)
    num_classes = len(counts)
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    fig, axes = panels(axes, 3, (4, 2.6), "query, train, database")
    for ax, part in zip(axes, SPLIT_PARTS):
        ax.bar(range(num_classes), counts[part], color=PART_COLORS[part])
        ax.set_title(f"{split.protocol}: {part} ({len(getattr(split, part)):,} images)", fontsize=9)
        ax.set_xticks(range(num_classes), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, max(1, counts[part].max()) * 1.15)
    axes[0].set_ylabel("images")
    return fig


def plot_protocols(
    splits: Mapping[str, Split],
    labels: np.ndarray | Mapping[str, np.ndarray],
    ax: Axes | None = None,
) -> Figure:
    """One table of images per class: a row for each part of each protocol, a column for each class.

    Balanced splits read as rows of one repeated number, so a heatmap with the counts written in
    says it in one panel (twelve bar charts of equal bars said it twelve times).

    Args:
        splits: protocol name -> split; every protocol must have the same number of classes.
        labels: the labels of every split, or one label array per name.
        ax: the axes to draw in; a new figure when None.

    Returns:
        The Figure.
    """
    if not splits:
        raise ValueError("no splits to draw")
    rows = {}
    for name, split in splits.items():
        counts = split_class_counts(split, labels[name] if isinstance(labels, Mapping) else labels)
        for part in SPLIT_PARTS:
            rows[f"{name}: {part} ({len(getattr(split, part)):,})"] = counts[part]
    if len({len(r) for r in rows.values()}) != 1:
        raise ValueError("the protocols have different numbers of classes")
    table = pd.DataFrame(rows).T  # (protocols x parts, classes)
    fig, ax = panel(ax, (0.55 * table.shape[1] + 3.2, 0.28 * len(table) + 0.9))
    sns.heatmap(table, ax=ax, cmap="Blues", norm=LogNorm(), annot=True, fmt=",d", annot_kws={"fontsize": 7}, cbar=False)
    ax.set_xlabel("class")
    ax.set_ylabel("")
    ax.tick_params(axis="both", labelsize=8, length=0)
    ax.set_title("images per class (colour on a log scale)", fontsize=9)
    return fig


# -- images ----------------------------------------------------------------------


def plot_example_grid(
    dataset,
    class_names: Sequence[str],
    per_class: int = 8,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    size: float = 1.1,
) -> Figure:
    """A grid of raw images: one row per class, ``per_class`` images of it.

    Args:
        dataset: a split with ``labels`` ((n, C) 0/1) and ``raw_image(i)``
            ((H, W, 3) uint8): an :class:`~hhlib.data.InMemorySplit` or a
            :class:`~hhlib.data.ListFileDataset`.
        class_names: one name per class (the row titles).
        per_class: images per row; rows of classes with fewer images stay short.
        seed: which images are picked (a seeded random choice).
        classes: the classes to show; those with at least one image by default.
        size: inches per image (small images need few: 0.7 shows a 32 px image at 2x).

    Returns:
        The Figure.
    """
    labels = np.asarray(dataset.labels)
    if labels.ndim != 2 or labels.shape[1] != len(class_names):
        raise ValueError(f"labels of shape {labels.shape} do not match {len(class_names)} class names")
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if classes is None:
        classes = [c for c in range(labels.shape[1]) if labels[:, c].any()]
    if not classes:
        raise ValueError("no class has an image in this split")
    rng = np.random.default_rng(seed)
    panel_size = ((size * per_class + 1.2) / per_class, size)  # and room for the class names
    fig, grid = figure(per_class, panel_size, rows=len(classes), layout=None, squeeze=False)
    for row, c in zip(grid, classes):
        members = np.flatnonzero(labels[:, c])
        picks = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off")
        for ax, i in zip(row, picks):
            ax.imshow(dataset.raw_image(int(i)), interpolation="nearest")  # crisp pixels, a small PNG
        row[0].axis("on")
        for side in row[0].spines.values():
            side.set_visible(False)
        row[0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


# -- multi-label relevance -------------------------------------------------------


def _matrix(values: np.ndarray, colours: Sequence[str], ax: Axes, rows: Sequence, columns: Sequence) -> None:
    """A 0/1 matrix as a two-colour heat map, cells parted by thin lines, one tick label per row and column."""
    sns.heatmap(
        values.astype(np.uint8),
        cmap=ListedColormap(list(colours)),
        vmin=0,
        vmax=1,
        cbar=False,
        linewidths=0.5,
        linecolor="lightgrey",
        xticklabels=[str(c) for c in columns],
        yticklabels=[str(r) for r in rows],
        ax=ax,
    )
    ax.tick_params(axis="y", rotation=0)


def plot_label_matrix(
    labels: np.ndarray, class_names: Sequence[str], item_names: Sequence[str] | None = None, ax: Axes | None = None
) -> Figure:
    """The 0/1 label vectors as a matrix: one row per image, one column per class.

    Only the classes some image carries are drawn, so that 21 or 81 columns
    of mostly zeros do not hide the few that matter.

    Args:
        labels: (n, C) 0/1 matrix.
        class_names: one name per class.
        item_names: optional (n,) row names.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(class_names):
        raise ValueError(f"labels of shape {labels.shape} do not match {len(class_names)} class names")
    used = np.flatnonzero(labels.any(axis=0))
    fig, ax = panel(ax, (0.5 * len(used) + 2, 0.3 * len(labels) + 1))
    rows = item_names if item_names is not None else range(len(labels))
    _matrix(labels[:, used] != 0, ["white", "tab:purple"], ax, rows, [class_names[c] for c in used])
    ax.tick_params(axis="x", rotation=60)
    for text in ax.get_xticklabels():
        text.set_horizontalalignment("right")
    ax.set_title(f"label vectors ({len(used)} of {len(class_names)} classes used)", fontsize=10)
    return fig


def plot_relevance(
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    query_names: Sequence[str] | None = None,
    db_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The query x database relevance matrix that multi-label data defines.

    A cell is filled where query and item share at least one class
    (:func:`hhlib.analysis.relevance_matrix`); the number in it is how many
    they share (relevance is still just yes / no).

    Args:
        query_labels: (Q, C) 0/1 matrix.
        db_labels: (N, C) 0/1 matrix.
        query_names, db_names: optional row and column names.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure.
    """
    shared = shared_label_counts(query_labels, db_labels)  # (Q, N)
    relevant = relevance_matrix(query_labels, db_labels)  # (Q, N)
    fig, ax = panel(ax, (0.35 * relevant.shape[1] + 2, 0.35 * relevant.shape[0] + 1.2))
    rows = query_names if query_names is not None else range(relevant.shape[0])
    columns = db_names if db_names is not None else range(relevant.shape[1])
    _matrix(relevant, [IRRELEVANT_COLOR, RELEVANT_COLOR], ax, rows, columns)
    for q, n in zip(*np.nonzero(relevant)):
        ax.text(n + 0.5, q + 0.5, str(shared[q, n]), ha="center", va="center", fontsize=7)
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    ax.set_ylabel("query")
    ax.set_xlabel("database item")
    ax.set_title(f"relevant pairs: {int(relevant.sum())} of {relevant.size} (number: classes shared)", fontsize=10)
    return fig
