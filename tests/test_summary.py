"""Stage summaries (shapes, parameters, FLOPs) and load-report tables."""

import numpy as np
import pandas as pd
import pytest
import torch
from timm.models.nest import Nest
from torch import nn

from hhlib import HybridHash, HybridHashConfig, load_nest_weights, summary
from hhlib.summary import (
    REST,
    LoadRow,
    StageRow,
    SummaryTable,
    default_stages,
    format_load_table,
    format_stage_table,
    load_groups,
    load_report_by_stage,
    stage_summary,
)
from hhlib.weights import LoadReport


def tiny_config(**overrides) -> HybridHashConfig:
    kw = dict(
        img_size=32,
        patch_size=2,
        embed_dims=(16, 32, 64),
        num_heads=(2, 4, 8),
        depths=(1, 1, 1),
        bits=16,
        drop_path_rate=0.1,
    )
    kw.update(overrides)
    return HybridHashConfig(**kw)


class TwoLayers(nn.Module):
    """A model whose FLOPs are easy to count by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=1)  # 3 * 4 MACs per position
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


def test_hand_counted_flops_shapes_and_parameters():
    rows = stage_summary(TwoLayers(), img_size=8)
    assert [r.stage for r in rows] == ["conv", "classifier head"]
    conv, head = rows
    assert conv.output_shape == (1, 4, 8, 8) and head.output_shape == (1, 5)
    assert conv.parameters == 3 * 4 + 4 and head.parameters == 256 * 5 + 5
    assert conv.flops == 2 * 3 * 4 * 64 and head.flops == 2 * 256 * 5
    assert conv.attention_flops == head.attention_flops == 0
    assert conv.gmacs == pytest.approx(3 * 4 * 64 / 1e9)


def test_rows_add_up_to_the_model_and_nesting_is_subtracted():
    model = HybridHash(tiny_config())
    rows = stage_summary(model)
    assert [r.module for r in rows] == [
        "patch_embed",
        "levels.0",
        "levels.1.interaction",
        "levels.1",
        "levels.2.interaction",
        "levels.2",
        "norm",
        "hash_head",
    ]
    assert sum(r.parameters for r in rows) == model.num_parameters()
    by_module = {r.module: r for r in rows}
    # levels.1 without its interaction module: the level's pos_embed and transformer layer
    level1 = model.levels[1]
    expected = level1.pos_embed.numel() + sum(p.numel() for p in level1.blocks.parameters())
    assert by_module["levels.1"].parameters == expected
    assert by_module["levels.1.interaction"].output_shape == (1, 32, 8, 8)
    assert by_module["hash_head"].output_shape == (1, 16)
    # the patch embedding is one 2x2 conv, 3 -> 16 channels, on a 16x16 grid
    assert by_module["patch_embed"].flops == 2 * (3 * 2 * 2) * 16 * 16 * 16
    assert all(r.flops > 0 for r in rows if r.module != "norm")
    # attention products happen in the transformers and global branches only
    assert by_module["patch_embed"].attention_flops == 0
    assert by_module["levels.0"].attention_flops > 0


def test_custom_stages_get_a_rest_row_and_the_model_is_left_untouched():
    model = HybridHash(tiny_config()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = stage_summary(model)
    rows = stage_summary(model, stages={"levels.0": "first level"})
    assert [r.stage for r in rows] == ["first level", REST]
    assert sum(r.parameters for r in rows) == model.num_parameters()
    assert sum(r.flops for r in rows) == sum(r.flops for r in full)
    assert model.training
    assert all(torch.equal(before[k], v) and v.device.type == "cpu" for k, v in model.state_dict().items())


def test_bad_stage_and_unknown_input_size_raise():
    with pytest.raises(ValueError, match="no such module"):
        stage_summary(HybridHash(tiny_config()), stages=["levels.7"])
    with pytest.raises(ValueError, match="img_size"):
        stage_summary(TwoLayers())


def test_default_stages_for_a_plain_model_skip_parameterless_children():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    assert default_stages(model) == {"0": "0", "3": "3"}


def test_load_report_by_stage_counts_tensors_and_parameters():
    model = HybridHash(tiny_config())
    names = list(model.state_dict())
    loaded = [n for n in names if not n.startswith("hash_head.global_attn")]
    report = LoadReport(loaded=loaded, missing=[n for n in names if n not in loaded])
    rows = {r.stage: r for r in load_report_by_stage(report, model)}
    head_global = rows["hash head: global branch"]
    attn = model.hash_head.global_attn
    assert head_global.loaded_tensors == 0 and head_global.missing_tensors == 4
    assert head_global.missing_parameters == sum(p.numel() for p in attn.parameters())
    assert sum(r.loaded_tensors + r.missing_tensors for r in rows.values()) == len(names)
    assert "level 1 interaction: global branch" in load_groups(model).values()
    with pytest.raises(ValueError, match="does not have"):
        load_report_by_stage(LoadReport(loaded=["nonsense.weight"]), model)


def test_nest_mapping_leaves_exactly_the_global_branches_and_hash_head_fresh():
    kw = dict(img_size=32, patch_size=2, embed_dims=(16, 32, 64), num_heads=(2, 4, 8), depths=(1, 1, 2))
    nest = Nest(num_levels=3, num_classes=10, **kw)
    model = HybridHash(HybridHashConfig(bits=16, **kw))
    rows = load_report_by_stage(load_nest_weights(model, nest), model)
    fresh = {r.stage for r in rows if r.missing_tensors}
    assert fresh == {
        "level 1 interaction: global branch",
        "level 2 interaction: global branch",
        "hash head: local branch",
        "hash head: global branch",
        "hash head: to bits",
    }
    assert all(r.missing_tensors == 0 for r in rows if r.stage not in fresh)


def test_stage_table_is_a_dataframe_of_the_rows_and_their_total():
    table = format_stage_table(stage_summary(TwoLayers(), img_size=8))
    assert isinstance(table, pd.DataFrame) and isinstance(table, SummaryTable)
    assert list(table.columns) == ["stage", "output shape", "parameters", "GFLOPs", "share", "GMACs w/o attn"]
    assert list(table["stage"]) == ["conv", "classifier head", "total"]
    assert list(table["output shape"]) == ["(1, 4, 8, 8)", "(1, 5)", ""]
    assert list(table["parameters"]) == [16, 1285, 1301]  # 3 * 4 + 4 and 256 * 5 + 5
    flops = np.array([2 * 3 * 4 * 64, 2 * 256 * 5, 2 * 3 * 4 * 64 + 2 * 256 * 5])
    np.testing.assert_array_equal(table["GFLOPs"], flops / 1e9)
    np.testing.assert_array_equal(table["share"], [0.375, 0.625, 1.0])  # of 4096 FLOPs
    np.testing.assert_array_equal(table["GMACs w/o attn"], flops / 2e9)
    assert table[["stage", "parameters"]].shape == (3, 2) and isinstance(table.head(1), SummaryTable)


def test_stage_table_prints_whole_and_formatted():
    text = str(format_stage_table(stage_summary(TwoLayers(), img_size=8)))
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "output", "shape", "parameters", "GFLOPs", "share", "GMACs", "w/o", "attn"]
    assert lines[1].split() == ["conv", "(1,", "4,", "8,", "8)", "16", "0.000", "37.5%", "0.000"]
    assert lines[-1].split() == ["total", "1,301", "0.000", "100.0%", "0.000"]
    assert repr(format_stage_table(stage_summary(TwoLayers(), img_size=8))) == text
    # wider than 80 characters and still whole: a plain DataFrame would be cut
    wide = [StageRow("a stage with a rather long name " * 2, "m", (1, 512, 14, 14), 12_345_678, 0, 0)]
    wide_text = str(format_stage_table(wide))
    assert "..." not in wide_text and "12,345,678" in wide_text
    assert wide_text.splitlines()[1].split()[-3:] == ["0.000", "-", "0.000"]  # no FLOPs: no share
    html = format_stage_table(stage_summary(TwoLayers(), img_size=8))._repr_html_()
    assert "<table" in html and "1,301" in html and "37.5%" in html


def test_load_table_counts_and_total():
    rows = [LoadRow("a", 2, 1, 1500, 20), LoadRow("b", 0, 3, 0, 1_000_000)]
    table = format_load_table(rows)
    assert list(table.columns) == ["group", "tensors loaded", "tensors fresh", "parameters loaded", "parameters fresh"]
    assert table.iloc[-1].tolist() == ["total", 2, 4, 1500, 1_000_020]
    assert str(table).splitlines()[-1].split() == ["total", "2", "4", "1,500", "1,000,020"]
    model = HybridHash(tiny_config())
    names = list(model.state_dict())
    table = format_load_table(load_report_by_stage(LoadReport(loaded=names), model))
    assert table.iloc[-1]["tensors loaded"] == len(names) and table.iloc[-1]["tensors fresh"] == 0
    assert table.iloc[-1]["parameters loaded"] == sum(t.numel() for t in model.state_dict().values())
    assert not hasattr(summary, "format_table")  # the tables are pandas now
