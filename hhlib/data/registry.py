"""The datasets hhlib knows and :func:`get_dataset`, the single entry point.

Each entry of :data:`DATASETS` holds a dataset's protocol facts (docs/DESIGN.md,
"Protocols"): the number of classes, the K of mAP@K (None for mAP@all), the
default image size (224, the paper's, for CIFAR-10 and the list datasets;
32 for the CPU presets Fashion-MNIST and digits) and how to load it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hhlib.data.listfile import LIST_FILES, ListFileDataset, read_class_names
from hhlib.data.memory import build_splits
from hhlib.data.protocols import Split, split_protocol
from hhlib.data.sources import find_root, load_cifar10, load_digits, load_fashion_mnist, not_found_error
from hhlib.data.transforms import list_transform

Loader = Callable[[str | os.PathLike | None, bool], tuple[torch.Tensor, np.ndarray]]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class DatasetInfo:
    """What hhlib knows about a dataset.

    Attributes:
        num_classes: label vector width.
        topk: the K of mAP@K, None for mAP@all.
        img_size: the default image side.
        loader: reads the pooled images of an in-memory dataset; None for a
            list-file dataset.
        class_names: None where they come from the data (list datasets).
        flip: whether horizontal flips are a valid augmentation.
        shift: the largest random shift of the training augmentation, as a
            fraction of the image side (in-memory datasets; 0 for none).
        grey: the images are grey (a query photo is read as grey too).
    """

    num_classes: int
    topk: int | None
    img_size: int
    loader: Loader | None = None
    class_names: tuple[str, ...] | None = None
    flip: bool = True
    grey: bool = False
    shift: float = 1 / 8


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(10, None, 224, load_cifar10, CIFAR10_CLASSES),
    "cifar10-1": DatasetInfo(10, None, 224, load_cifar10, CIFAR10_CLASSES),
    "cifar10-2": DatasetInfo(10, None, 224, load_cifar10, CIFAR10_CLASSES),
    # Fashion-MNIST's items are centred, in the query images too: shifts of up to 2 px at 32 px
    # regularise without teaching an invariance retrieval never uses (docs/cpu_preset.md, section 1).
    "fashion-mnist": DatasetInfo(10, None, 32, load_fashion_mnist, FASHION_MNIST_CLASSES, grey=True, shift=1 / 16),
    # A flipped 2 or 7 is not a digit.
    "digits": DatasetInfo(10, None, 32, load_digits, tuple(str(d) for d in range(10)), flip=False, grey=True),
    "nuswide_21": DatasetInfo(21, 5000, 224),
    "nuswide_81_m": DatasetInfo(81, 5000, 224),
    "coco": DatasetInfo(80, 5000, 224),
    "imagenet": DatasetInfo(100, 1000, 224),
}


@dataclass(frozen=True, repr=False)
class RetrievalData:
    """A dataset ready for training and retrieval evaluation.

    Attributes:
        name: the dataset name.
        train, query, database: datasets of ``(image, label_vector, index)``
            items, each with a ``.labels`` (n, num_classes) uint8 matrix.
        num_classes: label vector width.
        topk: the K of mAP@K, None for mAP@all.
        class_names: one name per class.
        img_size: the side of the images served.
        split: the protocol split, whole even when a ``limit`` shortened
            the datasets (None for list-file datasets: their lists are the split).
    """

    name: str
    train: Dataset
    query: Dataset
    database: Dataset
    num_classes: int
    topk: int | None
    class_names: tuple[str, ...]
    img_size: int
    split: Split | None

    def __repr__(self) -> str:
        return (
            f"RetrievalData({self.name!r}, train={len(self.train)}, query={len(self.query)}, "
            f"database={len(self.database)}, num_classes={self.num_classes}, topk={self.topk}, "
            f"img_size={self.img_size})"
        )


def get_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    split_seed: int = 0,
    img_size: int | None = None,
    augment: bool = True,
    download: bool = True,
    limit: int | None = None,
    split: Split | str | os.PathLike | None = None,
) -> RetrievalData:
    """Load a dataset with its retrieval protocol.

    Args:
        name: a key of :data:`DATASETS`.
        root: the dataset folder (for CIFAR-10, the folder holding
            ``cifar-10-batches-py``); by default ``$HH_DATA/<name>``, then
            ``data/<name>`` (see :mod:`hhlib.data.sources`).
        split_seed: seed of the protocol split (in-memory datasets), or of
            the subset a ``limit`` keeps (list-file datasets).
        img_size: image side; the dataset's default when None.
        augment: augment the training split (query and database never are).
        download: download a missing CIFAR-10 / Fashion-MNIST; when False,
            or offline, a missing dataset raises with instructions.
        limit: keep only this many items of each split: the first ones of
            the seeded split order (in-memory datasets) or a seeded random
            subset in file order (list files); for smoke runs.
        split: a :class:`Split` or the path of a saved one, to reuse instead
            of drawing one (in-memory datasets only); it must match the
            dataset's labels and protocol.

    Returns:
        The :class:`RetrievalData`.

    Raises:
        ValueError: unknown name, bad ``limit``, or a split of another protocol.
        DatasetNotFoundError: data missing (with instructions), or listed images missing.
        DataFormatError: malformed files, naming file and line.
        SplitMismatchError: a split drawn from other labels.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of items or None, got {limit}")
    info = DATASETS[name]
    img_size = img_size or info.img_size
    if info.loader is None:
        if split is not None:
            raise ValueError(f"{name} is a list-file dataset: its split is its list files, not split=")
        return _list_file_data(name, info, root, img_size, augment, limit, split_seed)

    pixels, classes = info.loader(root, download)
    split = _protocol_split(name, classes, split, split_seed)
    parts = {part: getattr(split, part)[:limit] for part in ("train", "query", "database")}
    shift = round(info.shift * img_size)
    splits = build_splits(pixels, classes, info.num_classes, parts, img_size, augment, info.flip, max_shift=shift)
    train, query, database = splits["train"], splits["query"], splits["database"]
    return RetrievalData(name, train, query, database, info.num_classes, info.topk, info.class_names, img_size, split)


