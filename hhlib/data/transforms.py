"""Image transforms: the paper's pipeline for list datasets and a tensor pipeline for in-memory ones.

Paper (docs/DESIGN.md, "Protocols", as in DeepHash-pytorch): list datasets are
resized to 256 (shorter side), then RandomCrop 224 + horizontal flip for
training and CenterCrop 224 for query and database; CIFAR is resized to
224. Everything is normalised with the ImageNet mean and std.

In-memory datasets (Fashion-MNIST, CIFAR-10, digits) keep their pixels as
one uint8 tensor; :class:`TensorTransform` turns a batch of those rows into
normalised float images: grey is repeated to 3 channels, the resize happens
here only when the dataset could not afford to store resized pixels (see
:mod:`hhlib.data.memory`), and training augmentation is an optional random
shift (a random crop of the zero-padded image, up to ``img_size // 8``
pixels by default) plus an optional horizontal flip. Each dataset says
which of the two suit it (:data:`hhlib.data.DATASETS`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 batch to ``size`` x ``size`` (bilinear, antialiased).

    Args:
        images: (N, C, H, W) uint8.
        size: the output side.
        chunk: images converted to float at a time, to bound memory.

    Returns:
        (N, C, size, size) uint8; ``images`` itself when the size already matches.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for start in range(0, n, chunk):
        batch = images[start : start + chunk].float()
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def random_shift(images: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in x and y, filling with zeros.

    This equals a random crop of the image padded by ``max_shift`` zeros.

    Args:
        images: (B, C, H, W), any dtype.
        max_shift: the largest shift in pixels.

    Returns:
        A new (B, C, H, W) tensor.
    """
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)  # (B, C, H + 2m, W + 2m), zeros around
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2))  # top-left corner of each crop
    rows = (offsets[:, :1] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (offsets[:, 1:] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    batch, channels = torch.arange(b)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channels, rows, cols]


class TensorTransform:
    """uint8 batches of an in-memory dataset -> normalised float32 (B, 3, S, S) images.

    Randomness comes from torch's global generator, which DataLoader seeds
    differently in every worker.

    Args:
        img_size: the output side S.
        augment: apply the random shift and flip of training.
        flip: allow horizontal flips when augmenting (not for digits).
        max_shift: the largest random shift in pixels when augmenting; 0 for
            none, None for ``max(1, img_size // 8)`` (4 pixels at 32 px).
    """

    def __init__(self, img_size: int, augment: bool, flip: bool, max_shift: int | None = None) -> None:
        if max_shift is not None and max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift}")
        self.img_size = img_size
        self.augment = augment
        self.flip = flip
        self.max_shift = max(1, img_size // 8) if max_shift is None else int(max_shift)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        # x / 255 and (x - mean) / std folded into one multiply-add.
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / std

    def __repr__(self) -> str:
        return (
            f"TensorTransform(img_size={self.img_size}, augment={self.augment}, flip={self.flip}, "
            f"max_shift={self.max_shift})"
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Transform (B, 1 or 3, H, W) uint8 into (B, 3, S, S) float32."""
        images = resize_uint8(images, self.img_size)
        if self.augment:
            if self.max_shift:
                images = random_shift(images, self.max_shift)
            if self.flip:
                flipped = torch.rand(len(images)) < 0.5
                images[flipped] = images[flipped].flip(-1)
        return torch.addcmul(self._shift, images.float(), self._scale)


def list_transform(img_size: int, train: bool) -> transforms.Compose:
    """The paper's transform for list-file datasets (PIL image -> normalised tensor).

    Args:
        img_size: the crop side (224 in the paper); images are first resized
            so that their shorter side is ``img_size * 256 / 224``.
        train: RandomCrop + horizontal flip when True, CenterCrop otherwise.
    """
    crop = (
        [transforms.RandomCrop(img_size), transforms.RandomHorizontalFlip()]
        if train
        else [transforms.CenterCrop(img_size)]
    )
    return transforms.Compose(
        [
            transforms.Resize(round(img_size * 256 / 224)),
            *crop,
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_query_image(path, img_size: int, grey: bool = False, list_file: bool = False) -> torch.Tensor:
    """One image file as a (1, 3, S, S) batch, transformed as query and database images are.

    Args:
        path: an image file (anything PIL reads).
        img_size: the model's input side.
        grey: read it as grey (the datasets of grey images: Fashion-MNIST, digits).
        list_file: the dataset is a list-file one (NUS-WIDE, COCO, ImageNet):
            the paper's resize and centre crop; otherwise the in-memory
            datasets' resize of the whole image, at any size.
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("L" if grey else "RGB")
        if list_file:
            return list_transform(img_size, train=False)(image.convert("RGB")).unsqueeze(0)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    pixels = pixels.reshape(1, *pixels.shape[:2], -1).permute(0, 3, 1, 2)  # (1, C, H, W)
    return TensorTransform(img_size, augment=False, flip=False)(pixels)
