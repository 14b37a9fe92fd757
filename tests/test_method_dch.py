"""DCH: the Cauchy cross-entropy and quantisation loss on a hand-computed batch, its gradient, its checks."""

import math

import pytest
import torch

from hhlib.methods.dch import DCH, EPS, cauchy_distance, dch_loss


def test_attributes_and_defaults():
    assert DCH.name == "dch" and DCH.output == "tanh" and DCH.family == "symmetric"
    assert DCH.defaults() == {"gamma": 20.0, "lam": 0.1}


def test_distance_of_signs_is_hamming():
    a = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1]])
    assert cauchy_distance(a, a).tolist() == [[0.0, 2.0], [2.0, 0.0]]


def test_hand_computed_two_codes():
    u = torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)  # one dissimilar pair
    gamma, lam = 2.0, 0.5
    value = DCH(2, gamma=gamma, lam=lam)(u, y, torch.arange(2)).item()
    # d: 0 on the diagonal (similar), (2/2)(1 - 0) = 1 off it (dissimilar). S1 = S0 = 2, weights 2.
    similar = 2 * math.log(1 + 0 / gamma)
    dissimilar = 2 * math.log((gamma + 1) / (1 + EPS))
    # |u| against 1: cos = 1/sqrt(2) for both rows, d = 1 - 1/sqrt(2)
    quantization = math.log(1 + (1 - 1 / math.sqrt(2)) / gamma)
    assert value == pytest.approx((2 * similar + 2 * dissimilar) / 4 + lam * quantization)


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(5, 6, generator=generator, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    labels = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    similar = labels @ labels.T > 0
    # off the diagonal only: identical rows sit at the clamp d >= 0, where the loss has a kink
    assert torch.autograd.gradcheck(lambda v: dch_loss(v[1:], similar[1:, 1:], 5.0, 0.3), (u,))


def test_closer_similar_pairs_cost_less():
    y = torch.eye(2)[[0, 0]]
    near = DCH(4)(torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0.9]]), y, torch.arange(2))
    far = DCH(4)(torch.tensor([[1.0, 1, 1, 1], [1, -1, -1, 0.9]]), y, torch.arange(2))
    assert near < far


def test_bad_input():
    with pytest.raises(ValueError, match="u must have shape"):
        DCH(8)(torch.zeros(4, 6), torch.eye(4), torch.arange(4))
    for option in ({"gamma": 0}, {"lam": -1}, {"gamma": "a"}):
        with pytest.raises(ValueError):
            DCH(8, **option)
