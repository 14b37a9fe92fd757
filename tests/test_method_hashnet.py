"""HashNet: the balanced likelihood on hand-computed batches, its gradient, its checks, its ranking of codes,
and the continuation of the network's tanh scale (training steps only, kept across a resume)."""

import math

import pytest
import torch

from hhlib.backbones import build_model
from hhlib.cnn import HashCNNConfig
from hhlib.methods import METHODS, ScaledTanh
from hhlib.methods.hashnet import HashNet, hashnet_loss


def softplus(x):
    return math.log1p(math.exp(x))


def hadamard_rows(bits: int, count: int) -> torch.Tensor:
    """``count`` rows of a Sylvester Hadamard matrix past the all-ones one: +-1 codes half the bits apart."""
    h = torch.ones(1, 1)
    while h.shape[0] < bits:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[1 : count + 1]


def test_attributes_defaults_and_registry():
    assert HashNet.name == "hashnet" and HashNet.family == "symmetric" and HashNet.output == "scaled-tanh"
    assert METHODS["hashnet"] is HashNet
    assert HashNet.defaults() == {"alpha": None, "gamma": 0.005, "power": 0.5}
    assert HashNet(64).options() == {"alpha": 10 / 64, "gamma": 0.005, "power": 0.5}  # a = 10 / bits, as used
    assert HashNet(8, alpha=0.5, gamma=0, power=1).options() == {"alpha": 0.5, "gamma": 0.0, "power": 1.0}


def test_hand_computed_two_codes():
    h = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)  # different classes: only the self-pairs are similar
    value = HashNet(2, alpha=2.0)(h, y, torch.arange(2)).item()
    # theta = 2 h h^T = [[2, 1], [1, 1]]; similar (0,0) theta 2 and (1,1) theta 1 cost softplus(theta) - theta;
    # dissimilar (0,1), (1,0) theta 1 cost softplus(1). S = 4, S1 = S0 = 2: weight 2 each, mean over the 4
    similar = (softplus(2) - 2) + (softplus(1) - 1)
    dissimilar = 2 * softplus(1)
    assert value == pytest.approx((2 * similar + 2 * dissimilar) / 4)


def test_hand_computed_three_codes_with_unequal_counts():
    h = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, -1.0]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)[[0, 0, 1]]
    value = HashNet(2, alpha=2.0)(h, y, torch.arange(3)).item()
    # theta = 2 h h^T: t00 = 2, t01 = 1, t02 = 0, t11 = 1, t12 = -1, t22 = 2
    # similar (5): (0,0), (0,1), (1,0), (1,1), (2,2) cost softplus(-theta): 2 softplus(-2) + 3 softplus(-1)
    # dissimilar (4): (0,2), (2,0) at 0 and (1,2), (2,1) at -1 cost softplus(theta): 2 log 2 + 2 softplus(-1)
    # S = 9: (9/5 * similar + 9/4 * dissimilar) / 9
    similar = 2 * softplus(-2) + 3 * softplus(-1)
    dissimilar = 2 * math.log(2) + 2 * softplus(-1)
    assert value == pytest.approx(similar / 5 + dissimilar / 4)


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    h = torch.rand(5, 6, generator=generator, dtype=torch.float64).mul(2).sub(1).requires_grad_()
    labels = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    similar = labels @ labels.T > 0
    assert torch.autograd.gradcheck(lambda v: hashnet_loss(v, similar, 0.7), (h,))


def test_codes_aligned_with_labels_score_lower_than_random_codes():
    bits, y = 8, torch.eye(4)[torch.arange(8) % 4]
    aligned = 0.9 * hadamard_rows(bits, 4)[torch.arange(8) % 4]
    method = HashNet(bits).eval()
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        random = 0.9 * torch.randint(0, 2, (8, bits), generator=generator).float().mul(2).sub(1)
        assert method(aligned, y, torch.arange(8)) < method(random, y, torch.arange(8))


@pytest.mark.parametrize(
    "option, message",
    [
        ({"alpha": 0}, "alpha must be positive"),
        ({"alpha": -0.1}, "alpha must be positive"),
        ({"alpha": True}, "alpha must be a finite number"),
        ({"alpha": float("inf")}, "alpha must be a finite number"),
        ({"gamma": -1}, "gamma must be non-negative"),
        ({"gamma": float("nan")}, "gamma must be a finite number"),
        ({"power": "x"}, "power must be a finite number"),
        ({"power": -0.5}, "power must be non-negative"),
    ],
)
def test_bad_options_raise(option, message):
    with pytest.raises(ValueError, match=message):
        HashNet(8, **option)


def test_bad_bits_and_positional_options_raise():
    with pytest.raises(ValueError, match="bits must be a positive integer"):
        HashNet(0)
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        HashNet(8, 0.5)
    with pytest.raises(ValueError, match="the network makes 8-bit codes"):
        HashNet(16).adapt(build_model("cnn", HashCNNConfig(bits=8)))


def test_continuation_sharpens_the_model_tanh_on_training_steps_only():
    torch.manual_seed(0)
    model = build_model("cnn", HashCNNConfig(bits=8))
    method = HashNet(8)
    method.adapt(model)
    assert isinstance(model.activation, ScaledTanh) and float(model.activation.scale) == 1.0
    # the model's activation is held, not owned: the method's state is the step count alone
    assert list(method.state_dict()) == ["step"] and not list(method.children())
    images, y = torch.randn(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
    for k in range(1, 4):  # the engine's order: network, loss (advancing the step), backward
        loss = method(model(images), y, torch.arange(4))
        loss.backward()  # the scale this batch ran with is still the one its graph saved
        assert int(method.step) == k
        assert float(model.activation.scale) == pytest.approx((1 + 0.005 * k) ** 0.5)
    z = torch.randn(3, 8)
    assert torch.allclose(model.activation(z), torch.tanh((1 + 0.005 * 3) ** 0.5 * z))

    u = torch.rand(4, 8) - 0.5
    for _ in range(7):
        method(u, y, torch.arange(4))
    assert float(model.activation.scale) == pytest.approx((1 + 0.005 * 10) ** 0.5)
    method.eval()
    method(u, y, torch.arange(4))  # evaluation does not advance the schedule
    assert int(method.step) == 10 and float(model.activation.scale) == pytest.approx(1.05**0.5)


def test_state_dict_round_trip_resumes_the_step_and_the_scale():
    model, method = build_model("cnn", HashCNNConfig(bits=8)), HashNet(8)
    method.adapt(model)
    u, y = torch.rand(4, 8) - 0.5, torch.eye(2)[[0, 1, 0, 1]]
    for _ in range(40):
        method(u, y, torch.arange(4))
    expected = (1 + 0.005 * 40) ** 0.5

    # a resumed run: the method adapts a fresh network, then both states are loaded, then the epoch begins
    resumed_model, resumed = build_model("cnn", HashCNNConfig(bits=8)), HashNet(8)
    resumed.adapt(resumed_model)
    resumed.setup(torch.eye(2))
    assert float(resumed_model.activation.scale) == 1.0
    resumed.load_state_dict(method.state_dict())
    resumed.begin_epoch(3, 5)
    assert int(resumed.step) == 40 and float(resumed_model.activation.scale) == pytest.approx(expected)
    # the network's own checkpoint keeps the scale it was trained to, for a model loaded without its method
    reloaded = build_model("cnn", HashCNNConfig(bits=8))
    HashNet(8).adapt(reloaded)
    reloaded.load_state_dict(model.state_dict())
    assert float(reloaded.activation.scale) == pytest.approx(expected)
