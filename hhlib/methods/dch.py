"""DCH: a Cauchy likelihood of normalised Hamming distances, and a Cauchy quantisation loss.

Cao, Long, Liu & Wang, "Deep Cauchy Hashing for Hamming Space Retrieval",
CVPR 2018. With d_ij = (K/2)(1 - cos(u_i, u_j)) the normalised distance of
two codes, p_ij = gamma / (gamma + d_ij) the Cauchy probability that they
are similar, w_ij HashNet's balancing weights and 1 the all-ones vector:

    L = sum_ij w_ij [s_ij log((gamma + d_ij) / gamma) + (1 - s_ij) log((gamma + d_ij) / d_ij)]
        + lambda sum_i log(1 + d(|u_i|, 1) / gamma)

The Cauchy curve falls much faster than a sigmoid at small distances, so
similar pairs are pulled inside a small Hamming radius, where radius
search finds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hhlib.losses import balanced_mean
from hhlib.methods.base import Method
from hhlib.relevance import relevant

__all__ = ["DCH", "dch_loss", "cauchy_distance"]

EPS = 1e-5  # keeps log((gamma + d) / d) finite for identical codes, as the authors' code does


def cauchy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K/2)(1 - cos) between every row of ``a`` (A, K) and of ``b`` (B, K): a Hamming distance for signs."""
    return a.shape[1] / 2 * (1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)


def dch_loss(u: torch.Tensor, similar: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """The balanced Cauchy cross-entropy over the batch's B^2 pairs plus lambda times the mean quantisation loss."""
    d = cauchy_distance(u, u).clamp(min=0)  # (B, B); rounding can make the diagonal slightly negative
    s = similar.to(u.dtype)
    values = s * torch.log1p(d / gamma) + (1 - s) * torch.log((gamma + d) / (d + EPS))
    quantization = torch.log1p(cauchy_distance(u.abs(), torch.ones_like(u[:1])) / gamma).mean()
    return balanced_mean(values, similar) + lam * quantization


class DCH(Method):
    """Deep Cauchy hashing on the pairs of the batch.

    Args:
        gamma: the Cauchy scale (20: the authors' code, thuml/DeepHash, and
            DeepHash-pytorch; the paper tunes it by validation).
        lam: the weight of the quantisation loss (0.1, from the same code).
    """

    name = "dch"
    citation = "Cao, Long, Liu & Wang, Deep Cauchy Hashing for Hamming Space Retrieval, CVPR 2018"
    family = "symmetric"
    output = "tanh"

    def __init__(self, bits: int, *, gamma: float = 20.0, lam: float = 0.1) -> None:
        super().__init__(bits)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ValueError(f"gamma must be a positive number, got {gamma!r}")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ValueError(f"lam must be a non-negative number, got {lam!r}")
        self.gamma, self.lam = float(gamma), float(lam)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        return dch_loss(u, relevant(y, y), self.gamma, self.lam)
