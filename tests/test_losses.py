"""The weighted likelihood loss: the authors' values, its gradient, its memory bank."""

import math

import pytest
import torch

from hhlib import WeightedLikelihoodLoss
from hhlib.losses import pairwise_likelihood


def test_three_calls_equal_the_authors_loss(reference):
    c = reference["loss_config"]
    loss = WeightedLikelihoodLoss(c["num_train"], c["n_class"], c["bits"], alpha=c["alpha"])
    for step in reference["loss_steps"]:
        value = loss(step["u"], step["y"], step["ind"])
        assert value.item() == pytest.approx(step["loss"].item(), abs=1e-5)


def test_hand_computed_two_item_bank():
    # bank of 3, two similar items written in one call, the third row still empty
    loss = WeightedLikelihoodLoss(num_train=3, num_classes=2, bits=2, alpha=0.5)
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    value = loss(u, y, torch.tensor([0, 1])).item()
    # theta rows: [1, 0, 0], [0, 1, 0]; s rows: [1, 1, 0], [1, 1, 0] -> S1 = 4, S0 = 2, S = 6
    log2, l_pos_1 = math.log(2), math.log1p(math.exp(-1))  # l(theta=1, s=1) = log(1+e^1) - 1
    positives = 2 * l_pos_1 + 2 * log2  # (theta=1, s=1) twice, (theta=0, s=1) twice
    negatives = 2 * log2  # (theta=0, s=0) twice: the empty third row
    expected = (positives * 6 / 4 + negatives * 6 / 2) / 6
    assert value == pytest.approx(expected, abs=1e-6)


def test_gradient_matches_the_closed_form():
    torch.manual_seed(0)
    n, k, bits, alpha = 12, 4, 8, 0.5
    loss = WeightedLikelihoodLoss(n, k, bits, alpha)
    # fill the bank first
    loss(torch.tanh(torch.randn(n, bits)), torch.eye(k)[torch.arange(n) % k], torch.arange(n))
    u = torch.tanh(torch.randn(5, bits)).requires_grad_()
    y = torch.eye(k)[torch.tensor([0, 1, 1, 2, 3])]
    ind = torch.tensor([0, 5, 2, 7, 11])
    loss(u, y, ind).backward()
    # d/du_i = sum_j w_ij (sigmoid(theta_ij) - s_ij) alpha U_j / S, the bank being a constant
    U, Y = loss.U, loss.Y
    s = (y @ Y.T > 0).float()
    theta = alpha * u.detach() @ U.T
    w = torch.where(s > 0, s.numel() / s.sum(), s.numel() / (s.numel() - s.sum()))
    expected = (w * (torch.sigmoid(theta) - s)) @ (alpha * U) / s.numel()
    torch.testing.assert_close(u.grad, expected, atol=1e-6, rtol=1e-5)


def test_bank_keeps_the_latest_codes_and_labels():
    loss = WeightedLikelihoodLoss(num_train=4, num_classes=3, bits=2)
    u = torch.tensor([[0.5, -0.5]], requires_grad=True)
    loss(u, torch.tensor([[0.0, 1.0, 1.0]]), torch.tensor([2]))
    assert torch.equal(loss.U[2], torch.tensor([0.5, -0.5])) and not loss.U.requires_grad
    assert torch.equal(loss.Y[2], torch.tensor([0.0, 1.0, 1.0]))
    assert torch.count_nonzero(loss.U[[0, 1, 3]]) == 0
    assert set(loss.state_dict()) == {"U", "Y"}  # checkpoints carry the bank


def test_multi_label_similarity_is_a_shared_class():
    loss = WeightedLikelihoodLoss(num_train=2, num_classes=3, bits=1, alpha=1.0)
    loss(torch.tensor([[0.0]]), torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([1]))
    # a query sharing class 1 with item 1: theta = 0 everywhere, so only the weights differ
    value = loss(torch.tensor([[0.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0]))
    # s = [1, 1] (item 0 is itself, item 1 shares class 1) -> S0 = 0, all pairs weigh S/S1 = 1
    assert value.item() == pytest.approx(math.log(2), abs=1e-7)


def test_no_positive_pair_stays_finite_and_bf16_codes_are_accepted():
    loss = WeightedLikelihoodLoss(num_train=8, num_classes=2, bits=4)
    value = loss(torch.randn(2, 4).tanh().bfloat16(), torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]))
    assert torch.isfinite(value) and value.dtype == torch.float32


def test_pairwise_likelihood_is_stable_for_large_theta():
    theta = torch.tensor([-1000.0, 0.0, 1000.0])
    values = pairwise_likelihood(theta, torch.tensor([0.0, 1.0, 1.0]))
    torch.testing.assert_close(values, torch.tensor([0.0, math.log(2), 0.0]))


