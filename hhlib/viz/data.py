"""Plots: retrieval protocols, class counts, example images and relevance (notebook 01).

Every plot function returns its matplotlib Figure; those that draw a single
panel take an optional ``ax``.

- :func:`plot_ranking`: a ranked database, relevant items marked, and the
  average precision read off it (the mAP preview).
- :func:`plot_protocol_layout`: how a protocol cuts the pooled dataset into
  query, train and database (and where train and database overlap).
- :func:`plot_split_counts` / :func:`plot_protocols`: images per class in
  each part of a split (from :func:`split_class_counts`).
- :func:`plot_example_grid`: a few raw images per class of a split.
- :func:`plot_label_matrix` / :func:`plot_relevance`: multi-label vectors and
  the query x database relevance they define.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from hhlib.data.protocols import PROTOCOLS, Split, class_membership

__all__ = [
    "PART_COLORS",
    "ranking_order",
    "plot_ranking",
    "protocol_layout",
    "plot_protocol_layout",
    "split_class_counts",
    "plot_split_counts",
    "plot_protocols",
    "plot_example_grid",
    "plot_label_matrix",
    "relevance_matrix",
    "plot_relevance",
]

PARTS = ("query", "train", "database")
PART_COLORS = {
    "query": "tab:orange",
    "train": "tab:blue",
    "database": "tab:green",
    "train and database": "tab:cyan",
    "unused": "lightgrey",
}
RELEVANT_COLOR, IRRELEVANT_COLOR = "tab:green", "lightgrey"


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


# -- the retrieval task ---------------------------------------------------------


def ranking_order(distances: np.ndarray) -> np.ndarray:
    """Database positions by ascending distance, ties broken by position (hhlib's ``ties="index"``)."""
    distances = np.asarray(distances)
    if distances.ndim != 1:
        raise ValueError(f"distances must be one query's (N,) vector, got shape {distances.shape}")
    return np.argsort(distances, kind="stable")


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
    distances, relevant = np.asarray(distances), np.asarray(relevant, dtype=bool)
    if relevant.shape != distances.shape:
        raise ValueError(f"relevant {relevant.shape} and distances {distances.shape} differ in shape")
    if labels is not None and len(labels) != len(distances):
        raise ValueError(f"{len(labels)} labels for {len(distances)} items")
    order = ranking_order(distances)
    fig, ax = _axes(ax, (max(4.0, (0.95 if labels is not None else 0.7) * len(order)), 2.1))
    hits = 0
    precisions = []
    for rank, item in enumerate(order, start=1):
        ax.add_patch(Rectangle((rank - 1, 0), 0.9, 0.9, color=RELEVANT_COLOR if relevant[item] else IRRELEVANT_COLOR))
        ax.text(rank - 0.55, 0.45, str(distances[item]), ha="center", va="center", fontsize=10)
        if labels is not None:
            ax.text(rank - 0.55, 1.0, str(labels[item]), ha="center", va="bottom", fontsize=8)
        if relevant[item]:
            hits += 1
            precisions.append(hits / rank)
            ax.text(rank - 0.55, -0.15, f"{hits}/{rank}", ha="center", va="top", fontsize=9)
    ap = float(np.mean(precisions)) if precisions else 0.0
    ax.set_xlim(-0.2, len(order) + 0.1)
    ax.set_ylim(-0.7, 1.6 if labels is not None else 1.1)
    ax.set_xticks(np.arange(len(order)) + 0.45, [str(r) for r in range(1, len(order) + 1)])
    ax.set_xlabel("rank (number in a square: Hamming distance; below: precision at each relevant item)")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"AP = mean({', '.join(f'{p:.2f}' for p in precisions) or '-'}) = {ap:.4f}")
    return fig


# -- protocols -----------------------------------------------------------------


def protocol_layout(split: Split, pool_size: int) -> dict[str, int]:
    """How many pooled images fall in each part of a split.

    Args:
        split: the split.
        pool_size: images in the pooled dataset the split indexes.

    Returns:
        Counts for "query", "train" (train images outside the database),
        "train and database", "database" (database images outside train)
        and "unused"; they add up to ``pool_size``.

    Raises:
        ValueError: when an index lies outside the pool or the query
            overlaps train or database.
    """
    largest = max((int(part.max()) for part in (split.query, split.train, split.database) if len(part)), default=-1)
    if largest >= pool_size:
        raise ValueError(f"the split indexes image {largest}, beyond a pool of {pool_size}")
    query, train, database = (np.zeros(pool_size, dtype=bool) for _ in PARTS)
    query[split.query], train[split.train], database[split.database] = True, True, True
    if (query & (train | database)).any():
        raise ValueError("the query set overlaps train or database; not a retrieval protocol")
    return {
        "query": int(query.sum()),
        "train": int((train & ~database).sum()),
        "train and database": int((train & database).sum()),
        "database": int((database & ~train).sum()),
        "unused": int((~query & ~train & ~database).sum()),
    }


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
    fig, ax = _axes(ax, (9.0, 0.6 + 0.55 * len(splits)))
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


