"""CSQ: its centres, the cross-entropy towards them on a hand-computed batch, its gradient, its checks."""

import math

import pytest
import torch
from scipy.linalg import hadamard

from hhlib.methods import CSQ, METHODS


def prepared(bits=4, classes=2, **options):
    method = CSQ(bits, **options)
    labels = torch.eye(classes)
    method.setup(labels)
    method.prepare(labels)
    return method


def test_attributes_defaults_and_registry():
    assert CSQ.name == "csq" and CSQ.family == "central" and CSQ.output == "tanh" and len(CSQ.stages) == 2
    assert METHODS["csq"] is CSQ and CSQ.database == "network"
    assert CSQ.defaults() == {"lam": 0.05, "centres": "auto", "seed": 0}


def test_auto_centres_follow_the_paper_rule():
    rows = torch.tensor(hadamard(8), dtype=torch.float32)
    assert torch.equal(prepared(8, 16).class_centres, torch.cat([rows, -rows]))  # 2 * bits classes: all of them
    assert prepared(8, 17).centre_kind(17) == "bernoulli"  # more than 2 * bits classes
    assert prepared(12, 3).centre_kind(3) == "bernoulli"  # 12 is not a power of 2
    assert prepared(8, 3, centres="min-distance").centre_kind(3) == "min-distance"


def test_hand_computed_batch():
    method = prepared(4, 2, lam=0.5)  # centres: Hadamard rows (1, 1, 1, 1) and (1, -1, 1, -1)
    u = torch.tensor([[0.0, 0.0, 0.6, -0.6], [0.6, 0.6, 0.6, 0.6]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0], [0, 1]], dtype=torch.float64)
    value = method(u, y, torch.arange(2)).item()
    # h = (u + 1) / 2. Image 0, target (1, 1, 1, 1): h = .5, .5, .8, .2
    first = -(2 * math.log(0.5) + math.log(0.8) + math.log(0.2)) / 4
    # image 1, target (1, 0, 1, 0): h = .8 everywhere
    second = -(2 * math.log(0.8) + 2 * math.log(0.2)) / 4
    # (|u| - 1)^2: image 0: 1, 1, .16, .16; image 1: .16 x 4
    quantization = (2 + 0.32 + 0.64) / 8
    assert value == pytest.approx((first + second) / 2 + 0.5 * quantization)


def test_gradcheck():
    method = prepared(8, 3).double()
    generator = torch.Generator().manual_seed(0)
    u = (torch.rand(5, 8, generator=generator, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    y = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    y[4, 2] = 1  # a multi-label image
    assert torch.autograd.gradcheck(lambda v: method(v, y, torch.arange(5)), (u,))


def test_a_code_at_its_centre_costs_least():
    method = prepared(8, 4)
    y = torch.eye(4)
    at = 0.99 * method.targets(y)
    assert method(at, y, torch.arange(4)) < method(at.roll(1, 0), y, torch.arange(4))
    assert method(at, y, torch.arange(4)) < method(0.5 * at, y, torch.arange(4))  # nearer the cube: lower


def test_centres_travel_with_the_state_dict():
    method = prepared(16, 40, centres="bernoulli", seed=5)  # 40 classes: random centres
    restored = CSQ(16, centres="bernoulli", seed=5)
    restored.setup(torch.eye(40))
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.class_centres, method.class_centres) and torch.equal(restored.tie, method.tie)


def test_unprepared_method_and_bad_options_are_clear_errors():
    method = CSQ(4)
    method.setup(torch.eye(2))
    with pytest.raises(RuntimeError, match="no centres yet"):
        method(torch.zeros(2, 4), torch.eye(2), torch.arange(2))
    with pytest.raises(ValueError, match="centres must be one of"):
        CSQ(4, centres="square")
    with pytest.raises(ValueError, match="lam must be a non-negative number"):
        CSQ(4, lam=-1)
    with pytest.raises(ValueError, match="seed must be an integer"):
        CSQ(4, seed=0.5)
