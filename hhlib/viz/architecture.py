"""Plots: the network, blocks, feature maps, stage costs and what a weight loader filled (notebook 02).

Every plot function returns its matplotlib Figure.

- :func:`plot_network`: the whole HybridHash as boxes, with the shape after
  every stage computed from a :class:`~hhlib.model.HybridHashConfig`.
- :func:`plot_blocks`: the blocks of every level drawn over an image.
- :func:`plot_blockify`: what :func:`hhlib.model.blockify` does to a map,
  and that :func:`~hhlib.model.deblockify` undoes it.
- :func:`plot_feature_maps`: channel norms (:func:`hhlib.analysis.channel_norm`)
  of (C, H, W) maps side by side on one shared colour scale, e.g. the local
  and global branches of an interaction module.
- :func:`plot_stage_costs`: parameters and FLOPs per stage (rows of
  :func:`hhlib.summary.stage_summary`), for one or several models, on log axes.
- :func:`plot_load_report`: loaded vs fresh parameters per group (rows of
  :func:`hhlib.summary.load_report_by_stage`), on a log axis.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import EngFormatter

from hhlib.analysis import channel_norm
from hhlib.model import HybridHashConfig, blockify, deblockify
from hhlib.summary import LoadRow, StageRow
from hhlib.viz._figure import bare, figure, panel, panels

__all__ = [
    "plot_network",
    "plot_blocks",
    "plot_blockify",
    "plot_feature_maps",
    "plot_stage_costs",
    "plot_load_report",
]

LOADED_COLOR, FRESH_COLOR = "tab:green", "tab:orange"


# Fill colours of plot_network's boxes: attention, hybrid (convolution + attention), the rest.
_NETWORK_COLORS = {"attention": "#fde0c5", "hybrid": "#e4d7f5", "plain": "#e8e8e8"}


def _network_stages(config: HybridHashConfig) -> list[tuple[str, str, str, str, str]]:
    """(name, what it does, kind, output shape, what this configuration sets) for every stage."""
    G, b, p = config.grid_size, config.block_size, config.patch_size
    dims, L = config.embed_dims, config.num_levels
    stages = [
        ("input image", "", "plain", f"({config.in_chans}, {config.img_size}, {config.img_size})", ""),
        ("patch embedding", "p x p convolution, stride p", "plain", f"({dims[0]}, {G}, {G})", f"p = {p}"),
    ]
    for i, (dim, depth, heads) in enumerate(zip(dims, config.depths, config.num_heads)):
        side, blocks = G // 2**i, 4 ** (L - 1 - i)
        if i:
            what = "3x3 conv + attention of block tokens, max-pool /2"
            note = f"{4 * blocks} tokens, {config.interaction_heads} heads"
            stages.append((f"interaction module {i}", what, "hybrid", f"({dim}, {side}, {side})", note))
        note = f"{depth} layer{'s' if depth > 1 else ''}, {heads} head{'s' if heads > 1 else ''}"
        stages.append(
            (f"level {i} transformer", "attention inside each block", "attention", f"({blocks}, {b * b}, {dim})", note)
        )
    stages += [
        ("final LayerNorm", "", "plain", f"({dims[-1]}, {b}, {b})", ""),
        ("hash head", "1x3, 3x1 conv + attention; pool, 1x1 conv, mean, tanh", "hybrid", f"({config.bits},)", ""),
        ("sign", "", "plain", f"{config.bits} bits", ""),
    ]
    return stages


def plot_network(configs: HybridHashConfig | Mapping[str, HybridHashConfig], ax: Axes | None = None) -> Figure:
    """The whole HybridHash as a column of boxes, with one column of output shapes per configuration.

    Shapes are (C, H, W) for maps and (T, N, C) for the blocks inside a level (orange boxes); purple
    boxes join convolution and attention. A stage one configuration lacks is left blank in its column.

    Args:
        configs: a configuration, or column title -> configuration.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure.
    """
    configs = {"": configs} if isinstance(configs, HybridHashConfig) else dict(configs)
    if not configs:
        raise ValueError("no configuration to draw")
    by_config = {title: {s[0]: s for s in _network_stages(config)} for title, config in configs.items()}
    order = _merged_stage_order({title: list(stages) for title, stages in by_config.items()})
    described = {name: s for stages in by_config.values() for name, s in stages.items()}
    column = 0.5 / len(configs)
    fig, ax = panel(ax, (2.8 + 1.4 * len(configs), 0.4 * len(order) + 0.5))
    ax.set_xlim(0, 1)
    ax.set_ylim(len(order) - 0.5, -1.1)
    for y, name in enumerate(order):
        _, what, kind, _, _ = described[name]
        box = FancyBboxPatch((0.01, y - 0.36), 0.46, 0.72, boxstyle="round,pad=0,rounding_size=0.04")
        box.set(facecolor=_NETWORK_COLORS[kind], edgecolor=".3", linewidth=0.8)
        ax.add_patch(box)
        ax.text(0.025, y - (0.13 if what else 0), name, fontsize=7.5, fontweight="bold", va="center")
        if what:
            ax.text(0.025, y + 0.17, what, fontsize=6.5, va="center", color=".2")
        if y:
            ax.annotate("", (0.24, y - 0.36), (0.24, y - 0.64), arrowprops=dict(arrowstyle="->", lw=0.8))
        for k, stages in enumerate(by_config.values()):
            if name in stages:
                x, shape, note = 0.5 + k * column, stages[name][3], stages[name][4]
                ax.text(x, y - (0.13 if note else 0), shape, fontsize=7, va="center", family="monospace")
                if note:
                    ax.text(x, y + 0.17, note, fontsize=6.5, va="center", color=".3")
    for k, (title, config) in enumerate(configs.items()):
        heading = f"{title}\n" if title else ""
        ax.text(
            0.5 + k * column, -0.85, f"{heading}{config.img_size} px, b = {config.block_size}", fontsize=8, va="center"
        )
    ax.text(0.01, -0.85, "output shapes: (C, H, W) of maps,\n(T, N, C) of blocks (orange)", fontsize=7, va="center")
    bare(ax)
    return fig


def _as_image(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) or (H, W) array for imshow, from an array or a (3, H, W) tensor."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.permute(1, 2, 0).numpy() if image.ndim == 3 and image.shape[0] in (1, 3) else image.numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (3, H, W) image, got shape {image.shape}")
    return image


def _number_blocks(ax: Axes, side: int, block: float, offset: float, fontsize: int) -> None:
    """Write each block's number (row-major, as blockify orders them) at its centre."""
    for row in range(side):
        for col in range(side):
            x, y = (col + 0.5) * block + offset, (row + 0.5) * block + offset
            ax.text(
                x,
                y,
                str(row * side + col),
                color="yellow",
                ha="center",
                va="center",
                fontsize=fontsize,
                fontweight="bold",
            )


