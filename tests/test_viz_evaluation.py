"""Retrieval scores and their plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hhlib import metrics  # noqa: E402
from hhlib.viz import evaluation as viz  # noqa: E402

# One query, 4-bit codes, four database items at distances 0, 1, 1, 2; items 0 and 2 are relevant.
QUERY = np.array([[1, 1, 1, 1]])
DATABASE = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, -1, 1], [-1, -1, 1, 1]])
QUERY_LABELS = np.array([0])
DB_LABELS = np.array([0, 1, 0, 1])


def test_retrieval_scores_by_hand():
    scores = viz.retrieval_scores(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, ks=[1, 2, 4])
    assert scores.bits == 4 and scores.topk is None
    # ties by index: relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert scores.map_index == pytest.approx((1 + 2 / 3) / 2)
    # expected: ranks 1, 3 or 1, 2 with equal chance
    assert scores.map_expected == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    np.testing.assert_allclose(scores.precision_at, [1, 0.5, 0.5])
    np.testing.assert_allclose(scores.precision, [1, 2 / 3, 0.5, 0.5, 0.5])  # radius 0..4
    np.testing.assert_allclose(scores.recall, [0.5, 1, 1, 1, 1])
    assert scores.precision_radius2 == 0.5
    with pytest.raises(ValueError, match=r"query_codes must be a 2-D array \(n, bits\)"):
        viz.retrieval_scores(QUERY[0], DATABASE, QUERY_LABELS, DB_LABELS)


def test_the_scores_are_those_of_hhlib_metrics():
    from hhlib import viz as package

    assert viz.retrieval_scores is metrics.retrieval_scores and viz.RetrievalScores is metrics.RetrievalScores
    assert package.retrieval_scores is metrics.retrieval_scores  # the notebooks' import
    scores = viz.retrieval_scores(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, ks=[2])
    assert scores.map_index == metrics.mean_average_precision(QUERY, DATABASE, QUERY_LABELS, DB_LABELS)


def test_default_ks_span_one_to_at_most_a_thousand():
    scores = viz.retrieval_scores(QUERY, DATABASE, QUERY_LABELS, DB_LABELS)
    assert list(scores.ks) == [1, 2, 3, 4]


def synthetic_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 80)
    signs = np.array([[1] * 8, [-1] * 8, [1, -1] * 4])
    scores = {}
    for bits in (8, 16):
        good = np.tile(signs, (1, bits // 8))[labels]
        noisy = good * np.where(rng.random(good.shape) < 0.15, -1, 1)
        scores[bits] = {
            "good": viz.retrieval_scores(noisy[:20], noisy[20:], labels[:20], labels[20:], ks=[1, 10, 60]),
            "random": viz.retrieval_scores(
                rng.choice([-1, 1], (20, bits)),
                rng.choice([-1, 1], (60, bits)),
                labels[:20],
                labels[20:],
                ks=[1, 10, 60],
            ),
        }
    scores[16].pop("random")  # a method missing at one length still plots
    return scores


def test_precision_recall_panels_draw_the_curves():
    scores = synthetic_scores()
    figure = viz.plot_precision_recall(scores)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    first = figure.axes[0]
    curve = first.lines[0]
    np.testing.assert_allclose(curve.get_xdata(), scores[8]["good"].recall)
    np.testing.assert_allclose(curve.get_ydata(), scores[8]["good"].precision)
    circle = first.lines[1]  # the radius-2 point
    assert circle.get_ydata()[0] == scores[8]["good"].precision_radius2
    assert len(first.lines) == 4 and len(figure.axes[1].lines) == 2
    assert first.lines[0].get_color() == figure.axes[1].lines[0].get_color()  # one colour per method
    assert first.get_legend() is None  # one legend for the figure, below the panels: it hides no curve
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["good", "random"]


def test_precision_at_k_panels():
    scores = synthetic_scores()
    figure = viz.plot_precision_at_k(scores)
    line = figure.axes[0].lines[1]
    assert list(line.get_xdata()) == [1, 10, 60]
    np.testing.assert_allclose(line.get_ydata(), scores[8]["random"].precision_at)
    assert scores[8]["good"].precision_at[1] > scores[8]["random"].precision_at[1]
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["good", "random"]


def test_map_bars_heights_are_the_maps():
    scores = synthetic_scores()
    figure = viz.plot_map_bars(scores)
    containers = [c for c in figure.axes[0].containers if isinstance(c, BarContainer)]
    assert len(containers) == 2
    good, random = ([bar.get_height() for bar in c] for c in containers)
    assert good == pytest.approx([scores[8]["good"].map_index, scores[16]["good"].map_index])
    assert random == pytest.approx([scores[8]["random"].map_index, 0.0])
    expected = viz.plot_map_bars(scores, ties="expected")
    heights = [bar.get_height() for bar in expected.axes[0].containers[0]]
    assert heights == pytest.approx([scores[8]["good"].map_expected, scores[16]["good"].map_expected])
    with pytest.raises(ValueError, match="ties"):
        viz.plot_map_bars(scores, ties="random")


def test_scores_table_rows_and_bad_input():
    scores = synthetic_scores()
    table = viz.scores_table(scores)
    assert list(table["bits"]) == [8, 8, 16] and list(table["method"]) == ["good", "random", "good"]
    row = table.iloc[0]
    assert row["mAP (ties by index)"] == scores[8]["good"].map_index
    assert row["difference"] == pytest.approx(scores[8]["good"].map_expected - scores[8]["good"].map_index)
    assert row["P@60"] == scores[8]["good"].precision_at[-1]
    for plot in (viz.plot_precision_recall, viz.plot_precision_at_k, viz.plot_map_bars, viz.scores_table):
        with pytest.raises(ValueError, match="scores"):
            plot({})
    with pytest.raises(ValueError, match="2 axes"):
        viz.plot_precision_recall(scores, ax=[Figure().add_subplot()])
