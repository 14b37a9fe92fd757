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


def model(name: str, **state) -> dict:
    """A stored widget model as nbclient writes it."""
    return {
        "model_name": name,
        "model_module": "@jupyter-widgets/controls",
        "model_module_version": "2.0.0",
        "state": state,
    }


def view(model_id: str, text: str, output_type: str = "display_data") -> nbformat.NotebookNode:
    """The output of a cell that displayed a widget: its model id and a text fallback."""
    data = {notebook_tools.WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}}
    return nbformat.v4.new_output(output_type, data={**data, "text/plain": text})


PNG = {"data": "iVBORw0KGgo=", "encoding": "base64", "path": ["value"]}
WIDGETS = {
    # the explorer: a box of a status line and the results' picture, whose PNG is a buffer
    "box": model(
        "VBoxModel", children=["IPY_MODEL_status", "IPY_MODEL_picture", "IPY_MODEL_upload"], layout="IPY_MODEL_layout"
    ),
    "status": model("HTMLModel", value="<b>query 3</b>: 10 of the 10 nearest"),
    "picture": {**model("ImageModel", format="png"), "buffers": [PNG]},
    "layout": model("LayoutModel", width="420px"),
    # emptied after an upload: nbclient still holds the file's bytes, which no longer fit the state
    "upload": {**model("FileUploadModel", value=[]), "buffers": [{**PNG, "path": ["value", 0, "content"]}]},
    # a tqdm bar: a box of a description, the bar and its count
    "bar": model("HBoxModel", children=["IPY_MODEL_desc", "IPY_MODEL_progress", "IPY_MODEL_count"]),
    "desc": model("HTMLModel", value="encoding"),
    "progress": model("FloatProgressModel", value=157.0, max=157.0),
    "count": model("HTMLModel", value=" 157/157"),
    "closed": model("IntSliderModel", value=4),  # made and closed again: no output shows it
}


def dirty_notebook():
    state = {notebook_tools.WIDGET_STATE: {"state": WIDGETS, "version_major": 2, "version_minor": 0}}
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3"},
            "toc": {"nav_menu": {}},
            "widgets": {**state, "state": {}},
            "language_info": {"name": "python", "version": "3.12.1"},
        }
    )
    code = nbformat.v4.new_code_cell(
        "1 / 0", execution_count=3, metadata={"collapsed": True, "tags": ["keep"], "jupyter": {"source_hidden": True}}
    )
    code.outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]),
        view("bar", "  0%|          | 0/157"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3),
    ]
    explorer = nbformat.v4.new_code_cell("explorer", execution_count=5)
    explorer.outputs = [view("box", "RetrievalExplorer(...)"), view("gone", "IntSlider(value=1)")]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), code, explorer]
    return nb


