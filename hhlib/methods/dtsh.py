"""DTSH: the likelihood of triplet labels under the codes' inner products, plus a quantisation penalty.

Wang, Shi & Kitani, "Deep Supervised Hashing with Triplet Labels", ACCV 2016
(arXiv 1612.03900). A triplet (i, j, k) says that image i is more similar to
j than to k; with u the network's linear output, b_i = sign(u_i) and
theta_ij = u_i . u_j / 2, its likelihood is sigma(theta_ij - theta_ik - alpha):

    L = -sum_(i,j,k) [t_ijk - log(1 + e^t_ijk)] + lambda sum_i ||b_i - u_i||^2,  t_ijk = theta_ij - theta_ik - alpha

hhlib takes every triplet of the batch, i an anchor, j != i sharing a label
with it and k sharing none, all at once (one (B, B, B) mask, no loop over
anchors), and scores the mean over them plus ``lambda mean_i ||b_i - u_i||^2``.
The authors' MATLAB code (Minione/DTSH) prints the same two means; the
default lambda below keeps the balance of its gradient.
"""

from __future__ import annotations

import torch

from hhlib.losses import pairwise_likelihood
from hhlib.methods.base import Method
from hhlib.quantize import binarize
from hhlib.relevance import relevant

__all__ = ["DTSH"]


class DTSH(Method):
    """Deep supervised hashing with triplet labels (DTSH), every valid triplet of the batch.

    The network ends in a linear layer (the paper's, as DPSH's), so
    ``output`` is "linear".

    Args:
        alpha: the margin; None (the default) is bits / 2, the authors' code
            (``DTSH.m`` passes ``codelens / 2``). For +-1 codes
            theta_ij - theta_ik is the Hamming distance of (i, k) less that of
            (i, j), so the margin asks for bits / 2 more bits of difference.
            The instance stores the value it uses.
        lam: the quantisation weight lambda against the mean over triplets
            (default 100 / 22,500 = 0.0044: the authors' code weighs the
            penalty with eta = 100 against the sum over the 50 x 50 x 9 =
            22,500 triplets it samples per anchor, ``train_triplet.m``).

    DeepHash-pytorch's ``DTSH.py`` (alpha 5, lambda 1) differs: theta is
    u_i . u_j without the 1/2, the anchor counts as its own positive, each
    anchor's triplets are averaged before the anchors, and lambda multiplies
    the mean over the B x bits entries.
    """

    name = "dtsh"
    citation = "Wang, Shi & Kitani, Deep Supervised Hashing with Triplet Labels, ACCV 2016"
    family = "symmetric"
    output = "linear"

    def __init__(self, bits: int, *, alpha: float | None = None, lam: float = 100 / 22500) -> None:
        super().__init__(bits)
        if alpha is None:
            alpha = bits / 2
        for name, value in (("alpha", alpha), ("lam", lam)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha (the margin) must be non-negative, got {alpha!r}")
        if not lam >= 0:
            raise ValueError(f"lam must be non-negative, got {lam!r}")
        self.alpha, self.lam = float(alpha), float(lam)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        n = u.shape[0]
        theta = u @ u.T / 2  # (B, B)
        similar = relevant(y, y)  # (B, B) bool
        positive = similar & ~torch.eye(n, dtype=torch.bool, device=u.device)
        # triplet (i, j, k): j a positive of anchor i, k a negative of it
        anchor, pos, neg = (positive[:, :, None] & ~similar[:, None, :]).nonzero(as_tuple=True)
        t = theta[anchor, pos] - theta[anchor, neg] - self.alpha
        # -[t - log(1 + e^t)] is the likelihood of a pair with s = 1, computed without overflow
        # a batch without a triplet scores the quantisation penalty alone
        likelihood = pairwise_likelihood(t, torch.ones_like(t)).sum() / max(len(t), 1)
        quantization = (u - binarize(u.detach())).pow(2).sum() / max(n, 1)
        return likelihood + self.lam * quantization
