"""Speed of hhlib's mAP and Hamming search against the usual ways of computing them.

Compares, on the same random codes (correlated with the labels so that mAP is
not trivial):

(a) mAP@all at the CIFAR-10 protocol shape (1,000 queries x 54,000 items, 64
    bits, 10 one-hot classes) and (b) mAP@1000 at the ImageNet-100 shape
    (5,000 x 128,503, 64 bits, 100 classes): ``mean_average_precision`` with
    ``ties="index"`` against the loop of DeepHash-pytorch / HybridHash
    (``CalcTopMap``: per query a dot product, NumPy's default argsort, label
    dot products, cumsum);
(c) ``HammingIndex.search`` against ``faiss.IndexBinaryFlat`` used directly
    (1,000 queries, 1,000,000 codes of 64 bits, k = 100);
(d) the one evaluator ``retrieval_scores`` against the separate metric calls
    it replaces (mAP with both tie policies, the precision-recall curve,
    precision@K, precision within radius 2), 1,000 x 10,000 codes of 64 bits:
    the same numbers, from one packing and one pass over the distances.

The two mAP values differ slightly: the authors' argsort is not stable, so it
breaks distance ties in an arbitrary order.

Run: ``python bench/bench_metrics.py`` (``--quick`` for small sizes).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import faiss
import numpy as np

from hhlib.index import HammingIndex
from hhlib.metrics import (
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
    retrieval_scores,
)


def correlated_codes(
    n_queries: int, n_items: int, bits: int, n_classes: int, flip: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """±1 float32 codes: a random prototype per class with each bit flipped with probability ``flip``.

    Returns query codes, database codes and one-hot float32 labels, as the
    authors' evaluation holds them (torch sign codes turned into NumPy).
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n_classes, bits))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        classes = rng.integers(0, n_classes, n)
        flips = rng.random((n, bits)) < flip
        codes = np.where(flips, -prototypes[classes], prototypes[classes]).astype(np.float32)
        return codes, np.eye(n_classes, dtype=np.float32)[classes]

    (query_codes, query_labels), (db_codes, db_labels) = draw(n_queries), draw(n_items)
    return query_codes, db_codes, query_labels, db_labels


