"""hhlib.widgets: drive the retrieval explorer as a user would, without a browser.

A freshly initialised CPU-preset HybridHash at 16 px on 60 items per split
of the digits dataset: its codes mean nothing, but every relation the
explorer promises (k results, distances within the radius, relevance from
the labels, the upload path) can be checked against a brute-force answer.
"""

import matplotlib

matplotlib.use("Agg")

import dataclasses  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from html.parser import HTMLParser  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from hhlib.data import get_dataset  # noqa: E402
from hhlib.hamming import hamming_distances  # noqa: E402
from hhlib.index import HammingIndex  # noqa: E402
from hhlib.model import HybridHash, HybridHashConfig  # noqa: E402
from hhlib.train import encode  # noqa: E402
from hhlib.widgets import (  # noqa: E402
    QUERY_SET,
    UPLOAD,
    RetrievalExplorer,
    database_index,
    decode_upload,
    plot_search_result,
    results_html,
    retrieval_explorer,
    upload_entry,
)

BITS = 16


@pytest.fixture(scope="module")
def data():
    return get_dataset("digits", img_size=16, limit=60)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HybridHash(HybridHashConfig.cpu(bits=BITS, img_size=16)).eval()


@pytest.fixture(scope="module")
def database_codes(model, data):
    return encode(model, data.database, progress=False)


@pytest.fixture(scope="module")
def index(database_codes):
    index = HammingIndex(BITS)
    index.add(database_codes)
    return index


@pytest.fixture
def explorer(model, data, index):
    return retrieval_explorer(model, data, index, k=5, max_k=60)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def expected_neighbours(query_code, database_codes, k, radius):
    """Brute force: ids by (distance, id), the first k, those within the radius."""
    distances = hamming_distances(query_code[None], database_codes)[0].astype(int)
    order = np.lexsort((np.arange(len(distances)), distances))[:k]
    return order[distances[order] <= radius], distances[order][distances[order] <= radius]


def test_first_search_shows_k_results(explorer):
    result = explorer.last_result
    assert result is not None and result.query == f"query 0 ({explorer.data.class_names[result.query_label.argmax()]})"
    assert len(result.ids) == 5 and result.k == 5 and result.radius == BITS
    assert bytes(explorer.result_image.value).startswith(b"\x89PNG")
    assert len(explorer.last_figure.axes[1].texts) == 5  # one caption per result
    assert "5 of the 5 nearest" in explorer.status.value
    assert explorer.status_text.startswith(f"{result.query}: 5 of the 5 nearest codes lie within Hamming radius")


def test_displays_as_its_widgets(explorer):
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    assert bundle["text/plain"].startswith("RetrievalExplorer('digits', 60 queries, 60 database codes of 16 bits)")


def test_changing_k_changes_the_number_of_results(explorer):
    explorer.k_slider.value = 12  # live: the change searches again
    assert len(explorer.last_result.ids) == 12
    explorer.k_slider.value = 3
    assert len(explorer.last_result.ids) == 3
    assert len(explorer.last_figure.axes[1].texts) == 3


def test_without_live_updates_only_the_button_searches(model, data, index):
    explorer = retrieval_explorer(model, data, index, k=4, live=False)
    explorer.k_slider.value = 9
    assert len(explorer.last_result.ids) == 4
    explorer.search_button.click()
    assert len(explorer.last_result.ids) == 9


def test_results_are_the_nearest_codes_within_the_radius(explorer, model, data, database_codes):
    explorer.k_slider.value = 20
    for query in (3, 17):
        explorer.query_slider.value = query
        code = explorer.last_result.query_code
        with torch.no_grad():
            np.testing.assert_array_equal(code, model.encode(data.query[query][0][None])[0].numpy())
        for radius in (BITS, 5, 0):
            explorer.radius_slider.value = radius
            result = explorer.last_result
            ids, distances = expected_neighbours(code, database_codes, 20, radius)
            np.testing.assert_array_equal(result.ids, ids)
            np.testing.assert_array_equal(result.distances, distances)
            assert np.all(result.distances <= radius)
            assert f"within Hamming radius {radius}" in explorer.status.value
    explorer.radius_slider.value = BITS
    assert len(explorer.last_result.ids) == 20


