"""List-file datasets in the DeepHash-pytorch format (NUS-WIDE, MS-COCO, ImageNet-100).

A dataset folder holds ``train.txt``, ``test.txt`` (the query set) and
``database.txt``, one image per line::

    images/0001.jpg 0 1 0 0 1 ...

a path relative to the folder, then a 0/1 membership vector with one entry
per class (multi-label where several are 1). An optional ``classes.txt``
gives the class names, one per line.

Every line is parsed and every listed image is checked to exist when the
dataset is built, so that format errors come before training; an image that
fails to decode while iterating raises :class:`ImageDecodeError` naming the
file and the list line. :func:`make_split_lists` writes such files for a
protocol from one full label file (``data/make_nuswide21_lists.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import Compose

from hhlib.data.errors import DataFormatError, DatasetNotFoundError, ImageDecodeError
from hhlib.data.protocols import Split, get_protocol, split_protocol

LIST_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
_BITS = {"0": 0, "1": 1}


def parse_label_file(path: str | os.PathLike, num_classes: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Parse a ``path l_1 ... l_C`` label file; blank lines are skipped.

    Args:
        path: the list file.
        num_classes: the number of label columns every line must have.

    Returns:
        The image paths, the (n, num_classes) uint8 label matrix and the
        (n,) 1-based line numbers of the entries (for error messages).

    Raises:
        DataFormatError: naming the file and line, for a line without
            labels, a label vector of the wrong width, a value other than
            0/1, or a file without any entry.
    """
    path = Path(path)
    paths, rows, line_numbers = [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) == 1:
                raise DataFormatError(f"{path}:{number}: {tokens[0]!r} has no label vector")
            if len(tokens) - 1 != num_classes:
                raise DataFormatError(
                    f"{path}:{number}: {len(tokens) - 1} labels, expected {num_classes} "
                    f"(one 0/1 per class) after the image path"
                )
            row = [_BITS.get(token) for token in tokens[1:]]
            if None in row:
                bad = tokens[1 + row.index(None)]
                raise DataFormatError(f"{path}:{number}: label values must be 0 or 1, got {bad!r}")
            paths.append(tokens[0])
            rows.append(row)
            line_numbers.append(number)
    if not paths:
        raise DataFormatError(f"{path}: empty list file (no 'path 0 1 ...' lines)")
    return paths, np.array(rows, dtype=np.uint8), np.array(line_numbers, dtype=np.int64)


def write_label_file(path: str | os.PathLike, paths: list[str], labels: np.ndarray) -> None:
    """Write ``path l_1 ... l_C`` lines, the format :func:`parse_label_file` reads."""
    with open(path, "w", encoding="utf-8") as handle:
        for image, row in zip(paths, labels):
            handle.write(f"{image} {' '.join(map(str, row.tolist()))}\n")


def read_class_names(folder: Path, num_classes: int) -> tuple[str, ...]:
    """Names from ``folder/classes.txt`` when present, else ``class_0``, ``class_1``, ..."""
    names_file = folder / "classes.txt"
    if not names_file.is_file():
        return tuple(f"class_{c}" for c in range(num_classes))
    lines = names_file.read_text(encoding="utf-8").splitlines()
    names = tuple(line.strip() for line in lines if line.strip())
    if len(names) != num_classes:
        raise DataFormatError(f"{names_file}: {len(names)} class names, expected {num_classes}")
    return names


class ListFileDataset(Dataset):
    """One split of a list-file dataset, read from image files on demand.

    Items are ``(image, label_vector, index)`` as for the in-memory datasets.

    Args:
        root: the folder image paths are relative to.
        list_file: the split's list file.
        num_classes: label vector width.
        transform: PIL image -> tensor (see :func:`~hhlib.data.transforms.list_transform`).
        limit: keep only a random subset of this many entries, in file order.
        seed: seed of that subset.

    Attributes:
        labels: (n, num_classes) uint8 label matrix.
        paths: image paths as listed.

    Raises:
        DataFormatError: for a malformed list file.
        DatasetNotFoundError: when listed images are missing.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        list_file: str | os.PathLike,
        num_classes: int,
        transform: Compose,
        limit: int | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.list_file = Path(list_file)
        paths, labels, lines = parse_label_file(self.list_file, num_classes)
        if limit is not None and limit < len(paths):
            keep = np.sort(np.random.default_rng(seed).choice(len(paths), size=limit, replace=False))
            paths, labels, lines = [paths[k] for k in keep], labels[keep], lines[keep]
        missing = [(line, path) for path, line in zip(paths, lines) if not (self.root / path).is_file()]
        if missing:
            line, path = missing[0]
            raise DatasetNotFoundError(
                f"{self.list_file}: {len(missing)} of {len(paths)} listed images are missing, "
                f"the first at line {line}: {self.root / path}"
            )
        self.paths = paths
        self.labels = labels
        self._lines = lines
        self._label_vectors = torch.from_numpy(labels.astype(np.float32))
        self.transform = transform

    def __repr__(self) -> str:
        return f"ListFileDataset({self.list_file}, n={len(self)}, num_classes={self.labels.shape[1]})"

    def __len__(self) -> int:
        return len(self.paths)

    def _open(self, i: int) -> Image.Image:
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise ImageDecodeError(f"{self.list_file}:{self._lines[i]}: cannot read image {path}: {error}") from error

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = range(len(self))[i]  # bounds check, negative indices
        return self.transform(self._open(i)), self._label_vectors[i], i

    def raw_image(self, i: int) -> np.ndarray:
        """The decoded image ``i`` as (H, W, 3) uint8, untransformed, for display."""
        return np.asarray(self._open(range(len(self))[i]))


def make_split_lists(
    label_file: str | os.PathLike, out_dir: str | os.PathLike, protocol: str = "nuswide_21", seed: int = 0
) -> Split:
    """Write ``train.txt``, ``test.txt`` and ``database.txt`` for a protocol.

    Args:
        label_file: every image of the dataset as ``path l_1 ... l_C`` lines.
        out_dir: where the three list files and ``split.npz`` (the
            :class:`Split`, to check or reproduce the lists) are written.
        protocol: a protocol of :data:`~hhlib.data.protocols.PROTOCOLS`.
        seed: the split seed.

    Returns:
        The split, with indices into the entries of ``label_file``.
    """
    paths, labels, _ = parse_label_file(label_file, get_protocol(protocol).num_classes)
    split = split_protocol(labels, protocol, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for part, filename in LIST_FILES.items():
        indices = getattr(split, part)
        write_label_file(out_dir / filename, [paths[k] for k in indices], labels[indices])
    split.save(out_dir / "split.npz")
    return split
