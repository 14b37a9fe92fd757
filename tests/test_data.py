"""Tests of hhlib.data: protocols (docs/DESIGN.md, "Protocols"), datasets and their error messages.

Synthetic labels of the real sizes check every protocol; Fashion-MNIST is
read from the Debian files when present (skipped otherwise); list-file
datasets and bad inputs are written to temporary folders. Nothing here
touches the network.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import hhlib.data as data
from hhlib.data import (
    DataFormatError,
    DatasetNotFoundError,
    ImageDecodeError,
    Split,
    SplitMismatchError,
    get_dataset,
    sources,
    split_protocol,
)
from hhlib.data.transforms import TensorTransform, random_shift

REPO = Path(__file__).resolve().parents[1]

# protocol -> (images per class, query, train, database, database relation)
PROTOCOL_TABLE = {
    "cifar10": (6000, 1000, 5000, 54000, "disjoint"),
    "cifar10-1": (6000, 1000, 5000, 59000, "train inside"),
    "cifar10-2": (6000, 10000, 50000, 50000, "equals train"),
    "fashion-mnist": (7000, 1000, 5000, 64000, "disjoint"),
}


def shuffled_labels(per_class: int, num_classes: int = 10, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def class_counts(labels: np.ndarray, indices: np.ndarray, num_classes: int = 10) -> np.ndarray:
    return np.bincount(labels[indices], minlength=num_classes)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dataset folder outside tmp_path is searched: $HH_DATA, the checkout's data/ and the CWD."""
    monkeypatch.setenv("HH_DATA", str(tmp_path / "hh_data"))
    monkeypatch.setattr(sources, "REPO_DATA_DIR", tmp_path / "no_checkout" / "data")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


# --------------------------------------------------------------------------- protocols


