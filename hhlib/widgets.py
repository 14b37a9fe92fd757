"""An interactive retrieval explorer for notebooks, built from ipywidgets.

    from hhlib.widgets import retrieval_explorer
    explorer = retrieval_explorer(model, data)   # encodes the database once
    explorer                                     # shows the controls and the results

Pick a query item (or upload an image), a number of results k and a Hamming
radius; a :class:`hhlib.retrieval.Retriever` encodes the query, asks the
:class:`~hhlib.index.HammingIndex` of the database codes for the k nearest
codes and keeps those within the radius; the explorer draws them framed
green (shares a label with the query) or red. The explorer is only a view:
building, caching and searching the index live in :mod:`hhlib.retrieval`
(docs/DESIGN.md, "Retrieval core"), whose :func:`database_index` this
module re-exports.

Everything the explorer shows is also kept as plain data, so code (and
tests) can drive it without a browser: set the widgets' values, call
``explorer.search_button.click()``, read ``explorer.last_result`` (a
:class:`SearchResult`) and ``explorer.status_text`` (the status line as plain text).
The picture is one PNG, so the explorer also lists the results as HTML
(``explorer.results``: one element per result, with its database id,
distance and relevance as data attributes and classes), which a browser
test can read from the page (tests/test_browser.py).
"""

from __future__ import annotations

import datetime
import hashlib
import html
import io
import os
import re
import threading

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from hhlib.data import DATASETS
from hhlib.data.transforms import TensorTransform, load_query_image
from hhlib.index import HammingIndex
from hhlib.retrieval import Query, Retriever, SearchResult, class_text, database_index
from hhlib.viz.codes import IRRELEVANT_COLOUR, RELEVANT_COLOUR, UNKNOWN_COLOUR, plot_retrieval_grid

__all__ = [
    "QUERY_SET",
    "UPLOAD",
    "SearchResult",
    "RetrievalExplorer",
    "retrieval_explorer",
    "database_index",
    "plot_search_result",
    "upload_entry",
    "decode_upload",
    "results_html",
]

QUERY_SET = "query set"
UPLOAD = "uploaded image"
UNKNOWN_CLASS = "unknown"


def upload_entry(content: bytes, name: str = "image.png", mime_type: str = "image/png") -> dict:
    """A file as ``widgets.FileUpload.value`` holds it after a browser upload.

    ``explorer.upload.value = (upload_entry(png_bytes, "shoe.png"),)`` does
    what choosing the file in the browser does.
    """
    return {
        "name": name,
        "type": mime_type,
        "size": len(content),
        "content": memoryview(bytes(content)),
        "last_modified": datetime.datetime.now(datetime.timezone.utc),
    }


def decode_upload(content: bytes, data, name: str = "the file") -> tuple[torch.Tensor, np.ndarray]:
    """An uploaded image file as a model input, made as the query images are made, and for display.

    In-memory datasets (Fashion-MNIST, CIFAR-10, digits) pass the pixels
    through their query split's own TensorTransform (read as grey for grey
    datasets, resized to the model's side, normalised); list-file datasets
    use :func:`hhlib.data.transforms.load_query_image` (the paper's resize
    and centre crop).

    Args:
        content: the file's bytes.
        data: the :func:`hhlib.data.get_dataset` result searched.
        name: the file's name, for error messages.

    Returns:
        ``(image, display)``: the (1, 3, S, S) float32 model input and an
        (H, W, 3) uint8 copy at most 256 pixels wide, to draw.

    Raises:
        ValueError: the bytes are not an image PIL can decode (the message
            names the file).
    """
    info = DATASETS.get(data.name)
    grey = bool(info and info.grey)
    transform = getattr(data.query, "transform", None)
    try:
        with Image.open(io.BytesIO(content)) as picture:
            picture.load()
            if isinstance(transform, TensorTransform):
                pixels = torch.from_numpy(np.array(picture.convert("L" if grey else "RGB"), dtype=np.uint8))
                pixels = pixels.reshape(*pixels.shape[:2], -1).permute(2, 0, 1).unsqueeze(0)  # (1, C, H, W)
                image = transform(pixels)
            else:
                image = load_query_image(io.BytesIO(content), data.img_size, grey=grey, list_file=True)
            shown = picture.convert("RGB")
            shown.thumbnail((256, 256))  # a photo is drawn about as small as the results
    except UnidentifiedImageError as error:  # its message names a BytesIO object, not the file
        raise ValueError(f"could not read {name!r} as an image: upload a PNG, JPEG or other image file") from error
    # PIL raises OSError for truncated files, SyntaxError for some broken ones
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"could not read {name!r} as an image ({type(error).__name__}: {error})") from error
    return image, np.asarray(shown)


