"""The weighted maximum-likelihood hashing loss of HybridHash.

HybridHash (He & Wei, ICMR 2024) trains with the pairwise likelihood of
DPSH (Li et al., IJCAI 2016) between the batch and a memory bank of the
latest relaxed code of every training image, with positive and negative
pairs re-weighted so that the rare similar pairs (one in ten for ten
balanced classes) weigh as much as the dissimilar ones.

With ``binary_bank=True`` the bank holds the signs of the codes instead,
asymmetric as in ADSH (Jiang & Li, AAAI 2018): each relaxed code in
the batch is scored against the binary codes that the other training
images would have in a database.
"""

from __future__ import annotations

import torch
from torch import nn

from hhlib.quantize import binarize
from hhlib.relevance import relevant

__all__ = ["WeightedLikelihoodLoss", "pairwise_likelihood", "balanced_mean", "weighted_likelihood"]


def pairwise_likelihood(theta: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each pair, ``log(1 + e^theta) - s * theta``.

    Written as ``log(1 + e^-|theta|) + max(theta, 0)`` so it never overflows.
    """
    return torch.log1p(torch.exp(-theta.abs())) + theta.clamp(min=0) - similar * theta


def balanced_mean(values: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """Mean of pair ``values`` with similar and dissimilar pairs weighing half each (HashNet's weights).

    A similar pair weighs ``S / S1`` and a dissimilar one ``S / S0``, with
    S1, S0 the counts of each and S all pairs, so that the rare similar
    pairs (one in ten for ten balanced classes) count as much as the rest.
    """
    total = similar.numel()
    positives = similar.sum()
    negatives = total - positives
    # clamp: a batch with no positive (or no negative) pair has nothing to weigh there
    weight = torch.where(similar > 0, total / positives.clamp(min=1), total / negatives.clamp(min=1))
    return (weight * values).sum() / total


def weighted_likelihood(
    u: torch.Tensor, bank: torch.Tensor, similar: torch.Tensor, alpha: float, smoothing: float = 0.0
) -> torch.Tensor:
    """HybridHash's loss of codes ``u`` (B, bits) against ``bank`` (M, bits), ``similar`` (B, M) in {0, 1}."""
    theta = alpha * (u @ bank.T)  # (B, M)
    target = similar * (1 - smoothing) + smoothing / 2 if smoothing else similar
    return balanced_mean(pairwise_likelihood(theta, target), similar)


class WeightedLikelihoodLoss(nn.Module):
    """Class-balanced pairwise likelihood against a memory bank.

    Args:
        num_train: training images; dataset indices run over ``0..num_train-1``.
        num_classes: width of the 0/1 label vectors.
        bits: code length.
        alpha: scale of the inner product, ``theta = alpha * u . U``.
        binary_bank: store ``sign(u)`` (0 counts as +1, as in encoding)
            instead of ``u``. The paper stores ``u``; then a class the model
            is unsure of can sit near zero, where the likelihood costs little
            but the signs, all that a Hamming ranking sees, are noise. Against
            binary codes, a code is pulled towards the signs that most
            images of its class already have.
        smoothing: move the pairwise targets from 1 and 0 to
            ``1 - smoothing/2`` and ``smoothing/2``; 0 (the paper) keeps them.
            Then no pair asks for an infinite inner product, so a code need
            not agree with its class in every bit, and tanh is not driven
            into saturation, where the codes can no longer say which images
            are typical of a class and which are not.

    The bank ``U`` (num_train, bits) and ``Y`` (num_train, num_classes) are
    buffers, so they travel with ``state_dict`` (and with a checkpoint).
    Rows not yet written are zero: they count as dissimilar pairs with
    ``theta = 0``, as in the authors' code.
    """

    def __init__(
        self,
        num_train: int,
        num_classes: int,
        bits: int,
        alpha: float = 0.5,
        binary_bank: bool = False,
        smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("num_train", num_train), ("num_classes", num_classes), ("bits", bits)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha!r}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.alpha = float(alpha)
        self.binary_bank = bool(binary_bank)
        self.smoothing = float(smoothing)
        self.register_buffer("U", torch.zeros(num_train, bits))
        self.register_buffer("Y", torch.zeros(num_train, num_classes))

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        """Loss of relaxed codes ``u`` (B, bits) with labels ``y`` (B, K) at indices ``ind`` (B,)."""
        self._check(u, y, ind)
        u = u.float()  # the loss stays in float32 under autocast
        y = y.to(self.Y.dtype)
        ind = ind.to(self.U.device, torch.long)
        self.U[ind] = binarize(u.detach()) if self.binary_bank else u.detach()
        self.Y[ind] = y

        similar = relevant(y, self.Y).float()  # (B, num_train)
        return weighted_likelihood(u, self.U, similar, self.alpha, self.smoothing)

    def _check(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> None:
        num_train, bits = self.U.shape
        num_classes = self.Y.shape[1]
        if u.ndim != 2 or u.shape[1] != bits:
            raise ValueError(f"u must have shape (B, {bits}), got {tuple(u.shape)}")
        if y.ndim != 2 or y.shape != (u.shape[0], num_classes):
            raise ValueError(f"y must have shape ({u.shape[0]}, {num_classes}) to match u, got {tuple(y.shape)}")
        if ind.ndim != 1 or ind.shape[0] != u.shape[0]:
            raise ValueError(f"ind must have shape ({u.shape[0]},), got {tuple(ind.shape)}")
        if len(ind) and (int(ind.min()) < 0 or int(ind.max()) >= num_train):
            raise ValueError(
                f"ind must lie in [0, {num_train}) (the memory bank size), "
                f"got values from {int(ind.min())} to {int(ind.max())}"
            )

    def extra_repr(self) -> str:
        num_train, bits = self.U.shape
        return (
            f"num_train={num_train}, num_classes={self.Y.shape[1]}, bits={bits}, alpha={self.alpha}, "
            f"binary_bank={self.binary_bank}, smoothing={self.smoothing}"
        )
