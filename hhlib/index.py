"""Packed binary codes and exact Hamming-distance search, served by faiss.

A hash code of ``bits`` bits is stored packed eight bits to a byte, in the
layout ``np.packbits(codes > 0, axis=1)`` produces; faiss' binary indexes use
the same layout. :class:`HammingIndex` answers k-nearest-neighbour and radius
queries *exactly* with one backend, ``faiss.IndexBinaryFlat`` (docs/DESIGN.md,
"Retrieval core"), and orders every result by (Hamming distance, database id).

faiss promises exact distances but no order among equal distances, so the
order is made here: k-NN asks faiss for more than k, re-sorts by
(distance, id), and where the codes tied at the k-th distance may run past
what faiss returned, takes them all from a range search. A bit count that is
not a multiple of 8 is served as the next multiple: the padding bits are zero
in every packed code, so they add nothing to a distance.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import IO, Any

import faiss
import numpy as np

from hhlib.checkpoint import atomic_write
from hhlib.hamming import composite_keys, id_shift, map_blocks, pack_codes

__all__ = ["HammingIndex"]


FORMAT_VERSION = 1
# Queries per fallback range search: bounds its result arrays when many codes tie.
_RANGE_QUERY_BLOCK = 256


def _sorted_rows(dist: np.ndarray, ids: np.ndarray, n_items: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row of a k-NN answer re-sorted by (distance, id)."""
    shift = id_shift(n_items)
    keys = np.sort(composite_keys(dist, ids, shift, bits), axis=1)
    return (keys >> shift).astype(np.int32), (keys & ((1 << shift) - 1)).astype(np.int64)


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


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
        if not _is_count(bits) or bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        self.bits = int(bits)
        self._parts: list[np.ndarray] = [np.empty((0, -(-self.bits // 8)), np.uint8)]
        self._flat: Any = None  # the faiss index, rebuilt after add()
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
        self._flat = None

    # -- search ------------------------------------------------------------

    def search(self, query_codes: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query.

        Args:
            query_codes: (Q, bits) -1/+1 or packed codes.
            k: number of neighbours; larger than ``len(self)`` means all.

        Returns:
            ``(distances, ids)``: int32 and int64 arrays (Q, min(k, len(self))),
            each row sorted by distance, ties by ascending id.
        """
        queries = self._queries(query_codes)
        if not _is_count(k) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        n = len(self)
        k = min(int(k), n)
        # More than k, so that the codes tied at the k-th distance are usually all in hand.
        wanted = min(n, 2 * k + 16)
        dist, ids = _sorted_rows(*self._knn(queries, wanted), n, self.bits)
        if wanted < n:
            # where the codes tied at the k-th distance may go on past the last one faiss returned
            open_rows = np.flatnonzero(dist[:, wanted - 1] == dist[:, k - 1])
            for radius in np.unique(dist[open_rows, k - 1]):
                rows = open_rows[dist[open_rows, k - 1] == radius]
                for start in range(0, len(rows), _RANGE_QUERY_BLOCK):
                    self._complete_ties(queries, rows[start : start + _RANGE_QUERY_BLOCK], int(radius), dist, ids, k)
        return np.ascontiguousarray(dist[:, :k]), np.ascontiguousarray(ids[:, :k])

    def _complete_ties(
        self, queries: np.ndarray, rows: np.ndarray, radius: int, dist: np.ndarray, ids: np.ndarray, k: int
    ) -> None:
        """Overwrite the first k results of ``rows`` (k-th distance ``radius``) from all codes within ``radius``."""
        for row, (row_dist, row_ids) in zip(rows, self._range(queries[rows], radius), strict=True):
            dist[row, :k], ids[row, :k] = row_dist[:k], row_ids[:k]  # at least k, by (distance, id)

    def _knn(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss' exact k-NN (counting top-k), one single-threaded search per core on its own queries.

        faiss' own OpenMP split of the counting top-k kept the cores less busy.
        """
        index = self._faiss_flat()
        # the counting top-k allocates (bits + 1) * k ids per query of a batch; larger
        # batches share each database block among more queries
        index.query_batch_size = max(1, min(256, (64 << 20) // (8 * (8 * self.codes.shape[1] + 1) * k)))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            block = max(1, -(-len(queries) // threads))
            parts = map_blocks(lambda rows: index.search(queries[rows], k), len(queries), block)
        finally:
            faiss.omp_set_num_threads(threads)
        return np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts])

    def range_search(self, query_codes: Any, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """All codes within Hamming distance ``radius`` (inclusive) of each query.

        Args:
            query_codes: (Q, bits) -1/+1 or packed codes.
            radius: the largest distance returned, 0 <= radius <= bits.

        Returns:
            One ``(distances, ids)`` pair per query: int32 and int64 arrays
            sorted by distance, ties by ascending id.
        """
        queries = self._queries(query_codes)
        if not _is_count(radius) or not 0 <= radius <= self.bits:
            raise ValueError(f"radius must be an integer in 0..{self.bits}, got {radius!r}")
        return self._range(queries, int(radius))

    def _range(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """faiss' exact range search of packed queries, split per query and sorted by (distance, id)."""
        # faiss returns the distances below its threshold, hence radius + 1
        lims, dist, ids = self._faiss_flat().range_search(queries, radius + 1)
        query = np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))
        return _split_by_query(query, dist, ids, len(queries), self.bits, len(self))

    # -- persistence -------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to one ``.npz`` file (format version, bit count, packed codes, metadata), atomically.

        A failed write leaves any earlier file at ``path`` as it was.

        Returns:
            The path written (exactly ``path``; no suffix is added).
        """
        arrays = {
            "format_version": np.int64(FORMAT_VERSION),
            "bits": np.int64(self.bits),
            "codes": np.ascontiguousarray(self.codes),
            "metadata": np.array(json.dumps(self.metadata)),
        }

        def write(handle: IO[bytes]) -> None:
            np.savez(handle, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike, bits: int | None = None) -> HammingIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the ``.npz`` file.
            bits: the bit count the caller expects; a file holding another
                bit count is refused.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: one line naming the file: unknown format version,
                unexpected bit count, a truncated or damaged file, or a file
                that is not an index.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no index file at {path}")
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError(f"{path} is not a HammingIndex file (not an .npz archive)")
        try:
            fields = _read_fields(path)
        except _IndexFileError as error:
            raise ValueError(str(error)) from None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"{path} is a truncated or damaged HammingIndex file ({first})") from None
        version, file_bits, codes, metadata = fields
        if version != FORMAT_VERSION:
            raise ValueError(f"{path} has format version {version}; this hhlib reads version {FORMAT_VERSION}")
        if bits is not None and file_bits != bits:
            raise ValueError(f"{path} holds {file_bits}-bit codes, expected {bits}-bit codes")
        if file_bits < 1 or codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != -(-file_bits // 8):
            raise ValueError(f"{path} holds {codes.dtype} codes of shape {codes.shape}, not {file_bits}-bit codes")
        index = cls(file_bits)
        if len(codes):
            try:
                index.add(codes)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        index.metadata = metadata
        return index

    # -- helpers -------------------------------------------------------------

    def _queries(self, query_codes: Any) -> np.ndarray:
        if len(self) == 0:
            raise ValueError("the index is empty: add() codes first")
        return pack_codes(query_codes, self.bits, name="query_codes")[0]

    def _faiss_flat(self) -> Any:
        if self._flat is None:
            index = faiss.IndexBinaryFlat(8 * self.codes.shape[1])
            index.add(self.codes)
            index.use_heap = False  # counting top-k: faster than the heap for these code lengths
            self._flat = index
        return self._flat


class _IndexFileError(ValueError):
    """A readable .npz that is not a HammingIndex; its message is final."""


def _read_fields(path: str | os.PathLike) -> tuple[int, int, np.ndarray, dict]:
    """(format version, bits, codes, metadata) of an index file; errors of broken files propagate."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"format_version", "bits", "codes"} - set(data.files)
        if missing:
            raise _IndexFileError(f"{path} is not a HammingIndex file (missing {sorted(missing)})")
        metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
        return int(data["format_version"]), int(data["bits"]), data["codes"], metadata