def upload_query(entry: dict, data, class_name: str = UNKNOWN_CLASS) -> Query:
    """The :class:`~hhlib.retrieval.Query` of an uploaded file (a ``FileUpload.value`` entry).

    ``class_name`` is the class the user chose for it (:data:`UNKNOWN_CLASS`:
    relevance cannot be judged). Raises ValueError for a file that is not an image.
    """
    content = bytes(entry["content"])
    image, display = decode_upload(content, data, entry["name"])
    label = None
    if class_name != UNKNOWN_CLASS:
        label = np.zeros(data.num_classes, np.uint8)
        label[list(data.class_names).index(class_name)] = 1
    key = ("upload", hashlib.sha256(content).hexdigest())
    return Query(f"upload {entry['name']}", image, display, label, key=key)


def plot_search_result(result: SearchResult, data, columns: int = 10, **draw) -> Figure:
    """Draw a :class:`SearchResult`: the query, then the results framed by relevance.

    Args:
        result: e.g. ``explorer.last_result``.
        data: the dataset searched (its database images and class names).
        columns: results per row.
        draw: ``interpolation`` and ``pyplot``, as :func:`hhlib.viz.codes.plot_retrieval_grid` takes them.

    Returns:
        The Figure (see :func:`hhlib.viz.codes.plot_retrieval_grid`).
    """
    labels = data.database.labels
    images = [data.database.raw_image(int(i)) for i in result.ids]
    captions = [class_text(labels[int(i)], data.class_names) for i in result.ids]
    shown = f"{len(result.ids)} of the {result.k} nearest within radius {result.radius}"
    precision = f"; precision {result.precision:.2f}" if result.precision is not None else ""
    return plot_retrieval_grid(
        result.query_image,
        images,
        result.distances,
        result.relevant,
        captions,
        query_caption=result.query,
        columns=columns,
        title=shown + precision,
        **draw,
    )