def test_relevance_and_precision_follow_the_labels(explorer, data):
    explorer.k_slider.value = 30
    explorer.query_slider.value = 11
    result = explorer.last_result
    query_class = data.query.labels[11].argmax()
    np.testing.assert_array_equal(result.relevant, data.database.labels[result.ids].argmax(1) == query_class)
    assert result.precision == pytest.approx(result.relevant.mean())
    assert f"precision {result.precision:.2f}" in explorer.status.value
    captions = [text.get_text().split("\n")[1] for text in explorer.last_figure.axes[1].texts]
    assert captions == [data.class_names[c] for c in data.database.labels[result.ids].argmax(1)]


def test_an_uploaded_image_is_searched_like_the_query_item(explorer, data):
    explorer.query_slider.value = 7
    from_split = explorer.last_result
    explorer.upload.value = (upload_entry(png_bytes(data.query.raw_image(7)), "seven.png"),)
    assert explorer.source.value == UPLOAD
    result = explorer.last_result
    assert result.query == "upload seven.png"
    np.testing.assert_array_equal(result.query_code, from_split.query_code)  # PNG is lossless
    np.testing.assert_array_equal(result.ids, from_split.ids)
    assert result.relevant is None and result.precision is None  # its class is unknown
    assert "relevance unknown" in explorer.status.value
    explorer.upload_class.value = data.class_names[int(data.query.labels[7].argmax())]
    np.testing.assert_array_equal(explorer.last_result.relevant, from_split.relevant)
    explorer.query_slider.value = 8  # moving the slider goes back to the query set
    assert explorer.source.value == QUERY_SET and explorer.last_result.query.startswith("query 8")


def listed_results(markup: str) -> list[dict]:
    """The hh-result elements of results_html's markup: their classes and data attributes."""
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if "hh-result" in attrs.get("class", "").split():
                found.append(attrs)

    Parser().feed(markup)
    return found


def test_the_results_are_listed_as_html_a_page_can_check(explorer, data):
    explorer.k_slider.value = 30
    explorer.query_slider.value = 11
    result = explorer.last_result
    listed = listed_results(explorer.results.value)
    assert f"data-count='{len(result.ids)}'" in explorer.results.value
    assert [int(item["data-id"]) for item in listed] == result.ids.tolist()
    assert [int(item["data-distance"]) for item in listed] == result.distances.tolist()
    kinds = [item["class"].split()[1] for item in listed]
    assert kinds == ["hh-right" if r else "hh-wrong" for r in result.relevant]
    explorer.upload.value = (upload_entry(png_bytes(data.query.raw_image(7)), "seven.png"),)
    assert {item["class"] for item in listed_results(explorer.results.value)} == {"hh-result hh-unknown"}
    nothing = dataclasses.replace(explorer.last_result, ids=result.ids[:0], distances=result.distances[:0])
    assert "data-count='0'" in results_html(nothing) and "none within the radius" in results_html(nothing)
    explorer.upload.value = (upload_entry(b"not an image", "notes.txt", "text/plain"),)
    assert explorer.results.value == ""  # a failed search lists nothing


