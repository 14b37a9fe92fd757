"""An interactive retrieval explorer for notebooks, built from ipywidgets.

    from hhlib.widgets import retrieval_explorer
    explorer = retrieval_explorer(model, data)   # encodes the database once
    explorer                                     # shows the controls and the results

Pick a query item (or upload an image), a number of results k and a Hamming
radius; the explorer encodes the query, asks a :class:`~hhlib.index.HammingIndex`
of the database codes for the k nearest codes, keeps those within the
radius and draws them framed green (shares a label with the query) or red.

Everything the explorer shows is also kept as plain data, so code (and
tests) can drive it without a browser: set the widgets' values, call
``explorer.search_button.click()``, read ``explorer.last_result`` (a
:class:`SearchResult`) and ``explorer.status.value``.
"""

from __future__ import annotations

import datetime
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from hhlib.data import DATASETS
from hhlib.data.transforms import TensorTransform, load_query_image
from hhlib.index import HammingIndex
from hhlib.model import binary_codes
from hhlib.train import encode
from hhlib.viz.codes import plot_retrieval_grid

__all__ = [
    "SearchResult",
    "RetrievalExplorer",
    "retrieval_explorer",
    "database_index",
    "plot_search_result",
    "upload_entry",
    "decode_upload",
]

QUERY_SET = "query set"
UPLOAD = "uploaded image"
UNKNOWN_CLASS = "unknown"
# An index file is taken to belong to the model when codes re-encoded now differ from
# the stored ones in fewer than this fraction of bits (another model: about half).
_STALE_BITS = 0.05
_SPOT_CHECK_ITEMS = 16


@dataclass
class SearchResult:
    """One search of the explorer, as plain data.

    Attributes:
        query: what was searched for, e.g. ``"query 12 (Sneaker)"`` or ``"upload shoe.png"``.
        query_image: (H, W, 3) uint8, the query as displayed.
        query_code: (bits,) int8 -1/+1.
        query_label: (C,) 0/1 label vector; None when unknown (an upload
            whose class was not chosen).
        k: results asked for.
        radius: largest Hamming distance kept.
        ids: (m,) int64 database positions, m <= k, by (distance, id).
        distances: (m,) int32 Hamming distances.
        relevant: (m,) bool, shares a label with the query; None when the
            query's label is unknown.
    """

    query: str
    query_image: np.ndarray
    query_code: np.ndarray
    query_label: np.ndarray | None
    k: int
    radius: int
    ids: np.ndarray
    distances: np.ndarray
    relevant: np.ndarray | None

    @property
    def precision(self) -> float | None:
        """The fraction of the shown results that are relevant (None: no results or no label)."""
        if self.relevant is None or len(self.ids) == 0:
            return None
        return float(self.relevant.mean())


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


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def _encode_one(model: torch.nn.Module, image: torch.Tensor) -> np.ndarray:
    """The (1, bits) int8 code of one (1, 3, S, S) image.

    On a CPU it runs on one thread: for a single small image, more threads
    mostly wait for each other, and on a busy machine they made one search
    take a second instead of 10 ms.
    """
    device = _model_device(model)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        u = model(image.to(device))
    finally:
        torch.set_num_threads(threads)
    return binary_codes(model, u).to(torch.int8).cpu().numpy()


