"""Retrieval metrics for binary hash codes.

Definitions (docs/DESIGN.md, section "Metrics and ties"):

- Relevance: a database item is relevant to a query when their label vectors
  share at least one class (with class ids: the same class), the one rule of
  :func:`hhlib.relevance.relevant`.
- Ranking: ascending Hamming distance between the sign codes.
- mAP@K, as HybridHash and DeepHash-pytorch compute it (``CalcTopMap``): for
  each query take the top K of the ranking; with R_K relevant items at ranks
  r_1 < ... < r_{R_K}, AP@K = (1 / R_K) * sum_i i / r_i, and AP@K = 0 when
  R_K = 0; mAP@K = sum of AP@K / number of queries.

Hamming distances are small integers, so the ranking has large groups of ties.
DeepHash-pytorch orders them with NumPy's unstable argsort, so its mAP depends
on array order. Here the tie policy is explicit:

- ``ties="index"``: ties broken by ascending database index. This is the
  definition above computed with a stable sort, and it is deterministic.
- ``ties="expected"``: the exact expectation of AP@K over all orders within
  each group of equal distance (uniform, independent across groups), after
  McSherry & Najork, "Computing Information Retrieval Performance Measures
  Efficiently in the Presence of Tied Scores", ECIR 2008. It needs only the
  number of items and of relevant items at each distance, so nothing is
  sorted. When the cut-off K falls inside a tie group, the number X of
  relevant items that group places in the top K is hypergeometric, and R_K
  (the AP normaliser) depends on it; the expectation is taken conditionally on
  X and then averaged over X, so it is exact, not a ratio of expectations.

Also: precision@K, precision within a Hamming radius (DeepHash's definition:
a query that retrieves nothing counts 0) and the precision-recall curve over
radii 0..bits.

:func:`retrieval_scores` is the evaluator: every metric above for one set of
codes, from one packing of the codes and one pass over the distances; the
single-metric functions give the same numbers, bit for bit.

Inputs are the same for every function: codes are -1/+1 arrays or torch
tensors, or packed codes (uint8 from ``np.packbits(codes > 0, axis=1)`` or
uint64 words; give ``bits=`` when the last byte is partly used, see
:func:`hhlib.hamming.pack_codes`); labels are 0/1 matrices (one-hot or
multi-hot, any dtype) or 1-D integer class ids, the same kind for queries and
database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import hypergeom

from hhlib.hamming import (
    composite_keys,
    distance_table,
    id_shift,
    map_blocks,
    pack_codes,
    rows_per_block,
    smallest_sorted,
    to_numpy,
)
from hhlib.index import HammingIndex

__all__ = [
    "RetrievalScores",
    "retrieval_scores",
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_curve",
    "precision_within_radius",
]

_TIES = ("index", "expected")
# Queries per HammingIndex.search call: bounds the (queries, K) result arrays.
_SEARCH_QUERY_BLOCK = 4096


# -- inputs ----------------------------------------------------------------


@dataclass
class _Labels:
    """Who is relevant to whom: the rule of :func:`hhlib.relevance.relevant`, on bit-packed labels for speed.

    ``single``: class ids (Q,) and (N,). Otherwise multi-hot label vectors
    packed to bits: query (Q, L8) and database byte-major (L8, N) plus (N, L8).
    The tests check that :meth:`block` equals :func:`hhlib.relevance.relevant`.
    """

    query: np.ndarray
    db: np.ndarray
    single: bool
    db_bytes: np.ndarray | None = None

    def block(self, rows: slice) -> np.ndarray:
        """Relevance of every database item to the queries ``rows``: bool (C, N)."""
        if self.single:
            return self.query[rows, None] == self.db[None, :]
        query = self.query[rows]
        shared = np.zeros((query.shape[0], self.db_bytes.shape[1]), np.uint8)
        scratch = np.empty_like(shared)
        for b in range(query.shape[1]):  # OR over label bytes of (query byte AND item byte)
            np.bitwise_and(query[:, b : b + 1], self.db_bytes[b], out=scratch)
            np.bitwise_or(shared, scratch, out=shared)
        return shared.astype(bool)

    def of(self, rows: slice, ids: np.ndarray) -> np.ndarray:
        """Relevance of the items ``ids`` (C, K) to the queries ``rows``: bool (C, K)."""
        if self.single:
            return self.db[ids] == self.query[rows, None]
        return np.any(self.db[ids] & self.query[rows, None, :], axis=-1)


def _prepare_labels(query_labels: Any, db_labels: Any, n_queries: int, n_items: int) -> _Labels:
    arrays = {}
    for name, labels, n in (("query_labels", query_labels, n_queries), ("db_labels", db_labels, n_items)):
        array = to_numpy(labels)
        if array.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D class ids or a 2-D 0/1 matrix, got shape {array.shape}")
        if len(array) != n:
            codes = "query_codes" if name == "query_labels" else "db_codes"
            raise ValueError(f"{name} has {len(array)} rows but {codes} has {n}")
        if array.ndim == 1 and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name}: 1-D labels must be integer class ids, got dtype {array.dtype}")
        if array.ndim == 2 and not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{name}: a 2-D label matrix must contain only 0 and 1")
        arrays[name] = array
    query, db = arrays["query_labels"], arrays["db_labels"]
    if query.ndim != db.ndim:
        raise ValueError("query_labels and db_labels must both be class ids (1-D) or both 0/1 matrices (2-D)")
    if query.ndim == 1:
        return _Labels(query.astype(np.int64), db.astype(np.int64), single=True)
    if query.shape[1] != db.shape[1]:
        raise ValueError(f"query_labels has {query.shape[1]} classes but db_labels has {db.shape[1]}")
    if np.all(query.sum(1) == 1) and np.all(db.sum(1) == 1):  # one-hot: compare class ids, much cheaper
        return _Labels(query.argmax(1), db.argmax(1), single=True)
    query, db = np.packbits(query.astype(bool), axis=1), np.packbits(db.astype(bool), axis=1)
    return _Labels(query, db, single=False, db_bytes=np.ascontiguousarray(db.T))


@dataclass
class _Problem:
    """Normalised inputs shared by all metrics."""

    queries: np.ndarray  # (Q, B) packed codes
    db: np.ndarray  # (N, B) packed codes
    bits: int
    labels: _Labels
    db_bytes: np.ndarray = field(init=False, repr=False)  # (B, N), the layout of the distance loop

    def __post_init__(self) -> None:
        self.db_bytes = np.ascontiguousarray(self.db.T)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def n_items(self) -> int:
        return len(self.db)

    def distances(self, rows: slice) -> np.ndarray:
        """Hamming distances of the queries ``rows`` to every item: (C, N) uint8/uint16."""
        return distance_table(self.queries[rows], self.db_bytes, self.bits)

    @functools.cached_property
    def index(self) -> HammingIndex:
        index = HammingIndex(self.bits)
        index.add(self.db)
        return index


def _prepare(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, bits: int | None) -> _Problem:
    """Validate and normalise the inputs every metric takes."""
    queries, query_bits = pack_codes(query_codes, bits, name="query_codes")
    db, db_bits = pack_codes(db_codes, bits, name="db_codes")
    if query_bits != db_bits:
        raise ValueError(f"query_codes have {query_bits} bits per code but db_codes have {db_bits}")
    labels = _prepare_labels(query_labels, db_labels, len(queries), len(db))
    return _Problem(queries, db, query_bits, labels)


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise ValueError(f"ties must be 'index' or 'expected', got {ties!r}")


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_topk(topk: Any, n_items: int) -> int:
    """The cut-off K of mAP@K: None means all N, and a K above N means all."""
    if topk is None:
        return n_items
    if _is_count(topk) and topk >= 1:
        return min(int(topk), n_items)
    raise ValueError(f"topk must be a positive integer or None, got {topk!r}")


def _check_radius(radius: Any, bits: int) -> int:
    if not _is_count(radius) or not 0 <= radius <= bits:
        raise ValueError(f"radius must be an integer in 0..{bits}, got {radius!r}")
    return int(radius)


# -- ranking with ties broken by index --------------------------------------


def _over_ranking(problem: _Problem, k: int, reduce: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``reduce`` applied to the relevance of each query's top k, ties by index.

    ``reduce`` maps a bool block (C, k) (relevance in rank order) to per-query
    values (C, ...); the blocks' results are concatenated over all queries.

    A top k shorter than the database comes from :meth:`HammingIndex.search`
    (faiss' counting top-k), then the relevance of those k ids. The
    whole ranking sorts the keys ``distance << s | index << 1 | relevant``:
    they are unique, so sorting them is a stable sort by distance that carries
    the relevance bit along (no gather of N ids afterwards).
    """
    if k < problem.n_items:

        def top(rows: slice) -> np.ndarray:
            _, ids = problem.index.search(problem.queries[rows], k)
            return reduce(problem.labels.of(rows, ids))

        blocks = range(0, problem.n_queries, _SEARCH_QUERY_BLOCK)
        return np.concatenate([top(slice(s, s + _SEARCH_QUERY_BLOCK)) for s in blocks])

    def whole(rows: slice) -> np.ndarray:
        return reduce(_ranked_relevance(problem, problem.distances(rows), problem.labels.block(rows), k))

    return np.concatenate(map_blocks(whole, problem.n_queries, rows_per_block(problem.n_items)))


