"""The three families of deep supervised hashing, drawn on the square of two-bit relaxed codes.

A picture, not a measurement: codes of three classes in [-1, 1]^2, and what
each family's loss does to them (notebook 07 trains the real thing).
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hhlib.viz._figure import panels

__all__ = ["plot_families", "FAMILY_TITLES"]

FAMILY_TITLES = (
    "symmetric: pairs and triplets of network codes",
    "asymmetric: query codes against learned database codes",
    "central: every code pulled to its class's centre",
)
CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:purple")
CENTRES = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # three corners of the two-bit cube


def _codes(generator: np.random.Generator, per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Relaxed codes scattered around each class's corner, pulled towards the middle."""
    labels = np.repeat(np.arange(3), per_class)
    codes = 0.55 * CENTRES[labels] + generator.normal(0, 0.18, (len(labels), 2))
    return np.clip(codes, -0.95, 0.95), labels


def _square(ax: Axes, title: str) -> None:
    ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="0.8", linewidth=1, zorder=0)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")
    ax.set_xlabel("bit 1")
    ax.set_ylabel("bit 2")
    ax.set_title(title, fontsize="medium")


def _arrow(ax: Axes, start, end, colour: str, style: str = "->", **kwargs) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": style, "color": colour, "lw": 1.4, **kwargs})


def plot_families(seed: int = 0, axes: list[Axes] | None = None) -> Figure:
    """Three panels: a pair pulled, a pair pushed and a triplet; a query against fixed database codes;
    codes pulled to centres at corners of the cube."""
    fig, (symmetric, asymmetric, central) = panels(axes, 3, (4.2, 4.2), "families")
    codes, labels = _codes(np.random.default_rng(seed))
    for ax, title in zip((symmetric, asymmetric, central), FAMILY_TITLES):
        _square(ax, title)
    # symmetric: one network's codes; a similar pair pulled together, a dissimilar pair pushed apart
    symmetric.scatter(*codes.T, c=[CLASS_COLOURS[c] for c in labels], s=40)
    _arrow(symmetric, codes[0], codes[1], "tab:green", "<->")
    _arrow(symmetric, codes[2], codes[5], "tab:red", "<->", linestyle="--")
    anchor, positive, negative = codes[8], codes[9], codes[4]  # a triplet: closer to its class than to another
    symmetric.scatter(*anchor, s=140, facecolors="none", edgecolors="black")
    _arrow(symmetric, anchor, positive, "tab:green")
    _arrow(symmetric, anchor, negative, "tab:red", linestyle="--")
    # asymmetric: database codes are binary variables (squares at corners, jittered to show several);
    # the network's query codes (circles) are fitted to them
    database = CENTRES[labels] * 0.97 + np.random.default_rng(seed + 1).normal(0, 0.03, codes.shape)
    asymmetric.scatter(*database.T, c=[CLASS_COLOURS[c] for c in labels], marker="s", s=40, label="database code")
    query = codes[::4]
    asymmetric.scatter(*query.T, c=[CLASS_COLOURS[c] for c in labels[::4]], s=40, label="query code")
    for q, c in zip(query, labels[::4]):
        _arrow(asymmetric, q, database[c * 4], "tab:green")
    asymmetric.legend(loc="upper left", fontsize="small")
    # central: each code's target is its class's centre, fixed before training
    central.scatter(*codes.T, c=[CLASS_COLOURS[c] for c in labels], s=40)
    central.scatter(*CENTRES.T, c=CLASS_COLOURS, marker="*", s=320, edgecolors="black", label="hash centre")
    for code, c in zip(codes, labels):
        _arrow(central, code, CENTRES[c] * 0.93, "0.4")
    central.legend(loc="upper left", fontsize="small")
    return fig