@pytest.mark.parametrize("protocol", PROTOCOL_TABLE)
def test_protocol_sizes_balance_and_overlap(protocol: str) -> None:
    per_class, n_query, n_train, n_database, relation = PROTOCOL_TABLE[protocol]
    labels = shuffled_labels(per_class)
    split = split_protocol(labels, protocol, seed=0)
    assert (len(split.query), len(split.train), len(split.database)) == (n_query, n_train, n_database)
    for part in (split.query, split.train, split.database):
        assert part.dtype == np.int64 and len(np.unique(part)) == len(part)
    assert (class_counts(labels, split.query) == n_query // 10).all()
    assert (class_counts(labels, split.train) == n_train // 10).all()
    assert not set(split.query) & (set(split.train) | set(split.database))
    train, database = set(split.train), set(split.database)
    if relation == "disjoint":
        assert not train & database
        assert len(split.query) + len(split.train) + len(split.database) == len(labels)
    elif relation == "train inside":
        assert train < database and len(split.query) + len(database) == len(labels)
    else:
        assert train == database


def test_digits_protocol_on_the_real_labels() -> None:
    from sklearn.datasets import load_digits

    labels = load_digits().target
    split = split_protocol(labels, "digits", seed=0)
    assert (len(split.query), len(split.train), len(split.database)) == (200, 500, 1097)
    assert (class_counts(labels, split.query) == 20).all() and (class_counts(labels, split.train) == 50).all()
    assert len(set(split.query) | set(split.train) | set(split.database)) == len(labels)


def test_multilabel_protocol_gives_every_class_its_quota() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((16000, 21)) < 0.08).astype(np.uint8)
    labels[np.arange(16000), rng.integers(0, 21, 16000)] = 1  # at least one class each
    split = split_protocol(labels, "nuswide_21", seed=3)
    assert (len(split.query), len(split.train), len(split.database)) == (2100, 10500, 16000 - 2100)
    assert (labels[split.query].sum(0) >= 100).all() and (labels[split.train].sum(0) >= 500).all()
    assert set(split.train) < set(split.database) and not set(split.query) & set(split.database)


def test_split_is_deterministic_for_a_seed_and_order_is_class_mixed() -> None:
    labels = shuffled_labels(6000)
    a, b, c = (split_protocol(labels, "cifar10", seed) for seed in (5, 5, 6))
    for part in ("query", "train", "database"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
        assert not np.array_equal(getattr(a, part), getattr(c, part))
    assert len(np.unique(labels[a.query[:50]])) >= 8  # a prefix mixes classes


def test_split_arrays_are_read_only() -> None:
    split = split_protocol(shuffled_labels(200), "digits")
    with pytest.raises(ValueError):
        split.query[0] = 1


def test_split_save_load_and_checksum(tmp_path: Path) -> None:
    labels = shuffled_labels(6000)
    split = split_protocol(labels, "cifar10-1", seed=2)
    path = split.save(tmp_path / "splits" / "cifar10-1.seed2")  # no .npz suffix added
    assert path.is_file() and path.name == "cifar10-1.seed2"
    loaded = Split.load(path, labels)
    assert (loaded.protocol, loaded.seed) == ("cifar10-1", 2)
    for part in ("query", "train", "database"):
        np.testing.assert_array_equal(getattr(loaded, part), getattr(split, part))
    Split.load(path, np.eye(10, dtype=np.float32)[labels])  # one-hot rows are the same labels
    other = labels.copy()
    other[:2] = other[1::-1] if other[0] != other[1] else (other[:2] + 1) % 10
    with pytest.raises(SplitMismatchError, match="other labels"):
        Split.load(path, other)
    with pytest.raises(SplitMismatchError):
        loaded.verify(labels[:-1])


def test_split_load_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match="notes.txt"):
        Split.load(tmp_path / "notes.txt")
    np.savez(tmp_path / "other.npz", query=np.arange(3))
    with pytest.raises(DataFormatError, match="other.npz"):
        Split.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        Split.load(tmp_path / "absent.npz")


def test_protocol_errors() -> None:
    with pytest.raises(ValueError, match="known protocols: .*cifar10-2.*fashion-mnist"):
        split_protocol(shuffled_labels(10), "cifar-10")
    labels = shuffled_labels(6000)
    labels[labels == 3] = 4
    labels[:420] = 3
    with pytest.raises(ValueError, match="class 3 has only 420 images"):
        split_protocol(labels, "cifar10")
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        split_protocol(np.arange(100), "digits")
    with pytest.raises(ValueError, match="label matrix"):
        split_protocol(np.zeros((100, 7)), "digits")


# --------------------------------------------------------------------------- in-memory datasets


@pytest.fixture(scope="module")
def fashion() -> data.RetrievalData:
    try:
        return get_dataset("fashion-mnist", download=False)
    except DatasetNotFoundError as error:
        pytest.skip(f"Fashion-MNIST files absent (apt-get install dataset-fashion-mnist): {error}")


def test_fashion_mnist_protocol_and_items(fashion: data.RetrievalData) -> None:
    assert (len(fashion.query), len(fashion.train), len(fashion.database)) == (1000, 5000, 64000)
    assert (fashion.num_classes, fashion.topk, fashion.img_size) == (10, None, 32)
    assert fashion.class_names[9] == "Ankle boot" and fashion.split.protocol == "fashion-mnist"
    for part in (fashion.query, fashion.train, fashion.database):
        assert part.labels.shape == (len(part), 10) and (part.labels.sum(1) == 1).all()
    assert (fashion.query.labels.sum(0) == 100).all() and (fashion.train.labels.sum(0) == 500).all()
    image, label_vector, index = fashion.database[63999]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label_vector.dtype == torch.float32 and index == 63999
    np.testing.assert_array_equal(label_vector.numpy(), fashion.database.labels[63999])
    # grey replicated then ImageNet-normalised: background pixels are black.
    assert image[0, 0, 0] == pytest.approx(-0.485 / 0.229, abs=1e-5)
    assert fashion.database.raw_image(0).shape == (32, 32, 3)


def _shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, C, H, W) moved by dy rows and dx columns, zeros coming in."""
    m = max(abs(dy), abs(dx), 1)
    padded = torch.nn.functional.pad(images, (m,) * 4)
    h, w = images.shape[-2:]
    return padded[..., m - dy : m - dy + h, m - dx : m - dx + w]


def test_fashion_mnist_trains_on_small_shifts_and_flips(fashion: data.RetrievalData) -> None:
    transform = fashion.train.transform
    assert transform.augment and transform.flip and transform.max_shift == 2  # 1/16 of 32 px
    assert not fashion.query.transform.augment
    pixels = fashion.train._pixels[fashion.train._rows[:32]]
    plain = TensorTransform(32, augment=False, flip=False)
    torch.manual_seed(0)
    views = transform(pixels.clone())
    found = torch.zeros(len(pixels), dtype=torch.bool)
    moves = set()
    for mirror in (False, True):
        source = pixels.flip(-1) if mirror else pixels
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                match = (views == plain(_shifted(source, dy, dx))).flatten(1).all(1)
                if (match & ~found).any():
                    moves.add((mirror, dy, dx))
                found |= match
    assert found.all()  # every view is the image, or its mirror, moved by at most 2 px
    assert len(moves) > 5  # and the moves vary


def test_tensor_transform_without_shift_only_flips() -> None:
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    plain = TensorTransform(8, augment=False, flip=False)
    views = TensorTransform(8, augment=True, flip=True, max_shift=0)(pixels.clone())
    is_plain = (views == plain(pixels)).flatten(1).all(1)
    is_mirror = (views == plain(pixels.flip(-1))).flatten(1).all(1)
    assert (is_plain | is_mirror).all() and is_plain.any() and is_mirror.any()


def test_in_memory_batches_match_items(fashion: data.RetrievalData) -> None:
    images, label_vectors, positions = next(iter(DataLoader(fashion.query, batch_size=64)))
    assert images.shape == (64, 3, 32, 32) and positions.tolist() == list(range(64))
    for i in (0, 17, 63):
        image, label_vector, index = fashion.query[i]
        torch.testing.assert_close(images[i], image)
        torch.testing.assert_close(label_vectors[i], label_vector)
    batch, _, _ = fashion.query.get_batch(torch.tensor([5, 1]))
    torch.testing.assert_close(batch[0], fashion.query[5][0])
    with pytest.raises(IndexError):
        fashion.query[1000]


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)


def test_fashion_mnist_from_a_root_folder(isolated: Path) -> None:
    """A small synthetic Fashion-MNIST (6,000 + 1,200 images) read from root=."""
    folder = isolated / "fm"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6000), ("t10k", 1200)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz=False)
    loaded = get_dataset("fashion-mnist", root=folder, img_size=28, download=False)
    assert (len(loaded.query), len(loaded.train), len(loaded.database)) == (1000, 5000, 1200)
    assert loaded.query[0][0].shape == (3, 28, 28)


def test_idx_reader_errors(tmp_path: Path) -> None:
    good = tmp_path / "good-idx3-ubyte"
    write_idx(good, np.zeros((4, 3, 2)), gz=False)
    assert data.read_idx(good).shape == (4, 3, 2)
    raw = good.read_bytes()
    cases = {"magic": b"\x01\x02" + raw[2:], "truncated": raw[:-3], "trailing": raw + b"\x00"}
    messages = {"magic": "not an IDX file", "truncated": "truncated", "trailing": "trailing bytes"}
    for case, content in cases.items():
        bad = tmp_path / f"{case}.idx"
        bad.write_bytes(content)
        with pytest.raises(DataFormatError, match=messages[case]) as raised:
            data.read_idx(bad)
        assert str(bad) in str(raised.value)


def test_fashion_mnist_missing_offline(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "FASHION_MNIST_SYSTEM_DIR", isolated / "absent")
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist") as raised:
        get_dataset("fashion-mnist", root=isolated / "nowhere", download=False)
    assert str(isolated / "nowhere") in str(raised.value)


@pytest.fixture(scope="module")
def digits() -> data.RetrievalData:
    return get_dataset("digits")


def test_digits_dataset(digits: data.RetrievalData) -> None:
    assert (len(digits.query), len(digits.train), len(digits.database)) == (200, 500, 1097)
    assert digits.class_names[3] == "3" and digits.topk is None
    image, label_vector, index = digits.query[7]
    assert image.shape == (3, 32, 32) and label_vector.shape == (10,) and index == 7
    torch.testing.assert_close(digits.query[7][0], image)  # no augmentation outside train
    assert digits.train.transform.augment and not digits.train.transform.flip
    assert not digits.query.transform.augment and not digits.database.transform.augment
    torch.manual_seed(0)
    views = torch.stack([digits.train[0][0] for _ in range(8)])
    assert (views - views[0]).abs().amax() > 0  # random shifts


def test_augment_false_serves_plain_images() -> None:
    plain = get_dataset("digits", augment=False, limit=10)
    assert not plain.train.transform.augment
    torch.testing.assert_close(plain.train[3][0], plain.train[3][0])


def test_limit_keeps_a_class_mixed_prefix(digits: data.RetrievalData) -> None:
    small = get_dataset("digits", limit=50, img_size=16)
    assert (len(small.query), len(small.train), len(small.database)) == (50, 50, 50)
    assert small.query[0][0].shape == (3, 16, 16)
    np.testing.assert_array_equal(small.query.pool_indices, digits.split.query[:50])
    assert len(np.unique(small.query.labels.argmax(1))) >= 6
    with pytest.raises(ValueError, match="limit"):
        get_dataset("digits", limit=0)


def test_reusing_a_saved_split(tmp_path: Path, digits: data.RetrievalData) -> None:
    path = digits.split.save(tmp_path / "digits.npz")
    again = get_dataset("digits", split=path, split_seed=123)  # the saved split wins
    np.testing.assert_array_equal(again.database.pool_indices, digits.split.database)
    foreign = split_protocol(shuffled_labels(180), "digits")
    with pytest.raises(SplitMismatchError):
        get_dataset("digits", split=foreign)
    with pytest.raises(ValueError, match="'cifar10' split"):
        get_dataset("digits", split=split_protocol(shuffled_labels(6000), "cifar10"))


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known datasets: .*fashion-mnist.*nuswide_21"):
        get_dataset("mnist")


def test_tensor_transform_shift_setting() -> None:
    assert TensorTransform(32, augment=True, flip=True).max_shift == 4  # img_size // 8 by default
    assert TensorTransform(8, augment=True, flip=True).max_shift == 1
    assert get_dataset("digits", limit=10).train.transform.max_shift == 4  # digits keep their shifts
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        TensorTransform(32, augment=True, flip=True, max_shift=-1)


def test_random_shift_moves_content() -> None:
    torch.manual_seed(1)
    image = torch.zeros(1, 1, 9, 9, dtype=torch.uint8)
    image[0, 0, 4, 4] = 255
    for _ in range(20):
        shifted = random_shift(image, 2)
        y, x = (shifted[0, 0] == 255).nonzero()[0].tolist()
        assert shifted.sum() == 255 and abs(y - 4) <= 2 and abs(x - 4) <= 2


# --------------------------------------------------------------------------- CIFAR-10 offline


def test_cifar10_missing_without_download(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as raised:
        get_dataset("cifar10-1", download=False)
    message = str(raised.value)
    assert "cifar-10-batches-py" in message and "download=True" in message
    assert str(isolated / "hh_data" / "cifar10") in message
    assert isinstance(raised.value, FileNotFoundError)


def test_cifar10_pools_train_then_test(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pooling and HWC -> CHW conversion, with torchvision's reader replaced by a fake."""

    class FakeCIFAR10(sources.CIFAR10):
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            n = 50000 if train else 10000
            self.targets = list(np.arange(n) % 10)
            self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
            self.data[:, 0, 0] = np.arange(n)[:, None] % 10 * np.array([1, 2, 3])
            self.data[:, 0, 1, 0] = 0 if train else 255  # marks the test images

    folder = isolated / "cifar"
    (folder / "cifar-10-batches-py").mkdir(parents=True)
    for name in sources.CIFAR10_FILES:
        (folder / "cifar-10-batches-py" / name).touch()
    monkeypatch.setattr(sources, "CIFAR10", FakeCIFAR10)
    loaded = get_dataset("cifar10-2", root=folder, img_size=32, download=False)
    assert (len(loaded.query), len(loaded.train), len(loaded.database)) == (10000, 50000, 50000)
    assert loaded.class_names[0] == "airplane" and loaded.query[0][0].shape == (3, 32, 32)
    for i in range(0, 10000, 997):
        pixel = loaded.query.raw_image(i)[0, :2]
        label = loaded.query.labels[i].argmax()
        assert pixel[0].tolist() == [label, 2 * label, 3 * label]
        assert (pixel[1, 0] == 255) == (loaded.query.pool_indices[i] >= 50000)