def _ranked_relevance(problem: _Problem, dist: np.ndarray, relevant: np.ndarray, depth: int) -> np.ndarray:
    """Relevance (C, depth) of each query's top ``depth`` items in (distance, index) order.

    Sorts the unique keys ``distance << s | index << 1 | relevant`` (only the
    smallest ``depth`` of them), so the relevance bit comes along without a
    gather of ids.
    """
    shift = id_shift(problem.n_items) + 1
    index_bits = np.arange(problem.n_items, dtype=np.int64) << 1
    keys = composite_keys(dist, index_bits, shift, problem.bits)  # (C, N)
    keys |= relevant
    return (smallest_sorted(keys, depth) & 1) != 0


def _average_precision(ranked: np.ndarray) -> np.ndarray:
    """AP of each row of a bool relevance block (C, K) in rank order; 0 for rows without a hit."""
    n_rows, k = ranked.shape
    positions = np.flatnonzero(ranked)  # row-major: the hits of row 0, then of row 1, ...
    if len(positions) == 0:
        return np.zeros(n_rows)
    bounds = np.searchsorted(positions, np.arange(n_rows + 1) * k)
    first, hits = bounds[:-1], np.diff(bounds)  # where each row's hits start in `positions`; R_K
    rank = positions - np.repeat(np.arange(n_rows) * k, hits) + 1  # r_i
    nth_hit = np.arange(1, len(positions) + 1) - np.repeat(first, hits)  # i
    total = np.zeros(n_rows)
    total[hits > 0] = np.add.reduceat(nth_hit / rank, first[hits > 0])  # sum_i i / r_i per row
    return np.divide(total, hits, out=total, where=hits > 0)


