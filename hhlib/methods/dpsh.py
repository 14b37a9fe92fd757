"""DPSH: the pairwise likelihood of relaxed codes plus a quantisation penalty, against a memory bank.

Li, Wang & Kang, "Feature Learning based Deep Supervised Hashing with
Pairwise Labels", IJCAI 2016 (arXiv 1511.03855). With u_i the network's
linear output, b_i = sign(u_i) and s_ij = 1 when images i and j share a
label, over the n training images:

    L = sum_ij [log(1 + e^theta_ij) - s_ij theta_ij] + eta sum_i ||b_i - u_i||^2,  theta_ij = u_i . u_j / 2

As in the PyTorch code of the authors' group (jiangqy/DPSH-pytorch), each
batch scores its B codes against a bank of the latest code of all n training
images (the bank a constant, refreshed with the batch first), and the batch's
share of L is divided by its B n pairs: the likelihood is the mean over the
pairs and the penalty is ``eta / (B n)`` times the sum over the batch, so
that eta keeps the paper's meaning (one penalty per image against n pairs).
"""

from __future__ import annotations

import torch

from hhlib.losses import pairwise_likelihood
from hhlib.methods.base import Method
from hhlib.quantize import binarize

__all__ = ["DPSH", "dpsh_loss"]


def dpsh_loss(u: torch.Tensor, bank: torch.Tensor, similar: torch.Tensor, eta: float) -> torch.Tensor:
    """DPSH's loss of codes ``u`` (B, bits) against ``bank`` (n, bits) with ``similar`` (B, n) in {0, 1}.

    The mean of the pairwise likelihood over the B n pairs plus
    ``eta * sum_i ||sign(u_i) - u_i||^2 / (B n)``; the bank and the signs are constants.
    """
    theta = u @ bank.to(u.dtype).T / 2  # (B, n)
    pairs = max(theta.numel(), 1)
    likelihood = pairwise_likelihood(theta, similar.to(u.dtype)).sum() / pairs
    quantization = (u - binarize(u.detach())).pow(2).sum() / pairs
    return likelihood + eta * quantization


class DPSH(Method):
    """Deep pairwise-supervised hashing (DPSH) against a bank of the training set's relaxed codes.

    The network ends in a linear layer (the paper: u_i = W^T phi(x_i) + v),
    so ``output`` is "linear"; codes are ``sign(u)`` (0 counts as +1).

    Args:
        eta: weight of the quantisation penalty sum_i ||b_i - u_i||^2 in the
            paper's objective (default 10: the PyTorch code of the authors'
            group, jiangqy/DPSH-pytorch, ``DPSH_CIFAR_10_demo.py``, with the
            normalisation above). DeepHash-pytorch's 0.1 multiplies the mean
            over the B x bits entries instead, i.e. eta = 0.1 n / bits here:
            10.4 for its 5,000 training images at 48 bits, about the same.
    """

    name = "dpsh"
    citation = "Li, Wang & Kang, Feature Learning based Deep Supervised Hashing with Pairwise Labels, IJCAI 2016"
    family = "symmetric"
    output = "linear"

    def __init__(self, bits: int, *, eta: float = 10.0) -> None:
        super().__init__(bits)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
            raise ValueError(f"eta must be a non-negative number, got {eta!r}")
        self.eta = float(eta)

    def setup(self, labels: torch.Tensor) -> None:
        self.register_bank(labels)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        if not hasattr(self, "U"):
            raise RuntimeError("DPSH has no memory bank yet: call setup(train_labels) before the first batch")
        if y.shape[1] != self.Y.shape[1]:
            raise ValueError(f"y must have {self.Y.shape[1]} classes (the training labels'), got {y.shape[1]}")
        similar = self.update_bank(u, y, ind)  # (B, n); the bank now holds u.detach() at ind
        return dpsh_loss(u, self.U, similar, self.eta)
