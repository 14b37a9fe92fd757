"""Who is relevant to whom: two items are relevant when they share at least one label.

This is the one relevance rule of hhlib (docs/DESIGN.md, "Metrics and ties"): the
loss's pairwise similarity, every retrieval metric, the plots and the
widgets use it. Labels are class ids ``(n,)`` or 0/1 label matrices
``(n, C)`` (one-hot or multi-hot); NumPy arrays and torch tensors both work,
and the result is of the same kind. :mod:`hhlib.metrics` evaluates the same
rule on bit-packed labels for speed, and its tests check it against this one.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["relevant"]


def relevant(query_labels, database_labels):
    """Bool (n, m): does query i share a label with database item j.

    Both arguments are class ids (1-D) or both are 0/1 matrices (2-D) with
    the same number of classes; both NumPy or both torch.
    """
    if query_labels.ndim != database_labels.ndim or query_labels.ndim not in (1, 2):
        raise ValueError(
            "labels must both be class ids (1-D) or both 0/1 matrices (2-D), "
            f"got shapes {tuple(query_labels.shape)} and {tuple(database_labels.shape)}"
        )
    if query_labels.ndim == 1:
        return query_labels[:, None] == database_labels[None, :]
    if query_labels.shape[1] != database_labels.shape[1]:
        raise ValueError(f"{query_labels.shape[1]} classes against {database_labels.shape[1]}")
    if isinstance(query_labels, torch.Tensor):
        return (query_labels != 0).float() @ (database_labels != 0).float().T > 0
    return (query_labels != 0).astype(np.float32) @ (database_labels != 0).astype(np.float32).T > 0