def database_index(
    model: torch.nn.Module,
    data,
    path: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int | None = None,
) -> HammingIndex:
    """A HammingIndex of the database codes: read from ``path`` when it holds them, else encoded.

    A file at ``path`` (e.g. one written by ``python -m hhlib encode``) is
    used when it has the model's bit count and one code per database item,
    and when the first database items, encoded again, come out (almost) the
    same, so a file made by another model is not silently used. When
    ``path`` does not exist, the codes are encoded and saved there.

    Args:
        model: the hashing model (its ``config.bits`` is the code length).
        data: a :func:`hhlib.data.get_dataset` result.
        path: an index file to read, or to write; None: encode, keep in memory.
        progress: show a progress bar while encoding.
        batch_size: images encoded at a time (None: the device's default).

    Returns:
        The index; ids are database positions.

    Raises:
        ValueError: the file holds codes of another model, bit count or database.
    """
    bits = model.config.bits
    device = _model_device(model)
    if path is not None and Path(path).is_file():
        index = HammingIndex.load(path, bits=bits)
        if len(index) != len(data.database):
            raise ValueError(
                f"{path} holds {len(index)} codes but the database has {len(data.database)} items; "
                "it was made from another split: remove it or pass another path"
            )
        check = min(_SPOT_CHECK_ITEMS, len(index))
        fresh = encode(model, torch.utils.data.Subset(data.database, range(check)), device=device, progress=False)
        fresh_packed = np.packbits(fresh > 0, axis=1)
        differing = np.unpackbits(fresh_packed ^ index.codes[:check], axis=1).mean()
        if differing >= _STALE_BITS:
            raise ValueError(
                f"{path} was made by another model: {differing:.0%} of the bits of its first {check} "
                "codes differ from this model's; remove it or pass another path"
            )
        return index
    codes = encode(
        model, data.database, batch_size=batch_size, device=device, progress=progress, desc="encode database"
    )  # (N, bits)
    index = HammingIndex(bits)
    index.add(codes)
    index.metadata = {
        "dataset": data.name,
        "split": "database",
        "labels": data.database.labels.argmax(1).tolist(),
        "class_names": list(data.class_names),
    }
    if path is not None:
        index.save(path)
    return index


def _class_text(label: np.ndarray, class_names) -> str:
    names = [class_names[c] for c in np.flatnonzero(label)]
    return "+".join(names[:2]) + ("+..." if len(names) > 2 else "")


def plot_search_result(result: SearchResult, data, columns: int = 10) -> Figure:
    """Draw a :class:`SearchResult`: the query, then the results framed by relevance.

    Args:
        result: e.g. ``explorer.last_result``.
        data: the dataset searched (its database images and class names).
        columns: results per row.

    Returns:
        The Figure (see :func:`hhlib.viz.codes.plot_retrieval_grid`).
    """
    labels = data.database.labels
    images = [data.database.raw_image(int(i)) for i in result.ids]
    captions = [_class_text(labels[int(i)], data.class_names) for i in result.ids]
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
    )


