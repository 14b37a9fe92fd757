"""Plots of protocols, class counts, example images, rankings and relevance."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from hhlib import mean_average_precision  # noqa: E402
from hhlib.data import InMemorySplit, split_protocol  # noqa: E402
from hhlib.data.transforms import TensorTransform  # noqa: E402
from hhlib.viz.data import (  # noqa: E402
    plot_example_grid,
    plot_label_matrix,
    plot_protocol_layout,
    plot_protocols,
    plot_ranking,
    plot_relevance,
    plot_split_counts,
    protocol_layout,
    ranking_order,
    relevance_matrix,
    split_class_counts,
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


def test_ranking_breaks_ties_by_index_and_the_title_is_the_metric():
    distances = np.array([3, 0, 5, 2, 2, 7, 1, 4])
    relevant = np.array([1, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    assert ranking_order(distances).tolist() == [1, 6, 3, 4, 0, 7, 2, 5]
    fig = plot_ranking(distances, relevant)
    ax = fig.axes[0]
    squares = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(squares) == 8
    # relevant at ranks 1, 4, 5, 6: AP = (1/1 + 2/4 + 3/5 + 4/6) / 4
    expected = (1 + 2 / 4 + 3 / 5 + 4 / 6) / 4
    assert ax.get_title().endswith(f"{expected:.4f}")
    texts = {t.get_text() for t in ax.texts}
    assert {"1/1", "2/4", "3/5", "4/6"} <= texts
    # the same number from the library: codes whose distances to the query are these
    bits = 8
    query = np.ones((1, bits))
    db = np.ones((8, bits))
    for item, d in enumerate(distances):
        db[item, :d] = -1
    labels_db = np.where(relevant, 0, 1)
    assert mean_average_precision(query, db, np.array([0]), labels_db) == pytest.approx(expected)


def test_ranking_without_relevant_items_and_bad_shapes():
    assert plot_ranking(np.array([1, 2]), np.array([False, False])).axes[0].get_title().endswith("0.0000")
    with pytest.raises(ValueError):
        plot_ranking(np.array([1, 2]), np.array([True]))
    with pytest.raises(ValueError):
        ranking_order(np.zeros((2, 2)))


@pytest.mark.parametrize("protocol, train_only, train_in_database", [("cifar10", 5000, 0), ("cifar10-1", 0, 5000)])
def test_protocol_layout_counts_overlaps(protocol, train_only, train_in_database):
    layout = protocol_layout(split_protocol(LABELS, protocol), 6000)
    assert layout == {
        "query": 1000,
        "train": train_only,
        "train and database": train_in_database,
        "database": 0,
        "unused": 0,
    }


def test_protocol_layout_with_unused_images_and_errors():
    labels = np.repeat(np.arange(10), 700)
    layout = protocol_layout(split_protocol(labels, "cifar10"), 7000)
    assert layout == {"query": 1000, "train": 5000, "train and database": 0, "database": 1000, "unused": 0}
    layout = protocol_layout(split_protocol(labels, "cifar10"), 7500)
    assert layout["unused"] == 500
    with pytest.raises(ValueError, match="beyond"):
        protocol_layout(split_protocol(labels, "cifar10"), 10)


def test_plot_protocol_layout_draws_one_segment_per_nonempty_part():
    labels = np.repeat(np.arange(10), 700)
    splits = {"cifar10": split_protocol(labels, "cifar10"), "cifar10-1": split_protocol(labels, "cifar10-1")}
    ax = plot_protocol_layout(splits, 7000).axes[0]
    widths = sorted(round(p.get_width()) for p in ax.patches if isinstance(p, Rectangle) and p.get_width() > 0)
    # cifar10: 1000, 5000, 1000; cifar10-1: 1000, 5000 (train inside the database), 1000
    assert widths == [1000, 1000, 1000, 1000, 5000, 5000]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cifar10", "cifar10-1"]


def test_split_class_counts_and_their_bars():
    split = split_protocol(LABELS, "cifar10")
    counts = split_class_counts(split, LABELS)
    assert counts["query"].tolist() == [100] * 10
    assert counts["train"].tolist() == [500] * 10
    assert counts["database"].sum() == 0
    fig = plot_split_counts(split, LABELS, [f"c{i}" for i in range(10)])
    heights = [[p.get_height() for p in ax.patches] for ax in fig.axes]
    assert heights[0] == [100] * 10 and heights[1] == [500] * 10
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["c0", "c1"]
    with pytest.raises(ValueError, match="class names"):
        plot_split_counts(split, LABELS, ["a"])


def test_split_class_counts_count_every_label_of_multi_label_images():
    rng = np.random.default_rng(0)
    labels = np.zeros((21 * 700, 21), dtype=np.uint8)
    labels[np.arange(len(labels)), np.arange(len(labels)) % 21] = 1  # 700 images of each class
    extra = rng.random(len(labels)) < 0.3  # and a second label on some
    labels[np.flatnonzero(extra), rng.integers(0, 21, extra.sum())] = 1
    split = split_protocol(labels, "nuswide_21")
    counts = split_class_counts(split, labels)
    assert counts["query"].min() >= 100
    assert counts["query"].sum() == labels[split.query].sum()


def test_plot_protocols_one_row_per_split():
    splits = {"cifar10": split_protocol(LABELS, "cifar10"), "cifar10-1": split_protocol(LABELS, "cifar10-1")}
    fig = plot_protocols(splits, {"cifar10": LABELS, "cifar10-1": LABELS})
    assert len(fig.axes) == 6
    assert "cifar10-1: database (5,000 images)" in fig.axes[5].get_title()
    assert [p.get_height() for p in fig.axes[5].patches] == [500] * 10  # its database is its train set here


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


def test_relevance_is_at_least_one_shared_label():
    query = np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    db = np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert relevance_matrix(query, db).tolist() == [[True, True, False, False], [False, True, True, False]]
    ax = plot_relevance(query, db).axes[0]
    assert np.array_equal(np.asarray(ax.images[0].get_array()), relevance_matrix(query, db))
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1"]
    assert "4 of 8" in ax.get_title()
    with pytest.raises(ValueError):
        relevance_matrix(query, db[:, :3])


def test_label_matrix_draws_only_used_classes():
    labels = np.array([[1, 0, 0, 1], [0, 0, 0, 1]])
    ax = plot_label_matrix(labels, ["a", "b", "c", "d"]).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "d"]
    assert np.asarray(ax.images[0].get_array()).shape == (2, 2)
