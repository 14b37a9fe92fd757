"""Foreign weights into :class:`~hhlib.model.HybridHash`.

Two sources, each through one explicit table of renaming rules:

* the authors' HybridHash checkpoints (names such as
  ``levels.1.pool.global_attention.qkv.weight``), with
  :func:`load_reference_weights`;
* timm's NesT-B trained on ImageNet-1k (``nest_base_jx.goog_in1k``), the
  paper's initialisation, with :func:`load_nest_weights`. NesT shares the
  stem, the transformer levels, the local half of the interaction modules
  and the final norm with HybridHash; the global branches and the hash head
  start fresh, and NesT-B's layers beyond our depth are dropped.

Every mapped tensor is checked for shape; the returned :class:`LoadReport`
says what was loaded and what was not.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "LoadReport",
    "authors_to_hhlib",
    "nest_to_hhlib",
    "load_reference_weights",
    "load_nest_weights",
    "NEST_PRETRAINED",
]

NEST_PRETRAINED = "nest_base_jx.goog_in1k"

# (authors' pattern, hhlib replacement), tried in order; the first match wins.
_AUTHORS_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "patch_embed.proj."),
    (r"^levels\.(\d+)\.pos_embed$", r"levels.\1.pos_embed"),
    (r"^levels\.(\d+)\.transformer_encoder\.(\d+)\.", r"levels.\1.blocks.\2."),
    (r"^levels\.(\d+)\.pool\.conv\.", r"levels.\1.interaction.local_conv."),
    (r"^levels\.(\d+)\.pool\.conv_glo\.", r"levels.\1.interaction.global_conv."),
    (r"^levels\.(\d+)\.pool\.global_attention\.pos_embed_glo$", r"levels.\1.interaction.global_attn.pos_embed"),
    (r"^levels\.(\d+)\.pool\.global_attention\.(qkv|proj)\.", r"levels.\1.interaction.global_attn.attn.\2."),
    (r"^levels\.(\d+)\.pool\.norm\.", r"levels.\1.interaction.norm."),
    (r"^norm\.", "norm."),
    (r"^hashlayer_train\.convS1\.", "hash_head.conv_1x3."),
    (r"^hashlayer_train\.convS2\.", "hash_head.conv_3x1."),
    (r"^hashlayer_train\.conv2\.", "hash_head.to_bits."),
    (r"^hashlayer_train\.global_attention\.pos_embed_glo$", "hash_head.global_attn.pos_embed"),
    (r"^hashlayer_train\.global_attention\.(qkv|proj)\.", r"hash_head.global_attn.attn.\1."),
]
# The authors' FcLayer (Linear C -> bits) is built but never called in forward.
_AUTHORS_UNUSED = re.compile(r"^FcLayer\.")

# NesT's ConvPool is the local half of our interaction module.
_NEST_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "patch_embed.proj."),
    (r"^levels\.(\d+)\.pos_embed$", r"levels.\1.pos_embed"),
    (r"^levels\.(\d+)\.transformer_encoder\.(\d+)\.", r"levels.\1.blocks.\2."),
    (r"^levels\.(\d+)\.pool\.conv\.", r"levels.\1.interaction.local_conv."),
    (r"^levels\.(\d+)\.pool\.norm\.", r"levels.\1.interaction.norm."),
    (r"^norm\.", "norm."),
]
_NEST_UNUSED = re.compile(r"^head\.")  # the ImageNet classifier


@dataclass
class LoadReport:
    """What a loader did. Names in ``loaded`` and ``missing`` are hhlib's;
    names in ``unexpected`` and ``ignored`` are the source's."""

    loaded: list[str] = field(default_factory=list)  # model tensors that got a value
    missing: list[str] = field(default_factory=list)  # model tensors left as they were
    unexpected: list[str] = field(default_factory=list)  # source tensors with no place in the model
    ignored: list[str] = field(default_factory=list)  # source tensors known to be unused

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, ignored {len(self.ignored)}"
        )


def _rename(name: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, name)
        if count:
            return new
    return None


def authors_to_hhlib(name: str) -> str | None:
    """The hhlib name of a tensor of the authors' state_dict, or None if it has none."""
    return _rename(name, _AUTHORS_RULES)


def nest_to_hhlib(name: str) -> str | None:
    """The hhlib name of a tensor of timm's NesT state_dict, or None if it has none."""
    return _rename(name, _NEST_RULES)


