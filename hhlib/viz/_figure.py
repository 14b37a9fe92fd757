"""The one way the plots of hhlib.viz make their figures and panels, in the collection's style.

The style is seaborn's "ticks" look without the top and right spines. It is applied while a
figure and its axes are made, and matplotlib keeps it on those axes, so the caller's
``rcParams`` are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["STYLE", "figure", "panel", "panels", "bare"]

STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": ".15",
    "axes.grid": False,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": ".15",
    "ytick.color": ".15",
    "xtick.direction": "out",
    "ytick.direction": "out",
}


def figure(
    columns: int = 1,
    panel_size: tuple[float, float] = (6.0, 4.0),
    *,
    rows: int = 1,
    pyplot: bool = True,
    layout: str | None = "constrained",
    **subplots,
) -> tuple[Figure, Axes | np.ndarray]:
    """A figure of ``rows`` x ``columns`` panels of ``panel_size`` inches each, in the collection's style.

    ``pyplot=False`` makes a Figure pyplot does not track (a notebook shows it only when a cell returns it);
    ``subplots`` go to :meth:`Figure.subplots` (``sharey``, ``width_ratios``, ...). The axes come as
    :func:`matplotlib.pyplot.subplots` gives them: one Axes, a row of them, or a (rows, columns) grid.
    """
    if rows < 1 or columns < 1:
        raise ValueError(f"a figure needs at least one panel, got {rows} x {columns}")
    size = (panel_size[0] * columns, panel_size[1] * rows)
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=size, layout=layout) if pyplot else Figure(figsize=size, layout=layout)
        axes = fig.subplots(rows, columns, **subplots)
    return fig, axes


def panel(ax: Axes | None, panel_size: tuple[float, float], **kwargs) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new one-panel :func:`figure` of ``panel_size``: for plots that take an ``ax``."""
    if ax is not None:
        return ax.figure, ax
    return figure(1, panel_size, **kwargs)


def panels(
    axes: Sequence[Axes] | None, count: int, panel_size: tuple[float, float], what: str = "panels", **kwargs
) -> tuple[Figure, list[Axes]]:
    """``count`` given axes (checked) and their figure, or a new 1 x ``count`` :func:`figure`."""
    if axes is None:
        fig, made = figure(count, panel_size, squeeze=False, **kwargs)
        return fig, list(made[0])
    if len(axes) != count:
        raise ValueError(f"need {count} axes ({what}), got {len(axes)}")
    return axes[0].figure, list(axes)


def bare(ax: Axes) -> None:
    """No ticks and no frame, for panels whose picture has no axes to read (images, embeddings)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
