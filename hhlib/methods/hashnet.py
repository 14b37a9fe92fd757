"""HashNet: the class-balanced pairwise likelihood, with tanh sharpened into sign by continuation.

Cao, Long, Wang & Yu, "HashNet: Deep Learning to Hash by Continuation",
ICCV 2017 (arXiv 1702.00758). With h_i = tanh(beta z_i) the network's
codes, s_ij = 1 for a shared label and w_ij the balancing weights S/S1 for
similar and S/S0 for dissimilar pairs (S1, S0 their counts, S all pairs):

    L = sum_ij w_ij [log(1 + e^(a h_i . h_j)) - a s_ij h_i . h_j]

and beta grows during training so that tanh(beta z) tends to sign(z), the
codes the database gets: beta_t = (1 + gamma t)^power after t steps.

The pairs are all B^2 of the batch with itself, i = j included (a self-pair
is similar when the image has a label and pulls ||h_i|| up, towards +-1).
The authors' code pairs two different sets instead: the two halves of the
Caffe batch (``fc8_code_part1`` against ``part2``), two independently
shuffled loaders in PyTorch; DeepHash-pytorch scores the batch against a
bank. The same pairs, up to the self-pairs, in expectation.
"""

from __future__ import annotations

import math

import torch

from hhlib.losses import balanced_mean, pairwise_likelihood
from hhlib.methods.base import Method, ScaledTanh
from hhlib.model import HashModel
from hhlib.relevance import relevant

__all__ = ["HashNet", "hashnet_loss"]


def hashnet_loss(h: torch.Tensor, similar: torch.Tensor, alpha: float) -> torch.Tensor:
    """The balanced mean over all B^2 pairs of the batch (each with itself too) of the pair likelihood."""
    theta = alpha * (h @ h.T)  # (B, B)
    return balanced_mean(pairwise_likelihood(theta, similar.to(h.dtype)), similar)


def _number(name: str, value, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}")
    return float(value)


class HashNet(Method):
    """HashNet's weighted pairwise likelihood in the batch, and its continuation of tanh's scale.

    Args:
        alpha: the scale a of the inner product, theta_ij = a h_i . h_j
            (None, the default: 10 / bits, the ``sigmoid_param`` of the
            authors' code, thuml/HashNet: "10 / the length of code").
            The instance stores the value it uses.
        gamma, power: the continuation beta_t = (1 + gamma t)^power of the
            activation's scale after t optimisation steps (0.005 and 0.5 with
            ``init_scale`` 1: the authors' ScaleTanH layer and PyTorch
            network; the paper says only that beta grows as training goes).
            The authors' code raises beta every 200 steps (``step_size``),
            hhlib after every step; gamma = 0 keeps tanh(z).

    The step count is a buffer, so a resumed run continues the schedule;
    the scale itself is a buffer of the network's ScaledTanh, so the
    network's checkpoint keeps the one it was trained to.
    """

    name = "hashnet"
    citation = "Cao, Long, Wang & Yu, HashNet: Deep Learning to Hash by Continuation, ICCV 2017"
    family = "symmetric"
    output = "scaled-tanh"

    def __init__(self, bits: int, *, alpha: float | None = None, gamma: float = 0.005, power: float = 0.5) -> None:
        super().__init__(bits)
        self.alpha = 10.0 / bits if alpha is None else _number("alpha", alpha, positive=True)
        self.gamma = _number("gamma", gamma, positive=False)
        self.power = _number("power", power, positive=False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._activation: list[ScaledTanh] = []  # the model's, held outside the module tree and its state_dict

    def scale(self) -> float:
        """beta after the steps taken so far."""
        return (1.0 + self.gamma * int(self.step)) ** self.power

    def adapt(self, model: HashModel) -> None:
        super().adapt(model)
        self._activation[:] = [model.activation]
        self._sharpen()

    def setup(self, labels: torch.Tensor) -> None:
        self._sharpen()

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Set the activation's scale from the step count (a resumed run loads the count first)."""
        self._sharpen()

    def _sharpen(self) -> None:
        # a new tensor, not an in-place write: this batch's backward still needs the scale it ran with
        for activation in self._activation:
            activation.scale = torch.tensor(self.scale(), device=activation.scale.device)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        loss = hashnet_loss(u, relevant(y, y), self.alpha)
        if self.training:  # the network ran before the loss: advance now, and the next batch sees the sharper tanh
            self.step += 1
            self._sharpen()
        return loss
