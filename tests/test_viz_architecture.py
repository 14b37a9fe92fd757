"""Plots of blocks, feature maps, stage costs and load reports."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hhlib import HybridHashConfig  # noqa: E402
from hhlib.analysis import channel_norm  # noqa: E402
from hhlib.summary import LoadRow, StageRow  # noqa: E402
from hhlib.viz.architecture import (  # noqa: E402
    plot_blockify,
    plot_blocks,
    plot_feature_maps,
    plot_load_report,
    plot_stage_costs,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def thick_lines(ax):
    return [line for line in ax.get_lines() if line.get_linewidth() >= 1.5]


def test_blocks_per_level_follow_the_configuration():
    config = HybridHashConfig.cpu()  # 32 px, patch 2, b = 4: 16, 4, 1 blocks
    image = np.zeros((28, 28), dtype=np.uint8)
    fig = plot_blocks(image, config)
    assert len(fig.axes) == 3
    # block borders: 3 + 3 inner lines for 4x4 blocks, 1 + 1 for 2x2, none for one block
    assert [len(thick_lines(ax)) for ax in fig.axes] == [6, 2, 0]
    assert [len(ax.texts) for ax in fig.axes] == [16, 4, 1]
    assert "token = 2x2 px, block = 8x8 px" in fig.axes[0].get_title()
    assert "token = 8x8 px, block = 32x32 px" in fig.axes[2].get_title()
    # block borders lie on multiples of the block side in pixels
    assert sorted({float(x) for line in thick_lines(fig.axes[0]) for x in np.atleast_1d(line.get_xdata())}) == [
        0.0,
        1.0,
        8.0,
        16.0,
        24.0,
    ]  # axhline spans x in axis coordinates 0..1
    with pytest.raises(ValueError):
        plot_blocks(np.zeros((4, 4, 5)), config)


def test_blockify_panel_holds_one_row_per_block_and_round_trips():
    image = np.arange(16 * 16 * 3, dtype=np.int64).reshape(16, 16, 3) % 251
    fig = plot_blockify(image.astype(np.uint8), 4)
    left, middle, right = fig.axes
    strip = np.asarray(middle.images[0].get_array())
    assert strip.shape == (16, 16, 3)  # T = 16 blocks of N = 16 pixels
    # the first row is the top-left 4x4 block read row by row
    assert np.array_equal(strip[0], image[:4, :4].reshape(16, 3))
    assert np.array_equal(strip[1], image[:4, 4:8].reshape(16, 3))
    assert np.array_equal(np.asarray(right.images[0].get_array()), image)
    assert "identical" in right.get_title()
    with pytest.raises(ValueError, match="divisible"):
        plot_blockify(np.zeros((10, 10)), 4)


def test_feature_maps_draw_their_channel_norms():
    feature_map = torch.zeros(2, 3, 4)
    feature_map[0, 1, 2], feature_map[1, 1, 2] = 3.0, 4.0
    fig = plot_feature_maps({"a": feature_map, "b": np.ones((5, 2, 2))})
    assert len(fig.axes) == 4  # two maps, two colour bars
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    np.testing.assert_array_equal(np.asarray(panels[0].images[0].get_array()), channel_norm(feature_map))
    assert np.allclose(np.asarray(panels[1].images[0].get_array()), np.sqrt(5.0))
    assert panels[0].get_title() == "a\n(2, 3, 4)" and "(5, 2, 2)" in panels[1].get_title()
    with pytest.raises(ValueError):
        plot_feature_maps({})
    with pytest.raises(ValueError, match="need 2 axes"):
        plot_feature_maps({"a": feature_map, "b": feature_map}, axes=[panels[0]])


def rows(*specs):
    return [StageRow(stage, stage, None, params, flops, 0) for stage, params, flops in specs]


def test_stage_costs_bars_are_the_numbers():
    fig = plot_stage_costs(rows(("a", 2_000_000, 3_000_000_000), ("b", 500_000, 1_000_000_000)))
    params_ax, flops_ax = fig.axes
    assert [p.get_width() for p in params_ax.patches] == pytest.approx([2.0, 0.5])
    assert [p.get_width() for p in flops_ax.patches] == pytest.approx([3.0, 1.0])
    assert [t.get_text() for t in params_ax.get_yticklabels()] == ["a", "b"]


def test_stage_costs_of_two_models_merge_stage_names_in_order():
    fig = plot_stage_costs(
        {
            "one": rows(("stem", 1, 1), ("interaction", 1, 1), ("head", 1, 1)),
            "two": rows(("stem", 2, 2), ("pool", 2, 2), ("head", 2, 2)),
        }
    )
    params_ax = fig.axes[0]
    assert [t.get_text() for t in params_ax.get_yticklabels()] == ["stem", "interaction", "pool", "head"]
    assert len(params_ax.patches) == 6
    with pytest.raises(ValueError):
        plot_stage_costs([])


def test_load_report_bars_stack_loaded_and_fresh_parameters():
    report_rows = [LoadRow("stem", 2, 0, 3_000_000, 0), LoadRow("head", 1, 3, 1_000_000, 1_000_000)]
    ax = plot_load_report(report_rows).axes[0]
    bars = ax.patches
    assert [b.get_width() for b in bars] == pytest.approx([3.0, 1.0, 0.0, 1.0])
    assert bars[3].get_x() == pytest.approx(1.0)  # fresh stacked after loaded
    assert "4.0 M of 5.0 M parameters loaded (80%)" in ax.get_title()
    assert any("1 loaded / 3 fresh" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError):
        plot_load_report([])


def test_feature_map_colour_bars_tell_min_and_max_apart():
    nearly_flat = np.full((1, 2, 2), 0.0088)
    nearly_flat[0, 0, 0] += 1e-9
    fig = plot_feature_maps({"flat": nearly_flat})
    colour_bar = fig.axes[1]
    labels = [t.get_text() for t in colour_bar.get_yticklabels()]
    assert len(labels) == 2 and labels[0] != labels[1]
