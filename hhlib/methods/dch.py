"""DCH: a Cauchy likelihood of normalised Hamming distances, and a Cauchy quantisation loss.

Cao, Long, Liu & Wang, "Deep Cauchy Hashing for Hamming Space Retrieval",
CVPR 2018. With d_ij = (K/2)(1 - cos(u_i, u_j)) the normalised distance of
two codes (the Hamming distance when they are signs), p_ij = gamma / (gamma
+ d_ij) the Cauchy probability that they are similar, w_ij HashNet's
balancing weights S/S1 and S/S0 and 1 the all-ones vector:

    L = sum_ij w_ij [s_ij log((gamma + d_ij) / gamma) + (1 - s_ij) log((gamma + d_ij) / d_ij)]
        + lambda sum_i log(1 + d(|u_i|, 1) / gamma)

the cross-entropy -s log p - (1 - s) log(1 - p) written without the ratio
p. The Cauchy curve falls much faster than a sigmoid at small distances, so
similar pairs are pulled inside a small Hamming radius, where radius search
finds them. hhlib takes the B (B - 1) pairs i != j of the batch (the
authors' TensorFlow code masks the diagonal too; DeepHash-pytorch keeps
it), with the balanced mean over them, plus lambda times the mean over the
batch of the quantisation loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hhlib.losses import balanced_mean
from hhlib.methods.base import Method
from hhlib.relevance import relevant

__all__ = ["DCH", "dch_loss", "cauchy_distance"]

EPS = 1e-5  # on d in log((gamma + d) / d): dissimilar codes that coincide cost log(gamma / EPS), not infinity


def cauchy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K/2)(1 - cos) between every row of ``a`` (A, K) and of ``b`` (B, K): a Hamming distance for signs.

    Never negative (rounding can push cos past 1); a zero row is at K/2 from everything.
    """
    return (a.shape[1] / 2 * (1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T)).clamp(min=0)


def dch_loss(u: torch.Tensor, similar: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """The balanced Cauchy cross-entropy over the pairs i != j of ``u`` (B, K) plus lambda times the quantisation.

    ``similar`` is (B, B) in {0, 1}; its diagonal is not used. A batch of one image has no pair
    and scores the quantisation loss alone.
    """
    quantization = torch.log1p(cauchy_distance(u.abs(), torch.ones_like(u[:1])) / gamma).mean()
    n = u.shape[0]
    if n < 2:
        return lam * quantization
    off = ~torch.eye(n, dtype=torch.bool, device=u.device)
    d = cauchy_distance(u, u)[off]  # (B (B - 1),)
    s = similar[off].to(u.dtype)
    values = s * torch.log1p(d / gamma) + (1 - s) * torch.log((gamma + d) / (d + EPS))
    return balanced_mean(values, s) + lam * quantization


def _positive(name: str, value, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    return float(value)


class DCH(Method):
    """Deep Cauchy hashing on the pairs of the batch; the network ends in tanh (the paper, both codes).

    Args:
        gamma: the Cauchy scale (20: the authors' script, thulab/DeepHash
            ``examples/dch/train_val_script.py``, and DeepHash-pytorch; the
            paper picks it by validation).
        lam: lambda, the weight of the Cauchy quantisation loss (0.1:
            DeepHash-pytorch's ``DCH.py``. The authors' script defaults its
            ``q_lambda`` to 0, and its penalty is mean (|u| - 1)^2 rather
            than the paper's Cauchy one).
    """

    name = "dch"
    citation = "Cao, Long, Liu & Wang, Deep Cauchy Hashing for Hamming Space Retrieval, CVPR 2018"
    family = "symmetric"
    output = "tanh"

    def __init__(self, bits: int, *, gamma: float = 20.0, lam: float = 0.1) -> None:
        super().__init__(bits)
        self.gamma = _positive("gamma", gamma, allow_zero=False)
        self.lam = _positive("lam", lam, allow_zero=True)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        return dch_loss(u, relevant(y, y), self.gamma, self.lam)
