"""Encoding at scale: a list file or a folder of any size streamed into a HammingIndex file, resumably.

:func:`encode_images` reads the images in order, in DataLoader workers that
decode and resize them to uint8 tensors; the main process moves each batch
to the model's device, normalises it there, encodes it and packs the codes.
Nothing grows with the number of images but files on disk (and, for a
folder, the names of its largest subfolder while it is sorted):

- the input is first scanned into a manifest beside the target
  (``OUT.partial/items.txt``: one path a line; ``offsets.bin``: where each
  line starts; ``labels.bin``: the 0/1 label rows of a list file), which the
  workers read by offset;
- the packed codes go chunk by chunk into ``OUT.partial/codes.npy`` (a
  ``.npy`` of uint8 (n, ceil(bits / 8)), written by position, fsynced), and
  after each chunk ``OUT.partial/progress.json`` records how many codes are
  done (written atomically, so a kill leaves the last finished chunk);
- the final file is assembled from those files in blocks and written
  through :func:`hhlib.checkpoint.atomic_write`; then the partial folder is
  removed.

Run again after a kill, the same command continues after the last finished
chunk when the partial was made by the same model (its
:func:`~hhlib.retrieval.model_fingerprint`), from the same input (source,
root, count and a digest of the paths) and the same preprocessing; a
partial of another model or input is refused with one line, and
``restart=True`` (CLI ``--restart``) discards any partial and starts over.

Inputs (docs/DESIGN.md, "Encoding at scale"):

- a list file in the list-file format (:mod:`hhlib.data.listfile`):
  ``path l_1 ... l_C`` a line, or just ``path`` (no labels); paths are
  relative to ``root`` (default: the list file's folder); ids are the
  positions of the non-blank lines;
- a folder: every file under it whose suffix PIL reads, recursively,
  ordered by path components (each folder's entries sorted by name, a
  subfolder's files at its name's place); names starting with a dot are
  skipped and folder links are not followed. Sorting holds the names of
  one folder at a time in memory: the bound is the largest folder, not
  the collection (a million names like IMG_0000001.jpg in one folder: 69 MiB).

Images are prepared as ``search`` prepares a query for the model's
dataset (:func:`hhlib.data.transforms.load_query_image`): for list-file
datasets the paper's resize of the shorter side and centre crop, otherwise
the whole image resized to the model's side; grey datasets read grey. With
``resize_on="worker"`` (the default) the pixels, and so the codes, equal
those of the in-memory path (:func:`hhlib.train.encode` on a
:class:`~hhlib.data.listfile.ListFileDataset`) bit for bit;
``resize_on="device"`` resizes on the model's device instead (torch's
antialiased resize, within a grey level or so of PIL's).

The index file is the one :meth:`hhlib.index.HammingIndex.save` writes
(``format_version``, ``bits``, ``codes``, ``metadata``) plus a member
``paths`` (the manifest's bytes: one UTF-8 path a line, in id order;
:func:`index_paths` reads it), which :meth:`~hhlib.index.HammingIndex.load`
ignores. Its metadata has the keys of
:func:`hhlib.retrieval.index_metadata` and ``source``, ``source_kind``,
``root`` and ``preprocess``; ``dataset`` is the model's dataset, whose
preparation the images got. The zip entries carry a fixed date, so equal
inputs make byte-identical files.

    from hhlib.stream import encode_images
    model, state = load_model("runs/fmnist/bits64/checkpoint.pt")
    result = encode_images(model, "photos/", "photos.npz", dataset=state["dataset"])
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import struct
import tempfile
import time
import zipfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm.auto import tqdm

from hhlib.checkpoint import atomic_write, write_json
from hhlib.data.errors import DataFormatError, DatasetNotFoundError, ImageDecodeError
from hhlib.data.listfile import read_class_names
from hhlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_uint8
from hhlib.hamming import pack_codes
from hhlib.index import FORMAT_VERSION
from hhlib.retrieval import model_fingerprint
from hhlib.train import _amp_dtype, _autocast, encode_batch_size, resolve_device

__all__ = [
    "DEFAULT_CHUNK",
    "IMAGE_SUFFIXES",
    "PartialMismatchError",
    "Preprocess",
    "StreamResult",
    "encode_images",
    "image_batches",
    "index_paths",
    "partial_dir",
    "preprocess_for",
    "stream_workers",
]

# 1: progress.json as written by this module (see encode_images).
STREAM_FORMAT = 1
# Images per chunk: codes are fsynced and progress recorded after each, so a kill loses less than one chunk.
DEFAULT_CHUNK = 4096
# The file suffixes a folder scan takes: those PIL registers a reader for.
IMAGE_SUFFIXES = frozenset(suffix.lower() for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
_FLUSH_ROWS = 8192  # manifest rows buffered before they are written; label rows read at a time at the end
_COPY_BLOCK = 1 << 20  # bytes copied at a time into the final file
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # a fixed entry date: equal inputs give byte-identical index files


class PartialMismatchError(ValueError):
    """A partial encoding beside the target was made by another model, input or preprocessing."""


@dataclass(frozen=True)
class Preprocess:
    """How an image file becomes model input.

    Attributes:
        img_size: the model's input side S.
        crop: the list-file datasets' preparation (shorter side resized to
            round(S * 256 / 224), centre crop S, normalised as torchvision's
            ToTensor + Normalize); otherwise the whole image is resized to
            S x S (as :class:`hhlib.data.transforms.TensorTransform`).
        grey: read the image as grey (one channel, normalised to three).
        resize_on: ``"worker"`` (the DataLoader workers resize, with PIL or
            :func:`~hhlib.data.transforms.resize_uint8`) or ``"device"``
            (workers decode only; the model's device resizes).
    """

    img_size: int
    crop: bool
    grey: bool = False
    resize_on: str = "worker"

    def __post_init__(self) -> None:
        if self.resize_on not in ("worker", "device"):
            raise ValueError(f"resize_on must be 'worker' or 'device', got {self.resize_on!r}")

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3


def preprocess_for(model: torch.nn.Module, dataset: str | None, resize_on: str = "worker") -> Preprocess:
    """The preparation ``search`` gives a query image for a model trained on ``dataset`` (None: unknown)."""
    from hhlib.data import DATASETS

    info = DATASETS.get(dataset) if dataset is not None else None
    crop = bool(info is not None and info.loader is None)
    return Preprocess(int(model.config.img_size), crop, bool(info is not None and info.grey), resize_on)


def stream_workers(device: torch.device) -> int:
    """Decoding workers by default: up to 8 beside a GPU, else one core in two (the rest run the model)."""
    cpus = os.cpu_count() or 1
    return min(8, cpus) if device.type == "cuda" else max(1, min(4, cpus // 2))


def partial_dir(out: str | os.PathLike) -> Path:
    """The folder beside ``out`` that holds an unfinished encoding of it."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


@dataclass
class StreamResult:
    """What :func:`encode_images` did.

    Attributes:
        path: the index file written.
        count: codes in it.
        resumed_from: codes a partial held when this run started (0: a fresh run).
        seconds: time this run spent encoding (not scanning or writing the file).
        images_per_second: images this run encoded per second of ``seconds``.
    """

    path: Path
    count: int
    resumed_from: int
    seconds: float
    images_per_second: float


# --------------------------------------------------------------------------- the manifest


@dataclass
class _Manifest:
    kind: str  # "list" or "folder"
    source: Path
    root: Path
    count: int
    items: str  # sha256[:16] of the newline-joined paths, as hhlib.retrieval names a split's items
    label_width: int  # 0: no labels
    class_names: tuple[str, ...]
    folder: Path  # where items.txt, offsets.bin and labels.bin are

    def identity(self) -> dict:
        return {
            "kind": self.kind,
            "source": str(self.source),
            "root": str(self.root),
            "count": self.count,
            "items": self.items,
        }


class _ManifestWriter:
    """Appends paths (and label rows) to the manifest files, hashing the paths as it goes."""

    def __init__(self, items: IO[bytes], offsets: IO[bytes], labels: IO[bytes]) -> None:
        self.items, self.offsets, self.labels = items, offsets, labels
        self.digest = hashlib.sha256()
        self.count = 0
        self.position = 0
        self._offsets = array("q", [0])

    def add(self, path: str, labels: bytes = b"") -> None:
        raw = os.fsencode(path)
        if b"\n" in raw:
            raise DataFormatError(f"{path!r}: a path with a line break cannot be listed")
        if self.count:
            self.digest.update(b"\n")
        self.digest.update(raw)
        self.items.write(raw + b"\n")
        self.labels.write(labels)
        self.position += len(raw) + 1
        self._offsets.append(self.position)
        self.count += 1
        if len(self._offsets) >= _FLUSH_ROWS:
            self.offsets.write(self._offsets.tobytes())
            self._offsets = array("q")

    def finish(self) -> None:
        self.offsets.write(self._offsets.tobytes())


def _scan(source: Path, root: Path | None, folder: Path) -> _Manifest:
    """Write the manifest of a list file or an image folder into ``folder``."""
    if source.is_dir():
        kind, base, width, names = "folder", source.resolve(), 0, ()
    elif source.is_file():
        kind, base = "list", (root if root is not None else source.parent).resolve()
    else:
        raise DatasetNotFoundError(f"no list file or image folder at {source}")
    if root is not None and not root.is_dir():
        raise DatasetNotFoundError(f"--root {root} is not a folder")
    with (
        open(folder / "items.txt", "wb") as items,
        open(folder / "offsets.bin", "wb") as offsets,
        open(folder / "labels.bin", "wb") as labels,
    ):
        writer = _ManifestWriter(items, offsets, labels)
        if kind == "folder":
            for path in _walk(base):
                writer.add(path)
            if not writer.count:
                raise DatasetNotFoundError(f"{source}: no image files (suffixes PIL reads: .jpg, .png, ...) under it")
        else:
            width = _scan_list(source, base, writer)
            names = read_class_names(source.parent, width) if width else ()
        writer.finish()
    return _Manifest(kind, source.resolve(), base, writer.count, writer.digest.hexdigest()[:16], width, names, folder)


def _scan_list(path: Path, root: Path, writer: _ManifestWriter) -> int:
    """Parse a list file line by line into ``writer``; the label width (0: paths only)."""
    width, missing, first_missing = None, 0, None
    bits = {"0": b"\x00", "1": b"\x01"}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if width is None:
                width = len(tokens) - 1
            if len(tokens) - 1 != width:
                raise DataFormatError(
                    f"{path}:{number}: {len(tokens) - 1} labels, expected {width} like the first entry "
                    "(a path, then one 0/1 per class or none)"
                )
            row = [bits.get(token) for token in tokens[1:]]
            if None in row:
                raise DataFormatError(
                    f"{path}:{number}: label values must be 0 or 1, got {tokens[1 + row.index(None)]!r}"
                )
            if not os.path.isfile(os.path.join(root, tokens[0])):  # not pathlib: it interns every name it parses
                missing += 1
                first_missing = first_missing or (number, os.path.join(root, tokens[0]))
            writer.add(tokens[0], b"".join(row))
    if width is None:
        raise DataFormatError(f"{path}: empty list file (no 'path [0 1 ...]' lines)")
    if missing:
        number, image = first_missing
        raise DatasetNotFoundError(
            f"{path}: {missing} of {writer.count} listed images are missing, the first at line {number}: {image}"
        )
    return width


def _walk(folder: Path, relative: str = "") -> Iterator[str]:
    """Image files under ``folder``, relative to it, ordered by path components; no dot names, no folder links."""
    here = os.path.join(folder, relative)
    for name in sorted(os.listdir(here)):
        if name.startswith("."):
            continue
        full = os.path.join(here, name)
        mode = os.lstat(full).st_mode
        if stat.S_ISDIR(mode):
            yield from _walk(folder, f"{relative}{name}/")
        elif os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and os.path.isfile(full):
            yield relative + name


# --------------------------------------------------------------------------- reading images in workers


class _Images(Dataset):
    """Items ``start``.. of a manifest as (uint8 pixels, id, error message or "").

    Paths are read by offset from the manifest files (no list of them is
    held); an image that fails to decode gives zeros and a message, which
    the main process raises, so the error is one line.
    """

    def __init__(self, manifest: _Manifest, preprocess: Preprocess, start: int) -> None:
        self.folder, self.root, self.count, self.start = manifest.folder, manifest.root, manifest.count, start
        self.source = manifest.source
        self.preprocess = preprocess
        self._files: tuple[int, int] | None = None  # opened in the process that reads, after a worker's fork
        side = round(preprocess.img_size * 256 / 224)
        self._crop = transforms.Compose([transforms.Resize(side), transforms.CenterCrop(preprocess.img_size)])

    def __len__(self) -> int:
        return self.count - self.start

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": None}

    def path(self, i: int) -> str:
        if self._files is None:
            self._files = (
                os.open(self.folder / "items.txt", os.O_RDONLY),
                os.open(self.folder / "offsets.bin", os.O_RDONLY),
            )
        items, offsets = self._files
        begin, end = struct.unpack("<qq", os.pread(offsets, 16, 8 * i))
        return os.fsdecode(os.pread(items, end - begin - 1, begin))

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, str]:
        i = self.start + k
        path = self.path(i)
        try:
            return self._read(os.path.join(self.root, path)), i, ""  # os.path: pathlib interns each name
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            side = self.preprocess.img_size
            return (
                torch.zeros(self.preprocess.channels, side, side, dtype=torch.uint8),
                i,
                (f"{self.source}: item {i}: cannot read image {os.path.join(self.root, path)}: {first}"),
            )

    def _read(self, path: str) -> torch.Tensor:
        pre = self.preprocess
        with Image.open(path) as image:
            image = image.convert("L" if pre.grey else "RGB")
            if pre.crop and pre.resize_on == "worker":
                image = self._crop(image)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        pixels = pixels.reshape(*pixels.shape[:2], -1).permute(2, 0, 1).contiguous()  # (C, H, W)
        if not pre.crop and pre.resize_on == "worker":
            pixels = resize_uint8(pixels[None], pre.img_size)[0]
        return pixels


