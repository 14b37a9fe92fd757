"""Search at scale: HammingIndex's exact and approximate backends against faiss' brute force.

For each database size (default 1 M and 10 M codes of 64 bits), on the same
synthetic codes, it builds

- ``faiss.IndexBinaryFlat`` used directly: the baseline, brute force;
- ``HammingIndex`` exact (the default backend: the same brute force, with
  ties at the k-th distance completed and ordered by id);
- ``HammingIndex(backend="ivf")``: binary k-means cells, some visited a query;
- ``HammingIndex(backend="mih")``: multi-index hashing (Norouzi et al.,
  CVPR 2012);

and prints for each: build seconds, queries per second, its speed against
the baseline (measured in the same run), recall@k against brute force and
the memory the built index added to the process (resident set).

Recall@k is tie-aware: the share of the k places filled by a code no
farther than the true k-th neighbour, so any of several codes tied at the
k-th distance counts.

The codes imitate a trained model's: ``--centres`` random centres (classes
and their modes), each code its centre with each bit flipped with
probability ``--flip``; queries are drawn the same way and are not in the
database. Uniformly random codes (``--flip 0.5``) have no near neighbours,
and there the approximate indexes miss most of the true ones.

Run: ``python bench/bench_search.py`` (``--sizes 100000 --queries 200`` for
a quick look; ``--json FILE`` keeps the table).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from hhlib.checkpoint import write_json
from hhlib.index import HammingIndex


def clustered_codes(n: int, centres: np.ndarray, flip: float, rng: np.random.Generator) -> np.ndarray:
    """(n, bytes) packed codes: a random centre each, every bit flipped with probability ``flip``."""
    bits = centres.shape[1]
    packed = np.empty((n, bits // 8), np.uint8)
    for start in range(0, n, 1 << 20):  # a million at a time: 64 MB of booleans, not 640 MB
        rows = min(n - start, 1 << 20)
        which = rng.integers(0, len(centres), rows)
        packed[start : start + rows] = np.packbits(centres[which] ^ (rng.random((rows, bits)) < flip), axis=1)
    return packed


def resident_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm; elsewhere 0)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tie_aware_recall(dist: np.ndarray, ids: np.ndarray, true_kth: np.ndarray) -> float:
    """Share of the k places holding a code no farther than the true k-th neighbour (missing places: -1)."""
    return float(((ids >= 0) & (dist <= true_kth[:, None])).mean())


def flat(codes: np.ndarray) -> Any:
    """faiss.IndexBinaryFlat as it comes: the baseline."""
    index = faiss.IndexBinaryFlat(8 * codes.shape[1])
    index.add(codes)
    return index


def release() -> None:
    """Hand freed memory back to the system (glibc's malloc_trim), so the next index's growth is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def built(make: Callable[[], Any], queries: np.ndarray) -> tuple[Any, float, int]:
    """An index made by ``make`` and searched once (HammingIndex builds on first use); seconds and bytes added."""
    release()
    before, start = resident_bytes(), time.perf_counter()
    index = make()
    index.search(queries[:1], 1)
    return index, time.perf_counter() - start, resident_bytes() - before


def hamming(codes: np.ndarray, backend: str) -> Callable[[], HammingIndex]:
    def make() -> HammingIndex:
        index = HammingIndex(8 * codes.shape[1], backend)
        index.add(codes)
        return index

    return make


def indexes(codes: np.ndarray, args: argparse.Namespace) -> list[tuple[str, Callable, list[dict]]]:
    """(name, maker, search options to sweep) of every index measured, the baseline first."""
    return [
        ("faiss IndexBinaryFlat", lambda: flat(codes), [{}]),
        ("HammingIndex exact", hamming(codes, "exact"), [{}]),
        ("HammingIndex ivf", hamming(codes, "ivf"), [{"nprobe": p} for p in args.nprobe]),
        ("HammingIndex mih", hamming(codes, "mih"), [{"nflip": f} for f in args.nflip]),
    ]


def bench_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    centres = rng.random((args.centres, args.bits)) < 0.5
    codes = clustered_codes(n, centres, args.flip, rng)
    queries = clustered_codes(args.queries, centres, args.flip, rng)
    shape = f"{args.bits} bits ({args.centres:,} centres, flip {args.flip}), {args.queries:,} queries, k={args.k}"
    print(f"\n{n:,} codes of {shape}")
    print(f"{'index':<40} {'build s':>8} {'queries/s':>10} {'vs flat':>8} {f'recall@{args.k}':>10} {'memory MB':>10}")
    results, truth, baseline = [], None, None
    for name, make, sweep in indexes(codes, args):
        index, build_seconds, memory = built(make, queries)
        for options in sweep:
            if options:
                index.set_search_options(**options)  # the same structure, searched more or less widely
            start = time.perf_counter()
            dist, ids = index.search(queries, args.k)
            seconds = time.perf_counter() - start
            if truth is None:  # the baseline's distances are the truth
                truth, baseline = dist[:, -1].astype(np.int64), seconds
            row = {
                "size": n,
                "index": name,
                "options": index.resolved_options() if isinstance(index, HammingIndex) else {},
                "build_seconds": round(build_seconds, 3),
                "queries_per_second": round(len(queries) / seconds, 1),
                "speed_vs_flat": round(baseline / seconds, 2),
                "recall": round(tie_aware_recall(dist, ids, truth), 4),
                "memory_bytes": memory,
            }
            results.append(row)
            label = name + "".join(f" {key}={value}" for key, value in row["options"].items())
            print(
                f"{label:<40} {build_seconds:8.1f} {row['queries_per_second']:10,.0f} {row['speed_vs_flat']:7.2f}x "
                f"{row['recall']:10.4f} {memory / 2**20:10.0f}"
            )
        del index
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="database sizes")
    parser.add_argument("--queries", type=int, default=1000, help="queries per size (default: 1000)")
    parser.add_argument("--bits", type=int, default=64, choices=(32, 64, 128), help="code length (default: 64)")
    parser.add_argument("-k", type=int, default=10, help="neighbours per query (default: 10)")
    parser.add_argument("--centres", type=int, default=10_000, help="centres the codes gather around (default: 10,000)")
    parser.add_argument("--flip", type=float, default=0.1, help="chance of each bit differing from its centre")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64], help="IVF cells visited (default: 16 64)")
    parser.add_argument("--nflip", type=int, nargs="+", default=[1, 2], help="MIH bits flipped per substring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or args.queries < 1 or args.k < 1 or not 0 <= args.flip <= 0.5:
        parser.error("sizes, queries and k must be positive, flip in [0, 0.5]")
    cpu = platform.processor() or platform.machine()
    print(f"numpy {np.__version__}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {cpu}")
    rng = np.random.default_rng(args.seed)
    results = [row for n in args.sizes for row in bench_size(n, args, rng)]
    if args.json is not None:
        write_json(args.json, {"arguments": {k: v for k, v in vars(args).items() if k != "json"}, "rows": results})
    return results


if __name__ == "__main__":
    main()
