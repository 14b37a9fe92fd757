"""Plots of protocols, class counts, example images, rankings and relevance; the shared figure helper."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from hhlib.analysis import relevance_matrix, split_class_counts  # noqa: E402
from hhlib.data import InMemorySplit, split_protocol  # noqa: E402
from hhlib.data.transforms import TensorTransform  # noqa: E402
from hhlib.viz._figure import figure, panel, panels  # noqa: E402
from hhlib.viz.data import (  # noqa: E402
    plot_example_grid,
    plot_label_matrix,
    plot_protocol_layout,
    plot_protocols,
    plot_ranking,
    plot_relevance,
    plot_split_counts,
)

LABELS = np.repeat(np.arange(10), 600)  # a small balanced pool: 600 per class


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tiny_split():
    """An in-memory split of 30 8x8 images, 3 per class, image i filled with the value i."""
    pixels = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, 1, 8, 8).contiguous()
    classes = np.arange(30) % 10
    rows = np.arange(30)
    return InMemorySplit(pixels, rows, np.eye(10, dtype=np.uint8)[classes], TensorTransform(8, False, False), rows)


def test_ranking_draws_squares_in_rank_order_and_the_title_is_the_metric():
    distances = np.array([3, 0, 5, 2, 2, 7, 1, 4])
    relevant = np.array([1, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    fig = plot_ranking(distances, relevant, labels=[f"i{i}" for i in range(8)])
    ax = fig.axes[0]
    squares = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [s.get_x() for s in squares] == list(range(8))
    # ranked by distance, ties by position: items 1, 6, 3, 4, 0, 7, 2, 5
    relevant_colour = matplotlib.colors.to_rgba("tab:green")
    assert [s.get_facecolor() == relevant_colour for s in squares] == [1, 0, 0, 1, 1, 1, 0, 0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["0", "i1", "1/1"] and texts[-1] == "i5"
    # relevant at ranks 1, 4, 5, 6: AP = (1/1 + 2/4 + 3/5 + 4/6) / 4
    assert {"1/1", "2/4", "3/5", "4/6"} <= set(texts)
    assert ax.get_title().endswith(f"{(1 + 2 / 4 + 3 / 5 + 4 / 6) / 4:.4f}")
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(r) for r in range(1, 9)]


def test_ranking_without_relevant_items_and_bad_shapes():
    assert plot_ranking(np.array([1, 2]), np.array([False, False])).axes[0].get_title().endswith("0.0000")
    with pytest.raises(ValueError):
        plot_ranking(np.array([1, 2]), np.array([True]))
    with pytest.raises(ValueError, match="labels"):
        plot_ranking(np.array([1, 2]), np.array([True, False]), labels=["a"])


def test_plot_protocol_layout_draws_one_segment_per_nonempty_part():
    labels = np.repeat(np.arange(10), 700)
    splits = {"cifar10": split_protocol(labels, "cifar10"), "cifar10-1": split_protocol(labels, "cifar10-1")}
    ax = plot_protocol_layout(splits, 7000).axes[0]
    widths = sorted(round(p.get_width()) for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0)
    # cifar10: 1000, 5000, 1000; cifar10-1: 1000, 5000 (train inside the database), 1000
    assert widths == [1000, 1000, 1000, 1000, 5000, 5000]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cifar10", "cifar10-1"]


def test_split_counts_bars_are_the_class_counts():
    split = split_protocol(LABELS, "cifar10")
    fig = plot_split_counts(split, LABELS, [f"c{i}" for i in range(10)])
    assert len(fig.axes) == 3
    heights = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    counts = split_class_counts(split, LABELS)
    assert heights == [counts[part].tolist() for part in ("query", "train", "database")]
    assert heights[0] == [100] * 10 and heights[1] == [500] * 10
    assert fig.axes[1].get_title() == "cifar10: train (5,000 images)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["c0", "c1"]
    with pytest.raises(ValueError, match="class names"):
        plot_split_counts(split, LABELS, ["a"])


def test_plot_protocols_is_one_table_of_the_class_counts():
    splits = {"cifar10": split_protocol(LABELS, "cifar10"), "cifar10-1": split_protocol(LABELS, "cifar10-1")}
    fig = plot_protocols(splits, {"cifar10": LABELS, "cifar10-1": LABELS})
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[0] == "cifar10: query (1,000)" and rows[5] == "cifar10-1: database (5,000)"
    values = heatmap_values(ax).reshape(6, 10)
    assert values[1].tolist() == [500] * 10 and values[5].tolist() == [500] * 10  # its database is its train set
    assert [t.get_text() for t in ax.texts[:2]] == ["100", "100"]
    with pytest.raises(ValueError, match="no splits"):
        plot_protocols({}, LABELS)


def test_example_grid_shows_raw_images_of_the_right_class(tiny_split):
    split = tiny_split
    names = [str(c) for c in range(10)]
    fig = plot_example_grid(split, names, per_class=3, seed=1, classes=[0, 7])
    assert len(fig.axes) == 6
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 6
    raw = {split.raw_image(i).tobytes(): int(np.argmax(split.labels[i])) for i in range(len(split))}
    assert [raw[np.asarray(a).tobytes()] for a in shown] == [0, 0, 0, 7, 7, 7]
    assert fig.axes[0].get_ylabel() == "0" and fig.axes[3].get_ylabel() == "7"
    with pytest.raises(ValueError):
        plot_example_grid(split, names[:3])


def heatmap_values(ax):
    return np.asarray(ax.collections[0].get_array())


def test_relevance_plot_draws_the_relevance_and_the_classes_shared():
    query = np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    db = np.array([[1, 0, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    ax = plot_relevance(query, db, query_names=["q0", "q1"], db_names=list("abcd")).axes[0]
    np.testing.assert_array_equal(heatmap_values(ax), relevance_matrix(query, db))
    # one number per relevant cell, at its centre: query 0 shares 2 classes with a, 1 with b
    assert sorted((t.get_position(), t.get_text()) for t in ax.texts) == [
        ((0.5, 0.5), "2"),
        ((1.5, 0.5), "1"),
        ((1.5, 1.5), "1"),
        ((2.5, 1.5), "1"),
    ]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q0", "q1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert "4 of 8" in ax.get_title() and ax.get_ylabel() == "query"
    with pytest.raises(ValueError):
        plot_relevance(query, db[:, :3])


def test_label_matrix_draws_only_used_classes():
    labels = np.array([[1, 0, 0, 1], [0, 0, 0, 1]])
    ax = plot_label_matrix(labels, ["a", "b", "c", "d"], item_names=["x", "y"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "d"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    np.testing.assert_array_equal(heatmap_values(ax), [[1, 1], [0, 1]])
    assert "2 of 4 classes used" in ax.get_title()


def test_figure_makes_panels_of_the_given_size_in_the_style():
    fig, axes = figure(3, (2.0, 1.5), rows=2)
    assert axes.shape == (2, 3) and tuple(fig.get_size_inches()) == (6.0, 3.0)
    assert all(not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible() for ax in axes.flat)
    assert plt.fignum_exists(fig.number)  # tracked by pyplot, so a notebook shows it
    assert plt.rcParams["axes.spines.top"]  # the caller's settings are untouched
    tracked = len(plt.get_fignums())
    untracked, ax = figure(pyplot=False)
    assert len(plt.get_fignums()) == tracked and ax.figure is untracked and not ax.spines["top"].get_visible()
    with pytest.raises(ValueError):
        figure(0)


def test_panel_and_panels_use_given_axes_or_make_them():
    fig, ax = plt.subplots()
    assert panel(ax, (1, 1)) == (fig, ax)
    made, ax = panel(None, (4, 2))
    assert tuple(made.get_size_inches()) == (4, 2) and made.axes == [ax]
    made, axes = panels(None, 2, (3, 2))
    assert len(axes) == 2 and tuple(made.get_size_inches()) == (6, 2)
    with pytest.raises(ValueError, match="need 2 axes"):
        panels([ax], 2, (3, 2))
