"""DTSH: the triplet likelihood over the batch, its gradient, its checks, its ranking of codes."""

import itertools
import math

import pytest
import torch

from hhlib.methods.dtsh import DTSH


def signs(shape, generator):
    return torch.randint(0, 2, shape, generator=generator).float().mul(2).sub(1)


def test_attributes_and_defaults():
    assert DTSH.name == "dtsh" and DTSH.family == "symmetric" and DTSH.output == "linear"
    assert DTSH.defaults() == {"alpha": None, "lam": 100 / 22500}
    assert DTSH(12).options() == {"alpha": 6.0, "lam": pytest.approx(1 / 225)}  # the margin bits / 2


def test_hand_computed_three_codes():
    method = DTSH(2, lam=0.3)  # margin 2 / 2 = 1
    u = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    y = torch.eye(2, dtype=torch.float64)[[0, 0, 1]]
    value = method(u, y, torch.arange(3)).item()
    # theta = u . u / 2: theta_01 = theta_02 = 0.5, theta_12 = 0
    # triplets: (0, 1, 2): t = 0.5 - 0.5 - 1 = -1; (1, 0, 2): t = 0.5 - 0 - 1 = -0.5; image 2 has no positive
    # -[t - log(1 + e^t)] = log(1 + e^-t): log(1 + e), log(1 + e^0.5)
    likelihood = (math.log1p(math.e) + math.log1p(math.exp(0.5))) / 2
    # sign(0) = +1: ||b - u||^2 = 0, 1, 1 -> mean 2 / 3
    assert value == pytest.approx(likelihood + 0.3 * 2 / 3)


def test_equals_the_loss_summed_triplet_by_triplet():
    generator = torch.Generator().manual_seed(0)
    n, bits, alpha, lam = 7, 4, 1.5, 0.2
    u = torch.randn(n, bits, generator=generator, dtype=torch.float64)
    y = (torch.rand(n, 3, generator=generator) < 0.4).double()  # multi-label, some rows unlabelled
    total, count = 0.0, 0
    for i, j, k in itertools.product(range(n), repeat=3):
        if j != i and y[i] @ y[j] > 0 and not y[i] @ y[k] > 0:
            t = float(u[i] @ u[j] / 2 - u[i] @ u[k] / 2 - alpha)
            total, count = total - (t - math.log1p(math.exp(t))), count + 1
    assert count > 0
    quantization = float(((u - torch.where(u >= 0, 1.0, -1.0)) ** 2).sum()) / n
    value = DTSH(bits, alpha=alpha, lam=lam)(u, y, torch.arange(n)).item()
    assert value == pytest.approx(total / count + lam * quantization)


def test_gradcheck():
    generator = torch.Generator().manual_seed(0)
    method = DTSH(5, lam=0.5)
    method.double()
    # entries well away from 0, where the sign (a constant to the gradient) flips
    u = ((torch.rand(7, 5, generator=generator) + 0.2) * signs((7, 5), generator)).double().requires_grad_()
    y = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1, 1, 2]]
    assert torch.autograd.gradcheck(lambda v: method(v, y, torch.arange(7)), (u,))


def test_no_triplet_leaves_the_quantisation_term_and_large_codes_stay_finite():
    method = DTSH(3, lam=2.0)
    u = torch.tensor([[0.5, -2.0, 1.0], [1.0, 1.0, -1.0]], requires_grad=True)
    value = method(u, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.arange(2))  # no negative: no triplet
    assert value.item() == pytest.approx(2.0 * (0.25 + 1.0) / 2)
    value.backward()
    assert torch.isfinite(u.grad).all()
    one = method(torch.ones(1, 3), torch.ones(1, 2), torch.tensor([0]))
    assert one.item() == 0.0
    y = torch.eye(2)[[0, 0, 1]]
    for scale in (1e3, -1e3):  # t of either sign far past what exp can take
        assert torch.isfinite(method(scale * torch.tensor([[1.0, 1, 1], [1, 1, 1], [-1, -1, -1]]), y, torch.arange(3)))


def test_codes_aligned_with_labels_score_lower_than_random_codes():
    bits, y = 8, torch.eye(4)[torch.arange(8) % 4]
    generator = torch.Generator().manual_seed(0)
    aligned = 0.9 * signs((4, bits), generator)[torch.arange(8) % 4]
    method = DTSH(bits)
    for _ in range(5):
        random = 0.9 * signs((8, bits), generator)
        assert method(aligned, y, torch.arange(8)) < method(random, y, torch.arange(8))


@pytest.mark.parametrize(
    "u, y, ind, message",
    [
        (torch.zeros(2, 5), torch.zeros(2, 3), torch.tensor([0, 1]), r"u must have shape \(B, 4\)"),
        (torch.zeros(2, 4), torch.zeros(2), torch.tensor([0, 1]), r"y must have shape \(2, num_classes\)"),
        (torch.zeros(2, 4), torch.zeros(2, 3), torch.tensor([[0, 1]]), r"ind must have shape \(2,\)"),
    ],
)
def test_bad_inputs_raise(u, y, ind, message):
    with pytest.raises(ValueError, match=message):
        DTSH(4)(u, y, ind)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="alpha \\(the margin\\) must be non-negative"):
        DTSH(8, alpha=-1.0)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="lam must be non-negative"):
            DTSH(8, lam=bad)
    with pytest.raises(ValueError, match="lam must be a number"):
        DTSH(8, lam=None)
