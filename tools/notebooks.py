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
spec, the language name and the widget state, no error outputs.

Widgets: `run` stores the widget state (nbclient's store_widget_state), so
a widget such as notebook 06's retrieval explorer renders from the saved
notebook, in JupyterLab and in static viewers, without a kernel. `clean`
keeps a widget view only when every model it shows is stored and none is a
progress bar (tqdm's bars would show their last frame as if still running),
keeps only the stored models the kept views reach (and of their binary
buffers only those that fit the model's last state: an emptied FileUpload
keeps none), and renames them in the order they are reached, so a rerun
gives the same ids. `check` names a widget view without its stored models,
a progress bar, and stored models no view shows.
"""

from __future__ import annotations

import argparse
import hashlib
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
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS_BARS = {"FloatProgressModel", "IntProgressModel"}  # what tqdm.notebook draws
MODEL_REFERENCE = "IPY_MODEL_"  # how one widget's state names another model


def notebook_paths(names: list[str]) -> list[Path]:
    paths = [Path(name) for name in names] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"no such notebook: {', '.join(missing)}")
    return paths


def stored_widgets(nb: nbformat.NotebookNode) -> dict:
    """The widget models the notebook stores, by model id (empty when it stores none)."""
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def referenced(value) -> list[str]:
    """The model ids a widget state value names ("IPY_MODEL_<id>"), in order."""
    if isinstance(value, str):
        return [value[len(MODEL_REFERENCE) :]] if value.startswith(MODEL_REFERENCE) else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [model_id for item in items for model_id in referenced(item)]


def reached(model_id: str, state: dict) -> list[str]:
    """``model_id`` and every model it names, depth first, in a fixed order; ids not stored included."""
    seen, todo = [], [model_id]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.append(current)
            if current in state:
                todo.extend(reversed(referenced(state[current].get("state", {}))))
    return seen


def view_problem(output, state: dict) -> str | None:
    """Why a widget-view output cannot be kept (None: it can): models not stored, or a progress bar."""
    models = reached(output.data[WIDGET_VIEW].get("model_id", ""), state)
    if any(model_id not in state for model_id in models):
        return "a widget view without its stored state"
    if any(state[model_id].get("model_name") in PROGRESS_BARS for model_id in models):
        return "a progress-bar widget"
    return None


def renamed(value, names: dict):
    """A widget state value with its model references renamed by ``names``."""
    if isinstance(value, str) and value.startswith(MODEL_REFERENCE):
        return MODEL_REFERENCE + names.get(value[len(MODEL_REFERENCE) :], value[len(MODEL_REFERENCE) :])
    if isinstance(value, dict):
        return {key: renamed(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [renamed(item, names) for item in value]
    return value


def buffer_fits(state: dict, path: list) -> bool:
    """Whether a stored buffer's path leads into ``state``: nbclient keeps the buffers of values since replaced."""
    target = state
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(target, dict)


def kept_model(entry: dict, names: dict) -> dict:
    """A stored model with its references renamed and only the buffers that still fit its state."""
    entry = renamed(entry, names)
    if "buffers" in entry:
        entry["buffers"] = [b for b in entry["buffers"] if buffer_fits(entry.get("state", {}), b["path"])]
        if not entry["buffers"]:
            del entry["buffers"]
    return entry


def clean_widgets(nb: nbformat.NotebookNode, state: dict) -> dict:
    """Drop the widget views that cannot be kept; return the models the kept ones reach, renamed.

    The new ids are hashes of the order the models are reached in, so a rerun that makes the same
    widgets gives the same ids (and clean is idempotent).
    """
    names = {}
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {}) or not view_problem(o, state)]
        for view in (o.data[WIDGET_VIEW] for o in cell.outputs if WIDGET_VIEW in o.get("data", {})):
            for model_id in reached(view["model_id"], state):
                names.setdefault(model_id, hashlib.sha1(f"widget {len(names) + 1}".encode()).hexdigest()[:32])
            view["model_id"] = names[view["model_id"]]
    return {names[model_id]: kept_model(state[model_id], names) for model_id in names}


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip what changes from run to run without teaching anything; keep the widgets a view shows."""
    state = clean_widgets(nb, stored_widgets(nb))
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": KERNELSPEC,
            "language_info": {"name": "python"},
        }
    )
    if state:
        nb.metadata.widgets = nbformat.from_dict(
            {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
        )
    count = 0
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEPT_CELL_METADATA})
        cell.pop("id", None)
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = count
                if output.output_type in ("display_data", "execute_result"):
                    output.metadata = nbformat.from_dict({})
                else:  # streams and errors have no metadata in nbformat 4
                    output.pop("metadata", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def problems(path: Path) -> list[str]:
    """What keeps a committed notebook from being clean."""
    nb = nbformat.read(path, as_version=4)
    found = []
    if set(nb.metadata) - {"kernelspec", "language_info", "widgets"}:
        found.append(f"notebook metadata {sorted(set(nb.metadata) - {'kernelspec', 'language_info', 'widgets'})}")
    if set(nb.metadata.get("language_info", {})) - {"name"}:
        found.append("volatile language_info (version, codemirror...)")
    if set(nb.metadata.get("widgets", {})) - {WIDGET_STATE}:
        found.append(f"widget metadata {sorted(set(nb.metadata.widgets) - {WIDGET_STATE})}")
    state, shown = stored_widgets(nb), set()
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
            if WIDGET_VIEW in output.get("data", {}):
                problem = view_problem(output, state)
                found += [f"cell {number}: {problem}"] if problem else []
                shown.update(reached(output.data[WIDGET_VIEW].get("model_id", ""), state))
            if output.output_type == "stream" and output.name == "stderr" and "Traceback" in output.text:
                found.append(f"cell {number}: a traceback in stderr")
    if set(state) - shown:
        found.append(f"stored state of {len(set(state) - shown)} widget models no output shows (run `clean`)")
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
                store_widget_state=True,  # clean() keeps the state of the widgets a view shows
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
