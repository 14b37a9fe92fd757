"""The retrieval core: build, cache and check the database index of a model, and search it with one image.

There is one way to make the :class:`~hhlib.index.HammingIndex` of a model
and a split (docs/DESIGN.md, "Retrieval core"): :func:`database_index`
encodes the split with :func:`hhlib.train.encode` and records
:func:`index_metadata` with the codes. The metadata names the weights by
:func:`model_fingerprint`, so a cached index is reused only for the model
that made it, and :func:`check_index` refuses an index made by other weights.

    index = database_index(model, data, cache="runs/fmnist/database.npz")
    check_index(index, model)                 # the CLI's search does this too
    retriever = Retriever(model, data, index)
    result = retriever.search(retriever.query_item(12), k=10, radius=64)

Single images are encoded with ``model.encode`` (codes in {-1, +1}), the
public way; relevance is :func:`hhlib.relevance.relevant` (shares a label).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hhlib.index import HammingIndex
from hhlib.relevance import relevant
from hhlib.train import encode

__all__ = [
    "SPLITS",
    "Query",
    "Retriever",
    "SearchResult",
    "check_index",
    "database_index",
    "encode_one",
    "index_metadata",
    "model_fingerprint",
]

SPLITS = ("train", "query", "database")
# What a cached index must share with the one that would be built now to be reused.
_CACHE_KEYS = ("model", "bits", "dataset", "split", "split_seed", "limit", "count", "items")
# Query codes the Retriever keeps, so moving k or the radius does not encode again.
_CACHED_CODES = 256


def _hash_value(digest: Any, name: str, value: Any) -> None:
    """Feed one state entry to ``digest``: tensors by dtype, shape and bytes, anything else by repr."""
    digest.update(name.encode())
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        digest.update(repr(value).encode())


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short sha256 of the model's weights and of its quantiser's state: equal for equal weights only.

    The quantiser (``model.quantizer``) turns relaxed codes into bits, so it
    is part of what makes the codes.
    """
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        _hash_value(digest, name, value)
    for name, value in model.quantizer.to_state().items():  # its kind and (non-persistent) tensors
        _hash_value(digest, f"quantizer.{name}", value)
    return digest.hexdigest()[:16]


def _items_digest(dataset) -> str | None:
    """A short sha256 naming the items of a split (pool indices or file paths); None when unknown."""
    items = getattr(dataset, "pool_indices", None)
    if items is None:
        items = getattr(dataset, "paths", None)
    if items is None:
        return None
    items = np.asarray(items)
    text = items.astype(np.int64).tobytes() if items.dtype.kind in "iu" else "\n".join(map(str, items)).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _split_of(data, split: str):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r} (an index file is passed as cache=)")
    return getattr(data, split)


