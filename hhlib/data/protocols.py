"""Retrieval protocols: which images of a pooled dataset are query, train and database.

The protocols are those of docs/DESIGN.md, "Protocols" (the paper's, which follow
DeepHash-pytorch), plus ``digits`` for scikit-learn's 8x8 digits:

=============  =================  =================  ==========================
protocol       query              train              database
=============  =================  =================  ==========================
cifar10        100 per class      500 per class      the rest (54,000)
cifar10-1      100 per class      500 per class      all but query (59,000),
                                                     so train is inside it
cifar10-2      1,000 per class    5,000 per class    = train (50,000)
fashion-mnist  100 per class      500 per class      the rest (64,000)
digits         20 per class       50 per class       the rest (1,097 of 1,797)
nuswide_21     100 per class      500 per class      all but query (multi-label)
=============  =================  =================  ==========================

Unlike the authors' code, which splits with an unseeded RNG, a split here is
a pure function of the labels and a seed, and it can be saved and reloaded
(:meth:`Split.save`, :meth:`Split.load`) with a checksum of the labels, so
that a split is never silently applied to a different dataset.

Multi-label sampling (``nuswide_21``, used to build the NUS-WIDE list files):
classes are visited from the rarest to the most frequent, and each draws its
quota from the images that contain it and are not taken yet. The query set
therefore holds exactly ``per_class * num_classes`` images and every class
appears in at least ``per_class`` of them (more, for images that carry
several classes). For single-label data the same procedure is plain
stratified sampling without replacement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np

from hhlib.checkpoint import atomic_write
from hhlib.data.errors import DataFormatError, SplitMismatchError

_SPLIT_FORMAT = "hhlib-split-v1"
_SPLIT_FIELDS = ("format", "protocol", "seed", "query", "train", "database", "labels_checksum")


@dataclass(frozen=True)
class Protocol:
    """How many images of each class go to query and train, and what the database is.

    Attributes:
        num_classes: width of the label vectors.
        query_per_class: query images drawn per class.
        train_per_class: training images drawn per class, after the query.
        database: ``"rest"`` (disjoint from query and train),
            ``"all-but-query"`` (train is a subset of the database) or
            ``"train"`` (the database is the training set).
    """

    num_classes: int
    query_per_class: int
    train_per_class: int
    database: Literal["rest", "all-but-query", "train"]


PROTOCOLS: dict[str, Protocol] = {
    "cifar10": Protocol(10, 100, 500, "rest"),
    "cifar10-1": Protocol(10, 100, 500, "all-but-query"),
    "cifar10-2": Protocol(10, 1000, 5000, "train"),
    "fashion-mnist": Protocol(10, 100, 500, "rest"),
    # 1,797 images, at least 174 per class: 200 / 500 / 1,097.
    "digits": Protocol(10, 20, 50, "rest"),
    # DeepHash-pytorch's NUS-WIDE-21 lists: 2,100 / 10,500 / 193,734 of 195,834.
    "nuswide_21": Protocol(21, 100, 500, "all-but-query"),
}


def get_protocol(name: str) -> Protocol:
    """Look a protocol up by name.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(sorted(PROTOCOLS))
        raise ValueError(f"unknown protocol {name!r}; known protocols: {known}") from None


