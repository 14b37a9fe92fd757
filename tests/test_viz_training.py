"""Plots of the loss and of training: the values drawn are the loss's."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hhlib.analysis import code_scale_loss  # noqa: E402
from hhlib.train import History  # noqa: E402
from hhlib.viz import training as viz  # noqa: E402

LOG2 = math.log(2)


def test_pair_loss_lines_are_the_likelihood():
    figure = viz.plot_pair_loss(theta_max=6, bits=8, alpha=0.5)
    assert isinstance(figure, Figure)
    similar, dissimilar = figure.axes[0].lines[:2]
    theta = similar.get_xdata()
    assert theta.min() == -6 and theta.max() == 6
    np.testing.assert_allclose(similar.get_ydata(), np.log1p(np.exp(theta)) - theta, atol=1e-12)
    np.testing.assert_allclose(dissimilar.get_ydata(), np.log1p(np.exp(theta)), atol=1e-12)
    middle = len(theta) // 2
    assert theta[middle] == pytest.approx(0, abs=1e-12) and similar.get_ydata()[middle] == pytest.approx(LOG2)
    assert [line.get_xdata()[0] for line in figure.axes[0].lines if line.get_linestyle() == ":"] == [-4, 4]
    with pytest.raises(ValueError):
        viz.plot_pair_loss(theta_max=0)


def test_pair_loss_draws_into_a_given_axes():
    figure, ax = plt.subplots()
    assert viz.plot_pair_loss(ax=ax) is figure
    plt.close(figure)


def test_class_balance_weights_curve_values():
    figure = viz.plot_class_balance_weights(num_classes=[2, 4, 10], marks=[10])
    (ax,) = figure.axes
    positive, negative = ax.lines[:2]
    np.testing.assert_allclose(positive.get_ydata(), [2, 4, 10])
    np.testing.assert_allclose(negative.get_ydata(), [2, 4 / 3, 10 / 9])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["S / S1 (similar pairs)", "S / S0 (dissimilar pairs)"]
    assert "C = 10: 10 and 1.111" in [t.get_text() for t in ax.texts]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    with pytest.raises(ValueError):
        viz.plot_class_balance_weights(num_classes=[1, 2])


def test_code_scale_loss_plot_goes_down_for_class_codes_and_up_for_random_ones():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 2, 60)
    labels = np.eye(2)[classes]
    per_class = np.array([[1.0] * 8, [-1.0] * 8])[classes]  # opposite codes for the two classes
    figure = viz.plot_code_scale_loss(
        {"class": per_class, "random": rng.choice([-1.0, 1.0], (60, 8))}, labels, scales=np.linspace(0, 1, 5)
    )
    class_line, random_line = figure.axes[0].lines[:2]
    np.testing.assert_allclose(class_line.get_ydata(), code_scale_loss(per_class, labels, np.linspace(0, 1, 5)))
    assert class_line.get_label() == "class" and random_line.get_label() == "random"
    assert class_line.get_ydata()[0] == pytest.approx(2 * LOG2) == random_line.get_ydata()[0]
    assert class_line.get_ydata()[-1] < 0.1 < 2 * LOG2 < random_line.get_ydata()[-1]
    with pytest.raises(ValueError):
        viz.plot_code_scale_loss({}, labels)


HISTORY = {
    "epochs": [{"epoch": e, "loss": 1.3 - 0.1 * e, "lr": 1e-3 / e} for e in range(1, 7)],
    "evals": [{"epoch": 3, "map": 0.4}, {"epoch": 6, "map": 0.55}],
}


@pytest.mark.parametrize("history", [HISTORY, History(epochs=HISTORY["epochs"], evals=HISTORY["evals"])])
def test_training_curves_draw_the_history(history):
    tracked = plt.get_fignums()
    figure = viz.plot_training_curves(history)
    assert plt.get_fignums() == tracked  # not tracked by pyplot: a notebook cell shows it once, as its value
    loss_ax, lr_ax, map_ax = figure.axes
    assert (loss_ax.get_ylabel(), map_ax.get_ylabel()) == ("mean training loss", "mAP (query vs database)")
    loss_line = loss_ax.lines[0]
    assert list(loss_line.get_xdata()) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(loss_line.get_ydata(), [1.2, 1.1, 1.0, 0.9, 0.8, 0.7])
    assert loss_ax.lines[1].get_ydata()[0] == pytest.approx(2 * LOG2)  # the collapsed loss
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata(), [1e-3 / e for e in range(1, 7)])
    assert lr_ax.get_yscale() == "log"
    assert list(map_ax.lines[0].get_xdata()) == [3, 6] and list(map_ax.lines[0].get_ydata()) == [0.4, 0.55]
    with pytest.raises(ValueError, match="epochs"):
        viz.plot_training_curves({"epochs": [], "evals": []})
    with pytest.raises(ValueError, match="History"):
        viz.plot_training_curves({"epochs": []})


def test_one_evaluation_is_written_in_the_legend_not_drawn_as_a_point():
    once = {"epochs": HISTORY["epochs"], "evals": [{"epoch": 6, "map": 0.8421}]}
    figure = viz.plot_training_curves(once)
    assert len(figure.axes) == 2  # loss and schedule: no panel for a single point
    assert figure.axes[0].lines[0].get_label() == "loss (mAP 0.842 at epoch 6)"


def test_several_runs_are_drawn_side_by_side():
    runs = {"cpu": HISTORY, "gpu": {"epochs": HISTORY["epochs"][:3], "evals": HISTORY["evals"][:1]}}
    loss_ax, lr_ax, map_ax = viz.plot_training_curves(runs).axes
    assert [line.get_label() for line in loss_ax.lines[:2]] == ["cpu", "gpu: loss (mAP 0.400 at epoch 3)"]
    assert [len(line.get_xdata()) for line in lr_ax.lines] == [6, 3]
    assert len(map_ax.lines) == 2


def test_live_curves_outside_a_notebook_redraw_without_displaying(monkeypatch):
    shown = []
    monkeypatch.setattr(viz.LiveCurves, "_show", lambda self: shown.append(self.calls))
    live = viz.LiveCurves(title="run")
    partial = {"epochs": HISTORY["epochs"][:2], "evals": []}
    live(partial)
    live(HISTORY)
    assert live.calls == 2 and shown == []  # pytest is not a Jupyter kernel
    loss_ax, map_ax = live.figure.axes
    assert len(loss_ax.lines[0].get_xdata()) == 6  # redrawn, not drawn twice
    assert len(loss_ax.lines) == 2 and len(map_ax.lines) == 1
    assert live.figure.get_suptitle() == "run"
    assert not loss_ax.spines["top"].get_visible()  # the style survives the redraw


def test_live_curves_in_a_notebook_update_one_display(monkeypatch):
    displayed = []

    class Handle:
        def update(self, figure):
            displayed.append(("update", figure))

    def fake_display(figure, display_id=False):
        displayed.append(("display", figure))
        return Handle()

    import IPython.display

    monkeypatch.setattr(viz, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    live = viz.LiveCurves()
    for _ in range(3):
        live(HISTORY)
    assert [kind for kind, _ in displayed] == ["display", "update", "update"]
    assert all(figure is live.figure for _, figure in displayed)
