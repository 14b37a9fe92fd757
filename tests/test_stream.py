"""hhlib.stream and ``python -m hhlib encode --images``: list files and folders of any size, streamed into an index.

The model is a freshly initialised HybridHash at 16 px (its codes mean
nothing, but every bit of them must come out as the in-memory path makes
it); the images are small PNGs made here.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hhlib import stream
from hhlib.__main__ import main
from hhlib.checkpoint import save_checkpoint
from hhlib.data.listfile import ListFileDataset
from hhlib.data.transforms import list_transform, load_query_image
from hhlib.index import HammingIndex
from hhlib.model import HybridHash, HybridHashConfig
from hhlib.retrieval import model_fingerprint
from hhlib.stream import PartialMismatchError, encode_images, index_paths, partial_dir
from hhlib.train import TrainConfig, encode

REPO = Path(__file__).resolve().parents[1]
BITS, SIDE = 16, 16
CLASSES = 3


def make_model(seed: int = 0) -> HybridHash:
    torch.manual_seed(seed)
    return HybridHash(HybridHashConfig.cpu(bits=BITS, img_size=SIDE)).eval()


def write_images(folder: Path, n: int, seed: int = 0, start: int = 0) -> list[str]:
    """``n`` PNGs of random sizes and colours under ``folder/images``; their paths relative to ``folder``."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        h, w = rng.integers(12, 40, 2)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = f"images/{i:05d}.png"
        Image.fromarray(pixels).save(folder / path)
        paths.append(path)
    return paths


def write_list(path: Path, paths: list[str], labels: bool = True) -> Path:
    lines = [f"{p} {' '.join('1' if c == i % CLASSES else '0' for c in range(CLASSES))}" for i, p in enumerate(paths)]
    path.write_text("\n".join(lines if labels else paths) + "\n")
    return path


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("listed")
    paths = write_images(folder, 40)
    return write_list(folder / "database.txt", paths), paths


def index_codes(path: Path) -> np.ndarray:
    return HammingIndex.load(path, bits=BITS).codes


def test_a_list_file_streams_to_the_codes_of_the_in_memory_path(model, listed, tmp_path):
    list_file, paths = listed
    memory = ListFileDataset(list_file.parent, list_file, CLASSES, list_transform(SIDE, train=False))
    expected = np.packbits(encode(model, memory, batch_size=7, device="cpu", progress=False) > 0, axis=1)
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.npz"
        result = encode_images(
            model, list_file, out, dataset="nuswide_21", batch_size=8, chunk_size=16, workers=workers, progress=False
        )
        assert (result.count, result.resumed_from) == (40, 0)
        np.testing.assert_array_equal(index_codes(out), expected)
        assert not partial_dir(out).exists()
    index = HammingIndex.load(out)
    assert index.metadata["labels"] == [i % CLASSES for i in range(40)]
    assert index.metadata["model"] == model_fingerprint(model) and index.metadata["source_kind"] == "list"
    assert index_paths(out) == paths
    assert (tmp_path / "w0.npz").read_bytes() == out.read_bytes()  # equal inputs, byte-identical files


def test_a_folder_is_read_in_path_order_and_resized_as_a_query(model, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder / "b", 2, seed=1)
    write_images(folder / "a", 3, seed=2)
    Image.new("RGB", (20, 20)).save(folder / "c.png")
    (folder / ".hidden.png").write_bytes(b"not read")
    (folder / "notes.txt").write_text("not an image")
    out = encode_images(model, folder, tmp_path / "photos.npz", batch_size=4, workers=0, progress=False).path
    paths = index_paths(out)
    expected_paths = [f"a/images/{i:05d}.png" for i in range(3)] + [f"b/images/{i:05d}.png" for i in range(2)]
    assert paths == [*expected_paths, "c.png"]
    queries = torch.cat([load_query_image(folder / p, SIDE) for p in paths])
    with torch.no_grad():
        expected = np.packbits(model.encode(queries).numpy() > 0, axis=1)
    np.testing.assert_array_equal(index_codes(out), expected)
    assert HammingIndex.load(out).metadata["labels"] == []


def test_resizing_on_the_device_is_within_a_grey_level_of_the_workers(model, listed, tmp_path):
    list_file, _ = listed
    worker = encode_images(model, list_file, tmp_path / "w.npz", dataset="nuswide_21", workers=0, progress=False)
    device = encode_images(
        model, list_file, tmp_path / "d.npz", dataset="nuswide_21", workers=0, resize_on="device", progress=False
    )
    differ = np.unpackbits(index_codes(worker.path) ^ index_codes(device.path)).mean()
    assert differ < 0.02, f"{differ:.1%} of the bits differ"
    meta = HammingIndex.load(device.path).metadata
    assert meta["preprocess"] == {"img_size": SIDE, "crop": True, "grey": False, "resize_on": "device"}


