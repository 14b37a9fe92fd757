"""Where datasets live on disk, and the readers of the in-memory datasets.

A dataset folder ``<dirname>`` (``fashion-mnist``, ``cifar10``,
``nuswide_21``, ...) is looked up, in this order, in:

1. the ``root`` argument (the dataset folder itself);
2. ``$HH_DATA/<dirname>``;
3. ``data/<dirname>`` of the hhlib checkout (when hhlib runs from one);
4. ``data/<dirname>`` relative to the current directory;
5. system folders (Debian's ``/usr/share/datasets/fashion-mnist``).

The first folder that holds the expected files wins. Downloads (only with
``download=True``) go to the first folder of that list, run under a socket
timeout, and on failure remove what they wrote and raise
:class:`~hhlib.data.errors.DatasetNotFoundError` with instructions: never a
hang, never a silent half-download.

Pooled order (docs/DESIGN.md, "Protocols"): the official training images first,
then the test images; the protocols split that pool.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, FashionMNIST
from torchvision.datasets.utils import download_url

from hhlib.data.errors import DataFormatError, DatasetNotFoundError

REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DOWNLOAD_TIMEOUT_S = 30.0
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")

# IDX type codes (http://yann.lecun.com/exdb/mnist/), all big-endian.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def candidate_dirs(dirname: str, root: str | os.PathLike | None = None, system_dirs: Sequence[Path] = ()) -> list[Path]:
    """The folders searched for dataset ``dirname``, in order, without duplicates."""
    dirs = [] if root is None else [Path(root).expanduser()]
    if os.environ.get("HH_DATA"):
        dirs.append(Path(os.environ["HH_DATA"]).expanduser() / dirname)
    if (REPO_DATA_DIR.parent / "pyproject.toml").is_file():
        dirs.append(REPO_DATA_DIR / dirname)
    dirs += [Path.cwd() / "data" / dirname, *system_dirs]
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def find_root(
    dirname: str, root: str | os.PathLike | None, has_files: Callable[[Path], bool], system_dirs: Sequence[Path] = ()
) -> tuple[Path | None, list[Path]]:
    """Find the first candidate folder that holds a dataset.

    Args:
        dirname: the dataset's folder name.
        root: an explicit folder, searched first.
        has_files: True for a folder that holds the dataset's files.
        system_dirs: extra folders searched last.

    Returns:
        The folder found (or None) and the list of folders searched.
    """
    searched = candidate_dirs(dirname, root, system_dirs)
    return next((d for d in searched if has_files(d)), None), searched


def not_found_error(what: str, searched: Sequence[Path], how_to_get: str) -> DatasetNotFoundError:
    """A DatasetNotFoundError listing the folders searched and how to get the data."""
    folders = "\n".join(f"  {d}" for d in searched)
    return DatasetNotFoundError(f"{what} not found. Looked in:\n{folders}\n{how_to_get}")


def guarded_download(target: Path, fetch: Callable[[], None], what: str, how_to_get: str) -> None:
    """Run a download into ``target`` with a socket timeout; on failure undo it and explain.

    Raises:
        DatasetNotFoundError: when ``fetch`` fails (offline, timeout, bad
            checksum); files and folders it created in ``target`` are removed.
    """
    existed = target.exists()
    before = set(target.iterdir()) if existed else set()
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetch()
    except Exception as error:  # re-raised below with the instructions
        for created in (set(target.iterdir()) - before) if target.exists() else ():
            if created.is_dir():
                shutil.rmtree(created)
            else:
                created.unlink()
        if not existed and target.exists() and not any(target.iterdir()):
            target.rmdir()
        raise DatasetNotFoundError(
            f"could not download {what} into {target}: {type(error).__name__}: {error}\n{how_to_get}"
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzipped or not.

    Raises:
        DataFormatError: bad magic number, unknown type code, truncated data
            or trailing bytes, naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataFormatError(f"{path}: corrupt gzip data ({error})") from error
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DataFormatError(f"{path}: not an IDX file (magic number 0x{raw[:4].hex()})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header ({len(raw)} bytes, ndim {ndim})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataFormatError(f"{path}: {problem}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists."""
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def load_fashion_mnist(root: str | os.PathLike | None, download: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Fashion-MNIST's 60,000 training and 10,000 test images, pooled.

    Returns:
        (70000, 1, 28, 28) uint8 pixels and (70000,) int64 class ids.
    """

    def has_files(folder: Path) -> bool:
        return all(_idx_file(folder, stem) for stem in FASHION_MNIST_FILES)

    folder, searched = find_root("fashion-mnist", root, has_files, [FASHION_MNIST_SYSTEM_DIR])
    how_to_get = (
        "Install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or put\n"
        f"the four files {', '.join(f + '.gz' for f in FASHION_MNIST_FILES)}\n"
        f"from {FashionMNIST.mirrors[0]} into data/fashion-mnist/ (or $HH_DATA/fashion-mnist/),\n"
        "or call get_dataset('fashion-mnist', download=True) on a machine with internet access."
    )
    if folder is None:
        if not download:
            raise not_found_error("Fashion-MNIST", searched, how_to_get)
        folder = searched[0]

        def fetch() -> None:
            for filename, md5 in FashionMNIST.resources:
                download_url(FashionMNIST.mirrors[0] + filename, folder, filename, md5)

        guarded_download(folder, fetch, "Fashion-MNIST", how_to_get)

    pixels, labels = [], []
    for images_stem, labels_stem in (FASHION_MNIST_FILES[:2], FASHION_MNIST_FILES[2:]):
        images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
        images, classes = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFormatError(f"{images_path}: expected (n, H, W) uint8 images, got {images.shape} {images.dtype}")
        if classes.shape != (len(images),):
            raise DataFormatError(f"{labels_path}: {classes.shape} labels for {len(images)} images in {images_path}")
        pixels.append(images)
        labels.append(classes.astype(np.int64))
    return torch.from_numpy(np.concatenate(pixels)[:, None]), np.concatenate(labels)


def load_cifar10(root: str | os.PathLike | None, download: bool) -> tuple[torch.Tensor, np.ndarray]:
    """CIFAR-10's 50,000 training and 10,000 test images (torchvision's reader), pooled.

    ``root`` is the folder that contains ``cifar-10-batches-py``.

    Returns:
        (60000, 3, 32, 32) uint8 pixels and (60000,) int64 class ids.
    """

    def has_files(folder: Path) -> bool:
        return all((folder / CIFAR10_FOLDER / name).is_file() for name in CIFAR10_FILES)

    folder, searched = find_root("cifar10", root, has_files)
    how_to_get = (
        f"Download {CIFAR10.url} (163 MB), extract it (tar xzf {CIFAR10.filename})\n"
        f"and put the folder {CIFAR10_FOLDER}/ inside one of the folders above, e.g.\n"
        f"data/cifar10/{CIFAR10_FOLDER}/data_batch_1 (or set $HH_DATA so that "
        f"$HH_DATA/cifar10/{CIFAR10_FOLDER} exists);\n"
        "or, on a machine with internet access, run\n"
        "  python -c \"import hhlib.data as d; d.get_dataset('cifar10', download=True)\""
    )
    if folder is None:
        if not download:
            raise not_found_error(f"CIFAR-10 ({CIFAR10_FOLDER})", searched, how_to_get)
        folder = searched[0]
        guarded_download(folder, lambda: CIFAR10(str(folder), train=True, download=True), "CIFAR-10", how_to_get)
    try:
        parts = [CIFAR10(str(folder), train=train, download=False) for train in (True, False)]
    except RuntimeError as error:  # torchvision's checksum test failed
        raise DatasetNotFoundError(
            f"{folder / CIFAR10_FOLDER}: files present but corrupted or incomplete ({error}); "
            f"delete that folder and fetch it again.\n{how_to_get}"
        ) from error
    pixels = np.concatenate([part.data for part in parts])
    labels = np.concatenate([np.asarray(part.targets, dtype=np.int64) for part in parts])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), labels


def load_digits(root: str | os.PathLike | None = None, download: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn).

    ``root`` and ``download`` are accepted for a uniform loader signature and ignored.

    Returns:
        (1797, 1, 8, 8) uint8 pixels (the 0..16 intensities scaled to 0..255)
        and (1797,) int64 class ids.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import, only needed here

    digits = sklearn_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(pixels[:, None]), digits.target.astype(np.int64)
