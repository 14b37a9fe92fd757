"""A small plain CNN as a second backbone, so that a hashing method's merit is not confused with the network's.

It is the 3-block CNN that docs/cpu_preset.md (section 3) measured against
the CPU preset: each block is two 3x3 convolutions with BatchNorm and ReLU
and a 2x2 max-pool, at widths 32/64/128; the hash head is a global average
pool and one linear layer, and the activation tanh (296 k parameters at
64 bits, against 0.83 M for the CPU HybridHash).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from hhlib.model import HashModel
from hhlib.quantize import Quantizer, SignQuantizer

__all__ = ["HashCNNConfig", "HashCNN"]


@dataclass(frozen=True)
class HashCNNConfig:
    """Hyper-parameters of :class:`HashCNN`."""

    img_size: int = 32  # input side in pixels; any side divisible by 2**len(widths)
    in_chans: int = 3
    bits: int = 64
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each block; each block halves the side

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("img_size", "in_chans", "bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}")
        if self.img_size % 2 ** len(self.widths):
            raise ValueError(
                f"img_size={self.img_size} must be divisible by 2**{len(self.widths)} (one 2x2 pool per block)"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _block(in_dim: int, out_dim: int) -> nn.Sequential:
    """Two 3x3 convolutions (BatchNorm, ReLU), then a 2x2 max-pool: (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""
    layers = []
    for dim in (in_dim, out_dim):
        layers += [nn.Conv2d(dim, out_dim, 3, padding=1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class HashCNN(HashModel):
    """Images (B, in_chans, S, S) -> relaxed codes (B, bits) through three plain convolutional blocks."""

    def __init__(self, config: HashCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HashCNNConfig()
        dims = (config.in_chans, *config.widths)
        self.blocks = nn.Sequential(*(_block(a, b) for a, b in zip(dims[:-1], dims[1:])))
        self.hash_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dims[-1], config.bits))
        self.activation: nn.Module = nn.Tanh()
        self.quantizer: Quantizer = SignQuantizer()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, S, S) -> (B, C_last, S / 2**blocks, S / 2**blocks)."""
        self.check_input(x)
        return self.blocks(x)