class RetrievalExplorer:
    """Widgets to search a database by Hamming distance; made by :func:`retrieval_explorer`.

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
        widget: the whole interface (a VBox); the explorer displays as it.
        last_result: the :class:`SearchResult` of the last search (None
            before the first and after a failed one).
        last_figure: the Figure of the last search (closed; display it to see it again).
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
        bits = model.config.bits
        if index.bits != bits:
            raise ValueError(f"the index holds {index.bits}-bit codes but the model makes {bits}-bit codes")
        if len(index) != len(data.database):
            raise ValueError(f"the index holds {len(index)} codes but the database has {len(data.database)} items")
        if len(data.query) == 0:
            raise ValueError("the query split is empty")
        if not 1 <= k <= max_k:
            raise ValueError(f"k must lie in 1..max_k={max_k}, got {k}")
        radius = bits if radius is None else radius
        if not 0 <= radius <= bits:
            raise ValueError(f"radius must lie in 0..{bits}, got {radius}")
        self.model = model.eval()
        self.data = data
        self.index = index
        self.columns = columns
        self.live = live
        self.last_result: SearchResult | None = None
        self.last_figure: Figure | None = None
        self._switching = False

        wide = widgets.Layout(width="420px")
        self.source = widgets.ToggleButtons(options=[QUERY_SET, UPLOAD], value=QUERY_SET, description="search with")
        self.query_slider = widgets.IntSlider(
            value=0, min=0, max=len(data.query) - 1, description="query item", continuous_update=False, layout=wide
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload image")
        self.upload_class = widgets.Dropdown(
            options=[UNKNOWN_CLASS, *data.class_names], value=UNKNOWN_CLASS, description="its class"
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
        self.widget = widgets.VBox(
            [
                self.source,
                widgets.HBox([self.query_slider]),
                widgets.HBox([self.upload, self.upload_class]),
                widgets.HBox([self.k_slider, self.radius_slider]),
                self.search_button,
                self.status,
                self.result_image,
            ]
        )

        self.search_button.on_click(lambda _: self.search())
        self.query_slider.observe(lambda _: self._switch_to(QUERY_SET), names="value")
        self.upload.observe(self._uploaded, names="value")
        self.source.observe(self._changed, names="value")
        for control in (self.upload_class, self.k_slider, self.radius_slider):
            control.observe(self._changed, names="value")

    # -- events ------------------------------------------------------------

    def _changed(self, _=None) -> None:
        if self.live and not self._switching:
            self.search()

    def _switch_to(self, source: str) -> None:
        """Make ``source`` the query source, then search once (not twice) if live."""
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

    def _fail(self, message: str) -> None:
        self.last_result = None
        self.last_figure = None
        self.result_image.value = b""
        self.status.value = f"<span style='color:#c00'>{html.escape(message)}</span>"

    def _query_item(self) -> tuple[str, torch.Tensor, np.ndarray, np.ndarray]:
        """Name, (1, 3, S, S) model input, display image and label vector of the query item."""
        position = self.query_slider.value
        image, label, _ = self.data.query[position]
        label = np.asarray(self.data.query.labels[position])
        name = f"query {position} ({_class_text(label, self.data.class_names)})"
        return name, image.unsqueeze(0), self.data.query.raw_image(position), label

    def _uploaded_image(self) -> tuple[str, torch.Tensor, np.ndarray, np.ndarray | None]:
        """Name, model input, display image and (chosen) label of the upload; ValueError if unusable."""
        if not self.upload.value:
            raise ValueError(
                f"no image uploaded yet: choose a file with the upload button, or search with the {QUERY_SET}"
            )
        entry = self.upload.value[-1]
        name = entry["name"]
        tensor, display = decode_upload(bytes(entry["content"]), self.data, name)
        label = None
        if self.upload_class.value != UNKNOWN_CLASS:
            label = np.zeros(self.data.num_classes, np.uint8)
            label[list(self.data.class_names).index(self.upload_class.value)] = 1
        return f"upload {name}", tensor, display, label

    def search(self) -> SearchResult | None:
        """Search with the current settings and show the result.

        Returns:
            The :class:`SearchResult` (also ``last_result``), or None when
            the query could not be read; ``status`` then says why.
        """
        try:
            if self.source.value == UPLOAD:
                name, tensor, display, label = self._uploaded_image()
            else:
                name, tensor, display, label = self._query_item()
        except ValueError as error:
            self._fail(str(error))
            return None
        code = _encode_one(self.model, tensor)  # (1, bits)
        k, radius = self.k_slider.value, self.radius_slider.value
        distances, ids = self.index.search(code, k)
        within = distances[0] <= radius
        distances, ids = distances[0][within], ids[0][within]
        relevant = None
        if label is not None:
            shared = self.data.database.labels[ids].astype(np.int32) @ np.asarray(label, np.int32)  # (m,)
            relevant = shared > 0
        result = SearchResult(name, display, code[0], label, k, radius, ids, distances, relevant)
        self.last_result = result
        self._show(result)
        return result

    def _show(self, result: SearchResult) -> None:
        figure = plot_search_result(result, self.data, columns=self.columns)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)  # drawn into the Image widget, not again by the notebook's inline backend
        self.last_figure = figure
        self.result_image.value = buffer.getvalue()
        text = (
            f"<b>{html.escape(result.query)}</b>: {len(result.ids)} of the {result.k} nearest codes "
            f"lie within Hamming radius {result.radius}"
        )
        if result.precision is not None:
            text += f"; precision {result.precision:.2f} ({int(result.relevant.sum())} relevant)"
        elif result.relevant is None:
            text += "; relevance unknown (choose the image's class to judge it)"
        self.status.value = text

    # -- display -----------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widgets for Jupyter; a line saying what they are where widgets cannot show (a saved notebook)."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"{self!r}: interactive widgets, shown when the notebook runs"
        return bundle

    def __repr__(self) -> str:
        return (
            f"RetrievalExplorer({self.data.name!r}, {len(self.data.query)} queries, "
            f"{len(self.index)} database codes of {self.index.bits} bits)"
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
            file (read, or written when missing; see :func:`database_index`),
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
        index = database_index(model, data, index, progress=progress)
    explorer = RetrievalExplorer(model, data, index, k=k, max_k=max_k, radius=radius, columns=columns, live=live)
    if search:
        explorer.search()
    return explorer
