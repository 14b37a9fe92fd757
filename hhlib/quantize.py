"""Quantisers: how relaxed codes u in (-1, 1) become binary codes in {-1, +1}.

A quantiser is not part of the network (the authors' weights know nothing of
it), so it lives beside it: ``model.quantizer``, saved in the checkpoint next
to the weights as ``{"kind": ..., tensors...}`` (docs/DESIGN.md,
"Quantisers"). Training never sees it: the loss scores relaxed codes.

- ``sign``: sign(u), the paper's.
- ``rotation``: sign(u R) for a fixed random rotation R. Each bit is then a
  random hyperplane through the origin (SimHash, Charikar, STOC 2002), so the
  Hamming distance estimates the angle between relaxed codes and the images
  a model is unsure of rank after the typical ones (docs/cpu_preset.md).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Quantizer", "SignQuantizer", "RotationQuantizer", "QUANTIZERS", "make_quantizer", "binarize"]


def binarize(u: torch.Tensor) -> torch.Tensor:
    """Signs of ``u``, +1 or -1 in ``u``'s dtype; 0 maps to +1 (the one sign rule of hhlib)."""
    return torch.where(u >= 0, 1, -1).to(u.dtype)


def random_rotation(n: int, seed: int = 0) -> torch.Tensor:
    """A fixed (n, n) rotation drawn uniformly (Haar): QR of a Gaussian matrix, signs of diag(R) moved into Q."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    gaussian = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float()


class Quantizer(nn.Module):
    """Relaxed codes (B, bits) -> binary codes (B, bits) in {-1, +1}, in ``u``'s dtype.

    Its buffers are not persistent: a quantiser is saved by :meth:`to_state`,
    beside the model's weights, so that ``model.state_dict()`` is the network's alone.
    """

    kind = "sign"

    def to_state(self) -> dict:
        """What the checkpoint stores: the kind and the quantiser's tensors."""
        return {"kind": self.kind, **{name: buffer.cpu() for name, buffer in self.named_buffers()}}

    @staticmethod
    def from_state(state: dict) -> Quantizer:
        """The quantiser :meth:`to_state` described; an unknown kind is a ValueError."""
        kind = state.get("kind")
        if kind not in QUANTIZERS:
            raise ValueError(f"unknown quantizer kind {kind!r}; hhlib knows {sorted(QUANTIZERS)}")
        return QUANTIZERS[kind]._from_tensors({k: v for k, v in state.items() if k != "kind"})

    @classmethod
    def _from_tensors(cls, tensors: dict) -> Quantizer:
        return cls()


class SignQuantizer(Quantizer):
    """sign(u): the paper's quantiser."""

    kind = "sign"

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return binarize(u)


class RotationQuantizer(Quantizer):
    """sign(u R) for a fixed rotation R (bits, bits), computed in float32 whatever u's dtype."""

    kind = "rotation"

    def __init__(self, rotation: torch.Tensor) -> None:
        super().__init__()
        if rotation.ndim != 2 or rotation.shape[0] != rotation.shape[1]:
            raise ValueError(f"a rotation must be a square matrix, got shape {tuple(rotation.shape)}")
        self.register_buffer("rotation", rotation.float(), persistent=False)

    @classmethod
    def random(cls, bits: int, seed: int = 0) -> RotationQuantizer:
        return cls(random_rotation(bits, seed))

    @classmethod
    def _from_tensors(cls, tensors: dict) -> Quantizer:
        return cls(tensors["rotation"])

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[-1] != self.rotation.shape[0]:
            raise ValueError(f"this rotation takes {self.rotation.shape[0]}-bit codes, got {u.shape[-1]}")
        return binarize(u.float() @ self.rotation.to(u.device)).to(u.dtype)


QUANTIZERS: dict[str, type[Quantizer]] = {"sign": SignQuantizer, "rotation": RotationQuantizer}


def make_quantizer(kind: str, bits: int, seed: int = 0) -> Quantizer:
    """A fresh quantiser of ``kind`` ("sign" or "rotation") for ``bits``-bit codes."""
    if kind == "sign":
        return SignQuantizer()
    if kind == "rotation":
        return RotationQuantizer.random(bits, seed)
    raise ValueError(f"unknown quantizer kind {kind!r}; hhlib knows {sorted(QUANTIZERS)}")