def _protocol_split(name: str, classes: np.ndarray, split: Split | str | os.PathLike | None, seed: int) -> Split:
    """The split of an in-memory dataset: drawn by the protocol of the same name, or a saved one, verified."""
    if split is None:
        return split_protocol(classes, name, seed)
    split = split if isinstance(split, Split) else Split.load(split)
    if split.protocol != name:
        raise ValueError(f"split= is a {split.protocol!r} split, but the dataset is {name!r}")
    split.verify(classes)
    return split


def _list_file_data(
    name: str,
    info: DatasetInfo,
    root: str | os.PathLike | None,
    img_size: int,
    augment: bool,
    limit: int | None,
    seed: int,
) -> RetrievalData:
    """The three splits of a list-file dataset (see :func:`get_dataset`)."""

    def has_files(folder: Path) -> bool:
        return all((folder / filename).is_file() for filename in LIST_FILES.values())

    folder, searched = find_root(name, root, has_files)
    if folder is None:
        raise not_found_error(
            f"{name} ({', '.join(LIST_FILES.values())})",
            searched,
            f"Put the list files and the images they name (paths relative to the folder) into one of\n"
            f"those folders, e.g. data/{name}/; see data/README.md for where to get them.",
        )
    splits = {}
    for part, filename in LIST_FILES.items():
        transform = list_transform(img_size, train=augment and part == "train")
        splits[part] = ListFileDataset(folder, folder / filename, info.num_classes, transform, limit, seed)
    return RetrievalData(
        name,
        splits["train"],
        splits["query"],
        splits["database"],
        info.num_classes,
        info.topk,
        read_class_names(folder, info.num_classes),
        img_size,
        None,
    )
