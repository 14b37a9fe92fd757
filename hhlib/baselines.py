"""Hash codes that need no training, to put the numbers of a trained model in context.

An mAP of 0.75 means little on its own: on ten balanced classes, codes drawn
at random already score about 0.1 (the share of relevant items), and a
linear projection of the raw pixels scores far more. Three references:

- :func:`random_codes`: independent fair coin flips per item and bit; the
  floor that any method must beat.
- :func:`fit_lsh`: locality-sensitive hashing for angles (Charikar, STOC
  2002): the sign of a random Gaussian projection of centred pixels. Two
  images agree on a bit with probability ``1 - angle / pi``, so the
  Hamming distance estimates the angle between the centred images.
- :func:`fit_pcah`: PCA hashing, the sign of the projection on the leading
  principal components of the training pixels (as in Gong & Lazebnik's ITQ
  paper, CVPR 2011, where it is the starting point).

The two projections are fitted on the train split's pixels and then applied
to the query and database splits, as a learned model would be::

    train = split_pixels(data.train, grey=True)              # (5000, 1024)
    lsh = fit_lsh(train, bits=64, seed=0)
    query_codes = lsh.encode(split_pixels(data.query, grey=True))  # (1000, 64) int8
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

__all__ = ["LinearHash", "random_codes", "fit_lsh", "fit_pcah", "split_pixels"]


def _check_bits(bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits!r}")
    return int(bits)


def _check_pixels(pixels: np.ndarray, name: str = "pixels") -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty (N, D) array of flattened images, got shape {pixels.shape}")
    return pixels


def _signs(projected: np.ndarray) -> np.ndarray:
    """(N, bits) real -> (N, bits) int8 in {-1, +1}; 0 maps to +1, as in hhlib.train.encode."""
    return np.where(projected >= 0, 1, -1).astype(np.int8)


@dataclass(frozen=True)
class LinearHash:
    """Codes ``sign((x - mean) @ projection)`` of flattened images ``x``.

    Attributes:
        name: what made the projection ("LSH", "PCAH").
        mean: (D,) the training pixels' mean, subtracted first.
        projection: (D, bits) one column per bit.
    """

    name: str
    mean: np.ndarray
    projection: np.ndarray

    @property
    def bits(self) -> int:
        return self.projection.shape[1]

    def encode(self, pixels: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Codes of flattened images.

        Args:
            pixels: (N, D) images flattened the way the training pixels were.
            batch_size: rows projected at once (bounds the float64 temporaries).

        Returns:
            (N, bits) int8 codes in {-1, +1}.
        """
        pixels = _check_pixels(pixels)
        if pixels.shape[1] != len(self.mean):
            raise ValueError(
                f"{self.name} was fitted on {len(self.mean)} pixel values per image, got {pixels.shape[1]}"
            )
        codes = np.empty((len(pixels), self.bits), np.int8)
        with threadpool_limits(limits=1, user_api="blas"):  # see fit_pcah
            for start in range(0, len(pixels), batch_size):
                chunk = pixels[start : start + batch_size].astype(np.float64) - self.mean  # (n, D)
                codes[start : start + batch_size] = _signs(chunk @ self.projection)
        return codes


def random_codes(num_items: int, bits: int, seed: int = 0) -> np.ndarray:
    """Codes that know nothing about the images: each bit a fair coin flip.

    Args:
        num_items: rows to draw.
        bits: code length.
        seed: seed of the generator (query and database codes need different seeds).

    Returns:
        (num_items, bits) int8 codes in {-1, +1}.
    """
    bits = _check_bits(bits)
    if not isinstance(num_items, (int, np.integer)) or num_items < 0:
        raise ValueError(f"num_items must be a non-negative integer, got {num_items!r}")
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([-1, 1], np.int8), size=(int(num_items), bits))