def class_membership(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Turn class ids or a 0/1 label matrix into a boolean (n, num_classes) matrix.

    Args:
        labels: (n,) integer class ids in [0, num_classes), or an
            (n, num_classes) 0/1 matrix (one-hot or multi-label).
        num_classes: the number of classes of the protocol.

    Returns:
        A boolean matrix, True where an image belongs to a class.
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"class ids must be integers, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"class ids must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
        return np.arange(num_classes) == labels[:, None]
    if labels.ndim == 2 and labels.shape[1] == num_classes:
        return labels != 0
    raise ValueError(f"labels must be (n,) class ids or an (n, {num_classes}) label matrix, got shape {labels.shape}")


def labels_checksum(labels: np.ndarray, num_classes: int) -> str:
    """SHA-256 of the class-membership matrix, the same for class ids and one-hot rows."""
    member = class_membership(labels, num_classes)
    digest = hashlib.sha256(f"{member.shape[0]}x{member.shape[1]};".encode())
    digest.update(np.packbits(member).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Split:
    """A query / train / database split of a pooled dataset.

    Attributes:
        protocol: the protocol name (a key of :data:`PROTOCOLS`).
        seed: the seed it was drawn with.
        query, train, database: read-only int64 index arrays into the pooled
            dataset, each in a seeded random order (so a prefix is a
            class-mixed subset).
        labels_checksum: :func:`labels_checksum` of the labels it was drawn from.
    """

    protocol: str
    seed: int
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    labels_checksum: str

    def __post_init__(self) -> None:
        get_protocol(self.protocol)
        for part in ("query", "train", "database"):
            array = np.array(getattr(self, part), dtype=np.int64).reshape(-1)
            array.flags.writeable = False
            object.__setattr__(self, part, array)

    def __repr__(self) -> str:
        return (
            f"Split(protocol={self.protocol!r}, seed={self.seed}, query={len(self.query)}, "
            f"train={len(self.train)}, database={len(self.database)})"
        )

    def verify(self, labels: np.ndarray) -> None:
        """Check that this split was drawn from ``labels``.

        Raises:
            SplitMismatchError: when the labels' checksum differs.
        """
        num_classes = PROTOCOLS[self.protocol].num_classes
        if labels_checksum(labels, num_classes) != self.labels_checksum:
            raise SplitMismatchError(
                f"this {self!r} was drawn from other labels than the {len(labels)} given "
                f"(label checksum {self.labels_checksum[:12]}... differs); draw a new split "
                f"with split_protocol(labels, {self.protocol!r}, seed) instead"
            )

    def save(self, path: str | PathLike) -> Path:
        """Write the split to one ``.npz`` file at exactly ``path`` and return it."""
        arrays = dict(
            format=np.str_(_SPLIT_FORMAT),
            protocol=np.str_(self.protocol),
            seed=np.int64(self.seed),
            query=self.query,
            train=self.train,
            database=self.database,
            labels_checksum=np.str_(self.labels_checksum),
        )
        return atomic_write(path, lambda handle: np.savez(handle, **arrays))

    @classmethod
    def load(cls, path: str | PathLike, labels: np.ndarray | None = None) -> Split:
        """Read a split written by :meth:`save`.

        Args:
            path: the ``.npz`` file.
            labels: when given, the split is verified against them.

        Raises:
            DataFormatError: when the file is not a split file.
            SplitMismatchError: when ``labels`` are not the split's labels.
        """
        path = Path(path)
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise DataFormatError(f"{path}: not a split file written by Split.save") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataFormatError(f"{path}: not a split file written by Split.save (a bare array)")
        with archive:
            missing = sorted(set(_SPLIT_FIELDS) - set(archive.files))
            if missing:
                raise DataFormatError(f"{path}: not a split file written by Split.save (no {missing})")
            if str(archive["format"]) != _SPLIT_FORMAT:
                raise DataFormatError(f"{path}: split format {str(archive['format'])!r}, expected {_SPLIT_FORMAT!r}")
            split = cls(
                protocol=str(archive["protocol"]),
                seed=int(archive["seed"]),
                query=archive["query"],
                train=archive["train"],
                database=archive["database"],
                labels_checksum=str(archive["labels_checksum"]),
            )
        if labels is not None:
            split.verify(labels)
        return split


def split_protocol(labels: np.ndarray, protocol: str, seed: int = 0) -> Split:
    """Draw the query / train / database split of a protocol.

    Args:
        labels: (n,) class ids or an (n, num_classes) 0/1 matrix of the
            pooled dataset.
        protocol: a key of :data:`PROTOCOLS`.
        seed: seed of the numpy Generator; the same seed and labels give the
            same split.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: for an unknown protocol, or a class with too few images.
    """
    spec = get_protocol(protocol)
    member = class_membership(labels, spec.num_classes)
    counts = member.sum(axis=0)
    rng = np.random.default_rng(seed)
    available = np.ones(len(member), dtype=bool)
    # Rarest class first, so that with multi-label data the frequent classes
    # do not use up the images a rare class needs.
    order = np.argsort(counts, kind="stable")

    def draw(per_class: int, part: str) -> np.ndarray:
        picks = []
        for c in order:
            candidates = np.flatnonzero(available & member[:, c])
            if len(candidates) < per_class:
                raise ValueError(
                    f"protocol {protocol!r} needs {spec.query_per_class} query + "
                    f"{spec.train_per_class} train images per class, but class {c} has only "
                    f"{counts[c]} images ({len(candidates)} left when drawing the {part} set)"
                )
            pick = rng.choice(candidates, size=per_class, replace=False)
            available[pick] = False
            picks.append(pick)
        return rng.permutation(np.concatenate(picks))

    query = draw(spec.query_per_class, "query")
    train = draw(spec.train_per_class, "train")
    rest = np.flatnonzero(available)
    if spec.database == "rest":
        database = rng.permutation(rest)
    elif spec.database == "all-but-query":
        database = rng.permutation(np.concatenate([train, rest]))
    else:
        database = train
    return Split(protocol, seed, query, train, database, labels_checksum(labels, spec.num_classes))
