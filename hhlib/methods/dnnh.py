"""DNNH: the triplet ranking loss on codes from a divide-and-encode head.

Lai, Pan, Liu & Yan, "Simultaneous Feature Learning and Hash Coding with
Deep Neural Networks", CVPR 2015 (arXiv 1504.03410; called NINH in some
surveys). The backbone's features are cut into one slice per bit, each slice
is encoded into one value in [0, 1] (:class:`DivideAndEncode`), and for every
triplet of the batch, a query I, an image I+ sharing a label with it and an
image I- sharing none, with F the codes in [0, 1]^K:

    L = mean over triplets of max(0, margin - (||F(I) - F(I-)||^2 - ||F(I) - F(I+)||^2))

hhlib's codes are signs of values in [-1, 1], so the head gives u = 2 F - 1
and the loss scores F = (u + 1) / 2, the paper's scale.
"""

from __future__ import annotations

import torch
from torch import nn

from hhlib.methods.base import Method
from hhlib.model import HashModel
from hhlib.relevance import relevant

__all__ = ["DNNH", "DivideAndEncode", "threshold"]


def threshold(s: torch.Tensor, eps: float, straight_through: bool = False) -> torch.Tensor:
    """The paper's piecewise threshold g(s): 0 below 0.5 - eps, 1 above 0.5 + eps, s between.

    Its gradient is g's own derivative, 1 inside the band and 0 outside, so
    a saturated bit learns nothing; ``straight_through`` passes the gradient
    through g unchanged instead (g's value stays the same).
    """
    g = torch.where(s < 0.5 - eps, torch.zeros_like(s), torch.where(s > 0.5 + eps, torch.ones_like(s), s))
    return s + (g - s).detach() if straight_through else g


class DivideAndEncode(nn.Module):
    """Features (B, ...) -> codes (B, bits) in [-1, 1]: one slice of the flattened features per bit.

    Slice k (features k*F/bits to (k+1)*F/bits - 1) goes through its own
    linear map to one value, a sigmoid, and :func:`threshold`; the output is
    ``2 g - 1``. All slices are encoded at once, as one batched product.

    Args:
        features: F, the number of flattened features; divisible by ``bits``.
        bits: the code length K.
        eps: half the width of the band around 0.5 where g is the identity (0.1, see :class:`DNNH`).
        straight_through: pass the gradient through g unchanged (see :func:`threshold`).
    """

    def __init__(self, features: int, bits: int, eps: float = 0.1, straight_through: bool = False) -> None:
        super().__init__()
        if bits < 1 or features < 1 or features % bits:
            raise ValueError(
                f"the divide-and-encode head needs the {features} features to split into {bits} equal slices "
                f"(features divisible by bits)"
            )
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
        self.features, self.bits, self.eps, self.straight_through = features, bits, float(eps), bool(straight_through)
        width = features // bits
        bound = width**-0.5  # nn.Linear's default initialisation, per slice
        self.weight = nn.Parameter(torch.empty(bits, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(bits).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.features:
            raise ValueError(f"this head expects {self.features} features per image, got {x.shape[1]}")
        slices = x.view(len(x), self.bits, -1)  # (B, bits, F / bits)
        s = torch.sigmoid((slices * self.weight).sum(-1) + self.bias)  # (B, bits)
        return 2 * threshold(s, self.eps, self.straight_through) - 1

    def extra_repr(self) -> str:
        return f"features={self.features}, bits={self.bits}, eps={self.eps:g}, straight_through={self.straight_through}"


def feature_count(model: HashModel) -> int:
    """Flattened size of ``model.forward_features`` for one image, without touching BatchNorm statistics."""
    c = model.config
    modes = {m: m.training for m in model.modules()}
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    try:
        model.eval()
        with torch.no_grad():
            return model.forward_features(torch.zeros(1, c.in_chans, c.img_size, c.img_size, device=device)).numel()
    finally:
        for m, mode in modes.items():
            m.training = mode


class DNNH(Method):
    """The triplet ranking hinge of DNNH on the divide-and-encode head (margin 1 as in the paper, eps 0.1).

    Every valid triplet of the batch counts (I+ shares a label with I and is
    not I, I- shares none); the loss is their mean (the paper sums over the
    triplets it samples; a mean keeps the scale independent of the batch),
    and 0 for a batch without one.

    Args:
        margin: the hinge's margin in squared distance on the [0, 1] codes (the paper: the 1 in
            its triplet ranking loss max(0, 1 - ...)).
        eps: half-width of the threshold's linear band around 0.5, the paper's epsilon, "a small
            positive hyper-parameter"; 0.1 is METHODS.md's value (the paper's could not be checked here).
        straight_through: the head's gradient through the threshold; False is the derivative of g
            as the paper defines it (0 for a saturated bit), True passes it through unchanged.
    """

    name = "dnnh"
    citation = "Lai, Pan, Liu & Yan, Simultaneous Feature Learning and Hash Coding with Deep Neural Networks, CVPR 2015"
    output = "linear"  # the head ends in 2 g(s) - 1, already in [-1, 1]

    def __init__(self, bits: int, *, margin: float = 1.0, eps: float = 0.1, straight_through: bool = False) -> None:
        super().__init__(bits)
        if not margin > 0:
            raise ValueError(f"margin must be positive, got {margin!r}")
        if not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
        self.margin, self.eps, self.straight_through = float(margin), float(eps), bool(straight_through)

    def adapt(self, model: HashModel) -> None:
        """Put a :class:`DivideAndEncode` on the flattened ``forward_features`` and make the activation linear."""
        super().adapt(model)
        model.hash_head = DivideAndEncode(feature_count(model), self.bits, self.eps, self.straight_through)

    def forward(self, u: torch.Tensor, y: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
        self.check_batch(u, y, ind)
        f = (u + 1) / 2  # the paper's codes in [0, 1]
        squared = (f * f).sum(1)
        d = squared[:, None] + squared[None, :] - 2 * f @ f.T  # (B, B) squared distances
        similar = relevant(y, y)
        positive = similar & ~torch.eye(len(u), dtype=torch.bool, device=u.device)
        valid = positive[:, :, None] & ~similar[:, None, :]  # (anchor, I+, I-)
        hinge = torch.relu(self.margin - d[:, None, :] + d[:, :, None])  # margin - (d(I, I-) - d(I, I+))
        return (hinge * valid).sum() / valid.sum().clamp(min=1)  # 0 for a batch without a triplet
