"""The methods comparison: collect finished runs into one record, and write the table from it.

    python tools/methods_table.py collect   # runs/fashion-mnist-cpu*/bits64/metrics.json -> docs/results/...
    python tools/methods_table.py write     # the table in README.md and docs/methods.md, from that record
    python tools/methods_table.py check     # exit 1 when either table differs from the record

The record (docs/results/methods-fashion-mnist-64.json) keeps the headline
numbers of each method and backbone, without histories or weights, so the
table survives the run folders and grows run by run (docs/methods.md).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hhlib.backbones import BACKBONES  # noqa: E402
from hhlib.checkpoint import load_checkpoint, write_json  # noqa: E402
from hhlib.methods import METHODS  # noqa: E402
from hhlib.presets import get_preset  # noqa: E402
from hhlib.runs import recipe_changes, supervision  # noqa: E402
from hhlib.train import TrainConfig  # noqa: E402

RECORD = ROOT / "docs" / "results" / "methods-fashion-mnist-64.json"
TABLES = (ROOT / "README.md", ROOT / "docs" / "methods.md")
BEGIN, END = "<!-- methods table: tools/methods_table.py write -->", "<!-- end of methods table -->"
KEYS = ("map", "precision_radius2", "train_seconds", "encode_seconds", "total_seconds", "best_epoch", "epochs")
BACKBONE_ORDER = ("hybridhash", "cnn")


def row_of(metrics: dict) -> dict:
    """The record's row of one finished run: its headline numbers and the median epoch's seconds."""
    seconds = [epoch["seconds"] for epoch in metrics["history"]["epochs"]]
    return {
        "method": metrics["method"],
        "backbone": metrics["backbone"],
        "family": metrics["family"],
        **{key: metrics[key] for key in KEYS},
        "median_epoch_seconds": round(statistics.median(seconds), 2),
        "method_options": metrics["method_options"],
        "recipe_changes": metrics["recipe_changes"],
    }


def recipe_of(checkpoint: Path, method: str) -> dict:
    """What a run's recipe changed from the CPU preset's common one, read from its checkpoint
    (for runs made before metrics.json recorded ``recipe_changes``)."""
    used = TrainConfig(**load_checkpoint(checkpoint)["train_config"])
    return recipe_changes(get_preset("cpu").common_config(method, seed=used.seed), used)


def is_table_run(metrics: dict) -> bool:
    """The runs the table compares: Fashion-MNIST, the CPU preset, 64 bits, the whole protocol."""
    wanted = {"dataset": "fashion-mnist", "preset": "cpu", "bits": 64, "limit": None, "split_seed": 0}
    return all(metrics.get(key) == value for key, value in wanted.items())


def collect(runs: Path = ROOT / "runs") -> dict:
    """Merge every finished table run under ``runs`` into the record (a run replaces its method's row)."""
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"rows": []}
    rows = {(r["method"], r["backbone"]): r for r in record["rows"]}
    for path in sorted(runs.glob("fashion-mnist-cpu*/bits64/metrics.json")):
        metrics = json.loads(path.read_text())
        if is_table_run(metrics):
            metrics.setdefault("recipe_changes", recipe_of(path.parent / "checkpoint.pt", metrics["method"]))
            rows[metrics["method"], metrics["backbone"]] = row_of(metrics)
            print(f"{path.parent}: {metrics['method']} on {metrics['backbone']}, mAP {metrics['map']:.4f}")
    order = {name: i for i, name in enumerate(METHODS)}
    record["rows"] = sorted(rows.values(), key=lambda r: (order.get(r["method"], 99), r["backbone"]))
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    write_json(RECORD, record)
    return record


def table(record: dict) -> str:
    """The markdown table: one row per method and backbone, measured cells only."""
    rows = {(r["method"], r["backbone"]): r for r in record["rows"]}
    lines = [
        "| method | family | backbone | labels | recipe | mAP@all | precision r<=2 "
        "| training s (median epoch) | encoding s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cls in METHODS.items():
        for backbone in BACKBONE_ORDER:
            assert backbone in BACKBONES
            r = rows.get((name, backbone))
            cells = (
                [recipe(r), f"{r['map']:.4f}", f"{r['precision_radius2']:.4f}"]
                + [f"{r['train_seconds']:.0f} ({r['median_epoch_seconds']:.1f})", f"{r['encode_seconds']:.0f}"]
                if r
                else ["", "not yet measured"] + [""] * 3
            )
            labels = supervision(name).removesuffix(" labels")  # ADSH learns from the database's labels
            lines.append(f"| `{name}` | {cls.family} | {backbone} | {labels} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recipe(row: dict) -> str:
    """Where the run's recipe differs from the preset's common one ("lr 0.0003"), or "preset"."""
    changes = row.get("recipe_changes") or {}
    shown = (
        f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key.replace('_', ' ')} {value}"
        for key, value in sorted(changes.items())
    )
    return ", ".join(shown) or "preset"


def replaced(text: str, body: str) -> str:
    """``text`` with the part between the table's markers replaced by ``body``."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + body + "\n" + text[end:]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "write"
    if command == "collect":
        collect()
        command = "write"
    body = table(json.loads(RECORD.read_text()))
    stale = []
    for path in TABLES:
        text = path.read_text()
        if replaced(text, body) != text:
            stale.append(path)
            if command == "write":
                path.write_text(replaced(text, body))
    if command == "check" and stale:
        print(f"the methods table differs from {RECORD.relative_to(ROOT)} in: {', '.join(map(str, stale))}")
        print("run: python tools/methods_table.py write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
