"""Parameters, output shapes and FLOPs of a model, stage by stage, as rows and pandas tables.

    from hhlib.summary import stage_summary, format_stage_table
    rows = stage_summary(HybridHash(HybridHashConfig.paper(64)))
    print(format_stage_table(rows))   # a DataFrame; in a notebook it shows as an HTML table

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` on
the meta device: the model runs on tensors that have a shape but no data, so
counting the 224 px paper model takes about a second and no memory, and the
numbers are the same on every machine. The counter sees matrix products and
convolutions (2 FLOPs per multiply-add) and nothing else: normalisations,
activations, pooling and softmax are not counted, as is usual.

Many papers quote multiply-adds (MACs) of the Linear and Conv layers only,
leaving out the two products inside self-attention (q k^T and attention x v).
Every row therefore also carries ``attention_flops``, the part of ``flops``
spent in those products, so that both conventions can be read off:
``macs_without_attention = (flops - attention_flops) / 2``.

Stages are modules named by their dotted path. A stage that contains another
listed stage counts only what is left of it (``levels.1`` without
``levels.1.interaction``), and whatever no stage covers goes into a row
named ``(rest)``, so that the rows always add up to the whole model.

:func:`load_report_by_stage` groups a :class:`~hhlib.weights.LoadReport` the
same way, to show which parts of a model received pretrained weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "StageRow",
    "LoadRow",
    "default_stages",
    "load_groups",
    "stage_summary",
    "load_report_by_stage",
    "SummaryTable",
    "format_stage_table",
    "format_load_table",
]

REST = "(rest)"
_FRIENDLY_NAMES = {
    "patch_embed": "patch embedding",
    "norm": "final norm",
    "hash_head": "hash head",
    "head": "classifier head",
}
# Operators of the two products inside attention (q k^T, attention x v); on the
# meta device scaled_dot_product_attention decomposes into batched matmuls.
_ATTENTION_OPS = ("bmm", "scaled_dot_product")


@dataclass(frozen=True)
class StageRow:
    """One stage of :func:`stage_summary`.

    Attributes:
        stage: a readable name ("level 1 interaction").
        module: the dotted module path ("levels.1.interaction"); "" for the rest row.
        output_shape: the shape the stage's module returns for one image
            (for a stage that is a remainder, that of the enclosing module).
        parameters: parameters of the stage (not of nested stages).
        flops: FLOPs for one image (2 per multiply-add), not of nested stages.
        attention_flops: the part of ``flops`` spent in attention's q k^T and
            attention x v products.
    """

    stage: str
    module: str
    output_shape: tuple[int, ...] | None
    parameters: int
    flops: int
    attention_flops: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def gmacs(self) -> float:
        """Multiply-adds of every counted product, in billions."""
        return self.flops / 2e9

    @property
    def gmacs_without_attention(self) -> float:
        """Multiply-adds of the Linear and Conv layers only, in billions (the usual quoted figure)."""
        return (self.flops - self.attention_flops) / 2e9


@dataclass(frozen=True)
class LoadRow:
    """One group of a model's tensors in :func:`load_report_by_stage`.

    Attributes:
        stage: a readable group name.
        loaded_tensors, missing_tensors: how many of the group's tensors
            received a value from the source / were left as initialised.
        loaded_parameters, missing_parameters: the same, counted in numbers.
    """

    stage: str
    loaded_tensors: int
    missing_tensors: int
    loaded_parameters: int
    missing_parameters: int


def _is_identity(module: nn.Module) -> bool:
    return isinstance(module, nn.Identity)


def default_stages(model: nn.Module) -> dict[str, str]:
    """The stages :func:`stage_summary` reports when none are given: module path -> readable name.

    For a model with ``levels`` (HybridHash, timm's NesT), every level's
    joining module (HybridHash's ``interaction``, NesT's ``pool``) is a stage
    of its own, followed by the rest of the level (its transformer layers).
    Every other top-level child that has parameters is one stage.

    Args:
        model: any module.

    Returns:
        An ordered mapping from module path to stage name, in forward order
        for HybridHash and NesT.
    """
    stages: dict[str, str] = {}
    for name, child in model.named_children():
        if name == "levels" and isinstance(child, nn.Sequential):
            for i, level in enumerate(child):
                for joint in ("interaction", "pool"):
                    module = getattr(level, joint, None)
                    if isinstance(module, nn.Module) and not _is_identity(module):
                        stages[f"levels.{i}.{joint}"] = f"level {i} {joint}"
                stages[f"levels.{i}"] = f"level {i} transformer"
        elif any(True for _ in child.parameters()):
            stages[name] = _FRIENDLY_NAMES.get(name, name)
    return stages


def _owner(name: str, prefixes: Iterable[str]) -> str | None:
    """The longest prefix (a module path) that ``name`` lies in, or None."""
    best = None
    for prefix in prefixes:
        if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def _resolve_img_size(model: nn.Module, img_size: int | None) -> tuple[int, int]:
    config = getattr(model, "config", None)
    in_chans = int(getattr(config, "in_chans", 3))
    if img_size is None:
        img_size = getattr(config, "img_size", None)
    if img_size is None:
        patch_embed_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
        img_size = patch_embed_size[0] if isinstance(patch_embed_size, (tuple, list)) else patch_embed_size
    if img_size is None:
        raise ValueError(f"cannot tell the input size of a {type(model).__name__}: pass img_size=")
    if not isinstance(img_size, int) or img_size < 1:
        raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
    return int(img_size), in_chans


def _stage_names(model: nn.Module, stages: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """Module path -> readable name for the stages to report; every path must name a submodule."""
    stages = default_stages(model) if stages is None else stages
    names = dict(stages) if isinstance(stages, Mapping) else {s: s for s in stages}
    modules = dict(model.named_modules())
    unknown = [s for s in names if s not in modules or s == ""]
    if unknown:
        raise ValueError(f"no such module in {type(model).__name__}: {unknown}")
    return names


def _run_on_meta(
    model: nn.Module, paths: Iterable[str], img_size: int, in_chans: int
) -> tuple[dict[str, tuple[int, ...]], FlopCounterMode]:
    """Run ``model`` once on a meta image: the output shape of each module in ``paths``, and the FLOP counter.

    The weights are replaced by meta tensors for the call (nothing is copied
    or touched) and the training mode is restored afterwards.
    """
    shapes: dict[str, tuple[int, ...]] = {}  # from forward hooks; the first call of each module wins

    def remember(path: str):
        def hook(_module, _inputs, output) -> None:
            if path not in shapes and isinstance(output, torch.Tensor):
                shapes[path] = tuple(output.shape)

        return hook

    handles = [model.get_submodule(path).register_forward_hook(remember(path)) for path in paths]
    meta_state = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
    }
    counter = FlopCounterMode(display=False, depth=None)
    was_training = model.training
    try:
        model.eval()
        with counter, torch.no_grad():
            functional_call(model, meta_state, (torch.zeros(1, in_chans, img_size, img_size, device="meta"),))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes, counter


def _flops_by_module(counter: FlopCounterMode) -> tuple[dict[str, int], dict[str, int]]:
    """All FLOPs and attention-product FLOPs per module path ("" for the whole model), nested modules included."""
    flops: dict[str, int] = {}
    attention: dict[str, int] = {}
    for qualified, per_op in counter.get_flop_counts().items():
        if qualified == "Global":
            continue
        path = qualified.partition(".")[2]  # FlopCounterMode names modules "<RootClass>.path", the root "<RootClass>"
        flops[path] = int(sum(per_op.values()))
        attention[path] = int(sum(n for op, n in per_op.items() if any(a in str(op) for a in _ATTENTION_OPS)))
    return flops, attention


def _own_share(counts: Mapping[str, int], parents: Mapping[str, str | None], total: int) -> tuple[dict[str, int], int]:
    """Each stage's count minus those of the stages nested directly in it, and what no stage covers."""
    own = {path: counts.get(path, 0) for path in parents}
    for path, parent in parents.items():
        if parent is not None:
            own[parent] -= counts.get(path, 0)
    rest = total - sum(counts.get(path, 0) for path, parent in parents.items() if parent is None)
    return own, rest


def _own_parameters(model: nn.Module, paths: Iterable[str]) -> tuple[dict[str, int], int]:
    """Parameters of each stage, those of nested stages left out, and of no stage."""
    own = dict.fromkeys(paths, 0)
    rest = 0
    for name, parameter in model.named_parameters():
        owner = _owner(name, own)
        if owner is None:
            rest += parameter.numel()
        else:
            own[owner] += parameter.numel()
    return own, rest


def stage_summary(
    model: nn.Module, img_size: int | None = None, stages: Mapping[str, str] | Sequence[str] | None = None
) -> list[StageRow]:
    """Output shape, parameters and FLOPs of each stage of ``model`` for one image.

    The model runs once on the meta device (its weights are not touched or
    copied; training mode is restored afterwards), on a batch of one
    ``(1, in_chans, img_size, img_size)`` image.

    Args:
        model: a HybridHash, a timm NesT, or any image model.
        img_size: the input side; by default ``model.config.img_size``, else
            ``model.patch_embed.img_size`` (timm models).
        stages: module paths to report (a mapping gives them readable
            names); :func:`default_stages` when None.

    Returns:
        One :class:`StageRow` per stage, in the order given, plus a
        ``(rest)`` row when the stages do not cover the whole model; the
        rows' parameters and FLOPs add up to the model's.

    Raises:
        ValueError: for a stage that names no module, or an unknown input size.
    """
    img_size, in_chans = _resolve_img_size(model, img_size)
    names = _stage_names(model, stages)
    shapes, counter = _run_on_meta(model, names, img_size, in_chans)
    flops, attention = _flops_by_module(counter)
    parents = {path: _owner(path, [p for p in names if p != path]) for path in names}
    own_flops, rest_flops = _own_share(flops, parents, int(counter.get_total_flops()))
    own_attention, rest_attention = _own_share(attention, parents, attention.get("", 0))
    own_parameters, rest_parameters = _own_parameters(model, names)
    rows = [
        StageRow(names[path], path, shapes.get(path), own_parameters[path], own_flops[path], own_attention[path])
        for path in names
    ]
    if rest_parameters or rest_flops:
        rows.append(StageRow(REST, "", None, rest_parameters, rest_flops, rest_attention))
    return rows


def load_groups(model: nn.Module) -> dict[str, str]:
    """Finer groups than :func:`default_stages` for showing what a weight loader filled.

    For HybridHash, the local and global branches of every interaction
    module and of the hash head are groups of their own (NesT-B fills the
    local ones only); other models get :func:`default_stages`.

    Returns:
        An ordered mapping from module (or parameter) path to group name.
    """
    groups: dict[str, str] = {}
    for path, name in default_stages(model).items():
        module = model.get_submodule(path)
        if path.endswith(".interaction"):
            level = path.split(".")[1]
            groups[f"{path}.local_conv"] = f"level {level} interaction: local branch"
            groups[f"{path}.global_conv"] = f"level {level} interaction: global branch"
            groups[f"{path}.global_attn"] = f"level {level} interaction: global branch"
            groups[f"{path}.norm"] = f"level {level} interaction: norm"
        elif path == "hash_head" and hasattr(module, "global_attn"):
            groups["hash_head.conv_1x3"] = "hash head: local branch"
            groups["hash_head.conv_3x1"] = "hash head: local branch"
            groups["hash_head.global_attn"] = "hash head: global branch"
            groups["hash_head.to_bits"] = "hash head: to bits"
        else:
            groups[path] = name
    return groups


def load_report_by_stage(report, model: nn.Module, groups: Mapping[str, str] | None = None) -> list[LoadRow]:
    """Count what a :class:`~hhlib.weights.LoadReport` loaded, group by group.

    Args:
        report: the report of :func:`hhlib.load_nest_weights` (or of
            :func:`hhlib.load_reference_weights`) for ``model``.
        model: the model the weights were loaded into.
        groups: module path -> group name (several paths may share a name);
            :func:`load_groups` when None. Tensors outside every path go to
            ``(rest)``.

    Returns:
        One :class:`LoadRow` per group name, in order of first appearance.

    Raises:
        ValueError: when the report names tensors the model does not have.
    """
    groups = load_groups(model) if groups is None else dict(groups)
    sizes = {name: tensor.numel() for name, tensor in model.state_dict().items()}
    strangers = [name for name in [*report.loaded, *report.missing] if name not in sizes]
    if strangers:
        raise ValueError(f"the report names tensors this {type(model).__name__} does not have: {strangers[:5]}")
    counts: dict[str, list[int]] = {}
    for name in groups.values():
        counts.setdefault(name, [0, 0, 0, 0])
    for loaded, names in ((True, report.loaded), (False, report.missing)):
        for tensor_name in names:
            owner = _owner(tensor_name, groups)
            key = REST if owner is None else groups[owner]
            row = counts.setdefault(key, [0, 0, 0, 0])
            row[0 if loaded else 1] += 1
            row[2 if loaded else 3] += sizes[tensor_name]
    return [LoadRow(stage, *row) for stage, row in counts.items() if any(row)]


def _share(value: float) -> str:
    return f"{value:.1%}"


def _thousands(value: int) -> str:
    return f"{value:,}"


def _decimals(value: float) -> str:
    return f"{value:.3f}"


# How SummaryTable renders its columns; the cells themselves stay numbers.
_FORMATS = {
    "parameters": _thousands,
    "GFLOPs": _decimals,
    "share": _share,
    "GMACs w/o attn": _decimals,
    "parameters loaded": _thousands,
    "parameters fresh": _thousands,
}


class SummaryTable(pd.DataFrame):
    """A DataFrame of a summary's numbers that prints whole and readably (thousands separators, fixed decimals).

    A plain DataFrame prints cut to 80 columns and with raw floats; this one
    prints every column (NaN as "-"), and shows the same formatting as HTML in a notebook.
    """

    @property
    def _constructor(self):
        return SummaryTable

    def _formatters(self) -> dict:
        return {column: _FORMATS[column] for column in self.columns if column in _FORMATS}

    def __repr__(self) -> str:
        return self.to_string(index=False, formatters=self._formatters(), na_rep="-")

    def _repr_html_(self) -> str:
        return self.to_html(index=False, formatters=self._formatters(), na_rep="-")


def _shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def format_stage_table(rows: Sequence[StageRow]) -> SummaryTable:
    """:func:`stage_summary` rows as a table, with a total row; print it or show it in a notebook.

    Columns: stage, output shape, parameters, GFLOPs, share of all FLOPs (a
    fraction, NaN when nothing was counted), and GMACs without the attention
    products (the usual quoted figure).
    """
    totals = StageRow(
        "total",
        "",
        None,
        sum(r.parameters for r in rows),
        sum(r.flops for r in rows),
        sum(r.attention_flops for r in rows),
    )
    table = SummaryTable(
        {
            "stage": [r.stage for r in [*rows, totals]],
            "output shape": [_shape(r.output_shape) for r in [*rows, totals]],
            "parameters": [r.parameters for r in [*rows, totals]],
            "GFLOPs": [r.gflops for r in [*rows, totals]],
            "share": [r.flops / totals.flops if totals.flops else np.nan for r in [*rows, totals]],
            "GMACs w/o attn": [r.gmacs_without_attention for r in [*rows, totals]],
        }
    )
    return table.astype({"parameters": np.int64, "share": np.float64})


def format_load_table(rows: Sequence[LoadRow]) -> SummaryTable:
    """:func:`load_report_by_stage` rows as a table, with a total row; print it or show it in a notebook."""
    fields = ["loaded_tensors", "missing_tensors", "loaded_parameters", "missing_parameters"]
    totals = LoadRow("total", *(sum(getattr(r, f) for r in rows) for f in fields))
    headers = ["tensors loaded", "tensors fresh", "parameters loaded", "parameters fresh"]
    columns = {"group": [r.stage for r in [*rows, totals]]}
    columns |= {header: [getattr(r, f) for r in [*rows, totals]] for header, f in zip(headers, fields)}
    return SummaryTable(columns).astype(dict.fromkeys(headers, np.int64))
