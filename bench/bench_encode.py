"""Encoding speed of the CPU preset in float32 and in bfloat16 autocast.

``hhlib.train.encode(..., amp="bf16")`` (CLI: ``evaluate``/``encode --amp
bf16``) runs the model under CPU bfloat16 autocast. On CPUs with AVX-512 BF16
or AMX that is faster than float32; elsewhere it is emulated and slower. The
two precisions run alternately on the same images, so the ratio is measured
under the same load; the agreement of the codes says what the rounding costs
(an untrained model puts many relaxed codes next to zero, so pass a trained
checkpoint with ``--checkpoint`` for the agreement that matters).

Run: ``python bench/bench_encode.py`` (``--images``, ``--threads``, ``--rounds``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hhlib import HybridHash, HybridHashConfig
from hhlib.train import encode, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096, help="images encoded per round (default: 4096)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per precision (default: 3)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--checkpoint", help="a trained checkpoint (default: the CPU preset, untrained)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        model, _ = load_model(args.checkpoint)
    else:
        model = HybridHash(HybridHashConfig.cpu(bits=64))
    c = model.config
    images = torch.randn(args.images, c.in_chans, c.img_size, c.img_size)
    dataset = TensorDataset(images, torch.zeros(args.images, 1), torch.arange(args.images))
    print(
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} threads, "
        f"{args.images} images of {c.img_size} px, {model.num_parameters() / 1e6:.2f} M parameters"
    )

    encode(model, dataset, device="cpu", progress=False)  # warm up both paths
    encode(model, dataset, device="cpu", amp="bf16", progress=False)
    seconds = {"off": [], "bf16": []}
    codes = {}
    for _ in range(args.rounds):
        for amp in seconds:
            start = time.perf_counter()
            codes[amp] = encode(model, dataset, device="cpu", amp=amp, progress=False)
            seconds[amp].append(time.perf_counter() - start)
    rate = {amp: args.images / min(s) for amp, s in seconds.items()}
    for amp, r in rate.items():
        print(f"  {'float32' if amp == 'off' else 'bfloat16':8s} {r:8.0f} images/s (best of {args.rounds})")
    print(
        f"  bfloat16 / float32: {rate['bf16'] / rate['off']:.2f}x; "
        f"bits agreeing {np.mean(codes['bf16'] == codes['off']):.4f}"
    )


if __name__ == "__main__":
    main()
