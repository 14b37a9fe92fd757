"""Plots of the network, blocks, feature maps, stage costs and load reports."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hhlib import HybridHash, HybridHashConfig  # noqa: E402
from hhlib.analysis import channel_norm  # noqa: E402
from hhlib.summary import LoadRow, StageRow, stage_summary  # noqa: E402
from hhlib.viz.architecture import (  # noqa: E402
    plot_blockify,
    plot_blocks,
    plot_feature_maps,
    plot_load_report,
    plot_network,
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


def test_feature_maps_draw_their_channel_norms_on_one_labelled_scale():
    feature_map = torch.zeros(2, 3, 4)
    feature_map[0, 1, 2], feature_map[1, 1, 2] = 3.0, 4.0
    fig = plot_feature_maps({"a": feature_map, "b": np.ones((5, 2, 2))})
    assert len(fig.axes) == 3  # two maps, one shared colour bar
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    np.testing.assert_array_equal(np.asarray(panels[0].images[0].get_array()), channel_norm(feature_map))
    assert np.allclose(np.asarray(panels[1].images[0].get_array()), np.sqrt(5.0))
    # one scale, from the smallest to the largest norm of all panels
    assert [image.get_clim() for ax in panels for image in ax.images] == [(0.0, 5.0), (0.0, 5.0)]
    assert "channel norm" in fig.axes[2].get_ylabel()
    assert panels[0].get_title() == "channel norm of a\n(C, H, W) = (2, 3, 4)" and "(5, 2, 2)" in panels[1].get_title()
    with pytest.raises(ValueError):
        plot_feature_maps({})
    with pytest.raises(ValueError, match="need 2 axes"):
        plot_feature_maps({"a": feature_map, "b": feature_map}, axes=[panels[0]])


def test_feature_maps_can_have_a_scale_each():
    low = np.arange(4.0).reshape(1, 2, 2)
    fig = plot_feature_maps({"a": low, "b": low + 10}, shared=False)
    assert len(fig.axes) == 4  # a colour bar per map
    assert [ax.images[0].get_clim() for ax in fig.axes if ax.images] == [(0.0, 3.0), (10.0, 13.0)]


def rows(*specs):
    return [StageRow(stage, stage, None, params, flops, 0) for stage, params, flops in specs]


def test_stage_costs_bars_are_the_numbers_on_log_axes():
    fig = plot_stage_costs(rows(("a", 2_000_000, 3_000_000_000), ("b", 500_000, 1_000_000_000), ("c", 1_000, 0)))
    params_ax, flops_ax = fig.axes
    assert params_ax.get_xscale() == flops_ax.get_xscale() == "log"
    assert [p.get_width() for p in params_ax.patches] == pytest.approx([2e6, 5e5, 1e3])
    assert [p.get_width() for p in flops_ax.patches] == pytest.approx([3e9, 1e9])  # a 0 has no bar on a log axis
    assert [t.get_text().strip() for t in flops_ax.texts] == ["0"]  # ... but says it is 0
    assert params_ax.get_xlim()[0] < 1_000  # the smallest bar is visible
    assert [t.get_text() for t in params_ax.get_yticklabels()] == ["a", "b", "c"]


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
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["one", "two"]
    with pytest.raises(ValueError):
        plot_stage_costs([])


def test_load_report_draws_loaded_and_fresh_side_by_side_on_a_log_axis():
    report_rows = [LoadRow("stem", 2, 0, 3_000_000, 0), LoadRow("head", 1, 3, 1_000_000, 1_000_000)]
    ax = plot_load_report(report_rows).axes[0]
    assert ax.get_xscale() == "log"
    bars = ax.patches
    assert [b.get_width() for b in bars] == pytest.approx([3e6, 1e6, 1e6])  # the stem's 0 fresh has no bar
    assert [b.get_facecolor() for b in bars[1:]] != [bars[1].get_facecolor()] * 2  # loaded and fresh told apart
    assert bars[0].get_height() > bars[1].get_height()  # a lone bar fills its row, two share theirs
    assert "4.0 M of 5.0 M parameters loaded (80%)" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["stem", "head"]
    with pytest.raises(ValueError):
        plot_load_report([])


def test_feature_map_colour_bars_tell_min_and_max_apart():
    nearly_flat = np.full((1, 2, 2), 0.0088)
    nearly_flat[0, 0, 0] += 1e-9
    fig = plot_feature_maps({"flat": nearly_flat}, shared=False)
    colour_bar = fig.axes[1]
    labels = [t.get_text() for t in colour_bar.get_yticklabels()]
    assert len(labels) == 2 and labels[0] != labels[1]


def drawn_text(ax):
    return "\n".join(t.get_text() for t in ax.texts)


def column(ax, x):
    """The texts of the drawing whose left edge is at ``x`` (axes coordinates), top to bottom."""
    return [t.get_text() for t in sorted(ax.texts, key=lambda t: t.get_position()[1]) if t.get_position()[0] == x]


def test_network_drawing_shows_the_shapes_of_both_configurations():
    ax = plot_network({"CPU": HybridHashConfig.cpu(), "paper": HybridHashConfig.paper(64)}).axes[0]
    cpu, paper = column(ax, 0.5), column(ax, 0.75)
    assert cpu[0] == "CPU\n32 px, b = 4" and paper[0] == "paper\n224 px, b = 14"
    for shape in ("(3, 32, 32)", "(32, 16, 16)", "(16, 16, 32)", "(64, 8, 8)", "(4, 16, 64)", "(1, 16, 128)"):
        assert shape in cpu
    for shape in ("(3, 224, 224)", "(128, 56, 56)", "(16, 196, 128)", "(256, 28, 28)", "(1, 196, 512)", "(64,)"):
        assert shape in paper
    assert "15 layers, 16 heads" in paper and "2 layers, 4 heads" in cpu
    assert cpu.index("(16, 16, 32)") < cpu.index("(64, 8, 8)") < cpu.index("(4, 16, 64)")  # in network order
    assert len([p for p in ax.patches if p.get_width() > 0]) == 10  # one box per stage, shared by the columns


def test_network_drawing_agrees_with_the_model_and_merges_stages():
    two = HybridHashConfig.cpu(bits=16, embed_dims=(32, 64), num_heads=(1, 2), depths=(1, 1))
    ax = plot_network({"two levels": two, "three levels": HybridHashConfig.cpu()}).axes[0]
    shapes = column(ax, 0.5)
    for row in stage_summary(HybridHash(two)):
        if row.output_shape and len(row.output_shape) == 4 and "transformer" not in row.stage:
            assert str(tuple(row.output_shape[1:])) in shapes, row.stage
    names = [t.get_text() for t in ax.texts if t.get_position()[0] == 0.025 and t.get_fontweight() == "bold"]
    assert names.index("level 1 transformer") < names.index("interaction module 2") < names.index("hash head")
    assert len(column(ax, 0.5)) < len(column(ax, 0.75))  # the two-level model has no level 2
