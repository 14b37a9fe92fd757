"""The committed notebooks: all seven present, clean, and free of errors.

Executing them is nbval's job (``pytest notebooks/``); this checks what is
committed, with the same rules as ``python tools/notebooks.py check``.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("notebook_tools", ROOT / "tools" / "notebooks.py")
notebook_tools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(notebook_tools)

EXPECTED = [
    "01_data_and_protocols",
    "02_architecture",
    "03_training",
    "04_evaluation",
    "05_code_visualisation",
    "06_retrieval_demo",
    "07_hashing_families",
]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_seven_tutorial_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    assert notebook_tools.problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_the_tutorial_setup(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a title first"
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "setup(" in first_code.source, "the first code cell calls hhlib.tutorial.setup()"


def dirty_notebook():
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "widgets": {"state": {}},
            "language_info": {"name": "python", "version": "3.12.1"},
        }
    )
    code = nbformat.v4.new_code_cell(
        "1 / 0", execution_count=3, metadata={"collapsed": True, "tags": ["keep"], "jupyter": {"source_hidden": True}}
    )
    code.outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]),
        nbformat.v4.new_output(
            "display_data",
            data={"application/vnd.jupyter.widget-view+json": {}, "text/plain": "  0%|          | 0/157"},
        ),
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), code]
    return nb


def test_check_names_every_problem(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(dirty_notebook(), path)
    found = "\n".join(notebook_tools.problems(path))
    for problem in (
        "notebook metadata ['widgets']",
        "volatile language_info",
        "cell 2: metadata ['collapsed']",
        "execution count 3, not 1",
        "error output ZeroDivisionError",
        "widget state",
    ):
        assert problem in found


def test_clean_strips_volatile_state_and_keeps_outputs(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = notebook_tools.clean(dirty_notebook())
    nbformat.write(nb, path)
    cell = nb.cells[1]
    assert cell.execution_count == 1  # numbered in order
    assert cell.metadata == {"tags": ["keep"], "jupyter": {"source_hidden": True}}  # a folded solution stays folded
    assert [o.output_type for o in cell.outputs] == ["error", "execute_result"]  # the widget and its "0%" are gone
    assert cell.outputs[1].execution_count == 1 and cell.outputs[1].data == {"text/plain": "2"}
    # what is left is exactly the error, which clean() must not hide
    assert notebook_tools.problems(path) == ["cell 2: error output ZeroDivisionError: division by zero"]


def test_run_tells_the_terminal_each_cell_and_each_logged_epoch(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("import os\nopen(os.environ['HH_PROGRESS_LOG'], 'a').write('epoch 1, loss 0.5\\n')"),
        nbformat.v4.new_code_cell("# a comment first\nx = 6 * 7\nx"),
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    notebook_tools.run(path, tmp_path / "out", fast=True, timeout=60)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert "tiny [1/2] import os" in lines and "tiny [2/2] x = 6 * 7" in lines  # code cells only, comments skipped
    assert "    epoch 1, loss 0.5" in lines  # what the kernel logged, echoed while the notebook runs
    assert lines.index("tiny [1/2] import os") < lines.index("    epoch 1, loss 0.5")
    assert "without encryption" not in err  # local sockets, not TCP
    assert list(tmp_path.glob("kernel-ipc*")) == []  # the sockets live in a temporary folder
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    assert executed.cells[2].outputs[0].data["text/plain"] == "42"
