"""Run, clean and check the tutorial notebooks.

    python tools/notebooks.py run [--fast] [--out DIR] [NOTEBOOK ...]
        Execute notebooks top to bottom (all of notebooks/ by default). With
        --out, executed copies go there and the sources are untouched; without
        it, the notebooks are rewritten in place with their new outputs and
        cleaned, which is how the committed outputs are made (full mode).
    python tools/notebooks.py clean [NOTEBOOK ...]
        Renumber execution counts 1..n, drop volatile metadata, keep the outputs.
    python tools/notebooks.py check [NOTEBOOK ...]
        Exit 1 naming every notebook that is not clean or holds an error output.

The rules that `check` enforces (and tests/test_notebooks.py asserts):
execution counts renumbered 1, 2, 3... in cell order (nbval refuses stored
outputs without a count, so they are made deterministic rather than
removed), no cell metadata but tags and JupyterLab's folding of a
cell's source (exercise solutions), no notebook metadata but the kernel
spec and language name, no error outputs, no widget state.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KEPT_CELL_METADATA = {"tags", "jupyter"}  # "jupyter": JupyterLab's source_hidden, which folds solution cells
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def notebook_paths(names: list[str]) -> list[Path]:
    paths = [Path(name) for name in names] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"no such notebook: {', '.join(missing)}")
    return paths


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip what changes from run to run without teaching anything."""
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python"},
        }
    )
    count = 0
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA})
        cell.pop("id", None)
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            outputs = []
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = count
                output.metadata = nbformat.from_dict({})
                if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                    # Without its state a widget shows only its text fallback, a snapshot from
                    # when it was created: for a tqdm bar "0%", which would mislead.
                    continue
                outputs.append(output)
            cell.outputs = outputs
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def problems(path: Path) -> list[str]:
    """What keeps a committed notebook from being clean."""
    nb = nbformat.read(path, as_version=4)
    found = []
    if set(nb.metadata) - {"kernelspec", "language_info"}:
        found.append(f"notebook metadata {sorted(set(nb.metadata) - {'kernelspec', 'language_info'})}")
    if set(nb.metadata.get("language_info", {})) - {"name"}:
        found.append("volatile language_info (version, codemirror...)")
    count = 0
    for number, cell in enumerate(nb.cells, 1):
        extra = set(cell.metadata) - KEPT_CELL_METADATA
        if extra:
            found.append(f"cell {number}: metadata {sorted(extra)}")
        if cell.cell_type != "code":
            continue
        count += 1
        if cell.execution_count != count:
            found.append(f"cell {number}: execution count {cell.execution_count}, not {count} (run `clean`)")
        for output in cell.outputs:
            if output.output_type == "error":
                found.append(f"cell {number}: error output {output.ename}: {output.evalue}")
            if output.get("execution_count", count) != count:
                found.append(f"cell {number}: output execution count {output.execution_count}")
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                found.append(f"cell {number}: widget state")
            if output.output_type == "stream" and output.name == "stderr" and "Traceback" in output.text:
                found.append(f"cell {number}: a traceback in stderr")
    return found


def ipc_kernels(folder: Path) -> type:
    """A kernel manager on local sockets in ``folder``: no TCP ports, and no unencrypted-TCP warning per notebook."""
    from jupyter_client.manager import KernelManager
    from traitlets import CaselessStrEnum, Unicode

    class IPCKernelManager(KernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc")
        ip = Unicode(str(folder / "kernel"))

    return IPCKernelManager


def say_cell(name: str, cells: list, say=print):
    """The hook that tells the terminal which code cell runs: its number and its first line of code."""
    total = sum(cell.cell_type == "code" for cell in cells)
    numbers = {id(cell): n for n, cell in enumerate((c for c in cells if c.cell_type == "code"), 1)}

    def hook(cell, **_):
        if cell.cell_type == "code":
            lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            say(f"{name} [{numbers[id(cell)]}/{total}] {lines[0][:80] if lines else ''}")

    return hook


def echo_progress(log: Path, stop: threading.Event, say=print) -> None:
    """Print the lines the kernel appends to ``log`` (epochs of a training run) until ``stop`` is set."""
    seen = 0
    while True:
        stopping = stop.wait(1.0)
        text = log.read_text() if log.exists() else ""
        for line in text[seen:].splitlines():
            say(f"    {line}")
        seen = len(text)
        if stopping:
            return


def run(path: Path, out: Path | None, fast: bool, timeout: int) -> float:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    saved = {key: os.environ.get(key) for key in ("HH_FAST", "HH_PROGRESS_LOG")}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hh-kernel-") as folder:
        log, stop = Path(folder) / "progress.log", threading.Event()
        os.environ.update(HH_FAST="1" if fast else "0", HH_PROGRESS_LOG=str(log))  # hhlib.tutorial writes epochs there
        echo = threading.Thread(target=echo_progress, args=(log, stop), daemon=True)
        echo.start()
        try:
            NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="python3",
                kernel_manager_class=ipc_kernels(Path(folder)),
                resources={"metadata": {"path": str(path.resolve().parent)}},
                allow_errors=False,
                on_cell_start=say_cell(path.stem, nb.cells, lambda line: print(line, flush=True)),
            ).execute()
        finally:
            stop.set()
            echo.join()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    seconds = time.perf_counter() - start
    if out is None:
        nbformat.write(clean(nb), path)
    else:
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="execute notebooks")
    run_parser.add_argument("--fast", action="store_true", help="HH_FAST=1: tiny splits, one epoch")
    run_parser.add_argument("--out", type=Path, help="write executed copies here instead of in place")
    run_parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    for name in ("clean", "check"):
        commands.add_parser(name).add_argument("notebooks", nargs="*")
    run_parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args(argv)
    paths = notebook_paths(args.notebooks)

    if args.command == "run":
        for path in paths:
            print(f"{path.name}: running ({'fast' if args.fast else 'full'} mode)...", flush=True)
            seconds = run(path, args.out, args.fast, args.timeout)
            where = args.out / path.name if args.out else path
            print(f"{path.name}: done in {seconds:.0f} s -> {where}", flush=True)
    elif args.command == "clean":
        for path in paths:
            nbformat.write(clean(nbformat.read(path, as_version=4)), path)
    else:
        bad = {path: problems(path) for path in paths}
        for path, found in bad.items():
            for problem in found:
                print(f"{path.relative_to(ROOT) if path.is_absolute() else path}: {problem}")
        return 1 if any(bad.values()) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
