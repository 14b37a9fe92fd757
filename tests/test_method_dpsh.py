"""DPSH: the pairwise likelihood against a memory bank, its gradient, its checks, its ranking of codes."""

import math

import pytest
import torch

from hhlib.methods.base import OUTPUTS
from hhlib.methods.dpsh import DPSH, dpsh_loss


def hadamard_rows(bits: int, count: int) -> torch.Tensor:
    """``count`` rows of a Sylvester Hadamard matrix past the all-ones one: +-1 codes half the bits apart."""
    h = torch.ones(1, 1)
    while h.shape[0] < bits:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[1 : count + 1]


def test_attributes_and_defaults():
    assert DPSH.name == "dpsh" and DPSH.family == "symmetric"
    assert DPSH.output == "linear" and DPSH.output in OUTPUTS  # the paper's u = W^T phi(x) + v
    assert DPSH.defaults() == {"eta": 10.0}
    assert DPSH(12, eta=0.5).options() == {"eta": 0.5}


def test_hand_computed_three_item_bank():
    method = DPSH(2)  # eta = 10
    method.setup(torch.zeros(3, 2))
    method.double()
    u = torch.tensor([[2.0, 1.0], [1.0, -0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    value = method(u, y, torch.tensor([0, 2])).item()
    # bank rows: [2, 1], [0, 0] (never written), [1, -0.5]; theta = u . U / 2
    # row 0: theta [2.5, 0, 0.75], s [1, 0, 0]; row 1: theta [0.75, 0, 0.625], s [0, 0, 1]
    # l(theta, 1) = log(1 + e^-theta), l(theta, 0) = log(1 + e^theta); 6 pairs
    likelihood = (
        math.log1p(math.exp(-2.5)) + 2 * math.log(2) + 2 * math.log1p(math.exp(0.75)) + math.log1p(math.exp(-0.625))
    ) / 6
    # ||sign(u) - u||^2: [2, 1] -> 1, [1, -0.5] -> 0.25; eta * 1.25 / (B n) = 10 * 1.25 / 6
    assert value == pytest.approx(likelihood + 12.5 / 6)


def test_gradcheck_against_a_fixed_bank():
    torch.manual_seed(0)
    n, bits, classes = 7, 5, 3
    labels = torch.eye(classes)[torch.arange(n) % classes]
    method = DPSH(bits, eta=0.7)
    method.setup(labels)
    method.double()
    method(torch.randn(n, bits, dtype=torch.float64), labels.double(), torch.arange(n))  # fill the bank
    ind = torch.tensor([1, 4, 6])
    similar = (labels[ind] @ labels.T > 0).double()
    # entries well away from 0, where the sign (a constant to the gradient) flips
    u = ((torch.rand(3, bits) + 0.2) * torch.randn(3, bits).sign()).double().requires_grad_()
    bank = method.U.clone()
    assert torch.autograd.gradcheck(lambda v: dpsh_loss(v, bank, similar, method.eta), (u,))


def test_method_gradient_is_the_closed_form_with_the_bank_a_constant():
    torch.manual_seed(1)
    n, bits = 6, 4
    labels = torch.eye(2)[torch.tensor([0, 1, 0, 1, 1, 0])]
    method = DPSH(bits, eta=2.0)
    method.setup(labels)
    method.double()
    method(torch.randn(n, bits, dtype=torch.float64), labels.double(), torch.arange(n))
    u = torch.randn(2, bits, dtype=torch.float64, requires_grad=True)
    ind = torch.tensor([3, 0])
    method(u, labels[ind].double(), ind).backward()
    U, s = method.U, (labels[ind] @ labels.T > 0).double()
    theta = u.detach() @ U.T / 2
    expected = ((torch.sigmoid(theta) - s) @ U / 2 + 2 * 2.0 * (u.detach() - u.detach().sign())) / (2 * n)
    torch.testing.assert_close(u.grad, expected)
    assert torch.equal(method.U[ind], u.detach())  # the bank holds the batch's latest codes


def test_no_similar_pair_stays_finite():
    method = DPSH(4)
    method.setup(torch.zeros(5, 3))
    # unlabelled images are similar to nothing, not even themselves
    value = method(torch.randn(2, 4), torch.zeros(2, 3), torch.tensor([0, 1]))
    assert torch.isfinite(value)


def test_codes_aligned_with_labels_score_lower_than_random_codes():
    bits, labels = 8, torch.eye(4)[torch.arange(8) % 4]
    aligned = 0.9 * hadamard_rows(bits, 4)[torch.arange(8) % 4]

    def loss(codes):
        method = DPSH(bits)
        method.setup(labels)
        return method(codes, labels, torch.arange(8)).item()

    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        random = 0.9 * torch.randint(0, 2, (8, bits), generator=generator).float().mul(2).sub(1)
        assert loss(aligned) < loss(random)


@pytest.mark.parametrize(
    "u, y, ind, message",
    [
        (torch.zeros(2, 5), torch.zeros(2, 3), torch.tensor([0, 1]), r"u must have shape \(B, 4\)"),
        (torch.zeros(2, 4), torch.zeros(3, 3), torch.tensor([0, 1]), r"y must have shape \(2, num_classes\)"),
        (torch.zeros(2, 4), torch.zeros(2, 2), torch.tensor([0, 1]), r"y must have 3 classes"),
        (torch.zeros(2, 4), torch.zeros(2, 3), torch.tensor([0, 10]), r"ind must lie in \[0, 10\)"),
    ],
)
def test_bad_inputs_raise(u, y, ind, message):
    method = DPSH(4)
    method.setup(torch.zeros(10, 3))
    with pytest.raises(ValueError, match=message):
        method(u, y, ind)


def test_bad_options_and_a_missing_bank_raise():
    for bad in (-1.0, float("nan"), "10", True):
        with pytest.raises(ValueError, match="eta must be a non-negative number"):
            DPSH(8, eta=bad)
    with pytest.raises(ValueError, match="bits must be a positive integer"):
        DPSH(0)
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        DPSH(8, 10.0)
    with pytest.raises(RuntimeError, match="call setup"):
        DPSH(4)(torch.zeros(1, 4), torch.zeros(1, 2), torch.tensor([0]))