def fit_lsh(train_pixels: np.ndarray, bits: int, seed: int = 0) -> LinearHash:
    """Sign-random-projection LSH: centre with the training mean, project on Gaussian directions.

    Only the mean comes from the data; the directions are random, so more
    bits give a finer estimate of the angle between two centred images.

    Args:
        train_pixels: (N, D) flattened training images.
        bits: code length.
        seed: seed of the Gaussian directions.

    Returns:
        The :class:`LinearHash` (its projection is (D, bits) standard normal).
    """
    train_pixels = _check_pixels(train_pixels, "train_pixels")
    bits = _check_bits(bits)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((train_pixels.shape[1], bits))  # (D, bits)
    return LinearHash("LSH", train_pixels.mean(axis=0, dtype=np.float64), projection)


def fit_pcah(train_pixels: np.ndarray, bits: int) -> LinearHash:
    """PCA hashing: project on the ``bits`` leading principal components of the training pixels.

    Each bit then splits the data along a direction of large variance, which
    keeps neighbours together far better than random directions at few bits;
    its weakness is that later components carry little variance, so long
    codes gain less than LSH's do.

    Args:
        train_pixels: (N, D) flattened training images.
        bits: code length, at most min(N, D).

    Returns:
        The :class:`LinearHash` (its projection holds the components as columns).
    """
    train_pixels = _check_pixels(train_pixels, "train_pixels")
    bits = _check_bits(bits)
    if bits > min(train_pixels.shape):
        raise ValueError(f"PCA hashing needs bits <= min(N, D) = {min(train_pixels.shape)}, got {bits}")
    mean = train_pixels.mean(axis=0, dtype=np.float64)
    centred = train_pixels.astype(np.float64) - mean  # (N, D)
    # One BLAS thread: these matrices are too small to gain from more, and on a busy machine
    # spinning BLAS threads made this 40 times slower (18 s instead of 0.4 s).
    with threadpool_limits(limits=1, user_api="blas"):
        scatter = centred.T @ centred  # (D, D), the covariance times N
        dim = scatter.shape[0]
        # only the top `bits` eigenvectors: much cheaper than a full SVD of the (N, D) pixels
        _, vectors = scipy.linalg.eigh(scatter, subset_by_index=[dim - bits, dim - 1])  # ascending eigenvalues
    return LinearHash("PCAH", mean, np.ascontiguousarray(vectors[:, ::-1]))  # (D, bits), largest first


def split_pixels(split, grey: bool = False) -> np.ndarray:
    """The un-augmented pixels of a whole split, flattened, as float32.

    Uses the split's ``raw_image`` (in-memory datasets: Fashion-MNIST,
    CIFAR-10, digits), so training images are read without augmentation;
    datasets without it are read item by item (their normalised images).

    Args:
        split: ``data.train``, ``data.query`` or ``data.database``.
        grey: keep one channel (the grey datasets store it three times).

    Returns:
        (N, D) float32, D = H * W (grey) or H * W * 3: raw pixels scaled to
        [0, 1], or the normalised images of datasets without ``raw_image``.
    """
    if len(split) == 0:
        raise ValueError("the split is empty")
    if hasattr(split, "raw_images"):  # in-memory splits: one gather, not a loop over images
        images = split.raw_images()  # (N, H, W, C) uint8, C = 1 or 3
        images = images[..., :1] if grey else np.broadcast_to(images, (*images.shape[:3], 3))
        return images.reshape(len(images), -1).astype(np.float32) / 255.0
    if hasattr(split, "raw_image"):
        pixels = np.stack(
            [split.raw_image(i)[:, :, :1] if grey else split.raw_image(i) for i in range(len(split))]
        )  # (N, H, W, C)
        return pixels.reshape(len(pixels), -1).astype(np.float32) / 255.0
    rows = []
    for i in range(len(split)):
        image = split[i][0]  # (3, H, W) normalised
        image = image[:1] if grey else image
        rows.append(torch.as_tensor(image, dtype=torch.float32).reshape(-1).numpy())
    return np.stack(rows)