# -- counting by distance -----------------------------------------------------


@dataclass
class _Cut:
    """Where the top K ends, per query: inside the group at distance ``group``, after ``taken`` of its items."""

    group: np.ndarray  # (Q,) distance t of the group holding rank K
    taken: np.ndarray  # (Q,) m = K - items_before, 1 <= m <= size
    size: np.ndarray  # (Q,) n_t, items at distance t
    relevant: np.ndarray  # (Q,) r_t, relevant items at distance t
    items_before: np.ndarray  # (Q,) items at distance < t
    relevant_before: np.ndarray  # (Q,) relevant items at distance < t


@dataclass
class _Counts:
    """Items and relevant items per query (rows) and distance (columns 0..bits)."""

    items: np.ndarray
    relevant: np.ndarray

    def __post_init__(self) -> None:
        self.items_before = np.cumsum(self.items, axis=1) - self.items  # at smaller distances
        self.relevant_before = np.cumsum(self.relevant, axis=1) - self.relevant

    def cut(self, k: int) -> _Cut:
        """Locate rank k (1 <= k <= N) in the distance groups of each query."""
        rows = np.arange(len(self.items))
        group = np.argmax(self.items_before + self.items >= k, axis=1)
        return _Cut(
            group=group,
            taken=k - self.items_before[rows, group],
            size=self.items[rows, group],
            relevant=self.relevant[rows, group],
            items_before=self.items_before[rows, group],
            relevant_before=self.relevant_before[rows, group],
        )


