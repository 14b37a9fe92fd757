"""Build the NUS-WIDE-21 list files (train.txt, test.txt, database.txt) from one label file.

Input: every image of NUS-WIDE that carries at least one of the 21 most
frequent concepts, one line each, ``relative/path.jpg l1 ... l21`` (0/1).
Output, in --out: 100 query images per class (test.txt, 2,100), 500
training images per class (train.txt, 10,500), all non-query images as the
database (database.txt; 193,734 of DeepHash-pytorch's 195,834 images), and
split.npz to reproduce or check them. Classes are sampled rarest first, each
from the images that contain it and are not taken yet (hhlib.data.protocols).

    python data/make_nuswide21_lists.py nuswide21_all.txt --out data/nuswide_21 --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Runs from a checkout without installing hhlib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hhlib.data.listfile import make_split_lists  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and write the lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label_file", type=Path, help="all images, 'path l1 ... l21' per line")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "nuswide_21",
        help="output folder (default: data/nuswide_21)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    args = parser.parse_args(argv)
    split = make_split_lists(args.label_file, args.out, "nuswide_21", args.seed)
    print(f"{split!r} written to {args.out}")


if __name__ == "__main__":
    main()
