"""DNNH: the triplet ranking hinge, its gradient, the divide-and-encode head on both backbones."""

import pytest
import torch
from torch import nn

from hhlib.cnn import HashCNN, HashCNNConfig
from hhlib.methods.dnnh import DNNH, DivideAndEncode, threshold
from hhlib.model import HybridHash, HybridHashConfig


def test_hand_computed_triplets():
    # F = (u + 1)/2: F0 = (1, 1), F1 = (1, 0), F2 = (0, 0); images 0 and 1 share class 0, image 2 is class 1
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ind = torch.arange(3)
    # squared distances d01 = 1, d02 = 2, d12 = 1; the triplets (anchor, I+, I-) are (0, 1, 2) and (1, 0, 2)
    # margin 1: max(0, 1 - (d02 - d01)) = 0 and max(0, 1 - (d12 - d10)) = 1 -> mean 0.5
    assert DNNH(2)(u, y, ind).item() == pytest.approx(0.5, abs=1e-12)
    # margin 2: 2 - 1 = 1 and 2 - 0 = 2 -> mean 1.5
    assert DNNH(2, margin=2.0)(u, y, ind).item() == pytest.approx(1.5, abs=1e-12)


def test_multi_label_triplets_need_a_shared_and_a_disjoint_label():
    # image 1 shares class 0 with image 0, image 2 shares class 1 with image 1 but nothing with image 0
    u = torch.tensor([[1.0], [1.0], [-1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # F = (1, 1, 0): d01 = 0, d02 = 1, d12 = 1. Image 1 is relevant to both others, so no triplet has it as
    # I- and none is anchored at it; the triplets are (0, 1, 2): max(0, 1 - (d02 - d01)) = 0
    # and (2, 1, 0): max(0, 1 - (d20 - d21)) = 1 -> mean 0.5
    assert DNNH(1)(u, y, torch.arange(3)).item() == pytest.approx(0.5, abs=1e-12)
    # no triplet at all (one class): zero, and still differentiable
    v = torch.zeros(3, 1, requires_grad=True)
    loss = DNNH(1)(v, torch.ones(3, 1), torch.arange(3))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(v.grad) == 0


def test_gradcheck_of_the_loss():
    torch.manual_seed(0)
    u = torch.tanh(torch.randn(6, 4, dtype=torch.float64)).requires_grad_()
    y = torch.eye(3, dtype=torch.float64)[torch.tensor([0, 0, 1, 1, 2, 0])]
    method = DNNH(4).double()
    assert torch.autograd.gradcheck(lambda u: method(u, y, torch.arange(6)), (u,))


def test_head_matches_one_linear_layer_per_slice_and_its_gradient_checks():
    torch.manual_seed(0)
    head = DivideAndEncode(features=12, bits=3).double()
    with torch.no_grad():
        head.weight.mul_(0.1)  # keep every sigmoid inside the band (0.4, 0.6), where g is the identity
        head.bias.zero_()
    x = (0.5 * torch.randn(5, 3, 2, 2, dtype=torch.float64)).requires_grad_()  # flattened: 12 features
    flat = x.flatten(1)
    expected = []
    for k in range(3):  # slice k: features 4k .. 4k + 3 through its own Linear(4, 1)
        layer = nn.Linear(4, 1).double()
        layer.weight.data, layer.bias.data = head.weight[k : k + 1].detach(), head.bias[k : k + 1].detach()
        expected.append(torch.sigmoid(layer(flat[:, 4 * k : 4 * k + 4])))
    s = torch.cat(expected, 1)
    assert ((s > 0.4) & (s < 0.6)).all()
    torch.testing.assert_close(head(x), 2 * s - 1)
    assert torch.autograd.gradcheck(head, (x,))


def test_threshold_values_and_gradients():
    s = torch.tensor([0.1, 0.45, 0.5, 0.58, 0.9], requires_grad=True)
    g = threshold(s, 0.1)
    torch.testing.assert_close(g, torch.tensor([0.0, 0.45, 0.5, 0.58, 1.0]))
    g.sum().backward()
    torch.testing.assert_close(s.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))  # g's derivative: 0 when saturated
    s.grad = None
    g = threshold(s, 0.1, straight_through=True)
    g.sum().backward()
    torch.testing.assert_close(g, torch.tensor([0.0, 0.45, 0.5, 0.58, 1.0]))
    torch.testing.assert_close(s.grad, torch.ones(5))  # passed through unchanged


def test_bad_input_raises_clear_errors():
    method = DNNH(4)
    with pytest.raises(ValueError, match=r"u must have shape \(B, 4\)"):
        method(torch.zeros(3, 5), torch.zeros(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="y must have shape"):
        method(torch.zeros(3, 4), torch.zeros(2, 2), torch.arange(3))
    with pytest.raises(ValueError, match="2049 features.*64 equal slices"):
        DivideAndEncode(2049, 64)
    with pytest.raises(ValueError, match="expects 12 features per image, got 10"):
        DivideAndEncode(12, 3)(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="margin"):
        DNNH(4, margin=0.0)
    with pytest.raises(ValueError, match="eps"):
        DNNH(4, eps=0.5)


def test_label_aligned_codes_score_lower_than_random_codes():
    torch.manual_seed(0)
    classes = torch.randint(0, 4, (32,))
    y = torch.eye(4)[classes]
    codewords = torch.where(torch.rand(4, 16) < 0.5, -1.0, 1.0)
    method = DNNH(16)
    aligned = method(codewords[classes], y, torch.arange(32))
    random = method(torch.rand(32, 16) * 2 - 1, y, torch.arange(32))
    assert aligned.item() < random.item()


@pytest.mark.parametrize(
    "make", [lambda: HashCNN(HashCNNConfig(bits=8)), lambda: HybridHash(HybridHashConfig.cpu(bits=8))]
)
def test_adapt_puts_the_head_on_the_features_of_both_backbones(make):
    torch.manual_seed(0)
    model = make()
    statistics = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    DNNH(8).adapt(model)
    assert isinstance(model.hash_head, DivideAndEncode) and model.hash_head.features == 128 * 4 * 4
    assert isinstance(model.activation, nn.Identity) and model.training
    for k, v in statistics.items():  # finding the feature size left BatchNorm alone
        assert torch.equal(model.state_dict()[k], v)
    x = torch.randn(3, 3, 32, 32)
    u = model(x)
    assert u.shape == (3, 8) and u.min() >= -1 and u.max() <= 1
    # a checkpoint loader rebuilds the model and adapts it again: the same state dict fits
    again = make()
    DNNH(8).adapt(again)
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    torch.testing.assert_close(again(x), model(x))


def test_adapt_refuses_another_code_length():
    with pytest.raises(ValueError, match="8-bit codes"):
        DNNH(16).adapt(HashCNN(HashCNNConfig(bits=8)))