def _load_renamed(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    rename,
    unused: re.Pattern,
) -> LoadReport:
    """Copy every source tensor that has a hhlib name into ``model``; check all shapes first."""
    target = model.state_dict()
    report, values, wrong = LoadReport(), {}, []
    for name, tensor in state_dict.items():
        new = rename(name)
        if new is None or new not in target:
            (report.ignored if unused.match(name) else report.unexpected).append(name)
        elif tuple(tensor.shape) != tuple(target[new].shape):
            wrong.append(f"{name} -> {new}: source {tuple(tensor.shape)}, model {tuple(target[new].shape)}")
        else:
            values[new] = tensor
    if wrong:
        raise ValueError(
            "shapes differ between the source weights and this model's configuration "
            f"({model.config if hasattr(model, 'config') else type(model).__name__}):\n  " + "\n  ".join(wrong)
        )
    model.load_state_dict(values, strict=False)
    report.loaded = [n for n in target if n in values]
    report.missing = [n for n in target if n not in values]
    return report


def load_reference_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load a state_dict in the authors' naming into a HybridHash of the same configuration.

    Raises ``ValueError`` when a shape differs (the configurations differ) or
    when the source leaves any model tensor without a value: a checkpoint of
    the authors' model must fill the whole model.
    """
    report = _load_renamed(model, _unwrap(state_dict), authors_to_hhlib, _AUTHORS_UNUSED)
    if report.missing or report.unexpected:
        raise ValueError(
            f"not an authors' HybridHash checkpoint for this model: {report}; "
            f"missing {report.missing[:5]}, unexpected {report.unexpected[:5]}"
        )
    return report


def load_nest_weights(model: nn.Module, source=None) -> LoadReport:
    """Initialise a HybridHash from ImageNet NesT-B weights, as the paper does.

    Args:
        model: a HybridHash whose configuration matches NesT-B's widths
            (``HybridHashConfig.paper()``); shapes are checked.
        source: a timm NesT model, a NesT state_dict, a path to one
            (``.pth``/``.bin``/``.safetensors``), or None to download
            ``nest_base_jx.goog_in1k`` through timm.

    Returns:
        A :class:`LoadReport`; at the paper configuration 243 tensors load.
    """
    if source is None:
        source = _download_nest()
    if isinstance(source, nn.Module):
        state_dict = source.state_dict()
    elif isinstance(source, (str, Path)):
        state_dict = _read_file(Path(source))
    elif isinstance(source, Mapping):
        state_dict = _unwrap(source)
    else:
        raise TypeError(f"source must be a timm model, a state_dict, a path or None, got {type(source).__name__}")
    report = _load_renamed(model, state_dict, nest_to_hhlib, _NEST_UNUSED)
    if not report.loaded:
        raise ValueError("no tensor of the source has a NesT name: is it a NesT state_dict?")
    return report


def _unwrap(state_dict: Mapping) -> Mapping[str, torch.Tensor]:
    """Accept a training checkpoint that wraps the weights, as many do."""
    for key in ("state_dict", "model"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            return state_dict[key]
    return state_dict


def _read_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"no NesT weights file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return _unwrap(torch.load(path, map_location="cpu", weights_only=True))


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick TCP check, so that offline machines fail in seconds, not after the hub's retries."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached_on_disk() -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return any(
        isinstance(try_to_load_from_cache(f"timm/{NEST_PRETRAINED}", name), str)
        for name in ("model.safetensors", "pytorch_model.bin")
    )


def _download_nest() -> nn.Module:
    import timm

    try:
        if not _cached_on_disk() and not _hub_reachable():
            raise ConnectionError("huggingface.co is not reachable")
        return timm.create_model(NEST_PRETRAINED, pretrained=True)
    except OSError as error:  # connection errors and huggingface_hub's not-found errors
        raise RuntimeError(
            f"could not download the ImageNet weights of {NEST_PRETRAINED} ({error.__class__.__name__}: "
            "no network?). On a machine that is online, save them with\n"
            f"    python -c \"import timm, torch; torch.save(timm.create_model('{NEST_PRETRAINED}', "
            "pretrained=True).state_dict(), 'nest_base_jx.pth')\"\n"
            "(or download pytorch_model.bin from the Hugging Face repo timm/nest_base_jx.goog_in1k), "
            "copy the file here and pass it: load_nest_weights(model, 'nest_base_jx.pth') "
            "or, on the command line, --pretrained nest_base_jx.pth."
        ) from error
