"""In-memory split datasets (Fashion-MNIST, CIFAR-10, digits).

All splits of a dataset share one uint8 pixel tensor, the pool. When the
pool at the requested size fits in :data:`PRERESIZE_BUDGET_BYTES` it is
resized once, with one batched interpolation, when the splits are built
(70,000 Fashion-MNIST images at 32 px: 72 MB); ``__getitem__`` is then an
index, a float conversion and a normalisation. Pools that would not fit
(CIFAR-10 at 224 px would take 9 GB) keep their native size and each batch
is resized when it is read.

Besides the per-item ``__getitem__``, :class:`InMemorySplit` has
:meth:`~InMemorySplit.get_batch`, which builds a whole batch with tensor
operations, and ``__getitems__``, through which ``torch.utils.data.DataLoader``
uses it automatically.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hhlib.data.transforms import TensorTransform, resize_uint8

PRERESIZE_BUDGET_BYTES = 1 << 30


class InMemorySplit(Dataset):
    """One split (train, query or database) of an in-memory dataset.

    Items are ``(image, label_vector, index)``: a float32 (3, S, S)
    normalised image, a float32 (num_classes,) 0/1 vector and the item's
    position in this split (0..len-1), which the loss's memory bank uses.

    Args:
        pixels: (N, C, H, W) uint8 pool shared by the splits.
        rows: (n,) rows of ``pixels`` that make up this split, in order.
        labels: (n, num_classes) uint8 label matrix of this split.
        transform: turns uint8 batches into normalised float images.
        pool_indices: (n,) indices of the items in the pooled dataset (the
            protocol's indices, kept for reference).

    Attributes:
        labels: the (n, num_classes) uint8 label matrix, for evaluation.
        pool_indices: as above.
    """

    def __init__(
        self,
        pixels: torch.Tensor,
        rows: np.ndarray,
        labels: np.ndarray,
        transform: TensorTransform,
        pool_indices: np.ndarray,
    ) -> None:
        self._pixels = pixels
        self._rows = torch.as_tensor(rows, dtype=torch.int64)
        self._n = len(self._rows)
        self.labels = labels
        self._label_vectors = torch.from_numpy(labels.astype(np.float32))
        self.transform = transform
        self.pool_indices = pool_indices

    def __repr__(self) -> str:
        return f"InMemorySplit(n={len(self)}, num_classes={self.labels.shape[1]}, {self.transform})"

    def __len__(self) -> int:
        return self._n

    def _position(self, i: int) -> int:
        i = operator.index(i)
        if not -self._n <= i < self._n:
            raise IndexError(f"index {i} out of range for a split of {self._n} items")
        return i % self._n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        i = self._position(i)
        images, label_vectors, _ = self.get_batch([i])
        return images[0], label_vectors[0], i

    def get_batch(self, positions: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole batch at once, with tensor operations instead of per-item calls.

        Args:
            positions: positions within this split.

        Returns:
            (B, 3, S, S) float32 images, (B, num_classes) float32 label
            vectors and the (B,) int64 positions.
        """
        positions = torch.as_tensor(positions, dtype=torch.int64).reshape(-1)
        if len(positions) and (positions.min() < 0 or positions.max() >= self._n):
            raise IndexError(
                f"positions must lie in [0, {self._n}), got [{int(positions.min())}, {int(positions.max())}]"
            )
        images = self.transform(self._pixels[self._rows[positions]])
        return images, self._label_vectors[positions], positions

    def __getitems__(self, positions: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """DataLoader's batched fetch: :meth:`get_batch` split into items for the collate function."""
        images, label_vectors, positions = self.get_batch(positions)
        return list(zip(images, label_vectors, positions.tolist()))

    def raw_image(self, i: int) -> np.ndarray:
        """The un-normalised, un-augmented image ``i`` as (H, W, 3) uint8, for display."""
        image = self._pixels[self._rows[self._position(i)]]
        return image.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()

    def raw_images(self) -> np.ndarray:
        """All images of the split as (n, H, W, C) uint8, C = 1 for grey pools (one gather)."""
        return self._pixels[self._rows].permute(0, 2, 3, 1).contiguous().numpy()


def build_splits(
    pixels: torch.Tensor,
    classes: np.ndarray,
    num_classes: int,
    parts: dict[str, np.ndarray],
    img_size: int,
    augment: bool,
    flip: bool,
    max_shift: int | None = None,
) -> dict[str, InMemorySplit]:
    """Build the in-memory splits of a pooled dataset.

    Only the pool rows that some split uses are kept (a ``limit`` makes
    that a small subset), then resized once when they fit the budget.

    Args:
        pixels: (N, C, H, W) uint8 pool.
        classes: (N,) int64 class ids of the pool.
        num_classes: width of the label vectors.
        parts: split name -> pool indices (``train``, ``query``, ``database``).
        img_size: the side of the images served.
        augment: augment the ``train`` split.
        flip: allow horizontal flips in that augmentation.
        max_shift: the largest random shift of that augmentation in pixels
            (see :class:`~hhlib.data.transforms.TensorTransform`).

    Returns:
        Split name -> :class:`InMemorySplit`.
    """
    used, rows = np.unique(np.concatenate(list(parts.values())), return_inverse=True)
    if len(used) < len(pixels):  # e.g. with a limit: copy (and resize) only the rows in use
        pixels = pixels[torch.from_numpy(used)]
    channels = pixels.shape[1]
    if len(pixels) * channels * img_size * img_size <= PRERESIZE_BUDGET_BYTES:
        pixels = resize_uint8(pixels, img_size)
    one_hot = np.eye(num_classes, dtype=np.uint8)
    splits, start = {}, 0
    for name, indices in parts.items():
        transform = TensorTransform(img_size, augment=augment and name == "train", flip=flip, max_shift=max_shift)
        split_rows = rows[start : start + len(indices)]
        splits[name] = InMemorySplit(pixels, split_rows, one_hot[classes[indices]], transform, indices)
        start += len(indices)
    return splits