def test_an_interrupted_encoding_resumes_after_its_last_chunk(model, listed, tmp_path):
    list_file, _ = listed
    straight = encode_images(model, list_file, tmp_path / "straight.npz", batch_size=4, chunk_size=8, progress=False)

    def interrupt(done, count):
        if done == 16:
            raise KeyboardInterrupt

    out = tmp_path / "db.npz"
    with pytest.raises(KeyboardInterrupt):
        encode_images(model, list_file, out, batch_size=4, chunk_size=8, progress=False, on_chunk=interrupt)
    assert json.loads((partial_dir(out) / "progress.json").read_text())["done"] == 16 and not out.exists()
    said = []
    result = encode_images(model, list_file, out, batch_size=4, chunk_size=8, progress=False, say=said.append)
    assert result.resumed_from == 16 and said == [f"resuming {partial_dir(out)}: 16 of 40 codes were done"]
    assert out.read_bytes() == straight.path.read_bytes()


def test_a_partial_of_another_model_or_input_is_refused_then_discarded_on_request(model, listed, tmp_path):
    list_file, _ = listed
    out = tmp_path / "db.npz"

    def stop(done, count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode_images(model, list_file, out, chunk_size=8, batch_size=8, progress=False, on_chunk=stop)
    with pytest.raises(PartialMismatchError, match="holds codes of another model .*pass --restart"):
        encode_images(make_model(1), list_file, out, progress=False)
    shorter = write_list(tmp_path / "shorter.txt", [f"{list_file.parent}/images/{i:05d}.png" for i in range(5)])
    with pytest.raises(PartialMismatchError, match="holds codes of another input"):
        encode_images(model, shorter, out, root="/", progress=False)
    result = encode_images(make_model(1), list_file, out, restart=True, progress=False)
    assert result.resumed_from == 0 and HammingIndex.load(out).metadata["model"] == model_fingerprint(make_model(1))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("images/00000.png 1 0", "database.txt:2: 2 labels, expected 3"),
        ("images/00000.png 1 0 2", "database.txt:2: label values must be 0 or 1, got '2'"),
        ("images/missing.png 1 0 0", "1 of 2 listed images are missing, the first at line 2"),
    ],
)
def test_a_bad_list_file_is_one_line(model, listed, tmp_path, line, error):
    (tmp_path / "images").symlink_to(listed[0].parent / "images")
    list_file = tmp_path / "database.txt"
    list_file.write_text(f"images/00001.png 0 1 0\n{line}\n")
    with pytest.raises(ValueError if "missing" not in error else FileNotFoundError, match=error):
        encode_images(model, list_file, tmp_path / "db.npz", progress=False)