@pytest.mark.parametrize(
    "u, y, ind, message",
    [
        (torch.zeros(2, 5), torch.zeros(2, 3), torch.tensor([0, 1]), r"u must have shape \(B, 4\)"),
        (torch.zeros(2, 4), torch.zeros(2, 2), torch.tensor([0, 1]), r"y must have shape \(2, 3\)"),
        (torch.zeros(2, 4), torch.zeros(2, 3), torch.tensor([0]), r"ind must have shape \(2,\)"),
        (torch.zeros(2, 4), torch.zeros(2, 3), torch.tensor([0, 10]), r"ind must lie in \[0, 10\)"),
    ],
)
def test_bad_inputs_raise(u, y, ind, message):
    with pytest.raises(ValueError, match=message):
        WeightedLikelihoodLoss(num_train=10, num_classes=3, bits=4)(u, y, ind)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="num_train must be a positive integer"):
        WeightedLikelihoodLoss(0, 3, 4)
    with pytest.raises(ValueError, match="alpha must be positive"):
        WeightedLikelihoodLoss(10, 3, 4, alpha=0)
    with pytest.raises(TypeError):  # the quantisation term belongs to DPSH, not to this loss
        WeightedLikelihoodLoss(10, 3, 4, quantization=0.5)


def test_binary_bank_stores_signs_and_scores_relaxed_codes_against_them():
    # bank of 3 as in the two-item test, but holding signs: 0 counts as +1, as when encoding
    loss = WeightedLikelihoodLoss(num_train=3, num_classes=2, bits=2, alpha=0.5, binary_bank=True)
    u = torch.tensor([[0.5, 0.0], [0.25, -0.75]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    value = loss(u, y, torch.tensor([0, 1]))
    assert torch.equal(loss.U, torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]))

    # theta = 0.5 * u . sign(U): rows [0.25, 0.25, 0], [-0.25, 0.5, 0]; s rows [1, 1, 0] twice
    def nll(theta, s):
        return math.log1p(math.exp(theta)) - s * theta

    positives = nll(0.25, 1) + nll(0.25, 1) + nll(-0.25, 1) + nll(0.5, 1)
    negatives = 2 * math.log(2)  # the empty third row
    assert value.item() == pytest.approx((positives * 6 / 4 + negatives * 6 / 2) / 6, abs=1e-6)
    # gradients reach the relaxed codes, not the bank
    value.backward()
    assert u.grad is not None and torch.count_nonzero(u.grad) > 0 and not loss.U.requires_grad


def test_binary_bank_is_the_relaxed_loss_when_the_codes_are_already_binary():
    torch.manual_seed(0)
    u = torch.tanh(torch.randn(6, 8)).sign()
    y = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    ind = torch.arange(6)
    assert torch.allclose(
        WeightedLikelihoodLoss(6, 3, 8, binary_bank=True)(u, y, ind), WeightedLikelihoodLoss(6, 3, 8)(u, y, ind)
    )
    relaxed = torch.tanh(torch.randn(6, 8))
    assert not torch.allclose(
        WeightedLikelihoodLoss(6, 3, 8, binary_bank=True)(relaxed, y, ind),
        WeightedLikelihoodLoss(6, 3, 8)(relaxed, y, ind),
    )


def test_smoothing_moves_the_pair_targets_off_zero_and_one():
    # bank of 2 holding signs: row 0 is written with sign(u) itself, row 1 holds the code of another class
    s = 0.1
    loss = WeightedLikelihoodLoss(num_train=2, num_classes=2, bits=2, binary_bank=True, smoothing=s)
    loss.U[1] = torch.tensor([1.0, -1.0])
    loss.Y[1] = torch.tensor([0.0, 1.0])
    u = torch.tensor([[1.0, -1.0]])
    value = loss(u, torch.tensor([[1.0, 0.0]]), torch.tensor([0])).item()

    # theta = 0.5 * u . U = 1 for both: row 0 similar, row 1 dissimilar; one pair of each, two in all
    def nll(theta, target):
        return math.log1p(math.exp(theta)) - target * theta

    expected = (nll(1.0, 1 - s / 2) * 2 / 1 + nll(1.0, s / 2) * 2 / 1) / 2
    assert value == pytest.approx(expected, abs=1e-6)
    # the paper's loss is smoothing 0, and a bounded target stops pulling at a finite inner product
    plain = WeightedLikelihoodLoss(num_train=2, num_classes=2, bits=2, binary_bank=True)
    plain.U[1], plain.Y[1] = loss.U[1], loss.Y[1]
    assert plain(u, torch.tensor([[1.0, 0.0]]), torch.tensor([0])).item() == pytest.approx(
        (nll(1.0, 1) * 2 + nll(1.0, 0) * 2) / 2, abs=1e-6
    )
    theta = torch.tensor(10.0, requires_grad=True)
    pairwise_likelihood(theta, torch.tensor(1 - s / 2)).backward()
    assert theta.grad > 0  # past logit(1 - s/2) = 2.9 the smoothed likelihood pushes theta back


def test_smoothing_outside_zero_to_one_raises():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="smoothing must be in"):
            WeightedLikelihoodLoss(10, 3, 4, smoothing=bad)