def _class_ids(labels: np.ndarray) -> list:
    """Class ids per item: an int for single-label rows, a list of ints for multi-label data."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] == 0:
        return []
    if np.all(labels.sum(1) == 1):
        return labels.argmax(1).tolist()
    return [np.flatnonzero(row).tolist() for row in labels]


def index_metadata(model: torch.nn.Module, data, split: str, checkpoint: str | os.PathLike | None = None) -> dict:
    """What an index of ``split`` encoded by ``model`` records: the model, the data behind the codes, their labels.

    ``split_seed`` is the protocol split's seed (None for list-file data);
    ``limit`` is the split's length when a ``limit`` shortened it, else None;
    ``items`` is a digest of which items the split holds.
    """
    dataset = _split_of(data, split)
    protocol_split = getattr(data, "split", None)
    full = len(getattr(protocol_split, split)) if protocol_split is not None else len(dataset)
    return {
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        "model": model_fingerprint(model),
        "bits": int(model.config.bits),
        "dataset": data.name,
        "split": split,
        "split_seed": int(protocol_split.seed) if protocol_split is not None else None,
        "limit": len(dataset) if len(dataset) < full else None,
        "count": len(dataset),
        "items": _items_digest(dataset),
        "labels": _class_ids(dataset.labels),
        "class_names": list(data.class_names),
    }


def check_index(index: HammingIndex, model: torch.nn.Module) -> None:
    """Refuse an index that ``model`` did not make: another bit count, or weights of another fingerprint.

    An index without a recorded fingerprint (made by hand) is only checked for its bit count.

    Raises:
        ValueError: one line saying which of the two differs.
    """
    bits = int(model.config.bits)
    if index.bits != bits:
        raise ValueError(f"the index holds {index.bits}-bit codes but the model makes {bits}-bit codes")
    recorded = (index.metadata or {}).get("model")
    if recorded is not None and recorded != model_fingerprint(model):
        made_by = index.metadata.get("checkpoint") or "other weights"
        raise ValueError(
            f"the index was made by other weights ({made_by}, fingerprint {recorded}, this model's is "
            f"{model_fingerprint(model)}): encode the database again with this model"
        )


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cached(cache: Path, wanted: dict) -> HammingIndex | None:
    """The index at ``cache`` when its metadata matches ``wanted``; None for a missing, stale or broken file."""
    try:
        index = HammingIndex.load(cache, bits=wanted["bits"])
    except (FileNotFoundError, ValueError):
        return None
    recorded = index.metadata or {}
    if len(index) != wanted["count"] or any(recorded.get(key) != wanted[key] for key in _CACHE_KEYS):
        return None
    return index


def database_index(
    model: torch.nn.Module,
    data,
    split: str = "database",
    *,
    checkpoint: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    device=None,
    progress: bool = True,
    amp: str = "auto",
    num_workers: int | None = None,
    batch_size: int | None = None,
) -> HammingIndex:
    """The HammingIndex of ``split`` encoded by ``model``, with :func:`index_metadata`; ids are split positions.

    Args:
        model: the hashing model (its ``config.bits`` is the code length).
        data: a :func:`hhlib.data.get_dataset` result.
        split: ``"database"``, ``"query"`` or ``"train"``.
        checkpoint: the checkpoint the model came from, recorded in the metadata.
        cache: an index file: read when its metadata matches (same model
            fingerprint, dataset, split, split seed, limit, items and count),
            else encoded again and written there atomically. None: encode,
            keep in memory.
        device: where to encode; None: where the model's parameters are.
        progress, amp, num_workers, batch_size: as :func:`hhlib.train.encode` takes them.
    """
    wanted = index_metadata(model, data, split, checkpoint)
    if cache is not None:
        index = _cached(Path(cache), wanted)
        if index is not None:
            return index
    codes = encode(
        model,
        _split_of(data, split),
        batch_size=batch_size,
        device=_model_device(model) if device is None else device,
        progress=progress,
        desc=f"encode {split}",
        amp=amp,
        num_workers=num_workers,
    )
    index = HammingIndex(wanted["bits"])
    index.add(codes)
    index.metadata = wanted
    if cache is not None:
        index.save(cache)
    return index


@torch.no_grad()
def encode_one(model: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """The (1, bits) int8 code of one (1, 3, S, S) image, by ``model.encode``.

    On a CPU it runs on one thread: for a single small image more threads
    mostly wait for each other (on a busy machine one search took a second instead of 10 ms).
    """
    device = _model_device(model)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        codes = model.encode(image.to(device))
    finally:
        torch.set_num_threads(threads)
    return codes.to(torch.int8).cpu().numpy()


@dataclass
class Query:
    """One image to search with.

    Attributes:
        name: e.g. ``"query 12 (Sneaker)"`` or ``"upload shoe.png"``.
        image: (1, 3, S, S) float32 model input.
        display: (H, W, 3) uint8, the query as drawn.
        label: (C,) 0/1 label vector; None when unknown.
        key: what names the image for the code cache (None: not cached).
    """

    name: str
    image: torch.Tensor
    display: np.ndarray
    label: np.ndarray | None
    key: Any = None


@dataclass
class SearchResult:
    """One search, as plain data.

    Attributes:
        query: what was searched for, e.g. ``"query 12 (Sneaker)"`` or ``"upload shoe.png"``.
        query_image: (H, W, 3) uint8, the query as displayed.
        query_code: (bits,) int8 -1/+1.
        query_label: (C,) 0/1 label vector; None when unknown (an upload
            whose class was not chosen).
        k: results asked for.
        radius: largest Hamming distance kept.
        ids: (m,) int64 database positions, m <= k, by (distance, id).
        distances: (m,) int32 Hamming distances.
        relevant: (m,) bool, shares a label with the query; None when the
            query's label is unknown.
    """

    query: str
    query_image: np.ndarray
    query_code: np.ndarray
    query_label: np.ndarray | None
    k: int
    radius: int
    ids: np.ndarray
    distances: np.ndarray
    relevant: np.ndarray | None

    @property
    def precision(self) -> float | None:
        """The fraction of the shown results that are relevant (None: no results or no label)."""
        if self.relevant is None or len(self.ids) == 0:
            return None
        return float(self.relevant.mean())


def class_text(label: np.ndarray, class_names) -> str:
    """The class names of a 0/1 label vector, at most two, joined by '+'."""
    names = [class_names[c] for c in np.flatnonzero(label)]
    return "+".join(names[:2]) + ("+..." if len(names) > 2 else "")


class Retriever:
    """Search the database index of a model with single images: k nearest within a radius, with relevance.

    Query codes are cached by :attr:`Query.key`, so searching the same image
    with another k or radius does not encode it again.
    """

    def __init__(self, model: torch.nn.Module, data, index: HammingIndex) -> None:
        check_index(index, model)
        if len(index) != len(data.database):
            raise ValueError(f"the index holds {len(index)} codes but the database has {len(data.database)} items")
        self.model = model.eval()
        self.data = data
        self.index = index
        self._codes: OrderedDict[Any, np.ndarray] = OrderedDict()

    def query_item(self, position: int) -> Query:
        """The query split's item ``position`` as a :class:`Query`."""
        query = self.data.query
        if not 0 <= position < len(query):
            raise ValueError(f"the query item must lie in 0..{len(query) - 1}, got {position}")
        image, _, _ = query[position]
        label = np.asarray(query.labels[position])
        name = f"query {position} ({class_text(label, self.data.class_names)})"
        return Query(name, image.unsqueeze(0), query.raw_image(position), label, key=("query", position))

    def code(self, query: Query) -> np.ndarray:
        """The (1, bits) int8 code of ``query``, from the cache when its key was encoded before."""
        if query.key is not None and query.key in self._codes:
            self._codes.move_to_end(query.key)
            return self._codes[query.key]
        code = encode_one(self.model, query.image)
        if query.key is not None:
            self._codes[query.key] = code
            if len(self._codes) > _CACHED_CODES:
                self._codes.popitem(last=False)
        return code

    def search(self, query: Query, k: int, radius: int) -> SearchResult:
        """The k nearest database codes of ``query`` by (distance, id), those within ``radius``."""
        code = self.code(query)
        distances, ids = self.index.search(code, k)
        within = distances[0] <= radius
        distances, ids = distances[0][within], ids[0][within]
        shares = None
        if query.label is not None:
            shares = relevant(np.asarray(query.label)[None], np.asarray(self.data.database.labels)[ids])[0]
        return SearchResult(query.name, query.display, code[0], query.label, k, radius, ids, distances, shares)