def test_an_image_that_does_not_decode_names_its_item(model, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 3)
    (folder / "images" / "00001.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(ValueError, match=r"item 1: cannot read image .*00001\.png"):
        encode_images(model, folder, tmp_path / "db.npz", workers=0, progress=False)


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    """The model as a run folder would hold it, trained on a list-file dataset (so images get the paper's crop)."""
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    state = {
        "epoch": 0,
        "model": model.state_dict(),
        "quantizer": model.quantizer.to_state(),
        "backbone": "hybridhash",
        "model_config": model.config.to_dict(),
        "train_config": asdict(TrainConfig()),
        "dataset": "nuswide_21",
    }
    return save_checkpoint(path, state)


def test_the_command_line_streams_a_list_file_and_search_shows_its_paths(model, checkpoint, listed, tmp_path, capsys):
    list_file, paths = listed
    out = tmp_path / "db.npz"
    args = ["encode", "--checkpoint", str(checkpoint), "--images", str(list_file), "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert f"40 codes of {BITS} bits ({list_file}) -> {out}" in capsys.readouterr().out
    image = list_file.parent / paths[3]
    assert main(["search", "--index", str(out), "--image", str(image), "-k", "5"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    with torch.no_grad():
        code = model.encode(load_query_image(image, SIDE, list_file=True))
    dist, ids = HammingIndex.load(out).search(code, 5)
    results = enumerate(zip(ids[0].tolist(), dist[0].tolist()), 1)
    assert rows == [[str(r), str(i), str(d), paths[i], f"class_{i % CLASSES}"] for r, (i, d) in results]
    assert dist[0][0] == 0  # the image itself, or a code equal to it


def test_the_command_line_refuses_images_with_split(checkpoint, listed, capsys):
    args = ["encode", "--checkpoint", str(checkpoint), "--images", str(listed[0]), "--split", "query", "--out", "x.npz"]
    assert main(args) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> tuple[Path, Path]:
    """2,000 and 20,000 generated images as two list files (the second ten times the first)."""
    folder = tmp_path_factory.mktemp("many")
    paths = write_images(folder, 20_000, seed=3)
    return write_list(folder / "small.txt", paths[:2_000]), write_list(folder / "large.txt", paths)


WORKER = """
import resource, sys, tracemalloc
from hhlib.train import load_model
from hhlib.stream import encode_images
model, state = load_model(sys.argv[1])
tracemalloc.start()
encode_images(model, sys.argv[2], sys.argv[3], dataset=state["dataset"], workers=0, progress=False, chunk_size=512)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, tracemalloc.get_traced_memory()[1])
"""


def test_streaming_keeps_peak_memory_independent_of_the_dataset_size(checkpoint, many, tmp_path):
    """Peak resident memory, and peak memory allocated by Python and NumPy, at 2,000 and at 20,000 images."""
    peaks = {}
    for list_file in many:
        out = tmp_path / f"{list_file.stem}.npz"
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(checkpoint), str(list_file), str(out)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        peaks[list_file.stem] = [int(value) for value in done.stdout.split()[-2:]]
        assert len(HammingIndex.load(out)) == (2_000 if list_file.stem == "small" else 20_000)
    (rss_small, traced_small), (rss_large, traced_large) = peaks["small"], peaks["large"]
    print(f"peak memory (resident, traced): 2,000 images {peaks['small']}, 20,000 images {peaks['large']}")
    # Holding the 18,000 extra images at the model's input size in float32 would add 53 MiB, their paths as
    # Python strings about 1.5 MiB; pathlib's interning of every file name once added 8 MiB (traced) here. What
    # may grow: the blocks of the final copy, up to 1 MiB each (0.3 MiB more at 20,000 than at 2,000 images).
    rss, traced = (rss_large - rss_small) / 2**20, (traced_large - traced_small) / 2**20
    assert rss < 8, f"peak resident memory grew {rss:.1f} MiB"
    assert traced < 1, f"the peak of Python's and NumPy's allocations grew {traced:.2f} MiB"


def test_a_killed_command_resumes_to_the_file_of_an_uninterrupted_run(checkpoint, many, tmp_path):
    def command(out: Path) -> list[str]:
        flags = ["--images", str(many[0]), "--out", str(out), "--quiet", "--workers", "0", "--chunk-size", "64"]
        return [sys.executable, "-m", "hhlib", "encode", "--checkpoint", str(checkpoint), *flags]

    out = tmp_path / "db.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command(out), env=env, cwd=REPO)
    progress = partial_dir(out) / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and _done(progress) < 64:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the encoding finished before it was killed"
    assert 64 <= _done(progress) < 2_000 and not out.exists()
    again = subprocess.run(command(out), env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert f"resuming {partial_dir(out)}: " in again.stderr and not partial_dir(out).exists()
    straight = tmp_path / "straight.npz"
    subprocess.run(command(straight), env=env, cwd=REPO, check=True)
    assert out.read_bytes() == straight.read_bytes()


def _done(progress: Path) -> int:
    try:
        return json.loads(progress.read_text())["done"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_source_that_cannot_be_read_leaves_no_partial_behind(model, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "db.npz"
    with pytest.raises(FileNotFoundError, match="no image files"):
        encode_images(model, tmp_path / "empty", out, progress=False)
    assert not partial_dir(out).exists()


def test_index_paths_of_no_ids_is_empty(model, listed, tmp_path, monkeypatch):
    out = encode_images(model, listed[0], tmp_path / "db.npz", progress=False).path
    assert index_paths(out, []) == [] and index_paths(out, [39, 0]) == [listed[1][39], listed[1][0]]
    monkeypatch.setattr(stream, "_COPY_BLOCK", 13)  # blocks that cut paths, and some that hold no wanted id
    assert index_paths(out) == listed[1]
    assert index_paths(out, [39, 0, 17, 17]) == [listed[1][i] for i in (39, 0, 17, 17)]
    with pytest.raises(ValueError, match="holds 40 paths; no id 40"):
        index_paths(out, [40])


def test_streaming_flags_with_a_split_and_an_interrupt_are_one_line(checkpoint, listed, monkeypatch, capsys):
    args = ["encode", "--checkpoint", str(checkpoint), "--split", "query", "--chunk-size", "8", "--out", "x.npz"]
    assert main(args) == 2
    assert capsys.readouterr().err == "--chunk-size applies to --images, not to a split\n"

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(__import__("hhlib.__main__", fromlist=["COMMANDS"]).COMMANDS, "encode", interrupted)
    assert main(["encode", "--checkpoint", str(checkpoint), "--images", str(listed[0]), "--out", "x.npz"]) == 130
    assert capsys.readouterr().err == "interrupted; run the same command again to continue after the last saved chunk\n"
