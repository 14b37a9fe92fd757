"""DSH: the contrastive loss on the batch's pairs, its gradient, its checks, its ranking of codes."""

import itertools

import pytest
import torch

from hhlib.methods.dsh import DSH


def signs(shape, generator):
    return torch.randint(0, 2, shape, generator=generator).float().mul(2).sub(1)


def test_attributes_and_defaults():
    assert DSH.name == "dsh" and DSH.family == "symmetric" and DSH.output == "linear"
    assert DSH.defaults() == {"margin": None, "alpha": 0.01}
    assert DSH(12).options() == {"margin": 24.0, "alpha": 0.01}  # m = 2k, recorded as used
    assert DSH(12, margin=5, alpha=0).options() == {"margin": 5.0, "alpha": 0.0}


def test_hand_computed_three_codes():
    method = DSH(2)  # margin 2 * 2 = 4, alpha 0.01
    u = torch.tensor([[1.0, 1.0], [1.0, 0.5], [0.0, -0.5]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)[[0, 0, 1]]
    value = method(u, y, torch.arange(3)).item()
    # (0, 1) similar, d = 0.25 -> 0.125; (0, 2) dissimilar, d = 3.25 -> (4 - 3.25) / 2 = 0.375;
    # (1, 2) dissimilar, d = 2 -> (4 - 2) / 2 = 1; mean over the 3 pairs: 1.5 / 3 = 0.5
    # || |u| - 1 ||_1: 0, 0.5, 1 + 0.5 = 1.5 -> mean 2 / 3; 2 alpha * 2 / 3 = 0.04 / 3
    assert value == pytest.approx(0.5 + 0.04 / 3)


def test_equals_the_loss_summed_pair_by_pair():
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    y = (torch.rand(6, 3, generator=generator) < 0.4).double()  # multi-label, some rows unlabelled
    method = DSH(4, margin=7.0, alpha=0.3)
    total = 0.0
    for i, j in itertools.combinations(range(6), 2):
        d = float(((u[i] - u[j]) ** 2).sum())
        s = float(y[i] @ y[j] > 0)
        r = float((u[i].abs() - 1).abs().sum() + (u[j].abs() - 1).abs().sum())
        total += s * d / 2 + (1 - s) * max(7.0 - d, 0) / 2 + 0.3 * r  # the paper's sum over pairs
    assert method(u, y, torch.arange(6)).item() == pytest.approx(total / 15)


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    method = DSH(5, alpha=0.1)
    method.double()
    # entries in [0.2, 0.8] or [1.2, 1.8]: away from the kinks of | |u| - 1 | at 0 and 1
    magnitude = 0.2 + 0.6 * torch.rand(6, 5, generator=generator) + (torch.rand(6, 5, generator=generator) < 0.3)
    u = (magnitude * signs((6, 5), generator)).double().requires_grad_()
    y = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1, 1]]
    assert torch.autograd.gradcheck(lambda v: method(v, y, torch.arange(6)), (u,))


def test_one_image_or_no_pair_in_the_margin_is_finite():
    method = DSH(3, alpha=0.5)
    u = torch.tensor([[0.5, -2.0, 1.0]], requires_grad=True)
    value = method(u, torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert value.item() == pytest.approx(2 * 0.5 * (0.5 + 1.0))  # the regulariser alone
    value.backward()
    assert torch.isfinite(u.grad).all()
    far = torch.tensor([[5.0, 5.0, 5.0], [-5.0, -5.0, -5.0]])
    assert torch.isfinite(method(far, torch.eye(2), torch.arange(2)))


def test_codes_aligned_with_labels_score_lower_than_random_codes():
    bits, y = 8, torch.eye(4)[torch.arange(8) % 4]
    generator = torch.Generator().manual_seed(0)
    aligned = 0.9 * signs((4, bits), generator)[torch.arange(8) % 4]
    method = DSH(bits)
    for _ in range(5):
        random = 0.9 * signs((8, bits), generator)
        assert method(aligned, y, torch.arange(8)) < method(random, y, torch.arange(8))


@pytest.mark.parametrize(
    "u, y, ind, message",
    [
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), r"u must have shape \(B, 4\)"),
        (torch.zeros(4), torch.zeros(2, 3), torch.tensor([0, 1]), r"u must have shape \(B, 4\)"),
        (torch.zeros(2, 4), torch.zeros(3, 3), torch.tensor([0, 1]), r"y must have shape \(2, num_classes\)"),
        (torch.zeros(2, 4), torch.zeros(2, 3), torch.tensor([0]), r"ind must have shape \(2,\)"),
    ],
)
def test_bad_inputs_raise(u, y, ind, message):
    with pytest.raises(ValueError, match=message):
        DSH(4)(u, y, ind)


def test_bad_options_raise():
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="margin must be positive"):
            DSH(8, margin=bad)
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        DSH(8, alpha=-0.01)
    with pytest.raises(ValueError, match="margin must be a number"):
        DSH(8, margin="16")