def test_cifar10_failed_download_cleans_up(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class OfflineCIFAR10(sources.CIFAR10):
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            Path(root).mkdir(parents=True, exist_ok=True)
            (Path(root) / self.filename).write_bytes(b"half an archive")
            raise urllib.error.URLError("no network")

    monkeypatch.setattr(sources, "CIFAR10", OfflineCIFAR10)
    target = isolated / "cifar_root"
    with pytest.raises(DatasetNotFoundError, match="could not download CIFAR-10.*no network"):
        get_dataset("cifar10", root=target, download=True)
    assert not target.exists()


# --------------------------------------------------------------------------- list-file datasets


def image_bytes(fmt: str, seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def label_line(path: str, classes: list[int], num_classes: int = 21) -> str:
    vector = ["1" if c in classes else "0" for c in range(num_classes)]
    return f"{path} {' '.join(vector)}\n"


@pytest.fixture
def list_root(tmp_path: Path) -> Path:
    """A tiny nuswide_21 folder: PNG and JPEG images, multi-label lines."""
    root = tmp_path / "nus"
    (root / "images").mkdir(parents=True)
    lines = {}
    for part, n in (("train", 6), ("test", 3), ("database", 8)):
        rows = []
        for k in range(n):
            fmt = "PNG" if k % 2 else "JPEG"
            name = f"images/{part}_{k}.{fmt.lower()}"
            (root / name).write_bytes(image_bytes(fmt, seed=k))
            rows.append(label_line(name, [k % 21, (k + 5) % 21] if k % 3 == 0 else [k % 21]))
        lines[part] = rows
        (root / f"{part}.txt").write_text("".join(rows) + "\n")  # trailing blank line is fine
    return root


def test_list_file_dataset(list_root: Path) -> None:
    loaded = get_dataset("nuswide_21", root=list_root, img_size=32)
    assert (len(loaded.train), len(loaded.query), len(loaded.database)) == (6, 3, 8)
    assert (loaded.num_classes, loaded.topk, loaded.split) == (21, 5000, None)
    assert loaded.class_names[20] == "class_20"
    assert loaded.train.labels.shape == (6, 21) and loaded.train.labels[0].sum() == 2  # multi-label
    image, label_vector, index = loaded.database[3]
    assert image.shape == (3, 32, 32) and index == 3
    assert label_vector.tolist() == loaded.database.labels[3].astype(np.float32).tolist()
    torch.testing.assert_close(loaded.query[1][0], loaded.query[1][0])  # center crop, no randomness
    images, _, positions = next(iter(DataLoader(loaded.train, batch_size=4)))
    assert images.shape == (4, 3, 32, 32) and positions.tolist() == [0, 1, 2, 3]
    assert loaded.database.raw_image(0).shape == (30, 40, 3)
    assert len(get_dataset("nuswide_21", root=list_root, img_size=32, limit=4).database) == 4


def test_list_file_dataset_found_through_hh_data(
    list_root: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HH_DATA", str(list_root.parent))
    list_root.rename(list_root.parent / "nuswide_21")
    (list_root.parent / "nuswide_21" / "classes.txt").write_text("".join(f"c{i}\n" for i in range(21)))
    loaded = get_dataset("nuswide_21", img_size=32)
    assert len(loaded.database) == 8 and loaded.class_names[:2] == ("c0", "c1")


def test_list_dataset_missing_folder(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"(?s)coco.*test.txt.*README") as raised:
        get_dataset("coco")
    assert str(isolated / "hh_data" / "coco") in str(raised.value)


@pytest.mark.parametrize(
    "line, error, message",
    [
        ("images/train_0.jpeg 0 1 0\n", DataFormatError, r"train.txt:2: 3 labels, expected 21"),
        ("images/train_0.jpeg\n", DataFormatError, r"train.txt:2: 'images/train_0.jpeg' has no label"),
        (label_line("images/x.jpg", [1]).replace(" 1 ", " 2 "), DataFormatError, r"train.txt:2: .*0 or 1"),
        (label_line("images/absent.png", [1]), DatasetNotFoundError, r"train.txt: 1 of 2 .*line 2: .*absent.png"),
    ],
)
def test_bad_list_lines_fail_at_construction(list_root: Path, line: str, error: type, message: str) -> None:
    first = (list_root / "train.txt").read_text().splitlines(keepends=True)[0]
    (list_root / "train.txt").write_text(first + line)
    with pytest.raises(error, match=message):
        get_dataset("nuswide_21", root=list_root, img_size=32)


def test_empty_list_file(list_root: Path) -> None:
    (list_root / "database.txt").write_text("\n")
    with pytest.raises(DataFormatError, match="database.txt: empty list file"):
        get_dataset("nuswide_21", root=list_root, img_size=32)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_names_file_and_line(list_root: Path, fmt: str) -> None:
    raw = image_bytes(fmt, seed=9)
    name = f"images/broken.{fmt.lower()}"
    (list_root / name).write_bytes(raw[: len(raw) // 2])
    with open(list_root / "test.txt", "a") as handle:
        handle.write(label_line(name, [2, 3]))
    loaded = get_dataset("nuswide_21", root=list_root, img_size=32)
    loaded.query[0]  # good images still load
    with pytest.raises(ImageDecodeError, match=rf"test.txt:5: cannot read image .*broken.{fmt.lower()}"):
        loaded.query[3]
    with pytest.raises(ImageDecodeError, match="broken"):
        list(DataLoader(loaded.query, batch_size=2))


def test_unreadable_image(list_root: Path) -> None:
    (list_root / "images/test_0.jpeg").write_text("not an image")
    loaded = get_dataset("nuswide_21", root=list_root, img_size=32)
    with pytest.raises(ImageDecodeError, match=r"test.txt:1: .*test_0.jpeg"):
        loaded.query[0]


# --------------------------------------------------------------------------- NUS-WIDE-21 list builder


def test_make_nuswide21_lists_script(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 30000
    labels = (rng.random((n, 21)) < 0.03).astype(np.uint8)
    labels[np.arange(n), np.arange(n) % 21] = 1
    labels[:50] = 0  # images without any of the 21 concepts stay in the database
    label_file = tmp_path / "all.txt"
    label_file.write_text("".join(f"img/{i}.jpg {' '.join(map(str, row))}\n" for i, row in enumerate(labels)))

    script_path = REPO / "data" / "make_nuswide21_lists.py"
    spec = importlib.util.spec_from_file_location("make_nuswide21_lists", script_path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(label_file), "--out", str(tmp_path / "out"), "--seed", "4"])

    parsed = {}
    for part in ("train", "test", "database"):
        paths, part_labels, _ = data.parse_label_file(tmp_path / "out" / f"{part}.txt", 21)
        parsed[part] = (paths, part_labels)
    assert [len(parsed[p][0]) for p in ("test", "train", "database")] == [2100, 10500, n - 2100]
    assert (parsed["test"][1].sum(0) >= 100).all() and (parsed["train"][1].sum(0) >= 500).all()
    test, train, database = (set(parsed[p][0]) for p in ("test", "train", "database"))
    assert not test & database and train < database
    ids = [int(p[4:-4]) for p in parsed["train"][0]]
    np.testing.assert_array_equal(parsed["train"][1], labels[ids])  # labels travel with their path
    split = Split.load(tmp_path / "out" / "split.npz", labels)
    again = split_protocol(labels, "nuswide_21", seed=4)
    np.testing.assert_array_equal(split.query, again.query)


@pytest.mark.parametrize("img_size", [32, 224])
def test_query_image_of_a_grey_dataset_at_any_size(tmp_path, img_size) -> None:
    from PIL import Image

    from hhlib.data.transforms import TensorTransform, load_query_image

    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "shoe.png")
    image = load_query_image(tmp_path / "shoe.png", img_size, grey=True)
    expected = TensorTransform(img_size, augment=False, flip=False)(torch.from_numpy(pixels)[None, None])
    assert image.shape == (1, 3, img_size, img_size)
    assert torch.allclose(image, expected)


def test_query_image_of_a_list_file_dataset_is_centre_cropped(tmp_path) -> None:
    from PIL import Image

    from hhlib.data.transforms import list_transform, load_query_image

    Image.fromarray(np.full((300, 400, 3), 128, dtype=np.uint8)).save(tmp_path / "photo.png")
    image = load_query_image(tmp_path / "photo.png", 224, list_file=True)
    with Image.open(tmp_path / "photo.png") as photo:
        expected = list_transform(224, train=False)(photo.convert("RGB"))
    assert image.shape == (1, 3, 224, 224) and torch.equal(image[0], expected)
