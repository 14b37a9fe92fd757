"""Packed binary codes and Hamming-distance search, served by faiss.

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

For databases too large for brute force, two approximate backends of faiss
answer the same calls: an inverted file over binary k-means cells
(``"ivf"``, ``faiss.IndexBinaryIVF``) and multi-index hashing (``"mih"``,
``faiss.IndexBinaryMultiHash``; Norouzi, Punjani and Fleet, "Fast Search in
Hamming Space with Multi-Index Hashing", CVPR 2012). They return true
distances of the candidates they visit, sorted by (distance, id), but may
miss neighbours; ``bench/bench_search.py`` measures how many.
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

__all__ = ["BACKENDS", "HammingIndex"]


FORMAT_VERSION = 1
# Queries per fallback range search: bounds its result arrays when many codes tie.
_RANGE_QUERY_BLOCK = 256

# The search backends and their options (None: chosen from the database size when the index is built).
#   ivf: nlist k-means cells of the codes, nprobe of them visited per query.
#   mih: the code cut into nhash substrings, each a hash table probed with up to nflip bits flipped.
BACKENDS: dict[str, dict[str, int | None]] = {
    "exact": {},
    "ivf": {"nlist": None, "nprobe": 16},
    "mih": {"nhash": None, "nflip": 2},
}


# The option each approximate backend reads at search time: it changes without rebuilding (set_search_options).
_SEARCH_OPTION = {"ivf": "nprobe", "mih": "nflip"}


def check_backend(backend: str, options: dict[str, Any]) -> dict[str, int | None]:
    """The options of ``backend`` with defaults filled in; one-line ValueError for a bad name or value."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose from {sorted(BACKENDS)}")
    unknown = set(options) - set(BACKENDS[backend])
    if unknown:
        raise ValueError(
            f"backend {backend!r} takes {sorted(BACKENDS[backend]) or 'no options'}, not {sorted(unknown)}"
        )
    filled = {**BACKENDS[backend], **{key: value for key, value in options.items() if value is not None}}
    for key, value in filled.items():
        if value is not None and (not _is_count(value) or value < (0 if key == "nflip" else 1)):
            raise ValueError(
                f"{backend} option {key} must be a {'non-negative' if key == 'nflip' else 'positive'} integer, "
                f"got {value!r}"
            )
    return {key: None if value is None else int(value) for key, value in filled.items()}  # NumPy ints: plain


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
    """Hamming search over packed binary codes: exact by default, approximate on request.

    Args:
        bits: code length in bits.
        backend: ``"exact"`` (brute force, the default), ``"ivf"`` or ``"mih"``
            (approximate, see the module docstring and :data:`BACKENDS`).
        **options: the backend's options (``nlist``, ``nprobe``; ``nhash``,
            ``nflip``); unset ones are chosen from the database size.

    Example:
        >>> index = HammingIndex(64)
        >>> index.add(db_codes)                   # -1/+1 (numpy or torch) or packed
        >>> dist, ids = index.search(queries, 10) # (Q, 10) each, by (distance, id)
        >>> hits = index.range_search(queries, 2) # [(dist, ids) per query]
        >>> index.save("db.npz"); HammingIndex.load("db.npz", bits=64)
    """

    def __init__(self, bits: int, backend: str = "exact", **options: int | None) -> None:
        if not _is_count(bits) or bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits!r}")
        self.bits = int(bits)
        self.backend, self.options = backend, check_backend(backend, options)
        self._approximate: Any = None  # the approximate faiss index, rebuilt after add()
        self._parts: list[np.ndarray] = [np.empty((0, -(-self.bits // 8)), np.uint8)]
        self._flat: Any = None  # the faiss index, rebuilt after add()
        # JSON-serialisable facts saved with the codes (the model, dataset and labels behind them).
        self.metadata: dict[str, Any] = {}

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)

    def __repr__(self) -> str:
        options = "".join(f", {key}={value}" for key, value in self.options.items())
        backend = "" if self.backend == "exact" else f", backend={self.backend!r}{options}"
        return f"HammingIndex(bits={self.bits}, size={len(self)}{backend})"

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
        self._flat = self._approximate = None

    # -- search ------------------------------------------------------------

    def search(self, query_codes: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest codes of each query.

        Args:
            query_codes: (Q, bits) -1/+1 or packed codes.
            k: number of neighbours; larger than ``len(self)`` means all.

        Returns:
            ``(distances, ids)``: int32 and int64 arrays (Q, min(k, len(self))),
            each row sorted by distance, ties by ascending id. An approximate
            backend may find fewer: the missing places at a row's end hold
            distance -1 and id -1.
        """
        queries = self._queries(query_codes)
        if not _is_count(k) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        n = len(self)
        k = min(int(k), n)
        # More than k, so that the codes tied at the k-th distance are usually all in hand.
        wanted = min(n, 2 * k + 16)
        if self.backend != "exact":  # sorted, so that ties at the k-th distance mostly keep the lowest ids
            dist, ids = _sorted_found(*self._approximate_index().search(queries, wanted), n, self.bits)
            return np.ascontiguousarray(dist[:, :k]), np.ascontiguousarray(ids[:, :k])
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
        """faiss' range search of packed queries, split per query and sorted by (distance, id)."""
        index = self._faiss_flat() if self.backend == "exact" else self._approximate_index()
        # faiss returns the distances below its threshold, hence radius + 1
        lims, dist, ids = index.range_search(queries, radius + 1)
        query = np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))
        return _split_by_query(query, dist, ids, len(queries), self.bits, len(self))

    # -- persistence -------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to one ``.npz`` file (format version, bits, packed codes, metadata, backend), atomically.

        The backend is saved as its name and options; the faiss structure is
        rebuilt from the codes when a loaded index is first searched (it is
        not saved: a structure read back would be parsed by faiss's C++
        reader, which an index file from elsewhere should never reach).

        A failed write leaves any earlier file at ``path`` as it was.

        Returns:
            The path written (exactly ``path``; no suffix is added).
        """
        arrays = {
            "format_version": np.int64(FORMAT_VERSION),
            "bits": np.int64(self.bits),
            "codes": np.ascontiguousarray(self.codes),
            "metadata": np.array(json.dumps(self.metadata)),
            "backend": np.array(json.dumps({"name": self.backend, **self.options})),
        }

        def write(handle: IO[bytes]) -> None:
            np.savez(handle, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(
        cls, path: str | os.PathLike, bits: int | None = None, backend: str | None = None, **options: int | None
    ) -> HammingIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the ``.npz`` file.
            bits: the bit count the caller expects; a file holding another
                bit count is refused.
            backend, options: search with this backend instead of the saved
                one, or (no backend) with these options of the saved one; files
                written before backends existed load as ``"exact"``.

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
        version, file_bits, codes, metadata, saved = fields
        if version != FORMAT_VERSION:
            raise ValueError(f"{path} has format version {version}; this hhlib reads version {FORMAT_VERSION}")
        if bits is not None and file_bits != bits:
            raise ValueError(f"{path} holds {file_bits}-bit codes, expected {bits}-bit codes")
        if file_bits < 1 or codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != -(-file_bits // 8):
            raise ValueError(f"{path} holds {codes.dtype} codes of shape {codes.shape}, not {file_bits}-bit codes")
        name = saved.pop("name", "exact") if backend is None else backend
        try:  # options given override the saved ones of the saved backend, and stand alone for another
            index = cls(file_bits, name, **({**saved, **options} if backend is None else options))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
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

    def set_search_options(self, **options: int) -> None:
        """Change how widely an approximate index looks (ivf: ``nprobe``, mih: ``nflip``), without a rebuild.

        Raises:
            ValueError: an option the backend does not read at search time, or a bad value (one line).
        """
        allowed = {_SEARCH_OPTION[self.backend]} if self.backend in _SEARCH_OPTION else set()
        if set(options) - allowed:
            raise ValueError(
                f"backend {self.backend!r} sets {sorted(allowed) or 'nothing'} at search time, "
                f"not {sorted(set(options) - allowed)}"
            )
        self.options = check_backend(self.backend, {**self.options, **options})
        if self._approximate is not None:
            _set_search_option(self._approximate, self.backend, self.options)

    def resolved_options(self) -> dict[str, int]:
        """The options searched with, those chosen from the database size filled in (builds an approximate index)."""
        if self.backend == "exact":
            return {}
        index = self._approximate_index()
        chosen = {"nlist": index.nlist} if self.backend == "ivf" else {"nhash": index.nhash}
        return {**self.options, **chosen}

    def _approximate_index(self) -> Any:
        """The faiss index of an approximate backend over the stored codes, built on first use."""
        if self._approximate is None:
            if self.backend == "ivf":
                index = _build_ivf(self.codes, self.options["nlist"])
            else:
                index = _build_mih(self.codes, self.options["nhash"], self.bits)
            _set_search_option(index, self.backend, self.options)
            self._approximate = index
        return self._approximate


def _build_ivf(codes: np.ndarray, nlist: int | None) -> Any:
    """faiss.IndexBinaryIVF: binary k-means cells (4 sqrt(n) of them, faiss' advice; 39+ codes each) over the codes.

    The cells are trained on 64 codes a cell (faiss asks for 39 to 256): the
    k-means, not the adding, is what costs time at millions of codes.
    """
    nlist = nlist or max(1, min(int(4 * np.sqrt(len(codes))), len(codes) // 39))
    if nlist > len(codes):
        raise ValueError(f"ivf: nlist {nlist} is more than the {len(codes)} codes to cluster")
    quantizer = faiss.IndexBinaryFlat(8 * codes.shape[1])
    index = faiss.IndexBinaryIVF(quantizer, 8 * codes.shape[1], nlist)
    index.own_fields = False
    index.keep_quantizer = quantizer  # the Python object must outlive the index that points to it
    sample = np.random.default_rng(0).choice(len(codes), min(len(codes), 64 * nlist), replace=False)
    index.train(codes[np.sort(sample)])
    index.add(codes)
    return index


def _build_mih(codes: np.ndarray, nhash: int | None, bits: int) -> Any:
    """faiss.IndexBinaryMultiHash: substrings of about log2(n) bits (Norouzi et al.'s choice), one table each."""
    width = 8 * codes.shape[1]  # the substrings cut the packed width; padding bits are zero everywhere
    nhash = nhash or max(1, round(bits / max(1.0, np.log2(len(codes)))))
    if nhash > bits:
        raise ValueError(f"mih: nhash {nhash} is more than the {bits} bits of a code")
    index = faiss.IndexBinaryMultiHash(width, nhash, width // nhash)
    index.add(codes)
    return index


def _set_search_option(index: Any, backend: str, options: dict) -> None:
    """Give a built faiss index the search-time option of its backend (nprobe at most its cells)."""
    if backend == "ivf":
        index.nprobe = min(options["nprobe"], index.nlist)
    else:
        index.nflip = options["nflip"]


def _sorted_found(dist: np.ndarray, ids: np.ndarray, n_items: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of an approximate k-NN sorted by (distance, id), faiss' missing results (id -1) last, as -1."""
    missing = ids < 0  # sorted as one distance past the farthest possible
    dist, ids = _sorted_rows(np.where(missing, bits + 1, dist), np.where(missing, 0, ids), n_items, bits + 1)
    gone = dist > bits
    dist[gone], ids[gone] = -1, -1
    return dist, ids


class _IndexFileError(ValueError):
    """A readable .npz that is not a HammingIndex; its message is final."""


def _read_fields(path: str | os.PathLike) -> tuple[int, int, np.ndarray, dict, dict]:
    """(format version, bits, codes, metadata, backend) of an index file; errors of broken files propagate."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"format_version", "bits", "codes"} - set(data.files)
        if missing:
            raise _IndexFileError(f"{path} is not a HammingIndex file (missing {sorted(missing)})")
        metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
        backend = json.loads(str(data["backend"])) if "backend" in data.files else {}
        if not isinstance(backend, dict):
            raise _IndexFileError(f"{path} is not a HammingIndex file (its backend is not a JSON object)")
        return int(data["format_version"]), int(data["bits"]), data["codes"], metadata, backend
