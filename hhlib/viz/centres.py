"""Hash centres drawn: how far apart each kind of centres lies, against the bounds of coding theory."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hhlib.methods.centres import centre_distances, code_bounds
from hhlib.viz._figure import panel

__all__ = ["plot_centre_distances"]


def plot_centre_distances(centres: Mapping[str, torch.Tensor], ax: Axes | None = None) -> Figure:
    """One step histogram per kind of centres of the Hamming distances between distinct centres.

    Dashed lines mark the Gilbert-Varshamov distance (some code of this size
    reaches it) and the Plotkin bound (none exceeds it) for the centres'
    number and length, all kinds sharing both. The legend gives each kind's
    minimum, the number that decides how easily two classes' codes are confused.
    """
    if not centres:
        raise ValueError("centres must name at least one set of centres")
    shapes = {tuple(c.shape) for c in centres.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[0] < 2:
        raise ValueError(f"every set of centres must have the same shape (classes >= 2, bits), got {sorted(shapes)}")
    classes, bits = next(iter(shapes))
    fig, ax = panel(ax, (8, 3.5))
    upper = np.triu_indices(classes, 1)
    distances = {name: centre_distances(torch.as_tensor(c).float()).numpy()[upper] for name, c in centres.items()}
    edges = np.arange(bits + 2) - 0.5
    for name, pairs in distances.items():
        ax.hist(
            pairs,
            bins=edges,
            histtype="step",
            linewidth=1.8,
            label=f"{name}: min {pairs.min()}, mean {pairs.mean():.1f}",
        )
    bounds = code_bounds(classes, bits)
    for key, name, style in (("gilbert_varshamov", "Gilbert-Varshamov", ":"), ("plotkin", "Plotkin bound", "--")):
        ax.axvline(bounds[key], color="black", linestyle=style, linewidth=1, label=f"{name} ({bounds[key]})")
    low = min(bounds["gilbert_varshamov"], *(int(pairs.min()) for pairs in distances.values()))
    high = max(bounds["plotkin"], *(int(pairs.max()) for pairs in distances.values()))
    ax.set_xlim(low - 1.5, min(high + 2.5, bits + 0.5))
    ax.set_xlabel("Hamming distance between two classes' centres")
    ax.set_ylabel("pairs of classes")
    ax.set_title(f"{classes} centres of {bits} bits")
    ax.legend(fontsize="small")
    return fig
