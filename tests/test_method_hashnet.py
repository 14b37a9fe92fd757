"""HashNet: the balanced likelihood on a hand-computed batch, its gradient, and the continuation of tanh's scale."""

import math

import pytest
import torch

from hhlib.backbones import build_model
from hhlib.cnn import HashCNNConfig
from hhlib.methods import ScaledTanh
from hhlib.methods.hashnet import HashNet, hashnet_loss


def softplus(x):
    return math.log1p(math.exp(x))


def test_attributes_and_defaults():
    assert HashNet.name == "hashnet" and HashNet.output == "scaled-tanh"
    assert HashNet.defaults() == {"alpha": None, "gamma": 0.005, "power": 0.5}
    assert HashNet(64).options() == {"alpha": 10 / 64, "gamma": 0.005, "power": 0.5}


def test_hand_computed_two_codes():
    h = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)[[0, 1]]  # dissimilar: only the diagonal pairs are similar
    value = HashNet(2, alpha=2.0)(h, y, torch.arange(2)).item()
    # theta = 2 h h^T = [[2, 1], [1, 1]]; similar: (0,0) theta 2, (1,1) theta 1 -> softplus - theta;
    # dissimilar: (0,1), (1,0) theta 1 -> softplus. S = 4, S1 = S0 = 2: weight 2 each, mean over 4
    similar = (softplus(2) - 2) + (softplus(1) - 1)
    dissimilar = 2 * softplus(1)
    assert value == pytest.approx((2 * similar + 2 * dissimilar) / 4)


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    h = torch.rand(5, 6, generator=generator, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    similar = torch.eye(3, dtype=torch.bool)[[0, 1, 2, 0, 1]]
    similar = similar.double() @ similar.double().T > 0
    assert torch.autograd.gradcheck(lambda v: hashnet_loss(v, similar, 0.7), (h,))


def test_bad_input():
    with pytest.raises(ValueError, match="u must have shape"):
        HashNet(8)(torch.zeros(4, 6), torch.eye(4), torch.arange(4))
    for option in ({"gamma": -1}, {"power": "x"}, {"alpha": True}):
        with pytest.raises(ValueError):
            HashNet(8, **option)


def test_continuation_sharpens_the_model_tanh_and_resumes():
    model = build_model("cnn", HashCNNConfig(bits=8))
    method = HashNet(8)
    method.adapt(model)
    assert isinstance(model.activation, ScaledTanh) and float(model.activation.scale) == 1.0
    assert "step" in method.state_dict() and not any("activation" in k for k in method.state_dict())
    u, y = torch.rand(4, 8) - 0.5, torch.eye(2)[[0, 1, 0, 1]]
    for _ in range(10):
        method(u, y, torch.arange(4))
    assert float(model.activation.scale) == pytest.approx((1 + 0.005 * 10) ** 0.5)
    method.eval()
    method(u, y, torch.arange(4))  # evaluation does not advance the schedule
    assert int(method.step) == 10

    resumed_model = build_model("cnn", HashCNNConfig(bits=8))
    resumed = HashNet(8)
    resumed.adapt(resumed_model)
    resumed.load_state_dict(method.state_dict())
    resumed.begin_epoch(2, 5)
    assert float(resumed_model.activation.scale) == pytest.approx((1 + 0.005 * 10) ** 0.5)
    # the network's own checkpoint keeps the scale it was trained to
    assert float(model.state_dict()["activation.scale"]) == float(resumed_model.activation.scale)