def _collate_list(batch: list) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """Batches of images of different sizes (resized later, on the device): a list of tensors."""
    pixels, ids, errors = zip(*batch)
    return list(pixels), torch.tensor(ids), list(errors)


class _Prepare:
    """uint8 batches -> normalised float32 (B, 3, S, S) on ``device``, as the in-memory path makes them.

    The crop preparation repeats ToTensor + Normalize (x / 255, minus the
    mean, over the std); the whole-image one TensorTransform's single
    multiply-add, with its constants computed on the CPU: on a CPU the
    results are the same floats.
    """

    def __init__(self, preprocess: Preprocess, device: torch.device) -> None:
        self.preprocess, self.device = preprocess, device
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.mean, self.std = mean.to(device), std.to(device)
        self.scale, self.shift = (1.0 / (255.0 * std)).to(device), (-mean / std).to(device)
        self._side = round(preprocess.img_size * 256 / 224)

    def __call__(self, pixels: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(pixels, list):
            pixels = torch.stack([self._resize(p.to(self.device, non_blocking=True)) for p in pixels])
        else:
            pixels = pixels.to(self.device, non_blocking=True)
        if self.preprocess.crop:
            return pixels.float().div(255).sub(self.mean).div(self.std)
        return torch.addcmul(self.shift, pixels.float(), self.scale)

    def _resize(self, pixels: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        size = self.preprocess.img_size
        if self.preprocess.crop:
            return TF.center_crop(TF.resize(pixels, self._side, antialias=True), [size, size])
        if pixels.shape[-2:] == (size, size):
            return pixels
        resized = F.interpolate(pixels[None].float(), size=(size, size), mode="bilinear", antialias=True)
        return resized[0].round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- the partial encoding


def _skip_npy_header(handle: IO[bytes]) -> None:
    """Read past a .npy header, so that the array's bytes come next."""
    if np.lib.format.read_magic(handle) == (1, 0):
        np.lib.format.read_array_header_1_0(handle)
    else:
        np.lib.format.read_array_header_2_0(handle)


def _npy_data_offset(path: Path) -> int:
    with open(path, "rb") as handle:
        _skip_npy_header(handle)
        return handle.tell()


def _resume_point(work: Path, wanted: dict, restart: bool, say: Callable[[str], None]) -> int:
    """Codes already done in ``work`` for ``wanted``; 0 after (re)creating the codes file. Refuses a mismatch."""
    progress, codes = work / "progress.json", work / "codes.npy"
    if progress.is_file() and not restart:
        try:
            state = json.loads(progress.read_text())
            done = int(state["done"])
        except (ValueError, KeyError, TypeError):
            raise PartialMismatchError(
                f"{progress} is not an hhlib progress file: pass --restart to discard it"
            ) from None
        _check_same(work, state, wanted)
        expected = wanted["count"] * -(-wanted["bits"] // 8)
        if (
            codes.is_file()
            and codes.stat().st_size == _npy_data_offset(codes) + expected
            and 0 <= done <= wanted["count"]
        ):
            if done:
                say(f"resuming {work}: {done} of {wanted['count']} codes were done")
            return done
        say(f"{work}: the codes file does not match its progress; starting over")
    elif progress.is_file():
        say(f"--restart: discarding {work}")
    progress.unlink(missing_ok=True)
    shape = (wanted["count"], -(-wanted["bits"] // 8))
    del_me = np.lib.format.open_memmap(codes, mode="w+", dtype=np.uint8, shape=shape)
    del del_me  # the header and a sparse body: written by position from now on
    write_json(progress, {**wanted, "done": 0})
    return 0


def _check_same(work: Path, state: dict, wanted: dict) -> None:
    hint = "pass --restart to discard it (or delete the folder)"
    if state.get("format") != STREAM_FORMAT:
        raise PartialMismatchError(f"{work} was written by another hhlib (format {state.get('format')!r}): {hint}")
    if state.get("model") != wanted["model"] or state.get("bits") != wanted["bits"]:
        raise PartialMismatchError(
            f"{work} holds codes of another model ({state.get('checkpoint') or 'unnamed'}, fingerprint "
            f"{state.get('model')}, {state.get('bits')} bits; this model's is {wanted['model']}, "
            f"{wanted['bits']} bits): {hint}"
        )
    recorded, now = state.get("input") or {}, wanted["input"]
    changed = [key for key in now if recorded.get(key) != now[key]]
    if changed:
        was = ", ".join(f"{key} {recorded.get(key)!r}" for key in changed)
        new = ", ".join(f"{now[key]!r}" for key in changed)
        raise PartialMismatchError(f"{work} holds codes of another input ({was}; now {new}): {hint}")
    if state.get("preprocess") != wanted["preprocess"]:
        raise PartialMismatchError(
            f"{work} holds codes of images prepared otherwise ({state.get('preprocess')}; now {wanted['preprocess']}): "
            f"{hint}"
        )


# --------------------------------------------------------------------------- the final file


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16
    return info


def _write_member(archive: zipfile.ZipFile, name: str, header: dict, chunks: Iterator[bytes]) -> None:
    with archive.open(_zip_entry(name), "w", force_zip64=True) as member:
        if len(repr(header)) < 60000:  # a version 1.0 header holds up to 65535 bytes
            np.lib.format.write_array_header_1_0(member, header)
        else:
            np.lib.format.write_array_header_2_0(member, header)
        for chunk in chunks:
            member.write(chunk)


def _file_blocks(path: Path, offset: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        while block := handle.read(_COPY_BLOCK):
            yield block


def _label_pieces(folder: Path, count: int, width: int) -> Iterator[str]:
    """The JSON of the class ids of every item (as hhlib.retrieval records them), in pieces, from labels.bin."""
    if not width:
        yield "[]"
        return
    rows = np.memmap(folder / "labels.bin", dtype=np.uint8, mode="r", shape=(count, width))
    single = all(np.all(rows[start : start + _FLUSH_ROWS].sum(1) == 1) for start in range(0, count, _FLUSH_ROWS))
    yield "["
    for start in range(0, count, _FLUSH_ROWS):
        block = np.array(rows[start : start + _FLUSH_ROWS])
        ids = block.argmax(1).tolist() if single else [np.flatnonzero(row).tolist() for row in block]
        yield ("" if start == 0 else ", ") + json.dumps(ids)[1:-1]
    yield "]"
    del rows


def _metadata_pieces(base: dict, manifest: _Manifest) -> Callable[[], Iterator[str]]:
    marker = '"@labels@"'
    head, tail = json.dumps({**base, "labels": "@labels@"}).split(marker)

    def pieces() -> Iterator[str]:
        yield head
        yield from _label_pieces(manifest.folder, manifest.count, manifest.label_width)
        yield tail

    return pieces


def _write_index(out: Path, bits: int, manifest: _Manifest, codes: Path, metadata: dict) -> Path:
    """The HammingIndex file at ``out``, atomically, copied from the partial files in blocks."""
    pieces = _metadata_pieces(metadata, manifest)
    characters = sum(len(piece) for piece in pieces())
    width = -(-bits // 8)

    def write(handle: IO[bytes]) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in (("format_version", FORMAT_VERSION), ("bits", bits)):
                scalar = {"descr": np.dtype(np.int64).str, "fortran_order": False, "shape": ()}
                _write_member(archive, name, scalar, iter([np.int64(value).tobytes()]))
            header = {"descr": "|u1", "fortran_order": False, "shape": (manifest.count, width)}
            _write_member(archive, "codes", header, _file_blocks(codes, _npy_data_offset(codes)))
            header = {"descr": f"<U{characters}", "fortran_order": False, "shape": ()}
            _write_member(archive, "metadata", header, (piece.encode("utf-32-le") for piece in pieces()))
            items = manifest.folder / "items.txt"
            header = {"descr": "|u1", "fortran_order": False, "shape": (items.stat().st_size,)}
            _write_member(archive, "paths", header, _file_blocks(items))

    return atomic_write(out, write)


def index_paths(path: str | os.PathLike, ids: Sequence[int] | None = None) -> list[str]:
    """Image paths of an index file :func:`encode_images` wrote (relative to its ``root``): all, or those of ``ids``.

    The file's ``paths`` member is read in blocks, so asking for a few ids of
    a large index holds a block, not every path.
    """
    if ids is not None and len(ids) == 0:
        return []
    wanted = None if ids is None else sorted(set(int(i) for i in ids))
    found: dict[int, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        if "paths.npy" not in archive.namelist():
            raise ValueError(f"{path} holds no paths (it was not written by hhlib.stream.encode_images)")
        with archive.open("paths.npy") as member:
            _skip_npy_header(member)
            line, rest, left = 0, b"", list(reversed(wanted or []))  # left: the ids still to find, smallest last
            while block := member.read(_COPY_BLOCK):
                text = rest + block
                cut = text.rfind(b"\n") + 1
                count, rest = text.count(b"\n", 0, cut), text[cut:]
                if wanted is None or (left and left[-1] < line + count):  # split only blocks holding a wanted id
                    for offset, item in enumerate(text[:cut].split(b"\n")[:-1]):
                        if wanted is None or (left and left[-1] == line + offset):
                            found[line + offset] = item
                            if left:
                                left.pop()
                line += count
                if wanted is not None and not left:
                    break
    if wanted is not None and left:
        raise ValueError(f"{path} holds {line} paths; no id {left[-1]}")
    order = range(line) if ids is None else ids
    return [os.fsdecode(found[int(i)]) for i in order]


# --------------------------------------------------------------------------- encoding


@torch.no_grad()
def encode_images(
    model: torch.nn.Module,
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    preprocess: Preprocess | None = None,
    resize_on: str = "worker",
    batch_size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    device=None,
    workers: int | None = None,
    amp: str = "auto",
    progress: bool = True,
    restart: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> StreamResult:
    """Encode every image of a list file or folder into the HammingIndex file ``out``, streaming and resumably.

    Args:
        model: the hashing model (``config.bits``, ``config.img_size``, ``quantizer``).
        source: a list file (``path [l_1 ... l_C]`` lines) or a folder of images.
        out: the index file to write (.npz); ``OUT.partial/`` beside it
            holds the work until it is written.
        checkpoint: the checkpoint the model came from, recorded in the metadata.
        dataset: the dataset the model was trained on: it chooses the
            preparation (:func:`preprocess_for`) and is recorded.
        root: the folder a list file's paths are relative to (default: its folder).
        preprocess: the preparation, in place of the one ``dataset`` chooses.
        resize_on: ``"worker"`` or ``"device"`` (see :class:`Preprocess`).
        batch_size: images per forward pass (None: :func:`hhlib.train.encode_batch_size`).
        chunk_size: images between two progress records, rounded up to whole batches.
        device: where the model runs (None or "auto": CUDA when available).
        workers: DataLoader workers that decode and resize (None: :func:`stream_workers`; 0: in this process).
        amp: precision, as :func:`hhlib.train.encode` takes it.
        progress: show a progress bar (tqdm.auto).
        restart: discard any partial and start over (without it: continue a partial of the same model,
            input and preparation, refuse one of another).
        on_chunk: called as ``on_chunk(done, count)`` after each chunk is recorded.
        say: where notes go (resuming, discarding); default: nowhere.

    Raises:
        DatasetNotFoundError: no list file or folder, listed images missing, a folder without images.
        DataFormatError: a malformed list file; :class:`ImageDecodeError` for an image that does not decode.
        PartialMismatchError: ``OUT.partial`` holds codes of another model, input or preparation.
    """
    say = say or (lambda text: None)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    device = resolve_device(device)
    batch_size = batch_size or encode_batch_size(device)
    chunk = -(-chunk_size // batch_size) * batch_size
    workers = stream_workers(device) if workers is None else workers
    dtype = _amp_dtype(amp, device)
    preprocess = preprocess or preprocess_for(model, dataset, resize_on)
    out, bits = Path(out), int(model.config.bits)

    work = partial_dir(out)
    fresh = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _scan(Path(source), Path(root) if root is not None else None, work)
    except BaseException:
        if fresh:  # a source that cannot be read leaves nothing behind
            shutil.rmtree(work, ignore_errors=True)
        raise
    fingerprint = model_fingerprint(model)
    wanted = {
        "format": STREAM_FORMAT,
        "model": fingerprint,
        "bits": bits,
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        "input": manifest.identity(),
        "preprocess": asdict(preprocess),
        "count": manifest.count,
    }
    done = start = _resume_point(work, wanted, restart, say)

    codes_file = work / "codes.npy"
    offset = _npy_data_offset(codes_file)
    began = time.perf_counter()
    if done < manifest.count:
        done = _encode_rest(
            model, manifest, preprocess, done, codes_file, offset, wanted,
            batch_size=batch_size, chunk=chunk, device=device, workers=workers, dtype=dtype,
            progress=progress, on_chunk=on_chunk,
        )  # fmt: skip
    seconds = time.perf_counter() - began

    metadata = {
        "checkpoint": wanted["checkpoint"],
        "model": fingerprint,
        "bits": bits,
        "dataset": dataset,
        "split": None,
        "split_seed": None,
        "limit": None,
        "count": manifest.count,
        "items": manifest.items,
        "class_names": list(manifest.class_names),
        "source": str(manifest.source),
        "source_kind": manifest.kind,
        "root": str(manifest.root),
        "preprocess": asdict(preprocess),
        "paths": "the member 'paths' of this file: one UTF-8 path a line, in id order, relative to root",
    }
    path = _write_index(out, bits, manifest, codes_file, metadata)
    shutil.rmtree(work)
    encoded = manifest.count - start
    return StreamResult(path, manifest.count, start, seconds, encoded / seconds if seconds > 0 else 0.0)


def image_batches(
    source: str | os.PathLike,
    preprocess: Preprocess,
    device=None,
    *,
    root: str | os.PathLike | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    prepared: bool = True,
) -> Iterator[torch.Tensor | list[torch.Tensor]]:
    """A list file or folder as the model-input batches :func:`encode_images` feeds the model, in id order.

    For measuring the input pipeline apart from the model (``bench/bench_stream.py``).
    ``prepared=False`` stops at what the workers hand over: uint8 pixels,
    a list of differently sized images when the device resizes.
    """
    device = resolve_device(device)
    workers = stream_workers(device) if workers is None else workers
    with tempfile.TemporaryDirectory(prefix="hhlib-manifest-") as folder:
        manifest = _scan(Path(source), Path(root) if root is not None else None, Path(folder))
        yield from _batches(manifest, preprocess, 0, batch_size, workers, device, prepared)


def _batches(
    manifest: _Manifest,
    preprocess: Preprocess,
    start: int,
    batch_size: int,
    workers: int,
    device: torch.device,
    prepared: bool = True,
) -> Iterator[torch.Tensor | list[torch.Tensor]]:
    """Items ``start``.. as normalised (B, 3, S, S) batches on ``device``: decoded (and resized) in the workers."""
    loader = DataLoader(
        _Images(manifest, preprocess, start),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=_collate_list if preprocess.resize_on == "device" else None,
    )
    prepare = _Prepare(preprocess, device)
    for pixels, _, errors in loader:
        bad = next((error for error in errors if error), None)
        if bad is not None:
            raise ImageDecodeError(bad)
        yield prepare(pixels) if prepared else pixels


def _encode_rest(
    model: torch.nn.Module,
    manifest: _Manifest,
    preprocess: Preprocess,
    done: int,
    codes_file: Path,
    offset: int,
    wanted: dict,
    *,
    batch_size: int,
    chunk: int,
    device: torch.device,
    workers: int,
    dtype: torch.dtype | None,
    progress: bool,
    on_chunk: Callable[[int, int], None] | None,
) -> int:
    """Encode items ``done``.. into ``codes_file``, a chunk at a time; the count done at the end."""
    bits, count = int(model.config.bits), manifest.count
    width = -(-bits // 8)
    was_training = model.training
    model.eval().to(device)
    channels_last = device.type == "cuda"
    pending: list[np.ndarray] = []
    handle = os.open(codes_file, os.O_RDWR)
    bar = tqdm(total=count, initial=done, unit="img", desc=f"encode {manifest.source.name}", disable=not progress)
    try:
        for batch in _batches(manifest, preprocess, done, batch_size, workers, device):
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with _autocast(device, dtype):
                u = model(batch)
            pending.append(pack_codes(model.quantizer(u).to(torch.int8).cpu(), bits)[0])
            bar.update(len(pending[-1]))
            rows = sum(len(part) for part in pending)
            if rows >= chunk or done + rows == count:
                block = np.concatenate(pending)
                os.pwrite(handle, block.tobytes(), offset + done * width)
                os.fsync(handle)
                done += len(block)
                pending = []
                write_json(codes_file.with_name("progress.json"), {**wanted, "done": done})
                if on_chunk is not None:
                    on_chunk(done, count)
    finally:
        bar.close()
        os.close(handle)
        model.train(was_training)
    return done
