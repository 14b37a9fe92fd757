"""Files that must never be half-written or run code: the atomic writer and safe checkpoint loading.

Every file hhlib writes (checkpoints, ``metrics.json``, evaluation results,
Hamming indexes, split files) goes through :func:`atomic_write`: the bytes go
to a hidden file beside the target, which then replaces it in one rename, so
a crash or Ctrl-C leaves the old file or the new one, never a broken one.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors and
plain data (dicts, lists, tuples, strings, numbers) are unpickled. A file
holding anything else (a pickled callable, say) is refused before any of it
runs; a truncated or foreign file is refused too, each in one line
(:class:`CheckpointError`). The format is documented in docs/DESIGN.md, section
"Run folders and checkpoints".
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "load_checkpoint",
]

# 3: the method (name, options, state) and the backbone are saved. 2: the quantiser beside the model, no
# RNG state. 1: the first format. Older formats are converted on load.
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
# Format 2's recipe fields that became HybridHash's method options in format 3.
_HYBRIDHASH_OPTIONS = ("alpha", "binary_bank", "smoothing")
# Format 1 stored NumPy's RNG state: arrays of plain numbers, which these rebuild and nothing else.
_NUMPY_ARRAYS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the file."""


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then move it onto ``path``.

    The move is one ``os.replace``: readers see the old file or the new one.
    Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike, value) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    text = json.dumps(value, indent=2) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write a checkpoint (``state`` plus its format number) atomically."""
    return atomic_write(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, **state}, handle))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, safely.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file holds code or objects other than tensors
            and plain data, is truncated, is not a torch file, or is not an
            hhlib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = _safe_load(path)
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is a torch file but not an hhlib checkpoint (no format number)")
    if state["format"] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format']!r}; this hhlib reads formats {READABLE_FORMATS}"
        )
    return _upgrade(state)


def _safe_load(path: Path):
    raw = path.read_bytes()
    if raw[:4] != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a torch checkpoint (not a zip archive)")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        what = f" ({found.group(1).rstrip('.,')})" if found else ""
        raise CheckpointError(
            f"{path} was refused: it holds Python objects other than tensors and plain data{what}; "
            "it was read with weights_only=True, so nothing in it ran"
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, ValueError... for broken files
        first = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is truncated or damaged ({first})") from None


def _upgrade(state: dict) -> dict:
    """Read older formats as the current one (docs/DESIGN.md, "Run folders and checkpoints")."""
    if state["format"] == 1:
        state = _upgrade_1_to_2(state)
    if state["format"] == 2:
        state = _upgrade_2_to_3(state)
    return state


def _upgrade_2_to_3(state: dict) -> dict:
    """Format 2 -> 3: every run was HybridHash's loss on its backbone; its recipe fields become method options."""
    state = dict(state)
    config = dict(state.get("train_config", {}))
    options = {k: config.pop(k) for k in _HYBRIDHASH_OPTIONS if k in config}
    config.update(method="hybridhash", method_options=options, quantizer=state["quantizer"]["kind"])
    state["train_config"] = config
    state["backbone"] = "hybridhash"
    if "loss" in state:
        state["method_state"] = state.pop("loss")
    state["format"] = 3
    return state


def _upgrade_1_to_2(state: dict) -> dict:
    """Format 1 -> 2: the rotation buffer and its config flag become a saved quantiser."""
    state = dict(state)
    state.pop("rng", None)
    model_config = dict(state.get("model_config", {}))
    rotated = model_config.pop("code_rotation", False)
    rotation = state["model"].get("code_rotation") if rotated else None
    state["model_config"] = model_config
    state["quantizer"] = {"kind": "rotation", "rotation": rotation} if rotation is not None else {"kind": "sign"}
    for weights in (state["model"], state.get("ema"), (state.get("best") or {}).get("model")):
        if weights is not None:
            weights.pop("code_rotation", None)
    state["format"] = 2
    return state
