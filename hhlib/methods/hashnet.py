"""HashNet: the class-balanced pairwise likelihood, with tanh sharpened into sign by continuation.

Cao, Long, Wang & Yu, "HashNet: Deep Learning to Hash by Continuation",
ICCV 2017 (arXiv 1702.00758). With h_i = tanh(beta z_i) the network's
codes, s_ij = 1 for a shared label and w_ij the balancing weights S/S1 for
similar and S/S0 for dissimilar pairs, over the pairs of the batch:

    L = sum_ij w_ij [log(1 + e^(a h_i . h_j)) - a s_ij h_i . h_j]

and beta grows during training so that tanh(beta z) tends to sign(z), the
codes the database gets: beta_t = (1 + gamma t)^power after t steps.
"""

from __future__ import annotations

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


class HashNet(Method):
    """HashNet's weighted pairwise likelihood in the batch, and its continuation of tanh's scale.

    Args:
        alpha: the scale a of the inner product (None: 10 / bits, the
            ``sigmoid_param`` of the authors' code, thuml/HashNet).
        gamma, power: the continuation beta_t = (1 + gamma t)^power of the
            activation's scale after t optimisation steps (0.005 and 0.5,
            the authors' code; the paper gives the schedule only as
            "increase beta as training goes").

    The pairs are those of the batch with itself, as in the authors' PyTorch
    code. The step count is a buffer, so a resumed run continues the schedule.
    """

    name = "hashnet"
    citation = "Cao, Long, Wang & Yu, HashNet: Deep Learning to Hash by Continuation, ICCV 2017"
    family = "symmetric"
    output = "scaled-tanh"

    def __init__(self, bits: int, *, alpha: float | None = None, gamma: float = 0.005, power: float = 0.5) -> None:
        super().__init__(bits)
        for label, value in (("alpha", alpha), ("gamma", gamma), ("power", power)):
            if value is None and label == "alpha":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{label} must be a non-negative number, got {value!r}")
        self.alpha = 10.0 / bits if alpha is None else float(alpha)
        self.gamma, self.power = float(gamma), float(power)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._activation: list[ScaledTanh] = []  # the model's, held outside the module tree

    def scale(self) -> float:
        """beta after the steps taken so far."""
        return (1.0 + self.gamma * int(self.step)) ** self.power

    def adapt(self, model: HashModel) -> None:
        super().adapt(model)
        self._activation[:] = [model.activation]
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
        if self.training:  # one step more: the next batch sees the sharper tanh
            self.step += 1
            self._sharpen()
        return loss