def split_class_counts(split: Split, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Images of each class in the query, train and database parts of a split.

    Args:
        split: the split.
        labels: the (n,) class ids or (n, C) 0/1 matrix it was drawn from.

    Returns:
        Part name -> (C,) counts; an image with several labels counts once
        for each of its classes.
    """
    member = class_membership(labels, PROTOCOLS[split.protocol].num_classes)
    return {part: member[getattr(split, part)].sum(axis=0).astype(np.int64) for part in PARTS}


def plot_split_counts(
    split: Split, labels: np.ndarray, class_names: Sequence[str] | None = None, axes: Sequence[Axes] | None = None
) -> Figure:
    """Three bar charts: images per class in query, train and database.

    Args:
        split: the split.
        labels: the labels it was drawn from (see :func:`split_class_counts`).
        class_names: one name per class (the x tick labels).
        axes: three axes to draw in; a new 1 x 3 figure when None.

    Returns:
        The Figure.
    """
    counts = split_class_counts(split, labels)
    num_classes = len(counts["query"])
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
    elif len(axes) != 3:
        raise ValueError(f"axes must hold 3 axes (query, train, database), got {len(axes)}")
    for ax, part in zip(axes, PARTS):
        ax.bar(range(num_classes), counts[part], color=PART_COLORS[part])
        ax.set_title(f"{split.protocol}: {part} ({len(getattr(split, part)):,} images)", fontsize=9)
        ax.set_xticks(range(num_classes), names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, max(1, counts[part].max()) * 1.15)
    axes[0].set_ylabel("images")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_protocols(
    splits: Mapping[str, Split],
    labels: np.ndarray | Mapping[str, np.ndarray],
    class_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
) -> Figure:
    """:func:`plot_split_counts` for several protocols, one row each.

    Args:
        splits: protocol name -> split.
        labels: the labels of every split, or one label array per name.
        class_names: the names of every split's classes, or one sequence per name.

    Returns:
        The Figure (rows in the order of ``splits``, columns query / train / database).
    """
    if not splits:
        raise ValueError("no splits to draw")
    fig, grid = plt.subplots(len(splits), 3, figsize=(12, 2.6 * len(splits)), squeeze=False)
    for row, (name, split) in zip(grid, splits.items()):
        row_labels = labels[name] if isinstance(labels, Mapping) else labels
        names = class_names[name] if isinstance(class_names, Mapping) else class_names
        plot_split_counts(split, row_labels, names, axes=row)
    fig.tight_layout()
    return fig


# -- images ----------------------------------------------------------------------


def plot_example_grid(
    dataset, class_names: Sequence[str], per_class: int = 8, seed: int = 0, classes: Sequence[int] | None = None
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
    fig, grid = plt.subplots(
        len(classes), per_class, figsize=(1.1 * per_class + 1.2, 1.1 * len(classes)), squeeze=False
    )
    for row, c in zip(grid, classes):
        members = np.flatnonzero(labels[:, c])
        picks = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off")
        for ax, i in zip(row, picks):
            ax.imshow(dataset.raw_image(int(i)))
        row[0].axis("on")
        for side in row[0].spines.values():
            side.set_visible(False)
        row[0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


# -- multi-label relevance -------------------------------------------------------


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
    fig, ax = _axes(ax, (0.5 * len(used) + 2, 0.3 * len(labels) + 1))
    ax.imshow(labels[:, used] != 0, cmap=ListedColormap(["white", "tab:purple"]), vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(used)), [class_names[c] for c in used], rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), item_names if item_names is not None else range(len(labels)))
    ax.set_xticks(np.arange(len(used) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(labels) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="lightgrey", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_title(f"label vectors ({len(used)} of {len(class_names)} classes used)", fontsize=10)
    return fig


def relevance_matrix(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """(Q, N) booleans: True where a query and a database item share at least one class.

    Args:
        query_labels: (Q, C) 0/1 matrix.
        db_labels: (N, C) 0/1 matrix.
    """
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    if query_labels.ndim != 2 or db_labels.ndim != 2 or query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(f"need (Q, C) and (N, C) label matrices, got {query_labels.shape} and {db_labels.shape}")
    return (query_labels != 0).astype(np.int64) @ (db_labels != 0).astype(np.int64).T > 0


def plot_relevance(
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    query_names: Sequence[str] | None = None,
    db_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The query x database relevance matrix that multi-label data defines.

    A cell is filled where query and item share at least one class; the
    number in it is how many they share (relevance is still just yes / no).

    Args:
        query_labels: (Q, C) 0/1 matrix.
        db_labels: (N, C) 0/1 matrix.
        query_names, db_names: optional row and column names.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure.
    """
    relevant = relevance_matrix(query_labels, db_labels)  # (Q, N)
    shared = (np.asarray(query_labels) != 0).astype(np.int64) @ (np.asarray(db_labels) != 0).astype(np.int64).T
    fig, ax = _axes(ax, (0.35 * relevant.shape[1] + 2, 0.35 * relevant.shape[0] + 1.2))
    ax.imshow(relevant, cmap=ListedColormap([IRRELEVANT_COLOR, RELEVANT_COLOR]), vmin=0, vmax=1, aspect="auto")
    for q, n in zip(*np.nonzero(relevant)):
        ax.text(n, q, str(shared[q, n]), ha="center", va="center", fontsize=7)
    ax.set_yticks(range(relevant.shape[0]), query_names if query_names is not None else range(relevant.shape[0]))
    ax.set_xticks(
        range(relevant.shape[1]),
        db_names if db_names is not None else range(relevant.shape[1]),
        rotation=90,
        fontsize=7,
    )
    ax.set_ylabel("query")
    ax.set_xlabel("database item")
    ax.set_title(f"relevant pairs: {int(relevant.sum())} of {relevant.size} (number: classes shared)", fontsize=10)
    return fig
