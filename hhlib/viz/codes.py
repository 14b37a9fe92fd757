"""Plots of what the binary codes look like: bit statistics, distances, embeddings, stability, result grids.

The numbers come from :mod:`hhlib.analysis` (docs/DESIGN.md, "Module map"); each plot here computes
them with it, or takes them, and draws them. Codes are (n, bits) arrays of -1/+1; labels are (n, C)
0/1 label matrices or (n,) class ids, and where one colour or row per item is needed, a multi-label
item counts as its first label. Every plot returns its Figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from hhlib.analysis import (
    bit_balance,
    bit_correlation,
    class_ids,
    class_mean_codes,
    codes_array,
    embedding_places,
    sample_per_class,
)
from hhlib.viz._figure import bare, figure, panel

__all__ = [
    "plot_bit_balance",
    "plot_bit_correlation",
    "plot_class_mean_codes",
    "plot_codes_by_class",
    "plot_distance_histograms",
    "plot_embedding",
    "plot_flipped_bits",
    "plot_retrieval_grid",
]

RELEVANT_COLOUR = "tab:green"
IRRELEVANT_COLOUR = "tab:red"
UNKNOWN_COLOUR = "0.6"
QUERY_COLOUR = "tab:blue"
CODE_COLOURS = "RdBu_r"  # -1 blue, 0 white, +1 red


def plot_bit_balance(codes, ax: Axes | None = None) -> Figure:
    """One bar per bit: the fraction of items with the bit at +1 (:func:`~hhlib.analysis.bit_balance`), against 0.5.

    Args:
        codes: (n, bits) -1/+1 codes.
        ax: draw here instead of in a new figure.
    """
    balance = bit_balance(codes)  # (bits,)
    fig, ax = panel(ax, (9, 3))
    ax.bar(np.arange(len(balance)), balance, width=0.8, color="tab:blue")
    ax.axhline(0.5, color="black", linestyle="--", linewidth=1, label="ideal 0.5")
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.7, len(balance) - 0.3)
    ax.set_xlabel("bit")
    ax.set_ylabel("fraction of +1")
    ax.set_title(f"bit balance: mean |fraction - 0.5| = {np.abs(balance - 0.5).mean():.3f}")
    ax.legend(loc="upper right")
    return fig


def _code_heatmap(values: np.ndarray, ax: Axes, **kwargs) -> None:
    """A -1..+1 heat map (blue, white, red) of a matrix whose columns are bits."""
    sns.heatmap(values, cmap=CODE_COLOURS, vmin=-1, vmax=1, center=0, ax=ax, **kwargs)
    ax.set_xlabel("bit")


def plot_bit_correlation(codes, ax: Axes | None = None) -> Figure:
    """Heat map of the correlation between every two bits (:func:`~hhlib.analysis.bit_correlation`).

    Args:
        codes: (n, bits) -1/+1 codes.
        ax: draw here instead of in a new figure.
    """
    correlation = bit_correlation(codes)  # (bits, bits)
    bits = len(correlation)
    fig, ax = panel(ax, (5.5, 4.5))
    every = max(1, bits // 8)  # a label every few bits: 64 labels on a side would overlap
    _code_heatmap(correlation, ax, square=True, xticklabels=every, yticklabels=every, cbar_kws={"label": "correlation"})
    ax.tick_params(axis="y", rotation=0)
    off_diagonal = np.abs(correlation[~np.eye(bits, dtype=bool)]) if bits > 1 else np.zeros(1)
    ax.set_title(f"bit correlation: mean |r| off the diagonal = {off_diagonal.mean():.3f}")
    ax.set_ylabel("bit")
    return fig


def plot_class_mean_codes(codes, labels, class_names: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """Heat map of the mean code of each class (rows) over the bits (:func:`~hhlib.analysis.class_mean_codes`).

    Dark red or blue cells are bits on which the class agrees; a class with a pale row has no code of its own.

    Args:
        codes: (n, bits) -1/+1 codes.
        labels: (n, C) label matrix or (n,) class ids.
        class_names: one name per class, for the rows.
        ax: draw here instead of in a new figure.
    """
    means = class_mean_codes(codes, labels)  # (C, bits)
    if class_names is not None and len(class_names) != len(means):
        raise ValueError(f"{len(class_names)} class names for {len(means)} classes")
    fig, ax = panel(ax, (10, 0.35 * len(means) + 1.5))
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(means))]
    _code_heatmap(means, ax, yticklabels=names, cbar_kws={"label": "mean bit", "pad": 0.01})
    ax.tick_params(axis="y", rotation=0)
    ax.set_title("mean code per class")
    return fig


def plot_codes_by_class(
    codes, labels, per_class: int = 20, class_names: Sequence[str] | None = None, ax: Axes | None = None, seed: int = 0
) -> Figure:
    """A sample of codes, one row each, grouped by class (:func:`~hhlib.analysis.sample_per_class`).

    The stripes are each class's code.

    Args:
        codes: (n, bits) -1/+1 codes.
        labels: (n, C) label matrix or (n,) class ids (multi-label items go with their first label).
        per_class: rows drawn per class (fewer where a class has fewer items).
        class_names: one name per class.
        ax: draw here instead of in a new figure.
        seed: seed of the sample.
    """
    codes = codes_array(codes)
    classes = class_ids(labels, len(codes))
    positions = sample_per_class(classes, per_class, seed)
    present, sizes = np.unique(classes[positions], return_counts=True)
    fig, ax = panel(ax, (10, 6))
    _code_heatmap(codes[positions], ax, cbar=False, yticklabels=False)
    bounds = np.cumsum(sizes)
    for bound in bounds[:-1]:
        ax.axhline(bound, color="black", linewidth=1)
    names = [class_names[c] if class_names is not None else str(c) for c in present]
    ax.set_yticks(bounds - sizes / 2, names, rotation=0)
    ax.set_xlabel("bit (red +1, blue -1)")
    ax.set_title(f"codes of up to {per_class} items per class")
    return fig


def _fraction_histogram(values: np.ndarray, bits: int, ax: Axes, **kwargs) -> None:
    """Bars over 0..bits, one per value, of the fraction of ``values`` there (empty: a legend entry only)."""
    if len(values):
        sns.histplot(x=values, bins=np.arange(bits + 2) - 0.5, stat="probability", ax=ax, **kwargs)
    else:
        ax.bar([], [], color=kwargs.get("color"), label=kwargs.get("label"))


def plot_distance_histograms(similar, dissimilar, bits: int, radius: int | None = 2, ax: Axes | None = None) -> Figure:
    """Histograms of the Hamming distances of relevant and of irrelevant pairs, each summing to one.

    Normalised per group, the two compare although irrelevant pairs are far more numerous. Good codes
    keep them apart; where they overlap, ranking by distance mixes relevant and irrelevant items.

    Args:
        similar, dissimilar: distances of relevant and irrelevant pairs (:func:`~hhlib.analysis.pair_distances`).
        bits: the code length (the x axis runs over 0..bits).
        radius: mark this Hamming radius (precision within radius 2 counts the items inside it); None: no mark.
        ax: draw here instead of in a new figure.
    """
    fig, ax = panel(ax, (8, 3.5))
    for name, values, colour in (("similar", similar, RELEVANT_COLOUR), ("dissimilar", dissimilar, IRRELEVANT_COLOUR)):
        values = np.asarray(values).ravel()
        if len(values) and (values.min() < 0 or values.max() > bits):
            raise ValueError(f"{name} distances must lie in 0..{bits}")
        mean = f", mean {values.mean():.1f}" if len(values) else ""
        label = f"{name} pairs ({len(values):,}{mean})"
        _fraction_histogram(values, bits, ax, color=colour, alpha=0.6, label=label)
    if radius is not None:
        ax.axvline(radius + 0.5, color="black", linestyle="--", linewidth=1, label=f"radius {radius}")
    ax.set_xlim(-0.5, bits + 0.5)
    ax.set_xlabel("Hamming distance")
    ax.set_ylabel("fraction of pairs")
    ax.set_title("distances between query and database codes")
    ax.legend()
    return fig


def plot_embedding(
    coords, labels, class_names: Sequence[str] | None = None, ax: Axes | None = None, title: str = "t-SNE of the codes"
) -> Figure:
    """Scatter a 2-D embedding, one colour per class, one marker per place (:func:`~hhlib.analysis.embedding_places`).

    Items of a class at the same place are one marker whose area (``6 x count``) grows with their number.

    Args:
        coords: (m, 2) coordinates, e.g. from :func:`~hhlib.analysis.embed_codes`.
        labels: (m,) class ids or (m, C) label matrix of those items (``labels[positions]``).
        class_names: one name per class, for the legend.
        ax: draw here instead of in a new figure.
        title: the axes title.
    """
    places = embedding_places(coords, labels)
    fig, ax = panel(ax, (6.5, 5.5))
    colours = plt.get_cmap("tab10" if places["class"].max() < 10 else "tab20")
    for c, group in places.groupby("class", sort=True):
        ax.scatter(
            group["x"],
            group["y"],
            s=6 * group["count"].to_numpy(),
            alpha=0.7,
            color=colours(int(c) % colours.N),
            linewidths=0,
            label=class_names[c] if class_names is not None else str(c),
        )
    bare(ax)
    ax.set_title(title)
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="marker area ~ images")
    for handle in legend.legend_handles:
        handle.set_sizes([30])
    return fig


def plot_flipped_bits(flips, bits: int, ax: Axes | None = None) -> Figure:
    """Histogram of the bits flipped by augmentation, one count per (image, draw).

    Args:
        flips: counts of any shape, e.g. from :func:`~hhlib.analysis.augmentation_flips`.
        bits: the code length.
        ax: draw here instead of in a new figure.
    """
    flips = np.asarray(flips).ravel()
    if len(flips) == 0:
        raise ValueError("flips is empty")
    if flips.min() < 0 or flips.max() > bits:
        raise ValueError(f"flipped bits must lie in 0..{bits}")
    fig, ax = panel(ax, (8, 3.5))
    _fraction_histogram(flips, bits, ax, color="tab:purple")
    ax.set_xlim(-0.5, bits + 0.5)
    ax.set_xlabel("bits flipped by a random shift / flip")
    ax.set_ylabel("fraction of images")
    ax.set_title(
        f"code stability: mean {flips.mean():.2f} of {bits} bits flipped, {(flips == 0).mean():.0%} of codes unchanged"
    )
    return fig


def _rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image -> (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image must be (H, W) or (H, W, 1/3/4), got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image * 255 if image.max() <= 1 else image, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def _mosaic(
    images: Sequence[np.ndarray], frames: Sequence[str], columns: int, caption_rows: float = 0.0, max_tile: int = 128
) -> tuple[np.ndarray, np.ndarray, int]:
    """Images side by side on one white canvas, each in a frame of its colour.

    One image is much faster to draw than one axes per result (about 30 ms
    each), which keeps the explorer responsive.

    Args:
        images: the images; resized to a common square tile (the largest
            side among them, at most ``max_tile`` pixels) where they differ.
        frames: a matplotlib colour per image.
        columns: tiles per row.
        caption_rows: blank space above each tile, in tile heights.
        max_tile: the largest tile side.

    Returns:
        ``(canvas, corners, tile)``: the (H, W, 3) uint8 canvas, the (n, 2)
        (row, column) pixel of each framed tile's top-left corner, and the
        tile side (the frame adds ``max(1, tile // 16)`` pixels each side).
    """
    from PIL import Image as PILImage

    images = [_rgb(image) for image in images]
    tile = min(max_tile, max(max(image.shape[:2]) for image in images))
    border = max(1, tile // 16)
    gap = max(2, tile // 8)
    framed = tile + 2 * border
    band = round(caption_rows * framed)
    rows = -(-len(images) // columns)
    pitch_y, pitch_x = band + framed + gap, framed + gap
    canvas = np.full((rows * pitch_y, columns * pitch_x - gap, 3), 255, np.uint8)
    corners = np.zeros((len(images), 2), np.int64)
    for rank, (image, frame) in enumerate(zip(images, frames, strict=True)):
        if image.shape[:2] != (tile, tile):
            image = np.asarray(PILImage.fromarray(image).resize((tile, tile), PILImage.BILINEAR))
        top, left = (rank // columns) * pitch_y + band, (rank % columns) * pitch_x
        canvas[top : top + framed, left : left + framed] = np.round(np.array(to_rgb(frame)) * 255)
        canvas[top + border : top + border + tile, left + border : left + border + tile] = image
        corners[rank] = top, left
    return canvas, corners, tile


def plot_retrieval_grid(
    query_image: np.ndarray,
    images: Sequence[np.ndarray],
    distances: Sequence[int],
    relevant: Sequence[bool] | None = None,
    captions: Sequence[str] | None = None,
    query_caption: str = "query",
    columns: int = 10,
    title: str | None = None,
    interpolation: str | None = None,
    pyplot: bool = True,
) -> Figure:
    """The query and its results, ranked, framed green (relevant), red (not) or grey (unknown).

    Args:
        query_image: (H, W, 3) or (H, W) image.
        images: the results' images, best first (resized to one tile size
            where they differ).
        distances: their Hamming distances to the query.
        relevant: whether each shares a label with the query; None when the
            query's label is unknown (an uploaded image).
        captions: a short text per result (e.g. its class), under its rank
            and distance.
        query_caption: the title of the query image.
        columns: results per row.
        title: the figure's title.
        interpolation: how the images are resampled (``imshow``'s; None: the rcParams').
        pyplot: False makes a Figure pyplot does not track, which another
            thread can draw at the same time (the explorer's, see hhlib.widgets).

    Returns:
        The Figure, with two axes: the query (framed blue) and the results,
        drawn as one image with one caption text per result, in rank order.
    """
    n = len(images)
    lengths = {len(distances), n} | {len(x) for x in (relevant, captions) if x is not None}
    if lengths != {n}:
        raise ValueError("images, distances, relevant and captions must have one entry per result")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    caption_rows = 0.55 if captions is not None else 0.3
    cell = 1.1  # inches per result
    size = (cell * (columns + 1.3) / 2, cell * rows * (1 + caption_rows) + (0.45 if title else 0.1))
    fig, (query_ax, results_ax) = figure(
        2, size, layout=None, pyplot=pyplot, width_ratios=[1.1, columns], gridspec_kw={"wspace": 0.05}
    )
    query_canvas, _, _ = _mosaic([query_image], [QUERY_COLOUR], 1, max_tile=256)
    query_ax.imshow(query_canvas, interpolation=interpolation)
    query_ax.set_title(query_caption, fontsize=8)
    query_ax.set_anchor("N")
    results_ax.set_anchor("N")
    for ax in (query_ax, results_ax):
        ax.axis("off")
    _draw_results(results_ax, images, distances, relevant, captions, columns, caption_rows, interpolation)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _draw_results(
    ax, images, distances, relevant, captions, columns: int, caption_rows: float, interpolation: str | None
) -> None:
    """The ranked results as one framed mosaic with a caption per result."""
    n = len(images)
    if n == 0:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
        return
    frames = [
        UNKNOWN_COLOUR if relevant is None else RELEVANT_COLOUR if r else IRRELEVANT_COLOUR
        for r in (relevant if relevant is not None else [None] * n)
    ]
    canvas, corners, tile = _mosaic(images, frames, columns, caption_rows)
    ax.imshow(canvas, interpolation=interpolation)
    for rank, (top, left) in enumerate(corners):
        text = f"{rank + 1}. d={int(distances[rank])}" + (f"\n{captions[rank]}" if captions is not None else "")
        ax.text(left + tile / 2, top - 1, text, ha="center", va="bottom", fontsize=7)
