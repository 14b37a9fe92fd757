"""Training and encoding throughput of a preset, in images per second, through ``fit`` and ``encode``.

The training issue asks for the paper configuration's images per second in
training and in encoding on a GPU. This runs the real ``fit`` loop of the
preset's recipe (data loader, optimiser, mixed precision and channels-last
on CUDA, ``--compile`` if asked) and the real data path: random pixels shaped
like the preset's dataset (32 px colour images resized to 224 as CIFAR-10's
are, or 28 px grey ones as Fashion-MNIST's) go through the dataset's
in-memory splits and augmentation. So it needs neither a dataset nor
pretrained weights, which a machine without network lacks. Training is
reported over the epochs after the first, which pays for
warming up (CUDA kernels and allocator, and compiling with ``--compile``);
encoding is timed on its own, best of three.

On a GPU:  ``python bench/bench_throughput.py`` (the paper's 224 px model)
On a CPU:  ``python bench/bench_throughput.py --preset cpu --device cpu``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from hhlib import HybridHash
from hhlib.checkpoint import write_json
from hhlib.data.memory import build_splits
from hhlib.data.registry import DATASETS, RetrievalData
from hhlib.presets import PRESETS
from hhlib.quantize import make_quantizer
from hhlib.train import AMP_MODES, encode, fit, resolve_device

# The native side and channels of each preset's dataset, as it is stored before resizing.
NATIVE = {"cifar10": (32, 3), "fashion-mnist": (28, 1)}


def synthetic_data(preset: str, img_size: int, train_images: int, database_images: int) -> RetrievalData:
    """Random pixels through ``build_splits``, as the preset's dataset would be served.

    The query split holds one image: ``fit`` evaluates once at the end, and
    encoding is timed on the database split.
    """
    name = PRESETS[preset].dataset
    (native, channels), info = NATIVE[name], DATASETS[name]
    n = train_images + 1 + database_images
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, channels, native, native), dtype=torch.uint8, generator=generator)
    classes = np.arange(n) % info.num_classes
    order = np.arange(n)
    parts = {
        "train": order[:train_images],
        "query": order[train_images : train_images + 1],
        "database": order[train_images + 1 :],
    }
    splits = build_splits(
        pixels,
        classes,
        info.num_classes,
        parts,
        img_size,
        augment=PRESETS[preset].augments(name),
        flip=info.flip,
        max_shift=round(info.shift * img_size),
    )
    return RetrievalData(
        f"synthetic {name}",
        splits["train"],
        splits["query"],
        splits["database"],
        info.num_classes,
        None,
        info.class_names,
        img_size,
        None,
    )


def _rate(images_per_second: float) -> str:
    return f"{images_per_second:8.0f}" if images_per_second >= 100 else f"{images_per_second:8.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper",
        help="model and recipe of hhlib.presets.PRESETS (default: paper)",
    )
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default: auto)")
    parser.add_argument("--bits", type=int, default=64, help="code length (default: 64)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of fit; the first is not counted (default: 3)")
    parser.add_argument("--train-images", type=int, default=8192, help="images per training epoch (default: 8192)")
    parser.add_argument("--encode-images", type=int, default=8192, help="images per timed encoding (default: 8192)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the recipe's)")
    parser.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="auto",
        help="precision of training and encoding (default: auto, the recipe's)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for training (CUDA)")
    parser.add_argument("--threads", type=int, help="torch threads on a CPU (default: torch's)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2: the first epoch is warm-up and not counted")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    preset = PRESETS[args.preset]
    model_config = preset.model_config(args.bits)
    overrides = dict(epochs=args.epochs, eval_every=None, amp=args.amp, compile=args.compile)
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = preset.train_config(**overrides)
    model = HybridHash(model_config)
    model.quantizer = make_quantizer(preset.quantizer, args.bits)
    c = model_config
    data = synthetic_data(args.preset, c.img_size, args.train_images, args.encode_images)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)")
    )
    print(
        f"{args.preset} preset: {c.img_size} px, {model.num_parameters() / 1e6:.1f} M parameters, "
        f"{args.bits} bits, batch {config.batch_size}, amp {config.amp}, compile {config.compile}; {name}",
        flush=True,
    )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # fit evaluates once, after the last epoch (not timed); encoding is timed on its own below.
    with warnings.catch_warnings():
        # Random pixels carry nothing to learn, so the codes may rest at zero, as fit warns.
        warnings.filterwarnings("ignore", message=".*where all codes are zero")
        history = fit(model, data, config, device=device, progress=False)
    timed = history.epochs[1:]
    train_rate = len(timed) * len(data.train) / sum(e["seconds"] for e in timed)
    first = history.epochs[0]["seconds"]

    encode(model, data.database, device=device, amp=args.amp, progress=False)  # warm up
    seconds = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        encode(model, data.database, device=device, amp=args.amp, progress=False)
        seconds.append(time.perf_counter() - start)
    encode_rate = len(data.database) / min(seconds)

    result = {
        "preset": args.preset,
        "device": name,
        "img_size": c.img_size,
        "bits": args.bits,
        "parameters": model.num_parameters(),
        "batch_size": config.batch_size,
        "amp": config.amp,
        "compile": config.compile,
        "train_images_per_second": train_rate,
        "first_epoch_seconds": first,
        "encode_images_per_second": encode_rate,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    print(
        f"  training  {_rate(train_rate)} images/s (epochs 2-{args.epochs} of {len(data.train)} images; "
        f"the first took {first:.1f} s)"
    )
    print(f"  encoding  {_rate(encode_rate)} images/s (best of 3, {len(data.database)} images)")
    if "peak_memory_gib" in result:
        print(f"  peak GPU memory {result['peak_memory_gib']:.1f} GiB")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
