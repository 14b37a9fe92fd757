"""hhlib.viz.codes: each plot draws the numbers of hhlib.analysis, with the labels it says."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hhlib import analysis  # noqa: E402
from hhlib.viz import codes as vc  # noqa: E402

# Four items, three bits: bit 0 balanced, bit 1 +1 for three items of four, bit 2 always -1.
TOY = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, -1], [-1, 1, -1]], dtype=np.int8)
TOY_CLASSES = np.array([0, 0, 1, 1])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_codes(n=60, bits=16, seed=0):
    return np.where(np.random.default_rng(seed).random((n, bits)) < 0.5, 1, -1).astype(np.int8)


def heatmap_values(ax):
    """The matrix a seaborn heat map on ``ax`` draws, as a plain array."""
    return np.ma.filled(np.asarray(ax.collections[0].get_array(), dtype=float), np.nan)


def test_the_analysis_functions_are_not_plots():
    import hhlib.viz

    for name in ("bit_balance", "bit_correlation", "pair_distances", "embed_codes", "augmentation_flips"):
        assert not hasattr(hhlib.viz, name) and hasattr(analysis, name)


def test_plot_bit_balance_bars_are_the_balance():
    fig = vc.plot_bit_balance(TOY)
    (ax,) = fig.axes
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], [0.5, 0.75, 0.0])
    assert [bar.get_x() + bar.get_width() / 2 for bar in ax.patches] == [0, 1, 2]
    assert ax.lines[0].get_ydata()[0] == 0.5  # the ideal
    assert "0.250" in ax.get_title()  # mean |p - 0.5| = (0 + 0.25 + 0.5) / 3
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("bit", "fraction of +1")
    assert not ax.spines["top"].get_visible()  # the collection's style


def test_plot_bit_correlation_draws_the_matrix_with_a_colour_bar():
    fig = vc.plot_bit_correlation(TOY)
    ax, colour_bar = fig.axes
    np.testing.assert_allclose(heatmap_values(ax), analysis.bit_correlation(TOY))
    assert colour_bar.get_ylabel() == "correlation"
    assert ax.collections[0].get_clim() == (-1, 1)
    # off the diagonal: |r01| = 1 / sqrt 3 twice, 0 four times, over 6 cells
    assert f"{2 / np.sqrt(3) / 6:.3f}" in ax.get_title()


def test_plot_class_mean_codes_rows_are_classes():
    fig = vc.plot_class_mean_codes(TOY, TOY_CLASSES, class_names=["a", "b"])
    ax = fig.axes[0]
    np.testing.assert_allclose(heatmap_values(ax), [[1, 1, -1], [-1, 0, -1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert fig.axes[1].get_ylabel() == "mean bit"
    with pytest.raises(ValueError, match="class names"):
        vc.plot_class_mean_codes(TOY, TOY_CLASSES, class_names=["a"])


def test_plot_codes_by_class_groups_rows():
    codes, classes = random_codes(30, 8), np.arange(30) % 3
    fig = vc.plot_codes_by_class(codes, classes, per_class=4, class_names=["x", "y", "z"])
    (ax,) = fig.axes  # no colour bar
    rows = heatmap_values(ax)
    assert rows.shape == (12, 8)
    for c in range(3):  # every drawn row is a code of its class
        members = {tuple(code) for code in codes[classes == c]}
        assert all(tuple(row) in members for row in rows[4 * c : 4 * c + 4])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert ax.get_yticks().tolist() == [2, 6, 10]
    assert sorted(line.get_ydata()[0] for line in ax.lines) == [4, 8]  # the borders between classes


def test_plot_distance_histograms_normalised_per_group():
    fig = vc.plot_distance_histograms([0, 1, 1, 2], [5, 6, 6, 6, 8, 8], bits=8, radius=2)
    (ax,) = fig.axes
    heights = np.array([bar.get_height() for bar in ax.patches]).reshape(2, 9)
    np.testing.assert_allclose(heights[0], [0.25, 0.5, 0.25, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(heights[1], [0, 0, 0, 0, 0, 1 / 6, 0.5, 0, 1 / 3])
    assert [bar.get_x() for bar in ax.patches[:9]] == pytest.approx(np.arange(9) - 0.5)
    assert ax.lines[0].get_xdata()[0] == 2.5
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["dissimilar pairs (6, mean 6.5)", "radius 2", "similar pairs (4, mean 1.0)"]
    assert ax.get_ylabel() == "fraction of pairs"
    with pytest.raises(ValueError, match="0..8"):
        vc.plot_distance_histograms([9], [1], bits=8)


def test_plot_distance_histograms_of_pair_distances_with_an_empty_group():
    similar, dissimilar = analysis.pair_distances(TOY, TOY, np.zeros(4, int), np.zeros(4, int))
    ax = vc.plot_distance_histograms(similar, dissimilar, bits=3, radius=None).axes[0]
    assert len(ax.patches) == 4 and sum(bar.get_height() for bar in ax.patches) == pytest.approx(1)
    assert "dissimilar pairs (0)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_embedding_one_collection_per_class_one_marker_per_place():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    coords[4] = coords[3]  # two items of class 2 at one place
    fig = vc.plot_embedding(coords, np.array([0, 2, 0, 2, 2, 0]), class_names=["a", "b", "c"], title="map")
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and ax.get_title() == "map"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), coords[[0, 2, 5]])
    np.testing.assert_allclose(ax.collections[1].get_offsets(), coords[[1, 3]])
    np.testing.assert_allclose(ax.collections[1].get_sizes(), [6, 12])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "c"]
    with pytest.raises(ValueError, match="coords"):
        vc.plot_embedding(np.zeros((6, 3)), np.zeros(6, int))


def test_plot_flipped_bits():
    fig = vc.plot_flipped_bits(np.array([[0, 0, 1, 3]]), bits=4)
    ax = fig.axes[0]
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], [0.5, 0.25, 0, 0.25, 0])
    assert "mean 1.00 of 4 bits flipped, 50% of codes unchanged" in ax.get_title()
    with pytest.raises(ValueError):
        vc.plot_flipped_bits([5], bits=4)
    with pytest.raises(ValueError, match="empty"):
        vc.plot_flipped_bits([], bits=4)


def test_plots_draw_into_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert vc.plot_bit_balance(TOY, ax=left) is fig
    assert vc.plot_flipped_bits([0, 1], bits=3, ax=right) is fig
    assert len(left.patches) == 3 and len(right.patches) == 4


def frame_colours(canvas, corners):
    """The colour of each framed tile's top-left pixel, as an (n, 3) RGB array in [0, 1]."""
    return np.array([canvas[top, left] / 255 for top, left in corners])


