"""hhlib.viz.codes: the numbers on hand-made codes, and that each plot draws them."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hhlib.data.memory import build_splits  # noqa: E402
from hhlib.viz import codes as vc  # noqa: E402

# Four items, three bits: bit 0 balanced, bit 1 balanced and equal to bit 0
# for three items of four, bit 2 always -1.
TOY = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, -1], [-1, 1, -1]], dtype=np.int8)
TOY_CLASSES = np.array([0, 0, 1, 1])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_codes(n=60, bits=16, seed=0):
    return np.where(np.random.default_rng(seed).random((n, bits)) < 0.5, 1, -1).astype(np.int8)


# --------------------------------------------------------------------------- numbers


def test_bit_balance_counts_plus_ones():
    np.testing.assert_allclose(vc.bit_balance(TOY), [0.5, 0.75, 0.0])
    np.testing.assert_allclose(vc.bit_balance(torch.tensor(TOY, dtype=torch.float32)), [0.5, 0.75, 0.0])


def test_bit_entropy_by_hand():
    # p = 0.5, 0.75, 0: 1 bit, -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.8113 bits, 0 bits
    np.testing.assert_allclose(vc.bit_entropy(TOY), [1.0, 0.811278, 0.0], atol=1e-6)


def test_bit_correlation_by_hand_and_constant_bits():
    correlation = vc.bit_correlation(TOY)
    # bit 0: (+1, +1, -1, -1), mean 0, std 1; bit 1: (+1, +1, -1, +1), mean 0.5, std sqrt(0.75)
    expected = np.mean(np.array([1, 1, -1, -1]) * (np.array([1, 1, -1, 1]) - 0.5)) / np.sqrt(0.75)
    assert correlation[0, 1] == pytest.approx(expected)
    assert correlation[1, 0] == pytest.approx(expected)
    np.testing.assert_array_equal(np.diag(correlation), 1.0)
    assert correlation[2, 0] == 0 and correlation[0, 2] == 0  # the constant bit
    assert np.all(np.isfinite(correlation))
    np.testing.assert_allclose(vc.bit_correlation(random_codes())[:4, :4], np.corrcoef(random_codes().T)[:4, :4])


def test_class_mean_codes_with_ids_and_label_matrix():
    means = vc.class_mean_codes(TOY, TOY_CLASSES)
    np.testing.assert_allclose(means, [[1, 1, -1], [-1, 0, -1]])
    # multi-label: item 3 belongs to both classes; class 2 is empty
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.uint8)
    means = vc.class_mean_codes(TOY, labels)
    np.testing.assert_allclose(means[0], [1 / 3, 1, -1])
    np.testing.assert_allclose(means[1], [-1, 0, -1])
    assert np.all(np.isnan(means[2]))


def test_pair_distances_splits_by_shared_label():
    query = TOY[:2]
    similar, dissimilar = vc.pair_distances(query, TOY, TOY_CLASSES[:2], TOY_CLASSES)
    # query 0 = item 0: distances to the four items 0, 0, 2, 1; query 1 is the same code
    assert sorted(similar.tolist()) == [0, 0, 0, 0]
    assert sorted(dissimilar.tolist()) == [1, 1, 2, 2]
    similar, dissimilar = vc.pair_distances(
        random_codes(50), random_codes(80, seed=1), np.arange(50) % 3, np.arange(80) % 3, max_queries=10, max_items=20
    )
    assert len(similar) + len(dissimilar) == 200


def test_flipped_bits_and_bad_codes():
    after = TOY.copy()
    after[0] *= -1
    after[3, 1] = -1
    np.testing.assert_array_equal(vc.flipped_bits(TOY, after), [3, 0, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        vc.flipped_bits(TOY, TOY[:2])
    with pytest.raises(ValueError, match="-1 and \\+1"):
        vc.bit_balance(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        vc.bit_correlation(np.ones(4))
    with pytest.raises(ValueError, match="rows"):
        vc.class_mean_codes(TOY, TOY_CLASSES[:3])


def test_embed_codes_samples_and_separates_classes():
    rng = np.random.default_rng(0)
    centres = random_codes(3, 32, seed=2)
    classes = np.repeat(np.arange(3), 20)
    codes = centres[classes] * np.where(rng.random((60, 32)) < 0.05, -1, 1)  # 5 % noise around each centre
    coords, positions = vc.embed_codes(codes, max_items=45, seed=0)
    assert coords.shape == (45, 2) and len(np.unique(positions)) == 45
    # each class forms its own cluster: the nearest neighbour of a point is of its class
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1) + np.eye(45) * 1e9
    assert np.mean(classes[positions][d.argmin(1)] == classes[positions]) > 0.9
    with pytest.raises(ValueError, match="method"):
        vc.embed_codes(codes, method="pca")


def test_augmentation_flips_with_a_model_that_reads_pixels():
    """A 'model' whose bits are the signs of pixels: shifting images must flip some."""
    pixels = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    splits = build_splits(
        pixels,
        np.arange(12) % 2,
        2,
        {"train": np.arange(4), "query": np.arange(4, 12), "database": np.arange(4)},
        img_size=8,
        augment=True,
        flip=True,
    )

    class PixelSigns(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images):  # (B, 3, 8, 8) -> (B, 16)
            return images[:, 0, :4, :4].reshape(len(images), 16) + self.dummy

    state = torch.random.get_rng_state()
    flips = vc.augmentation_flips(PixelSigns(), splits["query"], repeats=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is untouched
    assert flips.shape == (3, 8) and flips.min() >= 0 and flips.max() <= 16
    assert flips.sum() > 0
    np.testing.assert_array_equal(flips, vc.augmentation_flips(PixelSigns(), splits["query"], repeats=3, seed=1))
    assert vc.augmentation_flips(PixelSigns(), splits["query"], max_items=5).shape == (1, 5)
    with pytest.raises(ValueError, match="TensorTransform"):
        vc.augmentation_flips(PixelSigns(), torch.utils.data.TensorDataset(torch.zeros(3)))


# --------------------------------------------------------------------------- plots


def test_plot_bit_balance_bars_are_the_balance():
    fig = vc.plot_bit_balance(TOY)
    ax = fig.axes[0]
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], [0.5, 0.75, 0.0])
    assert "0.250" in ax.get_title()  # mean |p - 0.5| = (0 + 0.25 + 0.5) / 3


def test_plot_bit_correlation_and_class_means_draw_the_matrices():
    fig = vc.plot_bit_correlation(TOY)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), vc.bit_correlation(TOY))
    fig = vc.plot_class_mean_codes(TOY, TOY_CLASSES, class_names=["a", "b"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), [[1, 1, -1], [-1, 0, -1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="class names"):
        vc.plot_class_mean_codes(TOY, TOY_CLASSES, class_names=["a"])


def test_plot_codes_by_class_groups_rows():
    codes, classes = random_codes(30, 8), np.arange(30) % 3
    fig = vc.plot_codes_by_class(codes, classes, per_class=4, class_names=["x", "y", "z"])
    ax = fig.axes[0]
    rows = np.asarray(ax.images[0].get_array())
    assert rows.shape == (12, 8)
    for c in range(3):  # every drawn row is a code of its class
        members = {tuple(code) for code in codes[classes == c]}
        assert all(tuple(row) in members for row in rows[4 * c : 4 * c + 4])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]


def test_plot_distance_histograms_normalised_per_group():
    fig = vc.plot_distance_histograms([0, 1, 1, 2], [5, 6, 6, 6, 8, 8], bits=8, radius=2)
    ax = fig.axes[0]
    heights = np.array([bar.get_height() for bar in ax.patches]).reshape(2, 9)
    np.testing.assert_allclose(heights[0], [0.25, 0.5, 0.25, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(heights[1], [0, 0, 0, 0, 0, 1 / 6, 0.5, 0, 1 / 3])
    assert ax.lines[0].get_xdata()[0] == 2.5
    with pytest.raises(ValueError, match="0..8"):
        vc.plot_distance_histograms([9], [1], bits=8)


def test_plot_embedding_one_collection_per_class_one_marker_per_place():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    coords[4] = coords[3]  # two items of class 2 at one place
    fig = vc.plot_embedding(coords, np.array([0, 2, 0, 2, 2, 0]), class_names=["a", "b", "c"])
    ax = fig.axes[0]
    assert len(ax.collections) == 2
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
    assert "50% of codes unchanged" in ax.get_title()
    with pytest.raises(ValueError):
        vc.plot_flipped_bits([5], bits=4)


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
