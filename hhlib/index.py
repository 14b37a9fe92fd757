"""Packed binary codes and exact Hamming-distance search.

A hash code of ``bits`` bits is stored packed eight bits to a byte, in the
layout ``np.packbits(codes > 0, axis=1)`` produces; faiss' binary indexes use
the same layout. :class:`HammingIndex` answers k-nearest-neighbour and radius
queries *exactly*, and its results are ordered by (Hamming distance, database
id) whichever backend serves them:

``"numpy"``
    Brute force. Distances are popcounts (``np.bitwise_count``, NumPy >= 2) of
    the XOR of the code bytes, accumulated one byte column at a time on uint8
    arrays. The ranking sorts the composite integers
    ``distance << s | id``; they are unique, so any sort or partition of them
    gives the (distance, id) order.
``"faiss"``
    ``faiss.IndexBinaryFlat`` with its counting top-k (``use_heap = False``,
    faiss' ``hammings_knn_mc``): per distance it keeps the first ids it meets
    scanning the database in order, which is the same (distance, id) order.
    Radius search uses ``IndexBinaryFlat.range_search``, then sorts.
``"faiss-hash"`` (radius search only)
    ``faiss.IndexBinaryMultiHash`` with ``radius + 1`` tables hashing disjoint
    substrings of the code. Two codes within distance ``radius`` agree exactly
    on at least one substring (pigeonhole), so looking up the query's own
    buckets finds every answer: exact, and fast for small radii.

faiss needs the bit count to be a multiple of 8; other bit counts use NumPy.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hhlib.hamming import (
    composite_keys,
    distance_table,
    id_shift,
    map_blocks,
    pack_codes,
    rows_per_block,
    smallest_sorted,
)

__all__ = ["HammingIndex"]


FORMAT_VERSION = 1
# Beyond this k, faiss' counting top-k needs too much scratch memory ((bits + 1)
# * k ids per query); NumPy's partition is then the better tool.
_FAISS_MAX_K = 4096
# Substrings shorter than this make hash buckets too crowded to beat brute force.
_MIN_HASH_BITS = 16


@functools.cache
def _faiss() -> Any:
    """The faiss module, or None where it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _split_by_query(
    query: np.ndarray, dist: np.ndarray, ids: np.ndarray, n_queries: int, bits: int, n_items: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group (query, distance, id) triples into per-query lists sorted by (distance, id)."""
    id_bits = id_shift(n_items)
    dist_bits = bits.bit_length()
    # one int64 key per triple: sorting it orders by query, then distance, then id
    keys = (query.astype(np.int64) << (dist_bits + id_bits)) | (dist.astype(np.int64) << id_bits) | ids
    keys.sort()
    dist = ((keys >> id_bits) & ((1 << dist_bits) - 1)).astype(np.int32)
    ids = keys & ((1 << id_bits) - 1)
    bounds = np.cumsum(np.bincount(query, minlength=n_queries))[:-1]
    return list(zip(np.split(dist, bounds), np.split(ids, bounds), strict=True))


def _padded(packed: np.ndarray) -> np.ndarray:
    """The codes followed by 8 zero bytes.

    IndexBinaryMultiHash reads each hashed substring as a whole uint64 starting
    at the substring's first byte, which can run past the last code.
    """
    buf = np.zeros(packed.size + 8, np.uint8)
    buf[: packed.size] = packed.ravel()
    return buf


class HammingIndex:
    """Exact Hamming search over packed binary codes.

    Args:
        bits: code length in bits.

    Example:
        >>> index = HammingIndex(64)
        >>> index.add(db_codes)                   # -1/+1 (numpy or torch) or packed
        >>> dist, ids = index.search(queries, 10) # (Q, 10) each, by (distance, id)
        >>> hits = index.range_search(queries, 2) # [(dist, ids) per query]
        >>> index.save("db.npz"); HammingIndex.load("db.npz", bits=64)
    """

    def __init__(self, bits: int) -> None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        self.bits = int(bits)
        self._parts: list[np.ndarray] = [np.empty((0, -(-self.bits // 8)), np.uint8)]
        self._derived: dict[Any, Any] = {}  # byte-major copy and faiss indexes, rebuilt after add()
        # JSON-serialisable facts saved with the codes (the model, dataset and labels behind them).
        self.metadata: dict[str, Any] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def __repr__(self) -> str:
        return f"HammingIndex(bits={self.bits}, size={len(self)})"

    @property
    def codes(self) -> np.ndarray:
        """The stored codes, packed: uint8 (len(self), ceil(bits / 8)), read-only."""
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
        view = self._parts[0].view()
        view.flags.writeable = False
        return view

    def add(self, codes: Any) -> None:
        """Append codes; they get the next ids (0, 1, ... in insertion order).

        Args:
            codes: (n, bits) -1/+1 codes (numpy or torch) or packed uint8/uint64
                codes of this index's bit count (see :func:`pack_codes`).
        """
        packed, _ = pack_codes(codes, self.bits, name="codes")
        self._parts.append(packed)
        self._derived.clear()

    # -- search ------------------------------------------------------------

    def search(self, query_codes: Any, k: int, *, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query.

        Args:
            query_codes: (Q, bits) -1/+1 or packed codes.
            k: number of neighbours; larger than ``len(self)`` means all.
            backend: ``"numpy"``, ``"faiss"`` or ``"auto"`` (faiss when bits is
                a multiple of 8, faiss is installed and k <= 4096).

        Returns:
            ``(distances, ids)``: int32 and int64 arrays (Q, min(k, len(self))),
            each row sorted by distance, ties by ascending id.
        """
        queries = self._queries(query_codes)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = min(int(k), len(self))
        if self._pick(backend, ("numpy", "faiss"), faiss_ok=k <= _FAISS_MAX_K) == "faiss":
            return self._search_faiss(queries, k)
        return self._search_numpy(queries, k)

    def _search_numpy(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        db_bytes, n = self._byte_major(), len(self)
        shift = id_shift(n)
        ids = np.arange(n)

        def block(rows: slice) -> np.ndarray:
            dist = distance_table(queries[rows], db_bytes, self.bits)
            return smallest_sorted(composite_keys(dist, ids, shift, self.bits), k)

        keys = np.concatenate(map_blocks(block, len(queries), rows_per_block(n)))
        return (keys >> shift).astype(np.int32), (keys & ((1 << shift) - 1)).astype(np.int64)

    def _search_faiss(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._faiss_flat()
        # hammings_knn_mc allocates (bits + 1) * k ids per query of a batch (untouched ones
        # cost no memory); larger batches share each database block among more queries
        index.query_batch_size = max(1, min(256, (64 << 20) // (8 * (self.bits + 1) * k)))
        # One single-threaded faiss search per core, on its own slice of queries:
        # faiss' OpenMP split of the counting top-k keeps the cores less busy.
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            parts = map_blocks(
                lambda rows: index.search(queries[rows], k), len(queries), max(1, -(-len(queries) // threads))
            )
        finally:
            faiss.omp_set_num_threads(threads)
        dist = np.concatenate([d for d, _ in parts])
        ids = np.concatenate([i for _, i in parts])
        return dist.astype(np.int32, copy=False), ids

    def range_search(
        self, query_codes: Any, radius: int, *, backend: str = "auto"
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """All codes within Hamming distance ``radius`` (inclusive) of each query.

        Args:
            query_codes: (Q, bits) -1/+1 or packed codes.
            radius: the largest distance returned, 0 <= radius <= bits.
            backend: ``"numpy"``, ``"faiss"`` (flat), ``"faiss-hash"``
                (multi-hash, needs bits // (radius + 1) >= 1) or ``"auto"``
                (faiss-hash when substrings of >= 16 bits fit, else faiss;
                numpy when faiss cannot serve).

        Returns:
            One ``(distances, ids)`` pair per query: int32 and int64 arrays
            sorted by distance, ties by ascending id.
        """
        queries = self._queries(query_codes)
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 0 <= radius <= self.bits:
            raise ValueError(f"radius must be an integer in 0..{self.bits}, got {radius!r}")
        radius = int(radius)
        substring = self.bits // (radius + 1)
        backend = self._pick(
            backend, ("numpy", "faiss", "faiss-hash"), faiss_ok=True, prefer_hash=substring >= _MIN_HASH_BITS
        )
        if backend == "faiss-hash" and substring < 1:
            raise ValueError(f"faiss-hash needs bits // (radius + 1) >= 1, got {self.bits} // {radius + 1}")
        if backend == "numpy":
            query, dist, ids = self._range_numpy(queries, radius)
        else:
            query, dist, ids = self._range_faiss(queries, radius, hashed=backend == "faiss-hash")
        return _split_by_query(query, dist, ids, len(queries), self.bits, len(self))

    def _range_numpy(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        db_bytes = self._byte_major()

        def block(rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            dist = distance_table(queries[rows], db_bytes, self.bits)
            query, ids = np.nonzero(dist <= radius)
            return query + rows.start, dist[query, ids], ids

        parts = map_blocks(block, len(queries), rows_per_block(len(self)))
        query, dist, ids = (np.concatenate(p) for p in zip(*parts, strict=True))
        return query, dist, ids

    def _range_faiss(self, queries: np.ndarray, radius: int, hashed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        faiss = _faiss()
        index = self._faiss_multihash(radius + 1) if hashed else self._faiss_flat()
        result = faiss.RangeSearchResult(len(queries))
        padded = _padded(queries)  # keep a reference while faiss reads it
        # faiss returns distances < threshold, hence radius + 1
        index.range_search_c(len(queries), faiss.swig_ptr(padded), radius + 1, result)
        lims = faiss.rev_swig_ptr(result.lims, len(queries) + 1).astype(np.int64)
        dist = faiss.rev_swig_ptr(result.distances, int(lims[-1])).astype(np.int32)
        ids = faiss.rev_swig_ptr(result.labels, int(lims[-1])).copy()
        return np.repeat(np.arange(len(queries)), np.diff(lims)), dist, ids

    # -- persistence -------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to one ``.npz`` file (format version, bit count, packed codes, metadata).

        Returns:
            The path written (exactly ``path``; no suffix is added).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(
                f,
                format_version=np.int64(FORMAT_VERSION),
                bits=np.int64(self.bits),
                codes=self.codes,
                metadata=np.array(json.dumps(self.metadata)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, bits: int | None = None) -> HammingIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the ``.npz`` file.
            bits: the bit count the caller expects; a file holding another
                bit count is refused.

        Raises:
            ValueError: unknown format version, unexpected bit count, or a
                file that is not an index.
        """
        with np.load(path, allow_pickle=False) as data:
            missing = {"format_version", "bits", "codes"} - set(data.files)
            if missing:
                raise ValueError(f"{path} is not a HammingIndex file (missing {sorted(missing)})")
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"{path} has format version {version}; this hhlib reads version {FORMAT_VERSION}")
            file_bits = int(data["bits"])
            if bits is not None and file_bits != bits:
                raise ValueError(f"{path} holds {file_bits}-bit codes, expected {bits}-bit codes")
            index = cls(file_bits)
            codes = data["codes"]
            if "metadata" in data.files:
                index.metadata = json.loads(str(data["metadata"]))
        if len(codes):
            index.add(codes)
        return index

    # -- helpers -------------------------------------------------------------

    def _queries(self, query_codes: Any) -> np.ndarray:
        if len(self) == 0:
            raise ValueError("the index is empty: add() codes first")
        return pack_codes(query_codes, self.bits, name="query_codes")[0]

    def _pick(self, backend: str, allowed: Sequence[str], faiss_ok: bool, prefer_hash: bool = False) -> str:
        """Resolve ``backend``, refusing faiss where it cannot serve."""
        if backend not in (*allowed, "auto"):
            raise ValueError(f"backend must be one of {(*allowed, 'auto')}, got {backend!r}")
        faiss_possible = self.bits % 8 == 0 and _faiss() is not None
        if backend == "auto":
            if not (faiss_possible and faiss_ok):
                return "numpy"
            return "faiss-hash" if prefer_hash else "faiss"
        if backend != "numpy" and not faiss_possible:
            raise ValueError(f"backend {backend!r} needs faiss installed and bits divisible by 8 (bits={self.bits})")
        return backend

    def _byte_major(self) -> np.ndarray:
        """The codes transposed to (bytes, N), the layout of the NumPy distance loop."""
        if "bytes" not in self._derived:
            self._derived["bytes"] = np.ascontiguousarray(self.codes.T)
        return self._derived["bytes"]

    def _faiss_flat(self) -> Any:
        if "flat" not in self._derived:
            index = _faiss().IndexBinaryFlat(self.bits)
            index.add(self.codes)
            index.use_heap = False  # counting top-k: ties come out by ascending id
            self._derived["flat"] = index
        return self._derived["flat"]

    def _faiss_multihash(self, tables: int) -> Any:
        key = ("multihash", tables)
        if key not in self._derived:
            # substrings read as one uint64 after a shift of up to 7 bits: at most 57 bits
            index = _faiss().IndexBinaryMultiHash(self.bits, tables, min(self.bits // tables, 57))
            index.nflip = 0  # exact: some substring matches exactly when distance < tables
            padded = _padded(self.codes)
            index.add_c(len(self), _faiss().swig_ptr(padded))
            self._derived[key] = index
        return self._derived[key]
