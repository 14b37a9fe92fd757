"""MDSHC: centres kept a minimum distance apart, a cosine softmax over them, and positive pairs.

Wang, Pan, Liu, Lai, Yin & Liu, "Deep Hashing with Minimal-Distance-Separated
Hash Centers", CVPR 2023. First the centres b_1..b_C are optimised so that
the closest two are as far apart as the coding bounds allow (hhlib's bit-flip
search, :func:`hhlib.methods.centres.separate`, in place of the paper's
lp-box ADMM). Then, with p_ic = softmax_c(sqrt(K) cos(u_i, b_c)), s_ic the
0/1 labels, and S_ij = 1 for images i, j that share a label:

    L = -mean_ic [s_ic log p_ic + (1 - s_ic) log(1 - p_ic)]
        + beta sum_ij S_ij log(1 + exp((1 - cos(u_i, U_j)) / 2)) / sum_ij S_ij
        + lambda mean_ik (|u_ik| - 1)^2

the second term, from epoch ``pair_start`` on, against a bank U of the
latest code of every training image. The objective is that of the authors'
code (Wangld5/Center-Hashing, ``loss/ourLoss.py``; the paper's own text
could not be read here). Their bank holds the codes of a momentum (MoCo)
copy of the network; hhlib's engine trains one network, so the bank holds
its own detached codes, as HybridHash's does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hhlib.methods.csq import CentralMethod

__all__ = ["MDSHC"]


class MDSHC(CentralMethod):
    """Minimal-distance-separated hash centres with the cosine-softmax and positive-pair losses.

    Args:
        beta: weight of the positive-pair term (1.0: ``beta`` of the authors' ``scripts/utils.py``).
        lam: lambda, weight of the quantisation term (1e-4: their ``lambda``).
        pair_start: the first epoch (1-based) with the pair term (10: their
            ``epoch_change`` 9 counts from 0).
        centres: a kind of :func:`hash_centres` ("min-distance", the paper's
            point), or "auto" for CSQ's.
        seed: the seed of the centres' search and of the tie-breaking code.
    """

    name = "mdshc"
    citation = "Wang, Pan, Liu, Lai, Yin & Liu, Deep Hashing with Minimal-Distance-Separated Hash Centers, CVPR 2023"
    stages = (
        "optimise the hash centres to a large minimum distance",
        "train the network on the centres and on positive pairs",
    )

    def __init__(
        self,
        bits: int,
        *,
        beta: float = 1.0,
        lam: float = 1e-4,
        pair_start: int = 10,
        centres: str = "min-distance",
        seed: int = 0,
    ) -> None:
        super().__init__(bits)
        for name, value in (("beta", beta), ("lam", lam)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if isinstance(pair_start, bool) or not isinstance(pair_start, int) or pair_start < 1:
            raise ValueError(f"pair_start must be a positive integer (a 1-based epoch), got {pair_start!r}")
        self.beta, self.lam, self.pair_start = float(beta), float(lam), pair_start
        self._init_centres(centres, seed)
        self.epoch = 1

    def setup(self, labels: torch.Tensor) -> None:
        super().setup(labels)
        self.register_bank(labels)

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        self.targets(y)  # the clear error when the centres are missing
        similar = self.update_bank(u, y, ind)  # (B, num_train)
        logits = math.sqrt(self.bits) * F.normalize(u, dim=1) @ F.normalize(self.class_centres.to(u.dtype), dim=1).T
        centre = F.binary_cross_entropy(logits.softmax(1), (y != 0).to(u.dtype))  # mean over (B, C)
        loss = centre + self.lam * (u.abs() - 1).pow(2).mean()
        if self.epoch >= self.pair_start and self.beta:
            cos = F.normalize(u, dim=1) @ F.normalize(self.U.to(u.dtype), dim=1).T  # (B, num_train)
            s = similar.to(u.dtype)
            pairs = (s * F.softplus((1 - cos) / 2)).sum() / s.sum().clamp(min=1)
            loss = loss + self.beta * pairs
        return loss