class RetrievalExplorer:
    """Widgets to search a database by Hamming distance; made by :func:`retrieval_explorer`.

    A view over a :class:`hhlib.retrieval.Retriever` (docs/DESIGN.md,
    "Retrieval core"): the retriever encodes, searches and judges relevance;
    the explorer lays out the controls, reacts to them and draws.

    Attributes:
        source: ToggleButtons, search with the query item or the uploaded image.
        query_slider: IntSlider, the position of the query item in ``data.query``.
        upload: FileUpload, an image to search with (decoded as query images are).
        upload_class: Dropdown, the class of the uploaded image, or "unknown"
            (then relevance cannot be judged).
        k_slider: IntSlider, the number of results asked for.
        radius_slider: IntSlider, the largest Hamming distance shown.
        search_button: Button, runs :meth:`search`.
        status: HTML, what was searched, how many results, their precision,
            or what went wrong (e.g. a file that is not an image).
        result_image: Image, the drawn result (PNG).
        results: HTML, the results as a row of distances framed as in the
            picture: one ``<span class="hh-result hh-right|hh-wrong|hh-unknown"
            data-id=... data-distance=...>`` per result (see :func:`results_html`).
        widget: the whole interface (a VBox); the explorer displays as it.
        retriever: the :class:`~hhlib.retrieval.Retriever` behind it.
        last_result: the :class:`SearchResult` of the last search (None
            before the first and after a failed one).
        last_figure: the Figure of the last search (not tracked by pyplot; display it to see it again).
        live: when True, changing any control searches again (as the button does).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data,
        index: HammingIndex,
        k: int = 10,
        max_k: int = 50,
        radius: int | None = None,
        columns: int = 10,
        live: bool = True,
    ) -> None:
        self.retriever = Retriever(model, data, index)  # checks the index against the model and the data
        bits = index.bits
        if len(data.query) == 0:
            raise ValueError("the query split is empty")
        if not 1 <= k <= max_k:
            raise ValueError(f"k must lie in 1..max_k={max_k}, got {k}")
        radius = bits if radius is None else radius
        if not 0 <= radius <= bits:
            raise ValueError(f"radius must lie in 0..{bits}, got {radius}")
        self.data = data
        self.columns = columns
        self.live = live
        self.last_result: SearchResult | None = None
        self.last_figure: Figure | None = None
        self._switching = False
        # JupyterLab 4.4+ sends some widget messages to a kernel subshell: controls can change on two
        # threads at once. One search at a time, each reading every control when it starts, so the last
        # to run shows the controls' last state.
        self._lock = threading.RLock()
        self._build(k, max_k, radius, bits)
        self._connect()

    @property
    def model(self) -> torch.nn.Module:
        return self.retriever.model

    @property
    def index(self) -> HammingIndex:
        return self.retriever.index

    @property
    def status_text(self) -> str:
        """The status line as plain text (no tags, no entities), to print."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def _build(self, k: int, max_k: int, radius: int, bits: int) -> None:
        """Make the controls and lay them out."""
        wide = widgets.Layout(width="420px")
        self.source = widgets.ToggleButtons(options=[QUERY_SET, UPLOAD], value=QUERY_SET, description="search with")
        self.query_slider = widgets.IntSlider(
            value=0, min=0, max=len(self.data.query) - 1, description="query item", continuous_update=False, layout=wide
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload image")
        self.upload_class = widgets.Dropdown(
            options=[UNKNOWN_CLASS, *self.data.class_names], value=UNKNOWN_CLASS, description="its class"
        )
        self.k_slider = widgets.IntSlider(
            value=k, min=1, max=max_k, description="k", continuous_update=False, layout=wide
        )
        self.radius_slider = widgets.IntSlider(
            value=radius, min=0, max=bits, description="radius", continuous_update=False, layout=wide
        )
        self.search_button = widgets.Button(description="search", button_style="primary", icon="search")
        self.status = widgets.HTML()
        self.result_image = widgets.Image(format="png")
        self.results = widgets.HTML()
        self.widget = widgets.VBox(
            [
                self.source,
                widgets.HBox([self.query_slider]),
                widgets.HBox([self.upload, self.upload_class]),
                widgets.HBox([self.k_slider, self.radius_slider]),
                self.search_button,
                self.status,
                self.result_image,
                self.results,
            ]
        )

    # -- events ------------------------------------------------------------

    def _connect(self) -> None:
        self.search_button.on_click(lambda _: self.search())
        self.query_slider.observe(lambda _: self._switch_to(QUERY_SET), names="value")
        self.upload.observe(self._uploaded, names="value")
        self.source.observe(self._changed, names="value")
        for control in (self.upload_class, self.k_slider, self.radius_slider):
            control.observe(self._changed, names="value")

    def _changed(self, _=None) -> None:
        if self.live and not self._switching:
            self.search()

    def _switch_to(self, source: str) -> None:
        """Make ``source`` the query source, then search once (not twice) if live."""
        with self._lock:
            self._switching = True
            try:
                self.source.value = source
            finally:
                self._switching = False
            self._changed()

    def _uploaded(self, change) -> None:
        if change["new"]:
            self._switch_to(UPLOAD)

    # -- search ------------------------------------------------------------

    def _query(self) -> Query:
        """The query the controls select; ValueError when there is none to use."""
        if self.source.value != UPLOAD:
            return self.retriever.query_item(self.query_slider.value)
        if not self.upload.value:
            raise ValueError(
                f"no image uploaded yet: choose a file with the upload button, or search with the {QUERY_SET}"
            )
        return upload_query(self.upload.value[-1], self.data, self.upload_class.value)

    def search(self) -> SearchResult | None:
        """Search with the current settings and show the result.

        Returns:
            The :class:`SearchResult` (also ``last_result``), or None when
            the query could not be read; ``status`` then says why.
        """
        with self._lock:
            try:
                query = self._query()
            except ValueError as error:
                self._fail(str(error))
                return None
            result = self.retriever.search(query, self.k_slider.value, self.radius_slider.value)
            self.last_result = result
            self._show(result)
            return result

    # -- drawing -----------------------------------------------------------

    def _fail(self, message: str) -> None:
        self.last_result = None
        self.last_figure = None
        self.result_image.value = b""
        self.results.value = ""
        self.status.value = f"<span style='color:#c00'>{html.escape(message)}</span>"

    def _show(self, result: SearchResult) -> None:
        # Off pyplot: its figure numbering is global, and two threads drawing could get one figure (a blank
        # picture). Untracked, the figure is drawn into the Image widget, not again by the inline backend.
        # Nearest pixels: crisp tiles, and a PNG half the size.
        figure = plot_search_result(result, self.data, columns=self.columns, interpolation="nearest", pyplot=False)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        self.last_figure = figure
        self.result_image.value = buffer.getvalue()
        self.results.value = results_html(result)
        self.status.value = _status_text(result)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widgets for Jupyter; a line saying what they are where widgets are not drawn (GitHub, a terminal)."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"{self!r}: interactive widgets (run the notebook to search with them)"
        return bundle

    def __repr__(self) -> str:
        return (
            f"RetrievalExplorer({self.data.name!r}, {len(self.data.query)} queries, "
            f"{len(self.index)} database codes of {self.index.bits} bits)"
        )


def _status_text(result: SearchResult) -> str:
    """The status line of a search: what was searched, how many results, their precision."""
    text = (
        f"<b>{html.escape(result.query)}</b>: {len(result.ids)} of the {result.k} nearest codes "
        f"lie within Hamming radius {result.radius}"
    )
    if result.precision is not None:
        text += f"; precision {result.precision:.2f} ({int(result.relevant.sum())} relevant)"
    elif result.relevant is None:
        text += "; relevance unknown (choose the image's class to judge it)"
    return text


_FRAMES = {  # the colours plot_retrieval_grid frames the pictures with
    "hh-right": to_hex(RELEVANT_COLOUR),
    "hh-wrong": to_hex(IRRELEVANT_COLOUR),
    "hh-unknown": to_hex(UNKNOWN_COLOUR),
}


def results_html(result: SearchResult) -> str:
    """The results of a search as a line of HTML: each result's distance, framed by its relevance.

    One ``<span class="hh-result KIND" data-id=ID data-distance=D>D</span>``
    per result in rank order, KIND ``hh-right`` (shares a label with the
    query), ``hh-wrong`` or ``hh-unknown`` (the query's label is unknown),
    inside ``<div class="hh-results" data-count=N>``: what the picture
    shows, in a form a page can be checked by.
    """
    spans = []
    for rank, (item, distance) in enumerate(zip(result.ids, result.distances)):
        kind = "hh-unknown" if result.relevant is None else "hh-right" if result.relevant[rank] else "hh-wrong"
        spans.append(
            f"<span class='hh-result {kind}' data-id='{int(item)}' data-distance='{int(distance)}' "
            f"title='database item {int(item)}' style='display:inline-block;min-width:1.6em;margin:1px;"
            f"text-align:center;border:2px solid {_FRAMES[kind]}'>{int(distance)}</span>"
        )
    return (
        f"<div class='hh-results' data-count='{len(spans)}' style='font-size:12px'>"
        f"Hamming distances: {''.join(spans) or 'none within the radius'}</div>"
    )


def retrieval_explorer(
    model: torch.nn.Module,
    data,
    index: HammingIndex | str | os.PathLike | None = None,
    k: int = 10,
    max_k: int = 50,
    radius: int | None = None,
    columns: int = 10,
    live: bool = True,
    progress: bool = True,
    search: bool = True,
) -> RetrievalExplorer:
    """Build the retrieval explorer (and run its first search).

    Args:
        model: the trained hashing model, on the device it should run on.
        data: a :func:`hhlib.data.get_dataset` result; queries come from
            ``data.query``, results from ``data.database``.
        index: a HammingIndex of the database codes, the path of an index
            file (its cache: read when it was made by this model from this
            database, else encoded and written; see :func:`database_index`),
            or None to encode the database now.
        k: results asked for at first; ``max_k`` is the slider's maximum.
        radius: the largest Hamming distance shown at first (default: all, ``bits``).
        columns: result images per row.
        live: search again whenever a control changes (the button always does).
        progress: show a progress bar while encoding the database.
        search: run the first search now, so there is something to see.

    Returns:
        The :class:`RetrievalExplorer`; display it (last line of a cell) to use it.
    """
    if not isinstance(index, HammingIndex):
        index = database_index(model, data, cache=index, progress=progress)
    explorer = RetrievalExplorer(model, data, index, k=k, max_k=max_k, radius=radius, columns=columns, live=live)
    if search:
        explorer.search()
    return explorer
