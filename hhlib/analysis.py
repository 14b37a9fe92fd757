"""The numbers behind the tutorials' plots: bit statistics, distances, embeddings, labels and splits.

Pure computations that return NumPy arrays or pandas DataFrames, so that they can be checked and
tabulated on their own; :mod:`hhlib.viz` only draws them (docs/DESIGN.md, "Module map"). Codes are
(n, bits) arrays of -1/+1 as :func:`hhlib.train.encode` returns them; labels are (n,) class ids or
(n, C) 0/1 label matrices, and two items are relevant when they share a label
(:func:`hhlib.relevance.relevant`, docs/DESIGN.md, "Metrics and ties").

Good codes are balanced (each bit is +1 for about half of the items), their bits are uncorrelated,
items of a class share a pattern (similar pairs lie near, dissimilar ones near ``bits / 2``), and an
image's code barely changes under the training augmentation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset

from hhlib.data.protocols import PROTOCOLS, Split, class_membership
from hhlib.data.transforms import TensorTransform
from hhlib.hamming import hamming_distances, to_numpy
from hhlib.losses import WeightedLikelihoodLoss
from hhlib.relevance import relevant
from hhlib.train import encode

__all__ = [
    "SPLIT_PARTS",
    "codes_array",
    "label_matrix",
    "class_ids",
    "bit_balance",
    "bit_entropy",
    "bit_correlation",
    "class_mean_codes",
    "sample_per_class",
    "pair_distances",
    "flipped_bits",
    "augmentation_flips",
    "embed_codes",
    "embedding_places",
    "relevance_matrix",
    "shared_label_counts",
    "PairWeights",
    "class_balance_weights",
    "code_scale_loss",
    "ranking_order",
    "ranking_table",
    "protocol_layout",
    "split_class_counts",
    "channel_norm",
]

SPLIT_PARTS = ("query", "train", "database")


# --------------------------------------------------------------------------- inputs


def codes_array(codes: Any, name: str = "codes") -> np.ndarray:
    """(n, bits) -1/+1 codes as int8, or a ValueError that says what is wrong with them."""
    array = to_numpy(codes)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty (n, bits) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.abs(array) == 1):
        raise ValueError(f"{name} must hold only -1 and +1 (binary codes from hhlib.train.encode)")
    return array.astype(np.int8, copy=False)


def label_matrix(labels: Any, n: int | None = None, name: str = "labels") -> np.ndarray:
    """(n, C) 0/1 uint8 labels from a label matrix or from (n,) class ids; ``n`` checks the row count."""
    array = to_numpy(labels)
    if array.ndim == 1:
        if len(array) and (not np.issubdtype(array.dtype, np.integer) or array.min() < 0):
            raise ValueError(f"{name} given as class ids must be non-negative integers")
        array = np.eye(int(array.max()) + 1 if len(array) else 1, dtype=np.uint8)[array]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (n,) class ids or an (n, classes) label matrix, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{name} has {len(array)} rows but there are {n} items")
    return (array > 0).astype(np.uint8)


def class_ids(labels: Any, n: int | None = None, name: str = "labels") -> np.ndarray:
    """(n,) one class per item, for colours and rows: the class id, or the first label of a label matrix."""
    return label_matrix(labels, n, name).argmax(1)


def _sample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted positions of at most ``limit`` of ``n`` items, drawn without replacement (all when None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"a sample size must be positive, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


# --------------------------------------------------------------------------- bits


def bit_balance(codes: Any) -> np.ndarray:
    """(bits,) fraction of items whose bit is +1; 0.5 is ideal, a constant bit carries no information."""
    return (codes_array(codes) > 0).mean(axis=0)


def bit_entropy(codes: Any) -> np.ndarray:
    """(bits,) entropy of each bit over the items, in bits: 1 for a balanced bit, 0 for a constant one."""
    p = bit_balance(codes)
    entropy = np.zeros_like(p)
    varying = (p > 0) & (p < 1)
    q = p[varying]
    entropy[varying] = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return entropy


def bit_correlation(codes: Any) -> np.ndarray:
    """(bits, bits) Pearson correlation of every two bits: two bits that always agree are one bit twice.

    A constant bit has no defined correlation and gets 0 with every other bit; the diagonal is 1.
    """
    x = codes_array(codes).astype(np.float64)
    x -= x.mean(axis=0)  # (n, bits), centred
    std = np.sqrt((x**2).mean(axis=0))  # (bits,)
    covariance = x.T @ x / len(x)  # (bits, bits)
    scale = np.outer(std, std)
    correlation = np.divide(covariance, scale, out=np.zeros_like(covariance), where=scale > 0)
    np.fill_diagonal(correlation, 1.0)
    return np.clip(correlation, -1.0, 1.0)


def class_mean_codes(codes: Any, labels: Any) -> np.ndarray:
    """(C, bits) mean code of each class, in [-1, 1]: +-1 where the class agrees on a bit, NaN for an empty class.

    An item with several labels counts in each of its classes.
    """
    codes = codes_array(codes)
    members = label_matrix(labels, len(codes)).T.astype(np.float64)  # (C, n)
    counts = members.sum(axis=1, keepdims=True)  # (C, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return members @ codes / counts


def sample_per_class(labels: Any, per_class: int, seed: int = 0) -> np.ndarray:
    """Positions of up to ``per_class`` random items of each class, grouped by ascending class, sorted within.

    Multi-label items go with their first label, so every position appears once.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    classes = class_ids(labels)
    rng = np.random.default_rng(seed)
    groups = [np.sort(rng.permutation(np.flatnonzero(classes == c))[:per_class]) for c in np.unique(classes)]
    return np.concatenate(groups) if groups else np.zeros(0, np.int64)