def test_check_names_every_problem(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(dirty_notebook(), path)
    found = notebook_tools.problems(path)
    for problem in (
        "notebook metadata ['toc']",
        "volatile language_info",
        "widget metadata ['state']",
        "cell 2: metadata ['collapsed']",
        "execution count 3, not 1",
        "error output ZeroDivisionError",
        "cell 2: a progress-bar widget",
        "cell 3: a widget view without its stored state",
        "stored state of 1 widget models no output shows",
    ):
        assert any(problem in line for line in found), problem


def test_clean_strips_volatile_state_and_keeps_outputs(tmp_path):
    path = tmp_path / "nb.ipynb"
    nb = notebook_tools.clean(dirty_notebook())
    nbformat.write(nb, path)
    cell = nb.cells[1]
    assert cell.execution_count == 1  # numbered in order
    assert cell.metadata == {"tags": ["keep"], "jupyter": {"source_hidden": True}}  # a folded solution stays folded
    assert [o.output_type for o in cell.outputs] == ["error", "execute_result"]  # the tqdm bar and its "0%" are gone
    assert cell.outputs[1].execution_count == 1 and cell.outputs[1].data == {"text/plain": "2"}
    nbformat.validate(nb)  # a valid notebook: no metadata on the error output, as nbformat 4 says
    # what is left is exactly the error, which clean() must not hide
    assert notebook_tools.problems(path) == ["cell 2: error output ZeroDivisionError: division by zero"]


def test_clean_keeps_exactly_the_explorer_and_its_state():
    nb = notebook_tools.clean(dirty_notebook())
    assert set(nb.metadata) == {"kernelspec", "language_info", "widgets"}
    (shown,) = nb.cells[2].outputs  # the view whose state was never stored is gone
    assert shown.data["text/plain"] == "RetrievalExplorer(...)"
    state = notebook_tools.stored_widgets(nb)
    box = shown.data[notebook_tools.WIDGET_VIEW]["model_id"]
    names = ["FileUploadModel", "HTMLModel", "ImageModel", "LayoutModel", "VBoxModel"]
    assert sorted(m["model_name"] for m in state.values()) == names
    assert state[box]["model_name"] == "VBoxModel"
    status, picture, upload = (state[ref.removeprefix("IPY_MODEL_")] for ref in state[box]["state"]["children"])
    assert status["state"]["value"].startswith("<b>query 3</b>")
    assert picture["buffers"] == [PNG]  # the picture travels with the notebook
    assert "buffers" not in upload  # a stale buffer would break restoring the emptied upload
    assert state[box]["state"]["layout"].removeprefix("IPY_MODEL_") in state


def test_clean_names_widgets_by_order_so_it_is_idempotent():
    once = notebook_tools.clean(dirty_notebook())
    again = dirty_notebook()
    again.metadata.widgets[notebook_tools.WIDGET_STATE]["state"] = {
        f"uuid-{key}": notebook_tools.renamed(value, {k: f"uuid-{k}" for k in WIDGETS})
        for key, value in WIDGETS.items()
    }  # the same widgets under the random ids of another run
    again.cells[2].outputs[0].data[notebook_tools.WIDGET_VIEW]["model_id"] = "uuid-box"
    assert notebook_tools.clean(again) == once
    assert notebook_tools.clean(nbformat.from_dict(once)) == once


def test_run_tells_the_terminal_each_cell_and_each_logged_epoch(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("import os\nopen(os.environ['HH_PROGRESS_LOG'], 'a').write('epoch 1, loss 0.5\\n')"),
        nbformat.v4.new_code_cell("# a comment first\nx = 6 * 7\nx"),
        nbformat.v4.new_code_cell("from tqdm.notebook import tqdm\nfor _ in tqdm(range(3)): pass"),
        nbformat.v4.new_code_cell("import ipywidgets\nipywidgets.IntSlider(value=3)"),
    ]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    notebook_tools.run(path, tmp_path / "out", fast=True, timeout=60)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert "tiny [1/4] import os" in lines and "tiny [2/4] x = 6 * 7" in lines  # code cells only, comments skipped
    assert "    epoch 1, loss 0.5" in lines  # what the kernel logged, echoed while the notebook runs
    assert lines.index("tiny [1/4] import os") < lines.index("    epoch 1, loss 0.5")
    assert "without encryption" not in err  # local sockets, not TCP
    assert list(tmp_path.glob("kernel-ipc*")) == []  # the sockets live in a temporary folder
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    assert executed.cells[2].outputs[0].data["text/plain"] == "42"
    # the widgets' state is stored; clean keeps the slider, not the finished progress bar
    cleaned = notebook_tools.clean(executed)
    assert [o for o in cleaned.cells[3].outputs if notebook_tools.WIDGET_VIEW in o.get("data", {})] == []
    (slider,) = cleaned.cells[4].outputs
    slider_state = notebook_tools.stored_widgets(cleaned)[slider.data[notebook_tools.WIDGET_VIEW]["model_id"]]
    assert slider_state["model_name"] == "IntSliderModel" and slider_state["state"]["value"] == 3