def test_a_bad_upload_gives_a_message_not_an_exception(explorer):
    explorer.source.value = UPLOAD
    assert explorer.last_result is None and "no image uploaded yet" in explorer.status.value
    explorer.upload.value = (upload_entry(b"this is not an image", "notes.txt", "text/plain"),)
    assert explorer.last_result is None
    assert "could not read &#x27;notes.txt&#x27; as an image" in explorer.status.value
    assert explorer.status_text.startswith("could not read 'notes.txt' as an image: upload a PNG")
    assert bytes(explorer.result_image.value) == b""
    explorer.search_button.click()  # still no exception
    assert explorer.last_result is None
    png = png_bytes(explorer.data.query.raw_image(0))
    explorer.upload.value = (upload_entry(png[: len(png) // 2], "half.png"),)
    assert explorer.last_result is None and "could not read &#x27;half.png&#x27;" in explorer.status.value


def test_database_index_is_saved_reused_and_checked(tmp_path, model, data, database_codes):
    path = tmp_path / "database.npz"
    index = database_index(model, data, cache=path, progress=False)
    assert path.is_file() and len(index) == len(data.database)
    np.testing.assert_array_equal(index.codes, np.packbits(database_codes > 0, axis=1))
    assert index.metadata["labels"] == data.database.labels.argmax(1).tolist()
    stamp = path.stat().st_mtime_ns
    assert len(database_index(model, data, cache=path, progress=False)) == len(data.database)
    assert path.stat().st_mtime_ns == stamp  # reused, not written again
    explorer = retrieval_explorer(model, data, path, k=3)
    assert len(explorer.last_result.ids) == 3
    torch.manual_seed(1)
    other = HybridHash(HybridHashConfig.cpu(bits=BITS, img_size=16)).eval()
    with pytest.raises(ValueError, match="other weights"):
        RetrievalExplorer(other, data, HammingIndex.load(path))  # the file names the model that made it
    other_index = database_index(other, data, cache=path, progress=False)  # another model: encoded again
    np.testing.assert_array_equal(other_index.codes, np.packbits(encode(other, data.database, progress=False) > 0, 1))
    short = HammingIndex(BITS)
    short.add(database_codes[:10])
    with pytest.raises(ValueError, match="10 codes"):
        RetrievalExplorer(model, data, short)


def test_bad_settings_are_refused(model, data, index, database_codes):
    wide = HammingIndex(32)
    wide.add(np.concatenate([database_codes, database_codes], axis=1))
    with pytest.raises(ValueError, match="32-bit"):
        RetrievalExplorer(model, data, wide)
    with pytest.raises(ValueError, match="k must"):
        RetrievalExplorer(model, data, index, k=0)
    with pytest.raises(ValueError, match="radius"):
        RetrievalExplorer(model, data, index, radius=BITS + 1)


def test_plot_search_result_draws_the_result(explorer, data):
    result = explorer.last_result
    fig = plot_search_result(result, data, columns=2)
    assert len(fig.axes[1].texts) == len(result.ids)
    assert fig.axes[1].texts[0].get_text().startswith(f"1. d={result.distances[0]}")
    assert f"precision {result.precision:.2f}" in fig._suptitle.get_text()


def test_decode_upload_makes_images_as_the_query_split_does():
    """At the paper's 224 px too: a grey PNG becomes the 3-channel input of the query split."""
    large = get_dataset("digits", img_size=224, limit=3)
    image, display = decode_upload(png_bytes(large.query.raw_image(2)), large)
    assert image.shape == (1, 3, 224, 224)
    torch.testing.assert_close(image[0], large.query[2][0])
    assert display.shape == (224, 224, 3)
    photo = np.zeros((300, 600, 3), np.uint8)  # any size and colour mode is resized and read as grey
    image, display = decode_upload(png_bytes(photo), large)
    assert image.shape == (1, 3, 224, 224) and display.shape == (128, 256, 3)  # drawn at most 256 px wide
    with pytest.raises(ValueError, match="could not read 'x.bin'"):
        decode_upload(b"\x00" * 10, large, "x.bin")


def test_searches_from_two_threads_each_draw_a_whole_picture(model, data, index, monkeypatch):
    """JupyterLab 4.4+ sends some widget messages to a kernel subshell: controls change on another thread.

    pyplot numbers its figures globally, so two threads could be handed one figure and draw a blank
    picture (seen in JupyterLab after an upload); the explorer draws off pyplot.
    """

    def no_pyplot(*args, **kwargs):
        raise AssertionError("the explorer drew through pyplot")

    monkeypatch.setattr(plt, "figure", no_pyplot)
    explorer = retrieval_explorer(model, data, index, k=10, max_k=20)
    pictures = []
    explorer.result_image.observe(lambda change: pictures.append(change["new"]), names="value")

    def move(slider, values):
        for value in values:
            slider.value = value

    threads = [
        threading.Thread(target=move, args=(explorer.k_slider, [12, 14, 16, 18, 20] * 2)),
        threading.Thread(target=move, args=(explorer.query_slider, [1, 2, 3, 4, 5] * 2)),
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can, so that draws interleave
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(pictures) >= 10  # equal pictures in a row are one change
    for png in pictures:  # a render interleaved with another thread's comes out partly or wholly transparent
        alpha = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[..., 3]
        assert alpha.min() == 255, "a picture drawn while another thread drew"
    assert explorer.last_result.k == 20 and explorer.last_result.query == explorer.retriever.query_item(5).name