def plot_blocks(
    image: np.ndarray | torch.Tensor, config: HybridHashConfig, axes: Sequence[Axes] | None = None, numbers: bool = True
) -> Figure:
    """The blocks of every level of a HybridHash, drawn over an image.

    Level i sees a map of side ``G / 2**i`` tokens (G = img_size /
    patch_size), cut into square blocks of b x b tokens; attention runs
    inside each block only. Thick lines are block borders, thin ones token
    borders (drawn where tokens are at least 4 px wide); blocks are numbered
    in the order :func:`~hhlib.model.blockify` lays them out.

    Args:
        image: any (H, W, 3) / (H, W) / (3, H, W) image; it is stretched to
            the model's ``img_size`` x ``img_size`` input.
        config: the model configuration.
        axes: one axis per level; a new 1 x levels figure when None.
        numbers: write block numbers.

    Returns:
        The Figure.
    """
    picture = _as_image(image)
    size, b = config.img_size, config.block_size
    fig, axes = panels(axes, config.num_levels, (3.6, 3.8), "one per level")
    for level, ax in enumerate(axes):
        token_px = config.patch_size * 2**level  # a token of level i covers this many pixels
        block_px = b * token_px
        side = size // block_px  # blocks per side
        ax.imshow(
            picture, extent=(0, size, size, 0), cmap="gray" if picture.ndim == 2 else None, interpolation="nearest"
        )
        if token_px >= 4 * size / 224:
            for t in range(1, size // token_px):
                ax.axhline(t * token_px, color="white", linewidth=0.3, alpha=0.6)
                ax.axvline(t * token_px, color="white", linewidth=0.3, alpha=0.6)
        for k in range(1, side):
            ax.axhline(k * block_px, color="tab:red", linewidth=2)
            ax.axvline(k * block_px, color="tab:red", linewidth=2)
        if numbers:
            _number_blocks(ax, side, block_px, 0.0, fontsize=9)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        bare(ax)
        ax.set_title(
            f"level {level}: {side * side} block{'s' if side > 1 else ''} of {b}x{b} tokens\n"
            f"token = {token_px}x{token_px} px, block = {block_px}x{block_px} px",
            fontsize=9,
        )
    return fig


def plot_blockify(image: np.ndarray | torch.Tensor, block_size: int) -> Figure:
    """Blockify an image's pixels as if they were tokens, then deblockify them back.

    Three panels: the (H, W) map with its blocks numbered; blockify's
    (T, N) output drawn as one row per block (each row is one sequence the
    block attention sees); and deblockify's result, which is the map again.

    Args:
        image: (H, W, 3) / (H, W) / (3, H, W); H = W, divisible by ``block_size``.
        block_size: side b of a block, in pixels here (tokens in the model).

    Returns:
        The Figure.
    """
    picture = _as_image(image)
    height, width = picture.shape[:2]
    if height != width or height % block_size:
        raise ValueError(f"need a square image whose side is divisible by {block_size}, got {height}x{width}")
    grid = torch.from_numpy(np.ascontiguousarray(picture.reshape(height, width, -1)))[None]  # (1, H, W, C)
    blocks = blockify(grid, block_size)  # (1, T, N, C)
    back = deblockify(blocks, block_size)  # (1, H, W, C)
    num_blocks, tokens = blocks.shape[1:3]
    side = height // block_size
    grey = picture.ndim == 2
    fig, (left, middle, right) = figure(3, (13 / 3, 3.6), width_ratios=[1, 2.2, 1])
    left.imshow(picture, cmap="gray" if grey else None, interpolation="nearest")
    for k in range(1, side):
        left.axhline(k * block_size - 0.5, color="tab:red", linewidth=1.5)
        left.axvline(k * block_size - 0.5, color="tab:red", linewidth=1.5)
    _number_blocks(left, side, block_size, -0.5, fontsize=8)
    left.set_title(f"map (H, W) = ({height}, {width}), blocks of {block_size}x{block_size}", fontsize=9)
    strip = blocks[0].numpy()  # (T, N, C)
    middle.imshow(
        strip[..., 0] if grey else strip, cmap="gray" if grey else None, aspect="auto", interpolation="nearest"
    )
    middle.set_yticks(range(num_blocks), [str(t) for t in range(num_blocks)], fontsize=7)
    middle.set_ylabel("block t")
    middle.set_xlabel("token n within the block (row by row)")
    middle.set_title(f"blockify: (T, N) = ({num_blocks}, {tokens}), one sequence per row", fontsize=9)
    restored = back[0].numpy()
    right.imshow(restored[..., 0] if grey else restored, cmap="gray" if grey else None, interpolation="nearest")
    same = bool(torch.equal(back, grid))
    right.set_title(f"deblockify: the map again ({'identical' if same else 'DIFFERENT'})", fontsize=9)
    for ax in (left, right):
        bare(ax)
    return fig


def _distinct(value: float, other: float) -> str:
    """``value`` with the fewest significant digits (3 to 10) that tell it from ``other``."""
    for digits in range(3, 11):
        text = f"{value:.{digits}g}"
        if text != f"{other:.{digits}g}":
            return text
    return f"{value:.3g}"


def plot_feature_maps(
    maps: Mapping[str, np.ndarray | torch.Tensor],
    axes: Sequence[Axes] | None = None,
    cmap: str = "viridis",
    shared: bool = True,
) -> Figure:
    """Feature maps side by side, each drawn as its channel norm (:func:`channel_norm`) at every position.

    With ``shared`` all panels use one colour scale (one labelled colour bar), so panels compare; without it
    each panel gets its own bar, labelled at its extremes only.

    Args:
        maps: what is drawn -> (C, H, W) map (or a batch of one).
        axes: one axis per map; a new 1 x len(maps) figure when None.
        cmap: the colour map.
        shared: one colour scale for all panels.

    Returns:
        The Figure.
    """
    if not maps:
        raise ValueError("no maps to draw")
    fig, axes = panels(axes, len(maps), (2.6, 2.6), "one per map")
    norms = {title: channel_norm(feature_map) for title, feature_map in maps.items()}
    low = min(float(norm.min()) for norm in norms.values())
    high = max(float(norm.max()) for norm in norms.values())
    label = "channel norm ‖x[:, i, j]‖₂"
    images = []
    for ax, (title, feature_map) in zip(axes, maps.items()):
        norm = norms[title]
        limits = dict(vmin=low, vmax=high) if shared else {}
        images.append(ax.imshow(norm, cmap=cmap, interpolation="nearest", **limits))
        what = textwrap.fill(f"channel norm of {title}", 32)
        ax.set_title(f"{what}\n(C, H, W) = {tuple(feature_map.shape[-3:])}", fontsize=8)
        bare(ax)
        if not shared:
            colorbar = fig.colorbar(images[-1], ax=ax, fraction=0.046, pad=0.03)
            # Only the extremes, with as many digits as it takes to tell them apart: a
            # nearly constant map (an untrained global branch) gets no misleading scale.
            a, b = float(norm.min()), float(norm.max())
            colorbar.set_ticks([a, b], labels=[_distinct(a, b), _distinct(b, a)])
    if shared:
        fig.colorbar(images[0], ax=list(axes), fraction=0.046 / len(axes), pad=0.02, label=label)
    return fig


def _merged_stage_order(models: Mapping[str, Sequence[str]]) -> list[str]:
    """Stage names of several models in one order that keeps each model's order.

    A stage only one model has goes right before that model's next stage
    already placed (after the stages of earlier models at the same place).
    """
    order: list[str] = []
    for stages in models.values():
        stages = list(stages)
        for i, stage in enumerate(stages):
            if stage in order:
                continue
            following = next((s for s in stages[i + 1 :] if s in order), None)
            order.insert(len(order) if following is None else order.index(following), stage)
    return order


def _log_bars(ax: Axes, positions: Sequence[float], values: Sequence[float], height: float, **style) -> None:
    """Horizontal bars on a log axis with a light grid; a 0, which a log axis cannot draw, is written instead."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(axis="x", color=".9", linewidth=0.6)
    for y, value in zip(positions, values):
        if value > 0:
            ax.barh(y, value, height=height, **style)
        else:
            ax.annotate(" 0", (0, y), xycoords=("axes fraction", "data"), va="center", fontsize=7)


def _log_limits(ax: Axes, values: Sequence[float]) -> None:
    """From at least half a decade below the smallest positive value to a little above the largest."""
    positive = [v for v in values if v > 0] or [1.0]
    ax.set_xlim(10 ** np.floor(np.log10(min(positive)) - 0.5), max(positive) * 2)


def plot_stage_costs(
    rows: Sequence[StageRow] | Mapping[str, Sequence[StageRow]], axes: Sequence[Axes] | None = None
) -> Figure:
    """Parameters and FLOPs per stage as two horizontal bar charts on log axes (stages span decades).

    Args:
        rows: :func:`hhlib.summary.stage_summary` rows of one model, or
            model name -> rows to compare several (grouped bars; stages are
            matched by name).
        axes: two axes (parameters, FLOPs); a new 1 x 2 figure when None.

    Returns:
        The Figure; a stage that costs 0 is written as 0 (the tables of
        :func:`hhlib.summary.format_stage_table` give every value).
    """
    models = dict(rows) if isinstance(rows, Mapping) else {"": list(rows)}
    if not models or not any(models.values()):
        raise ValueError("no stage rows to draw")
    stages = _merged_stage_order({name: [row.stage for row in rows] for name, rows in models.items()})
    fig, axes = panels(
        axes, 2, (4.2, 0.3 * len(stages) * max(1, len(models) / 1.5) + 1.0), "parameters, FLOPs", sharey=True
    )
    height = 0.8 / len(models)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, (name, model_rows) in enumerate(models.items()):
        by_stage = {row.stage: row for row in model_rows}
        positions = [i - 0.4 + height * (m + 0.5) for i, stage in enumerate(stages) if stage in by_stage]
        present = [by_stage[stage] for stage in stages if stage in by_stage]
        style = dict(color=colors[m % 10], label=name or None)
        _log_bars(axes[0], positions, [r.parameters for r in present], height, **style)
        _log_bars(axes[1], positions, [r.flops for r in present], height, **style)
    everything = [r for rs in models.values() for r in rs]
    _log_limits(axes[0], [r.parameters for r in everything])
    _log_limits(axes[1], [r.flops for r in everything])
    axes[0].set_yticks(range(len(stages)), stages, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("parameters (log scale)")
    axes[1].set_xlabel("FLOPs per image (log scale)")
    totals = ", ".join(
        f"{name + ': ' if name else ''}{sum(r.parameters for r in rs) / 1e6:.1f} M parameters, "
        f"{sum(r.flops for r in rs) / 1e9:.1f} GFLOPs"
        for name, rs in models.items()
    )
    axes[0].figure.suptitle(totals, fontsize=9)
    if len(models) > 1:
        handles, labels = axes[1].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        axes[1].legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    return fig


def plot_load_report(rows: Sequence[LoadRow], ax: Axes | None = None) -> Figure:
    """Loaded and freshly initialised parameters per group, side by side on a log axis (groups span decades).

    Args:
        rows: :func:`hhlib.summary.load_report_by_stage` rows.
        ax: where to draw; a new figure when None.

    Returns:
        The Figure (:func:`hhlib.summary.format_load_table` gives the numbers).
    """
    if not rows:
        raise ValueError("no rows to draw")
    fig, ax = panel(ax, (5.5, 0.26 * len(rows) + 1.0))
    loaded = [r.loaded_parameters for r in rows]
    fresh = [r.missing_parameters for r in rows]
    positions = np.arange(len(rows))
    # A group's zero bar is left out (its colour says which one it has); two bars share the row.
    for y, pair in zip(positions, zip(loaded, fresh)):
        bars = [(value, color) for value, color in zip(pair, (LOADED_COLOR, FRESH_COLOR)) if value > 0]
        height = 0.7 / max(1, len(bars))
        for k, (value, color) in enumerate(bars):
            _log_bars(ax, [y - 0.35 + height * (k + 0.5)], [value], height, color=color)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    _log_limits(ax, loaded + fresh)
    ax.set_yticks(positions, [r.stage for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("parameters (log scale)")
    ax.legend(
        handles=[Patch(color=LOADED_COLOR, label="loaded"), Patch(color=FRESH_COLOR, label="fresh (own init)")],
        loc="upper right",
        fontsize=8,
    )
    total_loaded, total = sum(loaded) / 1e6, (sum(loaded) + sum(fresh)) / 1e6
    ax.set_title(
        f"{total_loaded:.1f} M of {total:.1f} M parameters loaded ({100 * total_loaded / total:.0f}%)"
        if total
        else "nothing to load",
        fontsize=10,
    )
    return fig