# --------------------------------------------------------------------------- distances


def pair_distances(
    query_codes: Any,
    database_codes: Any,
    query_labels: Any,
    database_labels: Any,
    max_queries: int | None = None,
    max_items: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances of (query, database item) pairs as ``(relevant, irrelevant)`` int64 arrays.

    Good codes keep the two apart. ``max_queries`` / ``max_items`` draw random samples (seeded), since Q x N adds up.
    """
    query_codes = codes_array(query_codes, "query_codes")
    database_codes = codes_array(database_codes, "database_codes")
    if query_codes.shape[1] != database_codes.shape[1]:
        raise ValueError(f"query codes have {query_codes.shape[1]} bits, database codes {database_codes.shape[1]}")
    query_labels = label_matrix(query_labels, len(query_codes), "query_labels")
    database_labels = label_matrix(database_labels, len(database_codes), "database_labels")
    width = max(query_labels.shape[1], database_labels.shape[1])  # class ids may give matrices of different widths
    query_labels = np.pad(query_labels, ((0, 0), (0, width - query_labels.shape[1])))
    database_labels = np.pad(database_labels, ((0, 0), (0, width - database_labels.shape[1])))
    rows = _sample(len(query_codes), max_queries, seed)
    columns = _sample(len(database_codes), max_items, seed + 1)
    distances = hamming_distances(query_codes[rows], database_codes[columns]).astype(np.int64)  # (q, m)
    similar = relevant(query_labels[rows], database_labels[columns])  # (q, m)
    return distances[similar], distances[~similar]


def flipped_bits(codes_before: Any, codes_after: Any) -> np.ndarray:
    """(n,) int64 bits that differ between two codings of the same n items (row i of both is one item)."""
    before = codes_array(codes_before, "codes_before")
    after = codes_array(codes_after, "codes_after")
    if before.shape != after.shape:
        raise ValueError(f"codes_before has shape {before.shape} but codes_after {after.shape}")
    return (before != after).sum(axis=1).astype(np.int64)


def augmentation_flips(
    model: torch.nn.Module,
    split: Dataset,
    repeats: int = 1,
    max_items: int | None = None,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(repeats, n) int64 bits flipped when the split's training augmentation (shift, flip) is applied.

    Needs an in-memory split whose transform is a TensorTransform; the global torch random state is kept.
    """
    transform = getattr(split, "transform", None)
    if not isinstance(transform, TensorTransform):
        raise ValueError(
            "augmentation_flips needs an in-memory split whose transform is a TensorTransform "
            f"(Fashion-MNIST, CIFAR-10, digits), got transform {transform!r}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    plain, augmented = copy.copy(split), copy.copy(split)
    plain.transform = TensorTransform(transform.img_size, augment=False, flip=transform.flip)
    augmented.transform = TensorTransform(
        transform.img_size, augment=True, flip=transform.flip, max_shift=transform.max_shift
    )
    positions = _sample(len(split), max_items, seed).tolist()
    kwargs = dict(batch_size=batch_size, device=device, progress=progress)
    flips = []
    with torch.random.fork_rng(devices=[]):  # data loaders draw from the global generator too
        torch.manual_seed(seed)
        before = encode(model, Subset(plain, positions), desc="encode plain", **kwargs)
        for _ in range(repeats):
            after = encode(model, Subset(augmented, positions), desc="encode augmented", **kwargs)
            flips.append(flipped_bits(before, after))
    return np.stack(flips)


# --------------------------------------------------------------------------- embeddings


def embed_codes(
    codes: Any,
    method: str = "tsne",
    max_items: int | None = 2000,
    seed: int = 0,
    perplexity: float = 30.0,
    threads: int | None = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of (a sample of) the codes, as ``(coords (m, 2), positions (m,))``: PCA or t-SNE.

    ``threads`` limits t-SNE's OpenMP threads (None: all), since waiting threads spin on a busy machine.
    """
    codes = codes_array(codes)
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    positions = _sample(len(codes), max_items, seed)
    sample = codes[positions].astype(np.float32)  # (m, bits)
    if len(sample) < 4:
        raise ValueError(f"embedding needs at least 4 codes, got {len(sample)}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(sample), positions
    return _tsne(sample, seed, perplexity, threads), positions


def _tsne(sample: np.ndarray, seed: int, perplexity: float, threads: int | None) -> np.ndarray:
    """t-SNE on Euclidean distances, whose squares between -1/+1 codes are four times the Hamming distances."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(perplexity, (len(sample) - 1) / 3)  # small samples need fewer than 3 x perplexity points
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(sample)


def embedding_places(coords: Any, labels: Any) -> pd.DataFrame:
    """The distinct places of each class in a 2-D embedding: columns class, x, y, count.

    Identical codes land on one place and trained codes repeat a lot, so a place is drawn once, sized by its count.
    """
    coords = to_numpy(coords).astype(np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (m, 2), got shape {coords.shape}")
    classes = class_ids(labels, len(coords))
    tolerance = 1e-6 * max(1.0, float(np.ptp(coords))) if len(coords) else 1.0  # closer places are one
    tables = []
    for c in np.unique(classes):
        members = coords[classes == c]  # (m_c, 2)
        _, first, counts = np.unique(np.round(members / tolerance), axis=0, return_index=True, return_counts=True)
        order = np.argsort(first)  # places in the order of their first item
        place = members[first[order]]
        tables.append(pd.DataFrame({"class": c, "x": place[:, 0], "y": place[:, 1], "count": counts[order]}))
    columns = {"class": np.int64, "x": np.float64, "y": np.float64, "count": np.int64}
    return pd.concat(tables, ignore_index=True).astype(columns) if tables else pd.DataFrame(columns=list(columns))


# --------------------------------------------------------------------------- labels and relevance


def relevance_matrix(query_labels: Any, database_labels: Any) -> np.ndarray:
    """(Q, N) booleans: True where a query and a database item share a label, the relevance of retrieval."""
    return to_numpy(relevant(to_numpy(query_labels), to_numpy(database_labels)))


def shared_label_counts(query_labels: Any, database_labels: Any) -> np.ndarray:
    """(Q, N) int64 number of classes each query shares with each database item ((Q, C) and (N, C) 0/1 labels)."""
    query, database = to_numpy(query_labels), to_numpy(database_labels)
    if query.ndim != 2 or database.ndim != 2 or query.shape[1] != database.shape[1]:
        raise ValueError(f"need (Q, C) and (N, C) label matrices, got {query.shape} and {database.shape}")
    return (query != 0).astype(np.int64) @ (database != 0).astype(np.int64).T


@dataclass(frozen=True)
class PairWeights:
    """The pairs of a batch against the memory bank: S1 similar, S0 dissimilar, and their weights S/S1, S/S0."""

    similar_pairs: int
    dissimilar_pairs: int
    positive_weight: float
    negative_weight: float

    def __str__(self) -> str:
        return (
            f"S1 = {self.similar_pairs:,} similar pairs (weight S/S1 = {self.positive_weight:.3f}), "
            f"S0 = {self.dissimilar_pairs:,} dissimilar pairs (weight S/S0 = {self.negative_weight:.3f})"
        )


def class_balance_weights(batch_labels: Any, bank_labels: Any) -> PairWeights:
    """The class-balance weights WeightedLikelihoodLoss gives a batch of (B, C) labels against a (N, C) bank.

    A bank row of zeros (an image not seen yet) is dissimilar to everything; a kind without pairs weighs S.
    """
    batch, bank = to_numpy(batch_labels), to_numpy(bank_labels)
    if batch.ndim != 2 or bank.ndim != 2 or batch.shape[1] != bank.shape[1] or not batch.size or not bank.size:
        raise ValueError(
            f"batch_labels (B, C) and bank_labels (N, C) must be non-empty 0/1 matrices with the "
            f"same C, got shapes {batch.shape} and {bank.shape}"
        )
    similar = relevant(batch, bank)  # (B, N)
    total = similar.size
    positives = int(similar.sum())
    negatives = total - positives
    return PairWeights(positives, negatives, total / max(positives, 1), total / max(negatives, 1))


def code_scale_loss(codes: Any, labels: Any, scales: Sequence[float], alpha: float = 0.5) -> np.ndarray:
    """(len(scales),) weighted loss of the codes shrunk by each factor t, every item in batch and bank.

    At t = 0 every code is zero and the loss is 2 log 2 whatever the labels: the saddle the training leaves.
    """
    u = torch.as_tensor(to_numpy(codes), dtype=torch.float32)
    y = torch.as_tensor(to_numpy(labels), dtype=torch.float32)
    if u.ndim != 2 or y.ndim != 2 or len(u) != len(y) or not len(u):
        raise ValueError(
            f"codes (N, bits) and labels (N, C) must be non-empty with the same N, "
            f"got shapes {tuple(u.shape)} and {tuple(y.shape)}"
        )
    index = torch.arange(len(u))
    losses = []
    for scale in scales:
        criterion = WeightedLikelihoodLoss(len(u), y.shape[1], u.shape[1], alpha=alpha)
        with torch.no_grad():
            losses.append(float(criterion(float(scale) * u, y, index)))
    return np.array(losses)


# --------------------------------------------------------------------------- rankings and splits


def ranking_order(distances: Any) -> np.ndarray:
    """Database positions by ascending distance, ties broken by position (hhlib's ``ties="index"``)."""
    distances = to_numpy(distances)
    if distances.ndim != 1:
        raise ValueError(f"distances must be one query's (N,) vector, got shape {distances.shape}")
    return np.argsort(distances, kind="stable")


def ranking_table(distances: Any, relevant_items: Any) -> pd.DataFrame:
    """One query's ranking: rank, item, distance, relevant, and precision at each relevant item (else NaN).

    The mean of the precision column is the query's average precision (0 when nothing is relevant).
    """
    distances, relevant_items = to_numpy(distances), to_numpy(relevant_items).astype(bool)
    if relevant_items.shape != distances.shape:
        raise ValueError(f"relevant {relevant_items.shape} and distances {distances.shape} differ in shape")
    order = ranking_order(distances)
    hits = np.cumsum(relevant_items[order])
    ranks = np.arange(1, len(order) + 1)
    precision = np.where(relevant_items[order], hits / ranks, np.nan)
    return pd.DataFrame(
        {
            "rank": ranks,
            "item": order,
            "distance": distances[order],
            "relevant": relevant_items[order],
            "precision": precision,
        }
    )


def protocol_layout(split: Split, pool_size: int) -> dict[str, int]:
    """Pooled images per part of a split: query, train (outside the database), train and database, database, unused.

    The counts add up to ``pool_size``; a query that overlaps train or database is a ValueError.
    """
    largest = max((int(part.max()) for part in (split.query, split.train, split.database) if len(part)), default=-1)
    if largest >= pool_size:
        raise ValueError(f"the split indexes image {largest}, beyond a pool of {pool_size}")
    query, train, database = (np.zeros(pool_size, dtype=bool) for _ in SPLIT_PARTS)
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


def split_class_counts(split: Split, labels: Any) -> pd.DataFrame:
    """Images of each class (rows) in the query, train and database parts (columns) of a split.

    An image with several labels counts once for each of its classes.
    """
    member = class_membership(to_numpy(labels), PROTOCOLS[split.protocol].num_classes)
    counts = {part: member[getattr(split, part)].sum(axis=0).astype(np.int64) for part in SPLIT_PARTS}
    return pd.DataFrame(counts).rename_axis("class")


# --------------------------------------------------------------------------- feature maps


def channel_norm(feature_map: Any) -> np.ndarray:
    """(H, W) Euclidean norm over the channels of a (C, H, W) or (1, C, H, W) map: where it is active."""
    values = to_numpy(feature_map.float() if isinstance(feature_map, torch.Tensor) else feature_map)
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise ValueError(f"expected a (C, H, W) map (or a batch of one), got shape {values.shape}")
    return np.sqrt((values.astype(np.float64) ** 2).sum(axis=0))
