"""DCH: the Cauchy cross-entropy and quantisation loss on hand-computed batches, its gradient, its checks,
its ranking of codes."""

import math

import pytest
import torch

from hhlib.methods import METHODS
from hhlib.methods.dch import DCH, EPS, cauchy_distance, dch_loss


def signs(shape, generator):
    return torch.randint(0, 2, shape, generator=generator).float().mul(2).sub(1)


def test_attributes_defaults_and_registry():
    assert DCH.name == "dch" and DCH.output == "tanh" and DCH.family == "symmetric"
    assert METHODS["dch"] is DCH
    assert DCH.defaults() == {"gamma": 20.0, "lam": 0.1}
    assert DCH(16, gamma=5, lam=0).options() == {"gamma": 5.0, "lam": 0.0}


def test_distance_of_signs_is_hamming():
    a = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [-1, -1, -1, 1]])
    assert cauchy_distance(a, a).tolist() == [[0.0, 2.0, 3.0], [2.0, 0.0, 3.0], [3.0, 3.0, 0.0]]


def test_hand_computed_two_codes():
    u = torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)  # one dissimilar pair, seen as (0, 1) and (1, 0)
    gamma, lam = 2.0, 0.5
    value = DCH(2, gamma=gamma, lam=lam)(u, y, torch.arange(2)).item()
    # cos = 0, d = (2/2)(1 - 0) = 1; no similar pair, so the dissimilar ones weigh S/S0 = 1
    dissimilar = math.log((gamma + 1) / (1 + EPS))
    # |u| against 1: cos = 1/sqrt(2) for both rows, d = 1 - 1/sqrt(2)
    quantization = math.log(1 + (1 - 1 / math.sqrt(2)) / gamma)
    assert value == pytest.approx(dissimilar + lam * quantization)


def test_hand_computed_three_codes():
    u = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, -1], [-1, -1, 1, -1]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)[[0, 0, 1]]
    gamma, lam = 4.0, 0.3
    value = DCH(4, gamma=gamma, lam=lam)(u, y, torch.arange(3)).item()
    # signs, so d is the Hamming distance: d01 = 1, d02 = 3, d12 = 2. Pairs i != j: 6, of which
    # (0,1), (1,0) similar (S1 = 2, weight 6/2 = 3) and (0,2), (2,0), (1,2), (2,1) dissimilar (weight 6/4)
    similar = 2 * math.log((gamma + 1) / gamma)
    dissimilar = 2 * math.log((gamma + 3) / (3 + EPS)) + 2 * math.log((gamma + 2) / (2 + EPS))
    # |u| = 1 everywhere: the quantisation loss is log(1 + 0) = 0
    assert value == pytest.approx((3 * similar + 1.5 * dissimilar) / 6)


def test_quantization_term_alone():
    u = torch.tensor([[0.5, -0.5, 0.5, 1.0]], dtype=torch.float64)  # one image: no pair
    # cos(|u|, 1) = 2.5 / (sqrt(1.75) * 2); d = 2 (1 - cos)
    d = 2 * (1 - 2.5 / (math.sqrt(1.75) * 2))
    value = DCH(4, gamma=20.0, lam=0.1)(u, torch.eye(2)[:1], torch.arange(1)).item()
    assert value == pytest.approx(0.1 * math.log(1 + d / 20))


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    u = torch.rand(5, 6, generator=generator, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    labels = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    similar = labels @ labels.T > 0
    assert torch.autograd.gradcheck(lambda v: dch_loss(v, similar, 5.0, 0.3), (u,))


def test_identical_codes_stay_finite():
    u = torch.tensor([[1.0, -1, 1, 1], [1.0, -1, 1, 1]], requires_grad=True)
    value = DCH(4)(u, torch.eye(2), torch.arange(2))  # dissimilar, at distance 0: log(gamma / EPS)
    assert value.item() == pytest.approx(math.log(20 / EPS), rel=1e-4)
    value.backward()
    assert torch.isfinite(u.grad).all()
    unlabelled = DCH(4)(torch.randn(3, 4), torch.zeros(3, 2), torch.arange(3))  # similar to nothing
    assert torch.isfinite(unlabelled)


def test_codes_aligned_with_labels_score_lower_than_random_codes():
    bits, y = 8, torch.eye(4)[torch.arange(8) % 4]
    generator = torch.Generator().manual_seed(0)
    aligned = 0.9 * signs((4, bits), generator)[torch.arange(8) % 4]
    method = DCH(bits)
    for _ in range(5):
        random = 0.9 * signs((8, bits), generator)
        assert method(aligned, y, torch.arange(8)) < method(random, y, torch.arange(8))


def test_closer_similar_pairs_cost_less():
    y = torch.eye(2)[[0, 0]]
    near = DCH(4)(torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0.9]]), y, torch.arange(2))
    far = DCH(4)(torch.tensor([[1.0, 1, 1, 1], [1, -1, -1, 0.9]]), y, torch.arange(2))
    assert near < far


@pytest.mark.parametrize(
    "option, message",
    [
        ({"gamma": 0}, "gamma must be positive"),
        ({"gamma": -2.0}, "gamma must be positive"),
        ({"gamma": "a"}, "gamma must be a finite number"),
        ({"gamma": float("inf")}, "gamma must be a finite number"),
        ({"lam": -1}, "lam must be non-negative"),
        ({"lam": float("nan")}, "lam must be a finite number"),
        ({"lam": True}, "lam must be a finite number"),
    ],
)
def test_bad_options_raise(option, message):
    with pytest.raises(ValueError, match=message):
        DCH(8, **option)


def test_bad_bits_and_positional_options_raise():
    with pytest.raises(ValueError, match="bits must be a positive integer"):
        DCH(-4)
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        DCH(8, 20.0)