def authors_map(qB: np.ndarray, rB: np.ndarray, queryL: np.ndarray, retrievalL: np.ndarray, topk: int) -> float:
    """mAP@topk the way DeepHash-pytorch's CalcTopMap (used by HybridHash) computes it."""
    num_query = queryL.shape[0]
    topkmap = 0.0
    for i in range(num_query):
        gnd = (np.dot(queryL[i, :], retrievalL.transpose()) > 0).astype(np.float32)
        hamm = 0.5 * (qB.shape[1] - np.dot(qB[i, :], rB.transpose()))
        ind = np.argsort(hamm)
        tgnd = gnd[ind][0:topk]
        tsum = int(np.sum(tgnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap += np.mean(count / tindex)
    return topkmap / num_query


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fastest(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The best time of ``repeats`` runs (the least disturbed by other work), and a result."""
    runs = [timed(fn) for _ in range(repeats)]
    return min(t for t, _ in runs), runs[-1][1]


def bench_map(name: str, n_queries: int, n_items: int, n_classes: int, topk: int | None) -> None:
    q, db, ql, dl = correlated_codes(n_queries, n_items, 64, n_classes, flip=0.3)
    for ties in ("index", "expected"):  # warm-up on one query: imports, caches, threads
        mean_average_precision(q[:1], db, ql[:1], dl, topk=topk, ties=ties)
    t_ref, ref = timed(lambda: authors_map(q, db, ql, dl, topk or n_items))
    t_ours, ours = timed(lambda: mean_average_precision(q, db, ql, dl, topk=topk))
    t_exp, expected = timed(lambda: mean_average_precision(q, db, ql, dl, topk=topk, ties="expected"))
    at = "all" if topk is None else topk
    print(f"({name}) mAP@{at}, {n_queries:,} queries x {n_items:,} items, 64 bits, {n_classes} classes")
    print(f"    authors' loop           {t_ref:8.3f} s   mAP {ref:.6f}")
    print(f"    hhlib ties='index'      {t_ours:8.3f} s   mAP {ours:.6f}   {t_ref / t_ours:6.1f}x faster")
    print(f"    hhlib ties='expected'   {t_exp:8.3f} s   mAP {expected:.6f}   {t_ref / t_exp:6.1f}x faster")


def bench_search(n_queries: int, n_items: int, k: int) -> None:
    rng = np.random.default_rng(1)
    db = rng.integers(0, 256, size=(n_items, 8), dtype=np.uint8)  # packed 64-bit codes
    queries = rng.integers(0, 256, size=(n_queries, 8), dtype=np.uint8)

    flat = faiss.IndexBinaryFlat(64)
    flat.add(db)
    counting = faiss.IndexBinaryFlat(64)
    counting.add(db)
    counting.use_heap = False
    index = HammingIndex(64)
    index.add(db)
    index.search(queries[:1], k)  # builds the faiss index behind it, as flat.add did
    t_faiss, (d_faiss, _) = timed(lambda: flat.search(queries, k))
    t_counting, _ = timed(lambda: counting.search(queries, k))
    t_ours, (d_ours, _) = timed(lambda: index.search(queries, k))
    assert np.array_equal(d_faiss, d_ours), "distances differ"
    print(f"(c) search, {n_queries:,} queries x {n_items:,} codes, 64 bits, k={k}")
    print(f"    faiss IndexBinaryFlat   {t_faiss:8.3f} s   (default: heap top-k)")
    print(f"      same, use_heap=False  {t_counting:8.3f} s   (counting top-k, what HammingIndex uses)")
    print(
        f"    HammingIndex.search     {t_ours:8.3f} s   {t_faiss / t_ours:6.2f}x faiss' speed "
        f"(same distances; ids ordered by (distance, id))"
    )


def separate_scores(q: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray, topk: int | None, ks) -> tuple:
    """What the evaluator replaces: one call per metric, each packing the codes and counting the distances."""
    return (
        mean_average_precision(q, db, ql, dl, topk=topk),
        mean_average_precision(q, db, ql, dl, topk=topk, ties="expected"),
        precision_recall_curve(q, db, ql, dl),
        precision_at_k(q, db, ql, dl, ks=ks),
        precision_within_radius(q, db, ql, dl, radius=2),
    )


def bench_scores(n_queries: int, n_items: int, topk: int | None, repeats: int = 3) -> None:
    q, db, ql, dl = correlated_codes(n_queries, n_items, 64, 10, flip=0.3, seed=2)
    one = retrieval_scores(q, db, ql, dl, topk=topk)  # warm-up, and the ks the separate calls get
    t_separate, separate = fastest(lambda: separate_scores(q, db, ql, dl, topk, one.ks), repeats)
    t_one, one = fastest(lambda: retrieval_scores(q, db, ql, dl, topk=topk), repeats)
    (map_index, map_expected, (precision, recall), precision_at, radius2) = separate
    assert (one.map_index, one.map_expected, one.precision_radius) == (map_index, map_expected, radius2)
    assert all(np.array_equal(a, b) for a, b in [(one.precision, precision), (one.recall, recall)])
    assert np.array_equal(one.precision_at, precision_at), "the evaluator differs from the separate metrics"
    at = "all" if topk is None else topk
    print(f"(d) every metric, mAP@{at}, {n_queries:,} queries x {n_items:,} items, 64 bits ({len(one.ks)} ks)")
    print(f"    separate calls          {t_separate:8.3f} s")
    print(f"    retrieval_scores        {t_one:8.3f} s   {t_separate / t_one:6.2f}x faster   (same numbers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads\n")
    if args.quick:
        bench_map("a", 200, 10_000, 10, None)
        bench_map("b", 500, 20_000, 100, 1000)
        bench_search(200, 100_000, 100)
        bench_scores(200, 5_000, None)
    else:
        bench_map("a", 1_000, 54_000, 10, None)
        bench_map("b", 5_000, 128_503, 100, 1000)
        bench_search(1_000, 1_000_000, 100)
        bench_scores(1_000, 10_000, None)
        bench_scores(1_000, 10_000, 1000)


if __name__ == "__main__":
    main()