def _histogram(dist: np.ndarray, relevant: np.ndarray, bits: int) -> np.ndarray:
    """Items (``[..., 0]``: irrelevant, ``[..., 1]``: relevant) per query row and distance: (C, bits + 1, 2)."""
    n_rows, width = len(dist), bits + 1
    # one histogram for the whole block: bin = (row * width + distance) * 2 + relevant
    bins = dist.astype(np.intp)
    bins += (np.arange(n_rows) * width)[:, None]
    bins <<= 1
    bins |= relevant
    return np.bincount(bins.ravel(), minlength=n_rows * width * 2).reshape(n_rows, width, 2)


def _counts_of(histograms: Sequence[np.ndarray]) -> _Counts:
    counts = np.concatenate(histograms)
    return _Counts(items=counts.sum(axis=2), relevant=counts[:, :, 1])


def _distance_counts(problem: _Problem) -> _Counts:
    """Count, for every query, the items and the relevant items at each distance 0..bits."""

    def block(rows: slice) -> np.ndarray:
        return _histogram(problem.distances(rows), problem.labels.block(rows), problem.bits)

    return _counts_of(map_blocks(block, problem.n_queries, rows_per_block(problem.n_items)))


@functools.cache
def _harmonic_numbers(n: int) -> np.ndarray:
    """H[i] = 1 + 1/2 + ... + 1/i for i = 0..n."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _expected_precision_sum(
    n: np.ndarray, r: np.ndarray, n_before: np.ndarray, r_before: np.ndarray, harmonic: np.ndarray
) -> np.ndarray:
    """Expected sum of precision@rank over the relevant items of a shuffled group (integer arrays in).

    A group of n items, r of them relevant, fills ranks n_before + 1 ..
    n_before + n (r_before relevant items rank above it) in a uniformly random
    order. Position j holds a relevant item with probability r / n; given
    that, the relevant items among positions 1..j-1 number (j-1)(r-1)/(n-1)
    on average (hypergeometric), so the expected sum is

        sum_j (r/n) (r_before + 1 + (j-1)(r-1)/(n-1)) / (n_before + j)
          = r(r-1)/(n-1) + (r/n) (r_before + 1 - (r-1)(n_before+1)/(n-1)) (H[n_before+n] - H[n_before])

    with (r-1)/(n-1) taken as 0 when n = 1, and 0 for an empty group.
    """
    harmonic_gap = harmonic[n_before + n] - harmonic[n_before]
    n, r = n.astype(np.float64), r.astype(np.float64)
    slope = np.divide(r - 1, n - 1, out=np.zeros_like(n), where=n > 1)  # (r-1)/(n-1)
    share = np.divide(r, n, out=np.zeros_like(n), where=n > 0)  # r/n
    return r * slope + share * (r_before + 1 - slope * (n_before + 1)) * harmonic_gap


def _expected_average_precision(counts: _Counts, k: int) -> np.ndarray:
    """E[AP@K] per query over the orders within tie groups, from per-distance counts.

    Groups entirely above the cut contribute their expected precision sums
    (independent of the cut group's order). The cut group t gives m of its n_t
    items to the top K; the number X of relevant ones among them is
    hypergeometric, and given X = x those m positions are a uniformly shuffled
    group of m items with x relevant. So

        E[AP@K] = sum_x P(X = x) * (S_above + S_cut(x)) / (R_above + x),

    a term being 0 when R_above + x = 0.
    """
    n_queries, width = counts.items.shape
    harmonic = _harmonic_numbers(int(counts.items[0].sum()))
    cut = counts.cut(k)
    above = np.arange(width) < cut.group[:, None]  # (Q, V): groups wholly in the top K
    s_above = _expected_precision_sum(
        counts.items, counts.relevant, counts.items_before, counts.relevant_before, harmonic
    )
    s_above = np.where(above, s_above, 0).sum(axis=1)

    # all (query, x) pairs, flattened: x from max(0, m - irrelevant items in the group) to min(m, r_t)
    x_low = np.maximum(0, cut.taken - (cut.size - cut.relevant))
    n_x = np.minimum(cut.taken, cut.relevant) - x_low + 1
    query = np.repeat(np.arange(n_queries), n_x)
    x = x_low[query] + np.arange(n_x.sum()) - np.repeat(np.cumsum(n_x) - n_x, n_x)

    # P(X = x): x relevant among m draws from n_t items of which r_t are relevant. logpmf (log-beta
    # functions) is about 30 times faster than pmf (Boost's exact algorithm) and accurate to ~1e-12.
    p = np.exp(hypergeom.logpmf(x, cut.size[query], cut.relevant[query], cut.taken[query]))
    p /= np.bincount(query, weights=p, minlength=n_queries)[query]  # guard against rounding
    s_cut = _expected_precision_sum(cut.taken[query], x, cut.items_before[query], cut.relevant_before[query], harmonic)
    hits = cut.relevant_before[query] + x  # R_K given X = x
    ap = np.divide(s_above[query] + s_cut, hits, out=np.zeros(len(x)), where=hits > 0)
    return np.bincount(query, weights=p * ap, minlength=n_queries)


def _check_ks(ks: Sequence[int], n_items: int) -> np.ndarray:
    values = ks.tolist() if isinstance(ks, np.ndarray) else list(ks)  # NumPy ints become Python ints
    if not values or not all(_is_count(k) and 1 <= k <= n_items for k in values):
        raise ValueError(f"ks must be a non-empty list of integers in 1..{n_items}, got {ks!r}")
    return np.array(values, dtype=np.int64)


# -- public metrics -----------------------------------------------------------


def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    ties: str = "index",
    *,
    bits: int | None = None,
) -> float:
    """mAP@K of Hamming ranking, as in HybridHash / DeepHash-pytorch, with a stated tie policy.

    Args:
        query_codes: (Q, bits) -1/+1 codes (numpy or torch) or packed codes.
        db_codes: (N, bits) database codes, same conventions.
        query_labels: (Q, C) 0/1 matrix or (Q,) integer class ids.
        db_labels: (N, C) 0/1 matrix or (N,) class ids, the same kind.
        topk: K; None means all N. A K above N means all, as slicing the
            ranking does in DeepHash-pytorch.
        ties: ``"index"``: ties broken by ascending database index (equals the
            definition computed with a stable sort). ``"expected"``: the exact
            expectation over all orders within tie groups (see the module
            docstring); it needs no sort.
        bits: bit count of packed codes (default 8 per byte).

    Returns:
        mAP@K: the sum over queries of AP@K divided by Q; a query without a
        relevant item in its top K counts 0.
    """
    _check_ties(ties)
    problem = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    k = _check_topk(topk, problem.n_items)
    if ties == "index":
        ap = _over_ranking(problem, k, _average_precision)
    else:
        ap = _expected_average_precision(_distance_counts(problem), k)
    return float(ap.sum() / problem.n_queries)


def precision_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ks: Sequence[int] = (1, 10, 100, 1000),
    ties: str = "index",
    *,
    bits: int | None = None,
) -> np.ndarray:
    """Mean precision of the top K, for each K in ``ks``.

    Args:
        query_codes, db_codes, query_labels, db_labels, bits: as in
            :func:`mean_average_precision`.
        ks: cut-offs, each in 1..N.
        ties: ``"index"`` (ties by database index) or ``"expected"``
            (expectation over orders within tie groups:
            (relevant items above the cut group + m * r_t / n_t) / K).

    Returns:
        float64 array (len(ks),): mean over queries of (relevant in top K) / K.
    """
    _check_ties(ties)
    problem = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    ks_array = _check_ks(ks, problem.n_items)
    if ties == "index":
        found = _over_ranking(problem, int(ks_array.max()), lambda ranked: np.cumsum(ranked, axis=1)[:, ks_array - 1])
    else:
        counts = _distance_counts(problem)
        found = np.empty((problem.n_queries, len(ks_array)))
        for j, k in enumerate(ks_array.tolist()):
            cut = counts.cut(k)
            found[:, j] = cut.relevant_before + cut.taken * cut.relevant / cut.size  # E[relevant in top K]
    return found.mean(axis=0) / ks_array


def precision_recall_curve(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    bits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval for every radius 0..bits.

    At radius r a query retrieves the items at distance <= r. Its precision is
    (relevant retrieved) / (retrieved), and 0 when nothing is retrieved (so
    ``precision[2]`` equals :func:`precision_within_radius` at radius 2); its
    recall is (relevant retrieved) / (relevant in the database), and 0 when
    the database holds nothing relevant to it. Both are averaged over all
    queries. No tie policy is involved.

    Args:
        query_codes, db_codes, query_labels, db_labels, bits: as in
            :func:`mean_average_precision`.

    Returns:
        ``(precision, recall)``: float64 arrays (bits + 1,), index = radius.
    """
    return _curve(_distance_counts(_prepare(query_codes, db_codes, query_labels, db_labels, bits)))


def _curve(counts: _Counts) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall of Hamming-ball retrieval per radius 0..bits."""
    retrieved = counts.items_before + counts.items  # (Q, bits + 1): items within each radius
    found = counts.relevant_before + counts.relevant
    total = found[:, -1:]
    precision = np.divide(found, retrieved, out=np.zeros(found.shape), where=retrieved > 0)
    recall = np.divide(found, total, out=np.zeros(found.shape), where=total > 0)
    return precision.mean(axis=0), recall.mean(axis=0)


def precision_within_radius(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    radius: int = 2,
    *,
    bits: int | None = None,
) -> float:
    """Precision of the items within Hamming distance ``radius``, DeepHash's P@r.

    The mean over queries of (relevant items at distance <= radius) / (items
    at distance <= radius); a query that retrieves nothing counts 0.

    Args:
        query_codes, db_codes, query_labels, db_labels, bits: as in
            :func:`mean_average_precision`.
        radius: integer in 0..bits (2 in the literature).

    Returns:
        The mean precision.
    """
    problem = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    return _precision_within(_distance_counts(problem), _check_radius(radius, problem.bits))


def _precision_within(counts: _Counts, radius: int) -> float:
    """Mean over queries of the precision of the items within ``radius``; 0 for a query retrieving nothing."""
    retrieved = counts.items[:, : radius + 1].sum(axis=1)
    found = counts.relevant[:, : radius + 1].sum(axis=1)
    return float(np.divide(found, retrieved, out=np.zeros(len(found)), where=retrieved > 0).mean())


# -- the evaluator ------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalScores:
    """The retrieval quality of one set of codes (query vs database), from :func:`retrieval_scores`.

    Attributes:
        bits: code length.
        topk: the K of mAP@K (None: all).
        map_index: mAP@K with ties broken by database index.
        map_expected: mAP@K expected over the orders within tied distances.
        radius: the Hamming radius of ``precision_radius``.
        precision_radius: precision of the items within ``radius`` (DeepHash's P@r).
        precision: (bits + 1,) precision of Hamming-ball retrieval per radius.
        recall: (bits + 1,) recall per radius.
        ks: the cut-offs of ``precision_at``.
        precision_at: (len(ks),) precision of the top K (ties by index).
    """

    bits: int
    topk: int | None
    map_index: float
    map_expected: float
    radius: int
    precision_radius: float
    precision: np.ndarray
    recall: np.ndarray
    ks: np.ndarray
    precision_at: np.ndarray

    @property
    def precision_radius2(self) -> float:
        """Precision within Hamming radius 2, the literature's P@r=2 (at radius ``bits`` for shorter codes)."""
        if self.radius == min(2, self.bits):
            return self.precision_radius
        return float(self.precision[min(2, self.bits)])

    def to_dict(self) -> dict[str, Any]:
        """The scores as plain ints, floats and lists, ready for ``json.dump``."""
        return {
            "bits": int(self.bits),
            "topk": None if self.topk is None else int(self.topk),
            "map_index": float(self.map_index),
            "map_expected": float(self.map_expected),
            "radius": int(self.radius),
            "precision_radius": float(self.precision_radius),
            "precision_radius2": self.precision_radius2,
            "precision": [float(v) for v in self.precision],
            "recall": [float(v) for v in self.recall],
            "ks": [int(k) for k in self.ks],
            "precision_at": [float(v) for v in self.precision_at],
        }


def _default_ks(n_items: int) -> np.ndarray:
    """20 cut-offs spread from 1 to min(N, 1000), without repeats."""
    return np.unique(np.linspace(1, min(n_items, 1000), 20).round().astype(np.int64))


def retrieval_scores(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    ks: Sequence[int] | None = None,
    radius: int = 2,
    *,
    bits: int | None = None,
) -> RetrievalScores:
    """Every metric of this module for one set of codes, from one pass over the distances.

    The codes are packed once and each block of distances is computed once;
    from it come the per-distance counts (expected mAP, precision within the
    radius, the precision-recall curve) and the ranking with ties by index
    (mAP, precision@K). The numbers are exactly those of the single-metric
    functions (docs/DESIGN.md, section "Metrics and ties").

    Args:
        query_codes, db_codes, query_labels, db_labels, bits: as in
            :func:`mean_average_precision`.
        topk: the K of mAP@K (None: all N, as for CIFAR-10).
        ks: cut-offs of precision@K, each in 1..N; default 20 values from 1
            to min(N, 1000).
        radius: the radius of ``precision_radius``, in 0..bits.

    Returns:
        The :class:`RetrievalScores`.
    """
    problem = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    k = _check_topk(topk, problem.n_items)
    ks_array = _check_ks(_default_ks(problem.n_items) if ks is None else ks, problem.n_items)
    radius = _check_radius(radius, problem.bits)
    depth = max(k, int(ks_array.max()))

    def block(rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dist, relevant = problem.distances(rows), problem.labels.block(rows)
        histogram = _histogram(dist, relevant, problem.bits)
        ranked = _ranked_relevance(problem, dist, relevant, depth)
        return histogram, _average_precision(ranked[:, :k]), np.cumsum(ranked, axis=1)[:, ks_array - 1]

    histograms, ap, found = zip(*map_blocks(block, problem.n_queries, rows_per_block(problem.n_items)))
    counts = _counts_of(histograms)
    precision, recall = _curve(counts)
    return RetrievalScores(
        bits=problem.bits,
        topk=topk,
        map_index=float(np.concatenate(ap).sum() / problem.n_queries),
        map_expected=float(_expected_average_precision(counts, k).sum() / problem.n_queries),
        radius=radius,
        precision_radius=_precision_within(counts, radius),
        precision=precision,
        recall=recall,
        ks=ks_array,
        precision_at=np.concatenate(found).mean(axis=0) / ks_array,
    )
