"""HybridHash's loss: the class-balanced pairwise likelihood against a memory bank.

He & Wei, "HybridHash: Hybrid Convolutional and Self-Attention Deep Hashing
for Image Retrieval", ICMR 2024. The pairwise likelihood of DPSH (Li et al.,
IJCAI 2016) between the batch and the latest code of every training image,
similar and dissimilar pairs weighing half each:

    L = sum_ij w_ij [log(1 + e^theta_ij) - s_ij theta_ij],  theta_ij = alpha u_i . U_j

The arithmetic is :func:`hhlib.losses.weighted_likelihood`, shared with
:class:`hhlib.losses.WeightedLikelihoodLoss`; this class adds the bank.
"""

from __future__ import annotations

import torch

from hhlib.losses import weighted_likelihood
from hhlib.methods.base import Method
from hhlib.quantize import binarize

__all__ = ["HybridHashLoss"]


class HybridHashLoss(Method):
    """The weighted likelihood of HybridHash (the paper's alpha 0.5, a bank of relaxed codes).

    Args:
        alpha: scale of the inner product, ``theta = alpha * u . U`` (the paper: 0.5).
        binary_bank: the bank holds ``sign(u)`` instead of ``u`` (the paper: ``u``),
            asymmetric as in ADSH; docs/cpu_preset.md, section 2, says why the CPU preset does.
        smoothing: pairwise targets ``1 - smoothing/2`` and ``smoothing/2`` (the paper: 0).
    """

    name = "hybridhash"
    citation = (
        "He & Wei, HybridHash: Hybrid Convolutional and Self-Attention Deep Hashing for Image Retrieval, ICMR 2024"
    )

    def __init__(self, bits: int, *, alpha: float = 0.5, binary_bank: bool = False, smoothing: float = 0.0) -> None:
        super().__init__(bits)
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.alpha, self.binary_bank, self.smoothing = float(alpha), bool(binary_bank), float(smoothing)

    def setup(self, labels: torch.Tensor) -> None:
        self.register_bank(labels)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        similar = self.update_bank(binarize(u.detach()) if self.binary_bank else u, y, ind)  # (B, num_train)
        return weighted_likelihood(u, self.U, similar, self.alpha, self.smoothing)
