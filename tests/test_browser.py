"""The notebooks in a real JupyterLab, in headless Chromium driven by Playwright.

A learner meets the widgets in a browser, where a missing widget extension, a
front-end version mismatch or a broken image shows up only as a blank cell.
These tests start JupyterLab from this environment (127.0.0.1, a free port, a
token, private config and data folders), open the notebooks in Debian's
Chromium (``/usr/bin/chromium``, kept off the network) and check the page:

* ``06_retrieval_demo`` run in fast mode, then driven through its rendered
  widgets (query slider, k, radius, an upload): after each action the
  result list the explorer draws (``hhlib.widgets.results_html``) must be
  the search :mod:`hhlib.retrieval` gives in this process for the same query;
* the committed ``05_code_visualisation`` and ``06_retrieval_demo`` opened
  without running: every image output loads, and 06's stored widget state
  draws the explorer; a copy of 06 with the explorer broken must fail.

Marked ``browser`` (``pytest -m "not browser"`` leaves them out); skipped,
with the reason, where Chromium or the Playwright client is missing.
Screenshots go to ``$HH_ARTIFACTS`` or a pytest temporary folder; each test
prints where.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("HH_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)", allow_module_level=True
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the Playwright client is not installed (pip install playwright)"
)

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LAB_START_S = 120  # JupyterLab on two busy cores
RUN_S = 300  # notebook 06 in fast mode, with a model to train when none is saved
STEP_S = 60  # one search after a widget change
# Chromium resolves no name but 127.0.0.1 and uses no proxy it could reach: it stays off the network.
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# The user settings of the private JupyterLab: every cell in the page (not only those scrolled to), no news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


# -- JupyterLab and the browser ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (a connection is refused)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        pass
    return False


class Lab:
    """A JupyterLab server started for the tests; :meth:`stop` shuts it and its kernels down."""

    def __init__(self, root: Path, home: Path):
        self.root, self.port, self.token = root, free_port(), secrets.token_hex(16)
        self.log = home / "jupyterlab.log"
        env = dict(
            os.environ,
            HH_FAST="1",
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTER_DATA_DIR=str(home / "data"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
            IPYTHONDIR=str(home / "ipython"),
            MPLBACKEND="module://matplotlib_inline.backend_inline",
        )
        env.pop("JUPYTER_PATH", None)
        for plugin, settings in LAB_SETTINGS.items():
            path = home / "settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        command = [
            str(Path(sys.executable).with_name("jupyter-lab")),
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--LabServerApp.workspaces_dir=" + str(home / "workspaces"),
        ]
        # A fresh clone's notebooks are untrusted, and JupyterLab then draws a stored widget view as its text
        # fallback; trusting them (File > Trust Notebook, or `jupyter trust`) draws the widgets.
        self.env = env
        self.trust(*root.glob("*.ipynb"))
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def trust(self, *notebooks: Path) -> None:
        """Sign notebooks in this server's private signature database."""
        trust = [str(Path(sys.executable).with_name("jupyter-trust")), *map(str, notebooks)]
        subprocess.run(trust, env=self.env, check=True, capture_output=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}{'&' if '?' in path else '?'}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + LAB_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError, ValueError):
                self.api("status")
                return
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer in {LAB_START_S} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Shut the kernels and the server down (by the API, then by signals), and wait for the port."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                for kernel in self.api("kernels"):
                    self.api(f"kernels/{kernel['id']}", "DELETE")
            with contextlib.suppress(OSError, ValueError):
                self.api("shutdown", "POST")
            for sent in (None, signal.SIGTERM, signal.SIGKILL):
                if sent is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, sent)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=15)
                    break
        deadline = time.monotonic() + 15
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Where the screenshots go: $HH_ARTIFACTS, else a pytest temporary folder."""
    folder = Path(os.environ["HH_ARTIFACTS"]) if os.environ.get("HH_ARTIFACTS") else None
    folder = folder or tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of notebooks/ (fast mode), stopped and its port freed whatever the outcome."""
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    server = Lab(root, home)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        assert port_is_free(server.port), f"port {server.port} still taken after JupyterLab was stopped"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    context.set_default_timeout(STEP_S * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


def report(capsys, message: str) -> None:
    with capsys.disabled():
        print(f"\n[browser] {message}")


# -- reading the page -------------------------------------------------------------------------

# The cells of the open notebook and, in rendering order, what their outputs show.
READ_OUTPUTS = """() => Array.from(
    document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell')
  ).map(cell => ({
    images: Array.from(cell.querySelectorAll('.jp-OutputArea-output img'))
      .map(img => ({width: img.naturalWidth, complete: img.complete, widget: !!img.closest('.jupyter-widgets')})),
    widgets: cell.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets').length,
    text: Array.from(cell.querySelectorAll('.jp-OutputArea-output')).map(o => o.textContent).join('\\n'),
  }))"""

# What the explorer of the page shows: its status line, its picture, its list of results.
READ_EXPLORER = """() => {
  const box = Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox'))
    .find(b => b.querySelector('.widget-upload') && b.querySelector('.widget-image'));
  if (!box) return null;
  const html = Array.from(box.querySelectorAll('.widget-html-content'));
  const list = box.querySelector('.hh-results');
  const picture = box.querySelector('img.widget-image');
  // a picture counts when it decoded and has opaque pixels: a blank (transparent) PNG decodes too
  const opaque = img => {
    if (!img.complete || !img.naturalWidth) return false;
    const canvas = document.createElement('canvas');
    canvas.width = 64; canvas.height = 64;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0, 64, 64);
    return context.getImageData(0, 0, 64, 64).data.some((value, i) => i % 4 === 3 && value > 0);
  };
  return {
    status: html.length ? html[0].textContent : '',
    sliders: box.querySelectorAll('.widget-slider').length,
    picture: picture && opaque(picture) ? picture.naturalWidth : 0,
    count: list ? Number(list.dataset.count) : null,
    results: Array.from(box.querySelectorAll('.hh-result')).map(r => ({
      id: Number(r.dataset.id), distance: Number(r.dataset.distance),
      kind: ['hh-right', 'hh-wrong', 'hh-unknown'].find(k => r.classList.contains(k)),
    })),
  };
}"""


def open_notebook(page, lab: Lab, path: str) -> None:
    """Open a notebook in JupyterLab and wait until its cells are in the page and its images are loaded."""
    page.goto(lab.url(f"lab/tree/{path}"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=LAB_START_S * 1000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=STEP_S * 1000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=LAB_START_S * 1000)
    settle(page)


def settle(page, seconds: float = 3.0) -> None:
    """Let the widget manager restore and the images decode: until no image is pending and nothing says loading."""
    page.wait_for_timeout(seconds * 1000)
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.jp-Notebook img')).every(img => img.complete)
             && !document.querySelector('.jp-Notebook').textContent.includes('Loading widget...')""",
        timeout=STEP_S * 1000,
    )


def output_problems(page, notebook: Path, explorer: bool = False) -> list[str]:
    """What does not render in the open notebook, against the outputs the file stores (empty: all do).

    Every image output must load (natural width > 0); every widget view must
    be drawn as widgets (not as its text fallback or an error); with
    ``explorer``, the retrieval explorer must be drawn with its controls and
    its picture.
    """
    import nbformat

    stored = [cell for cell in nbformat.read(notebook, as_version=4).cells]
    shown = page.evaluate(READ_OUTPUTS)
    problems = []
    if len(shown) != len(stored):
        return [f"{len(shown)} cells in the page, {len(stored)} in {notebook.name}"]
    for number, (cell, seen) in enumerate(zip(stored, shown)):
        outputs = cell.get("outputs", [])
        images = sum(1 for o in outputs if "image/png" in o.get("data", {}) and WIDGET_VIEW not in o.get("data", {}))
        views = sum(1 for o in outputs if WIDGET_VIEW in o.get("data", {}))
        plain = [img for img in seen["images"] if not img["widget"]]
        if len(plain) != images:
            problems.append(f"cell {number}: {len(plain)} images in the page, {images} image outputs stored")
        broken = [img for img in seen["images"] if img["width"] == 0]
        if broken:
            problems.append(f"cell {number}: {len(broken)} images that do not render (natural width 0)")
        if seen["widgets"] < views:
            problems.append(
                f"cell {number}: {views} widget views stored, {seen['widgets']} drawn: {seen['text'][:200]!r}"
            )
        if "Error displaying widget" in seen["text"]:
            problems.append(f"cell {number}: {seen['text'][:200]!r}")
    if explorer:
        drawn = page.evaluate(READ_EXPLORER)
        if drawn is None:
            problems.append("no retrieval explorer in the page")
        elif drawn["sliders"] != 3 or drawn["picture"] == 0 or not drawn["status"]:
            problems.append(f"the explorer is drawn incomplete: {drawn}")
    return problems


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def open_fresh(page, lab: Lab, path: str) -> None:
    """Shut down the kernels earlier tests opened, then open ``path`` alone (``?reset``: no restored tabs)."""
    for session in lab.api("sessions"):
        lab.api(f"sessions/{session['id']}", "DELETE")
    open_notebook(page, lab, f"{path}?reset")


# -- the committed notebooks, opened without running them ------------------------------------------

COMMITTED = ["05_code_visualisation", "06_retrieval_demo"]


@pytest.fixture(scope="module")
def committed(lab):
    """The committed notebooks, copied aside (the run of 06 below must not change what these tests open)."""
    folder = lab.root / "committed"
    folder.mkdir()
    for name in COMMITTED:
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", folder)
    lab.trust(*folder.glob("*.ipynb"))
    return folder


def check_committed(page, lab: Lab, notebook: Path, artifacts: Path) -> list[str]:
    """Open a notebook of ``lab.root`` without running it, screenshot it, return what does not render."""
    open_fresh(page, lab, notebook.relative_to(lab.root).as_posix())
    explorer = notebook.name.startswith("06") or "explorer" in notebook.stem
    if explorer and page.evaluate(READ_EXPLORER) is not None:
        box = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox:has(.widget-upload)").first
        box.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / f"{notebook.stem}.png")
    return output_problems(page, notebook, explorer=explorer)


@pytest.mark.parametrize("name", COMMITTED)
def test_a_committed_notebook_renders_without_running(page, lab, committed, artifacts, capsys, name):
    problems = check_committed(page, lab, committed / f"{name}.ipynb", artifacts)
    report(capsys, f"{name}: screenshot in {artifacts}")
    assert problems == []


def broken_copy(name: str, how: str) -> "nbformat.NotebookNode":  # noqa: F821
    """A committed notebook broken the way a learner would see only as a blank cell."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    if how == "explorer output cleared":
        cell = next(c for c in nb.cells if any(WIDGET_VIEW in o.get("data", {}) for o in c.get("outputs", [])))
        cell.outputs = []
    elif how == "widget state removed":
        del nb.metadata["widgets"]
    elif how == "an image corrupted":
        output = next(o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        output.data["image/png"] = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" + "A" * 64  # a PNG header, then nothing
    return nb


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("06_retrieval_demo", "explorer output cleared"),
        ("06_retrieval_demo", "widget state removed"),
        ("05_code_visualisation", "an image corrupted"),
    ],
)
def test_a_broken_notebook_fails_the_check(page, lab, committed, artifacts, capsys, name, how):
    import nbformat

    path = committed / f"broken-{how.replace(' ', '-')}-{name}.ipynb"
    nbformat.write(broken_copy(name, how), path)
    lab.trust(path)
    problems = check_committed(page, lab, path, artifacts)
    report(capsys, f"{path.name}: {problems}")
    assert problems, f"{how}: the check found nothing wrong"


# -- notebook 06 run in JupyterLab and driven through its widgets --------------------------------------


def explorer_box(page):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox:has(.widget-upload)").first


def set_slider(page, label: str, value: int) -> None:
    """Type a value into a slider's readout, as a user does, and press Enter."""
    label_node = page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$"))
    readout = explorer_box(page).locator(".widget-slider", has=label_node).locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def expected_view(result) -> dict:
    """What the explorer's page should show for a SearchResult computed here."""
    kinds = (
        ["hh-unknown"] * len(result.ids)
        if result.relevant is None
        else ["hh-right" if r else "hh-wrong" for r in result.relevant]
    )
    return {
        "query": result.query,
        "count": len(result.ids),
        "results": [
            {"id": int(i), "distance": int(d), "kind": kind} for i, d, kind in zip(result.ids, result.distances, kinds)
        ],
    }


def shown_view(page) -> dict | None:
    drawn = page.evaluate(READ_EXPLORER)
    if drawn is None:
        return None
    return {
        "query": drawn["status"].split(":")[0],
        "count": drawn["count"],
        "results": drawn["results"],
        "picture": drawn["picture"] > 0,
    }


def stable_screenshot(page, box, path: Path, tries: int = 20) -> None:
    """A screenshot of ``box`` once two in a row are equal: a screenshot taken while a new picture is
    being painted shows part of it."""
    box.scroll_into_view_if_needed()
    shot = None
    for _ in range(tries):
        previous, shot = shot, page.screenshot(clip=box.bounding_box())
        if shot == previous:
            break
        page.wait_for_timeout(250)
    path.write_bytes(shot)


def assert_page_shows(page, result, step: str, artifacts: Path | None = None) -> None:
    """Wait (up to STEP_S) until the page's explorer shows ``result``; then check it, picture included."""
    expected = {**expected_view(result), "picture": True}
    deadline = time.monotonic() + STEP_S
    shown = shown_view(page)
    while shown != expected and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        shown = shown_view(page)
    if artifacts is not None:
        settle(page, 1.0)
        page.evaluate(  # the new picture decoded, then painted
            """async () => { const box = Array.from(document.querySelectorAll('.widget-vbox'))
                               .find(b => b.querySelector('.widget-upload'));
                             await box.querySelector('img.widget-image').decode(); }"""
        )
        stable_screenshot(page, explorer_box(page), artifacts / f"06-{step.replace(' ', '-')}.png")
    assert shown == expected, f"after {step}, the page's explorer differs from hhlib's search"
    wrong = sum(item["kind"] == "hh-wrong" for item in shown["results"])
    assert wrong == (0 if result.relevant is None else int((~result.relevant).sum())), f"red frames after {step}"


def test_the_explorer_in_jupyterlab_searches_as_hhlib_does(page, lab, artifacts, capsys):
    from hhlib.retrieval import Retriever
    from hhlib.tutorial import setup
    from hhlib.widgets import UNKNOWN_CLASS, database_index, upload_entry, upload_query

    report(capsys, f"screenshots in {artifacts}")
    open_fresh(page, lab, "06_retrieval_demo.ipynb")
    page.evaluate(
        """() => {
          window.hhRan = null;
          window.jupyterapp.commands.execute('notebook:run-all-cells').then(
            ok => { window.hhRan = ok ? 'ok' : 'a cell failed'; }, e => { window.hhRan = String(e); });
        }"""
    )
    page.wait_for_function("() => window.hhRan !== null", timeout=RUN_S * 1000)
    ran = page.evaluate("() => window.hhRan")
    assert ran == "ok", f"running 06 in JupyterLab: {ran}\n{page.evaluate(READ_OUTPUTS)}"
    settle(page)

    # The same model, data and index the kernel used (fast mode, the same runs folder), searched here.
    tut = setup(fast=True)
    data = tut.data()
    model, _ = tut.trained_model(64, data)
    index = database_index(model, data, cache=tut.run_dir(64) / "database.npz", progress=False)
    retriever = Retriever(model, data, index)
    shown = shown_view(page)
    assert shown is not None, "no explorer in the page after running 06"
    shirt = int(shown["query"].split()[1])  # "query 27 (Shirt)": the notebook's last search
    assert_page_shows(page, retriever.search(retriever.query_item(shirt), 10, index.bits), "the run")

    query = 3 if shirt != 3 else 4
    set_slider(page, "query item", query)
    assert_page_shows(page, retriever.search(retriever.query_item(query), 10, index.bits), "slider change", artifacts)

    set_slider(page, "k", 20)
    twenty = retriever.search(retriever.query_item(query), 20, index.bits)
    assert_page_shows(page, twenty, "k change")

    radius = int(np.median(twenty.distances))
    set_slider(page, "radius", radius)
    assert_page_shows(page, retriever.search(retriever.query_item(query), 20, radius), "radius change", artifacts)

    set_slider(page, "radius", index.bits)
    sneaker = NOTEBOOKS / "foreign" / "sneaker.png"
    with page.expect_file_chooser() as chooser:
        explorer_box(page).locator(".widget-upload").click()
    chooser.value.set_files(str(sneaker))
    entry = upload_entry(sneaker.read_bytes(), sneaker.name)
    unknown = retriever.search(upload_query(entry, data, UNKNOWN_CLASS), 20, index.bits)
    assert_page_shows(page, unknown, "upload", artifacts)

    explorer_box(page).locator(".widget-dropdown select").select_option("Sneaker")
    as_sneaker = retriever.search(upload_query(entry, data, "Sneaker"), 20, index.bits)
    assert_page_shows(page, as_sneaker, "upload class chosen", artifacts)
