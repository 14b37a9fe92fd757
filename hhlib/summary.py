"""Parameters, output shapes and FLOPs of a model, stage by stage, as rows and plain-text tables.

    from hhlib.summary import stage_summary, format_stage_table
    rows = stage_summary(HybridHash(HybridHashConfig.paper(64)))
    print(format_stage_table(rows))

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
    "format_table",
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
    stages = default_stages(model) if stages is None else stages
    names = dict(stages) if isinstance(stages, Mapping) else {s: s for s in stages}
    modules = dict(model.named_modules())
    unknown = [s for s in names if s not in modules or s == ""]
    if unknown:
        raise ValueError(f"no such module in {type(model).__name__}: {unknown}")

    # Output shapes from forward hooks; the first call of each module wins.
    shapes: dict[str, tuple[int, ...]] = {}

    def remember(path: str):
        def hook(_module, _inputs, output) -> None:
            if path not in shapes and isinstance(output, torch.Tensor):
                shapes[path] = tuple(output.shape)

        return hook

    handles = [modules[path].register_forward_hook(remember(path)) for path in names]
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

    # FlopCounterMode names modules "<RootClass>.path"; the root itself is "<RootClass>".
    flops: dict[str, int] = {}
    attention: dict[str, int] = {}
    for qualified, per_op in counter.get_flop_counts().items():
        if qualified == "Global":
            continue
        path = qualified.partition(".")[2]
        flops[path] = int(sum(per_op.values()))
        attention[path] = int(sum(n for op, n in per_op.items() if any(a in str(op) for a in _ATTENTION_OPS)))
    total_flops, total_attention = int(counter.get_total_flops()), attention.get("", 0)

    # A stage's own share: minus the stages nested directly inside it.
    parents = {path: _owner(path, [p for p in names if p != path]) for path in names}
    own_flops = {path: flops.get(path, 0) for path in names}
    own_attention = {path: attention.get(path, 0) for path in names}
    for path, parent in parents.items():
        if parent is not None:
            own_flops[parent] -= flops.get(path, 0)
            own_attention[parent] -= attention.get(path, 0)
    own_parameters = dict.fromkeys(names, 0)
    rest_parameters = 0
    for name, parameter in model.named_parameters():
        owner = _owner(name, names)
        if owner is None:
            rest_parameters += parameter.numel()
        else:
            own_parameters[owner] += parameter.numel()

    rows = [
        StageRow(names[path], path, shapes.get(path), own_parameters[path], own_flops[path], own_attention[path])
        for path in names
    ]
    rest_flops = total_flops - sum(flops.get(path, 0) for path, parent in parents.items() if parent is None)
    rest_attention = total_attention - sum(attention.get(p, 0) for p, parent in parents.items() if parent is None)
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


def format_table(rows: Sequence[Sequence], headers: Sequence[str], align: str | None = None) -> str:
    """Plain-text table with a header rule; no DataFrame needed.

    Args:
        rows: the cells, converted with ``str``.
        headers: one title per column.
        align: one of "l" / "r" per column; text left, numbers right by default.

    Returns:
        The table as lines joined by newlines.
    """
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells")
    if align is None:
        align = "".join(
            "r" if rows and all(isinstance(row[c], (int, float)) for row in rows) else "l" for c in range(len(headers))
        )
    if len(align) != len(headers) or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one 'l' or 'r' per column, got {align!r}")
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[c]) for row in cells) for c in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            cell.rjust(w) if a == "r" else cell.ljust(w) for cell, w, a in zip(row, widths, align)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def format_stage_table(rows: Sequence[StageRow]) -> str:
    """Render :func:`stage_summary` rows with a total line.

    Columns: stage, output shape, parameters, GFLOPs, share of all FLOPs,
    and GMACs without the attention products (the usual quoted figure).
    """
    total_params = sum(row.parameters for row in rows)
    total_flops = sum(row.flops for row in rows)
    total_attention = sum(row.attention_flops for row in rows)

    def cells(stage: str, shape: str, params: int, flops: int, attention: int) -> list:
        share = f"{100 * flops / total_flops:.1f}%" if total_flops else "-"
        return [stage, shape, f"{params:,}", f"{flops / 1e9:.3f}", share, f"{(flops - attention) / 2e9:.3f}"]

    body = [cells(r.stage, _shape(r.output_shape), r.parameters, r.flops, r.attention_flops) for r in rows]
    body.append(cells("total", "", total_params, total_flops, total_attention))
    headers = ["stage", "output shape", "parameters", "GFLOPs", "share", "GMACs w/o attn"]
    return format_table(body, headers, align="llrrrr")


def format_load_table(rows: Sequence[LoadRow]) -> str:
    """Render :func:`load_report_by_stage` rows with a total line."""
    body = [
        [r.stage, r.loaded_tensors, r.missing_tensors, f"{r.loaded_parameters:,}", f"{r.missing_parameters:,}"]
        for r in rows
    ]
    body.append(
        [
            "total",
            sum(r.loaded_tensors for r in rows),
            sum(r.missing_tensors for r in rows),
            f"{sum(r.loaded_parameters for r in rows):,}",
            f"{sum(r.missing_parameters for r in rows):,}",
        ]
    )
    headers = ["group", "tensors loaded", "tensors fresh", "parameters loaded", "parameters fresh"]
    return format_table(body, headers, align="lrrrr")
