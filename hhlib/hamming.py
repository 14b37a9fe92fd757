"""Packed binary codes and their Hamming distances: the kernels under metrics and index.

A code of ``bits`` bits is stored packed eight bits to a byte, in the layout
``np.packbits(codes > 0, axis=1)`` produces (faiss' binary indexes use the
same one). Distances are popcounts (``np.bitwise_count``, NumPy >= 2) of the
XOR of code bytes. Rankings sort composite integers ``distance << s | id``:
they are unique, so any sort or partition gives the (distance, id) order.
Work runs over blocks of rows, in threads (NumPy releases the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["pack_codes", "hamming_distances"]

T = TypeVar("T")

# Brute-force work is done in blocks of about this many (query, item) pairs so
# that the per-block arrays stay in cache.
_PAIRS_PER_BLOCK = 1 << 20


def to_numpy(x: Any) -> np.ndarray:
    """NumPy view of an array-like; torch tensors are detached and moved to CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pack_codes(codes: Any, bits: int | None = None, *, name: str = "codes") -> tuple[np.ndarray, int]:
    """Normalise binary codes to packed bytes.

    Args:
        codes: (n, bits) array or torch tensor of -1/+1 values (any numeric
            dtype), or codes already packed: uint8 (n, ceil(bits / 8)) as
            ``np.packbits(codes > 0, axis=1)`` makes them, or uint64
            (n, ceil(bits / 64)) words whose bytes in memory are that layout
            (the uint8 array padded to a multiple of 8 bytes, then
            ``.view(np.uint64)``). uint8 and uint64 arrays are always read as
            packed: pass 0/1 codes as ``2 * b - 1``.
        bits: the number of bits. For -1/+1 codes it must equal their width;
            for packed codes it defaults to 8 bits per byte and must be given
            when the last byte is only partly used.
        name: the argument name used in error messages.

    Returns:
        ``(packed, bits)``: a C-contiguous uint8 array (n, ceil(bits / 8)) and
        the bit count.

    Raises:
        ValueError: for empty or non 2-D input, values other than -1/+1, a
            ``bits`` that does not fit the input, or non-zero padding bits.
    """
    array = to_numpy(codes)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n, bits) or packed (n, bytes), got shape {array.shape}; "
            f"use {name}[None] for a single code"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1):
        raise ValueError(f"bits must be a positive integer, got {bits!r}")

    if array.dtype in (np.uint8, np.uint64):
        return _check_packed(array, bits, name)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold -1/+1 numbers or packed uint8/uint64 codes, got dtype {array.dtype}")
    if not np.all(np.abs(array) == 1):
        raise ValueError(f"{name} must contain only -1 and +1 (take the sign of the relaxed codes; 0 is not allowed)")
    if bits is not None and bits != array.shape[1]:
        raise ValueError(f"{name} has {array.shape[1]} bits per code but bits={bits}")
    return np.packbits(array > 0, axis=1), array.shape[1]


def _check_packed(array: np.ndarray, bits: int | None, name: str) -> tuple[np.ndarray, int]:
    """Validate packed uint8/uint64 codes and return them as uint8 (n, ceil(bits / 8))."""
    word_bytes = array.dtype.itemsize
    bits = 8 * word_bytes * array.shape[1] if bits is None else int(bits)
    if array.shape[1] != -(-bits // (8 * word_bytes)):
        raise ValueError(f"{name} holds {array.shape[1]} {array.dtype} words per code, which does not fit bits={bits}")
    nbytes = -(-bits // 8)
    packed = np.ascontiguousarray(array).view(np.uint8)
    unused = (1 << (8 * nbytes - bits)) - 1  # np.packbits pads the last byte's low bits with 0
    if np.any(packed[:, nbytes:]) or (unused and np.any(packed[:, nbytes - 1] & unused)):
        raise ValueError(
            f"{name}: the padding bits beyond bit {bits} are not zero; were the codes packed with np.packbits?"
        )
    return np.ascontiguousarray(packed[:, :nbytes]), bits


def distance_table(queries: np.ndarray, db_bytes: np.ndarray, bits: int) -> np.ndarray:
    """Hamming distances (C, N) between packed queries (C, B) and a database stored byte-major (B, N).

    One byte column at a time: XOR, popcount and add, all on uint8 arrays,
    which NumPy vectorises well (much faster than popcounts of uint64 words).
    """
    out = np.empty((queries.shape[0], db_bytes.shape[1]), np.uint8 if bits < 256 else np.uint16)
    scratch = np.empty(out.shape, np.uint8)
    for b in range(queries.shape[1]):
        np.bitwise_xor(queries[:, b : b + 1], db_bytes[b], out=scratch)
        if b == 0:
            np.bitwise_count(scratch, out=out)
        else:
            np.bitwise_count(scratch, out=scratch)
            np.add(out, scratch, out=out)
    return out


def hamming_distances(a: Any, b: Any, bits: int | None = None) -> np.ndarray:
    """All Hamming distances between two sets of codes.

    Args:
        a: (na, bits) codes, -1/+1 or packed (see :func:`pack_codes`).
        b: (nb, bits) codes, same conventions.
        bits: bit count for packed codes (default: 8 per byte).

    Returns:
        (na, nb) uint8 array (uint16 when bits >= 256).
    """
    pa, bits_a = pack_codes(a, bits, name="a")
    pb, bits_b = pack_codes(b, bits, name="b")
    if bits_a != bits_b:
        raise ValueError(f"a has {bits_a} bits per code but b has {bits_b}")
    return distance_table(pa, np.ascontiguousarray(pb.T), bits_a)


def id_shift(n: int) -> int:
    """Number of low bits that hold a database id below n in a composite key."""
    return max(1, (n - 1).bit_length())


def composite_keys(dist: np.ndarray, payload: np.ndarray, shift: int, bits: int) -> np.ndarray:
    """``dist << shift | payload``: keys that sort by distance first, then payload.

    int32 when it fits, because NumPy sorts int32 much faster than int64.
    """
    dtype = np.int32 if bits.bit_length() + shift <= 31 else np.int64
    keys = np.left_shift(dist, shift, dtype=dtype)
    keys |= payload.astype(dtype, copy=False)
    return keys


def smallest_sorted(keys: np.ndarray, k: int) -> np.ndarray:
    """The k smallest keys of each row (C, N), ascending: (C, k).

    Keys are unique, so the partition + sort gives one well-defined answer.
    """
    if k < keys.shape[1]:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    return np.sort(keys, axis=1)


def _worker_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_blocks(fn: Callable[[slice], T], n: int, block: int) -> list[T]:
    """``fn`` over consecutive row blocks of ``range(n)``, in threads, results in order.

    NumPy releases the GIL inside its array loops and sorts, so threads use all cores.
    """
    blocks = [slice(s, min(s + block, n)) for s in range(0, n, block)]
    workers = min(len(blocks), _worker_count())
    if workers <= 1:
        return [fn(b) for b in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, blocks))


def rows_per_block(n_items: int) -> int:
    return max(1, _PAIRS_PER_BLOCK // n_items)
