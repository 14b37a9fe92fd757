"""DSH: a margin contrastive loss on the pairs of each batch, with an L1 pull of every entry towards +-1.

Liu, Wang, Shan & Chen, "Deep Supervised Hashing for Fast Image Retrieval",
CVPR 2016. The pairs are generated online, every pair (i, j) of the batch;
with u the network's linear output, d_ij = ||u_i - u_j||^2, s_ij = 1 when
i and j share a label and r_i = || |u_i| - 1 ||_1 (|.| element-wise):

    L = sum_{i<j} [s_ij d_ij / 2 + (1 - s_ij) max(m - d_ij, 0) / 2 + alpha (r_i + r_j)]

hhlib divides L by the number of pairs B (B - 1) / 2. Each image is in
B - 1 pairs, so the regulariser becomes ``2 alpha mean_i r_i``. That is the
balance of the gradient of the authors' Caffe layer (``hashing_loss_layer.cpp``:
half this L's gradient; the value it prints counts the regulariser half as
much, ``alpha mean_i r_i``) and, up to (B - 1) / B, of weixu000/DSH-pytorch.
"""

from __future__ import annotations

import torch

from hhlib.methods.base import Method
from hhlib.relevance import relevant

__all__ = ["DSH"]


class DSH(Method):
    """Deep supervised hashing (DSH): contrastive pairs within the batch, no memory bank.

    The network ends in a linear layer, the regulariser alone driving the
    outputs towards +-1 (the paper), so ``output`` is "linear".

    Args:
        margin: m, the squared distance beyond which a dissimilar pair costs
            nothing; None (the default) is 2 * bits, the paper's m = 2k (the
            authors' prototxt: ``bi_margin`` 24 at 12 bits, 48 at 24 bits).
            The instance stores the value it uses.
        alpha: weight of the regulariser (the paper: 0.01, as the authors'
            ``tradeoff``; DeepHash-pytorch uses 0.1 on a mean over bits).
    """

    name = "dsh"
    citation = "Liu, Wang, Shan & Chen, Deep Supervised Hashing for Fast Image Retrieval, CVPR 2016"
    family = "symmetric"
    output = "linear"

    def __init__(self, bits: int, *, margin: float | None = None, alpha: float = 0.01) -> None:
        super().__init__(bits)
        if margin is None:
            margin = 2 * bits
        for name, value in (("margin", margin), ("alpha", alpha)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be non-negative, got {alpha!r}")
        self.margin, self.alpha = float(margin), float(alpha)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        n = u.shape[0]
        similar = relevant(y, y).to(u.dtype)  # (B, B)
        dist = (u[:, None, :] - u[None, :, :]).pow(2).sum(-1)  # (B, B), exact zeros on the diagonal
        pair = similar * dist / 2 + (1 - similar) * (self.margin - dist).clamp(min=0) / 2
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=u.device), diagonal=1)  # each pair once
        # mean over the B (B - 1) / 2 pairs; a batch of one image has none and scores the regulariser alone
        contrastive = pair[upper].sum() / max(n * (n - 1) // 2, 1)
        regulariser = (u.abs() - 1).abs().sum() / max(n, 1)  # mean over images of r_i
        return contrastive + 2 * self.alpha * regulariser
