"""The hash-centres table of docs/methods.md: what each kind of centres reaches against the coding bounds.

    python tools/centres_table.py write   # recompute the table (about a minute) and write it into docs/methods.md
    python tools/centres_table.py check   # exit 1 when the table differs from a recomputation

The centres are deterministic (seed 0), so the table is a fact of the code, not a measurement.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hhlib.methods.centres import code_bounds, distance_summary, hash_centres  # noqa: E402

DOC = ROOT / "docs" / "methods.md"
BEGIN, END = "<!-- centres table: tools/centres_table.py -->", "<!-- end of centres table -->"
# (classes, bits): Fashion-MNIST and CIFAR-10 at the usual code lengths, NUS-WIDE, MS-COCO, ImageNet-100
CASES = ((10, 16), (10, 32), (10, 64), (21, 32), (80, 64), (100, 48), (100, 64))


def row(classes: int, bits: int) -> str:
    """One markdown row: the bounds, then min / mean distance of each kind of centres (- where a kind cannot)."""
    bounds = code_bounds(classes, bits)
    cells = [str(classes), str(bits), str(bounds["gilbert_varshamov"])]
    for kind in ("hadamard", "bernoulli", "min-distance"):
        try:
            summary = distance_summary(hash_centres(classes, bits, kind))
            cells.append(f"{summary['min']} / {summary['mean']:.1f}")
        except ValueError:
            cells.append("-")
    cells += [str(bounds["plotkin"]), str(bounds["hamming"])]
    return "| " + " | ".join(cells) + " |"


def table(cases=CASES) -> str:
    head = (
        "| classes | bits | Gilbert-Varshamov (reachable) | Hadamard min / mean | Bernoulli min / mean "
        "| min-distance min / mean | Plotkin (upper) | Hamming (upper) |\n|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(row(*case) for case in cases)])


def main(argv: list[str]) -> int:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table() + "\n" + text[end:]
    if argv[:1] == ["check"]:
        if new != text:
            print("the centres table of docs/methods.md is stale; run: python tools/centres_table.py write")
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
