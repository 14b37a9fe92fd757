"""The streaming encoder's input pipeline: decoding and resizing in loader workers, or resizing on the device.

``python -m hhlib encode --images`` reads photos in DataLoader workers. By
default (``--resize-on worker``) a worker decodes each JPEG and resizes it
(the paper's shorter side to S * 256 / 224, centre crop S) with PIL; with
``--resize-on device`` a worker only decodes and the model's device resizes
(torch's antialiased resize). On photos of a few hundred pixels a side,
this prints for both:

- a worker's own share of the work, timed in one process: decoding, and
  resizing unless the device does it; what one loader core can feed a GPU
  that does the rest;
- the input pipeline alone (``hhlib.stream.image_batches``: workers,
  transfer, resize and normalisation, no model), with one worker (what one
  loader core gives) and with the default number of workers;
- the whole ``encode_images`` with the preset's model (random weights: the
  speed is the same), images per second;

and the ratio of the two ways, measured in the same run. On a CPU the
"device" is the main process's cores, so the second way only moves the
work; the question it answers is for a GPU, where it frees the workers.

Run: ``python bench/bench_stream.py`` (a GPU: ``--preset paper``; your own
photos: ``--images FOLDER``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hhlib import HybridHash
from hhlib.checkpoint import write_json
from hhlib.presets import get_preset
from hhlib.quantize import make_quantizer
from hhlib.stream import encode_images, image_batches, preprocess_for, stream_workers
from hhlib.train import resolve_device

DATASET = "nuswide_21"  # a list-file dataset: photos get the paper's resize and centre crop


def make_photos(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``n`` JPEGs of ``size`` (width, height) with smooth colour and noise, about as costly to decode as photos."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    for i in range(n):
        a, b, c = rng.random((3, 3, 1, 1))
        smooth = 255 * (a * x + b * y + c * x * y) / (a + b + c)
        pixels = (smooth.transpose(1, 2, 0) + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return folder


def rate(source: Path, preprocess, device, workers: int, batch_size: int, prepared: bool = True) -> float:
    """Images per second the input pipeline delivers (``prepared=False``: what the workers hand over)."""
    start, seen = time.perf_counter(), 0
    for batch in image_batches(source, preprocess, device, batch_size=batch_size, workers=workers, prepared=prepared):
        seen += len(batch)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="a folder or list file of photos (default: JPEGs made here)")
    parser.add_argument("--count", type=int, default=2000, help="photos to make (default: 2000)")
    parser.add_argument("--size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"), help="their size")
    parser.add_argument("--preset", default=None, help="the model's preset (default: paper on CUDA, cpu otherwise)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, help="loader workers (default: hhlib.stream.stream_workers)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    preset = get_preset(args.preset or ("paper" if device.type == "cuda" else "cpu"))
    model = HybridHash(preset.model_config(64))
    model.quantizer = make_quantizer(preset.quantizer, bits=64)
    workers = stream_workers(device) if args.workers is None else args.workers
    with tempfile.TemporaryDirectory(prefix="hhlib-bench-stream-") as scratch:
        source = args.images or make_photos(Path(scratch), args.count, tuple(args.size))
        print(f"{source}: {preset.name} preset ({preset.img_size} px), {device}, batch {args.batch_size}")
        heading = f"pipeline, {workers} workers"
        print(f"{'resize on':<10} {'worker alone':>15} {'pipeline, 1 worker':>19} {heading:>21} {'encode_images':>14}")
        result = {"device": str(device), "preset": preset.name, "workers": workers, "rows": {}}
        for where in ("worker", "device"):
            preprocess = preprocess_for(model, DATASET, where)
            alone = rate(source, preprocess, "cpu", 0, args.batch_size, prepared=False)  # a worker's share, here
            one = rate(source, preprocess, device, 1, args.batch_size)
            many = rate(source, preprocess, device, workers, args.batch_size)
            out = Path(scratch) / f"{where}.npz"
            encoded = encode_images(
                model, source, out, dataset=DATASET, resize_on=where, batch_size=args.batch_size,
                device=device, workers=workers, progress=False,
            ).images_per_second  # fmt: skip
            result["rows"][where] = {"worker": alone, "pipeline_1": one, "pipeline": many, "encode": encoded}
            print(f"{where:<10} {alone:10,.0f} img/s {one:14,.0f} img/s {many:16,.0f} img/s {encoded:9,.0f} img/s")
    rows = result["rows"]
    ratios = {key: rows["device"][key] / rows["worker"][key] for key in rows["worker"]}
    result["device_over_worker"] = ratios
    print("device / worker: " + ", ".join(f"{key} {value:.2f}x" for key, value in ratios.items()))
    if args.json is not None:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