def test_mosaic_frames_tiles_and_resizes():
    images = [np.full((8, 8, 3), 50, np.uint8), np.full((4, 4), 200, np.uint8), np.full((8, 8, 3), 90, np.uint8)]
    canvas, corners, tile = vc._mosaic(images, ["tab:green", "tab:red", "0.6"], columns=2)
    assert tile == 8 and canvas.dtype == np.uint8
    to_rgb = matplotlib.colors.to_rgb
    np.testing.assert_allclose(
        frame_colours(canvas, corners), [to_rgb("tab:green"), to_rgb("tab:red"), to_rgb("0.6")], atol=1 / 255
    )
    border = 1  # max(1, 8 // 16)
    for (top, left), value in zip(corners, (50, 200, 90)):
        inside = canvas[top + border : top + border + tile, left + border : left + border + tile]
        assert inside.shape == (8, 8, 3) and np.all(inside == value)  # the grey 4 px image is now 8 px RGB
    assert corners[2][0] > corners[0][0] and corners[2][1] == corners[0][1]  # third tile starts row two


def test_plot_retrieval_grid_frames_by_relevance():
    image = np.zeros((8, 8, 3), np.uint8)
    relevant = [True, False, True, True, False]
    fig = vc.plot_retrieval_grid(
        image, [image] * 5, [0, 1, 1, 3, 4], relevant, captions=list("abcde"), columns=3, title="t"
    )
    query_ax, results_ax = fig.axes
    to_rgb = matplotlib.colors.to_rgb
    np.testing.assert_allclose(query_ax.images[0].get_array()[0, 0] / 255, to_rgb(vc.QUERY_COLOUR), atol=1 / 255)
    frames = [vc.RELEVANT_COLOUR if r else vc.IRRELEVANT_COLOUR for r in relevant]
    canvas, corners, _ = vc._mosaic([image] * 5, frames, columns=3, caption_rows=0.55)
    np.testing.assert_array_equal(results_ax.images[0].get_array(), canvas)
    np.testing.assert_allclose(frame_colours(canvas, corners), [to_rgb(c) for c in frames], atol=1 / 255)
    assert [t.get_text() for t in results_ax.texts] == ["1. d=0\na", "2. d=1\nb", "3. d=1\nc", "4. d=3\nd", "5. d=4\ne"]
    fig = vc.plot_retrieval_grid(image, [image] * 2, [0, 1])  # relevance unknown: grey frames
    canvas = fig.axes[1].images[0].get_array()
    colours = {tuple(int(v) for v in pixel) for pixel in canvas.reshape(-1, 3)}
    grey = tuple(int(round(v * 255)) for v in to_rgb(vc.UNKNOWN_COLOUR))
    assert colours == {(255, 255, 255), (0, 0, 0), grey}  # background, the images, their grey frames
    assert [t.get_text() for t in fig.axes[1].texts] == ["1. d=0", "2. d=1"]
    empty = vc.plot_retrieval_grid(image, [], [])  # nothing within the radius
    assert not empty.axes[1].images and empty.axes[1].texts[0].get_text() == "no results"
    with pytest.raises(ValueError, match="one entry per result"):
        vc.plot_retrieval_grid(image, [image], [0, 1])
