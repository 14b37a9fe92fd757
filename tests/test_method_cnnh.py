"""CNNH: stage 1's factorisation against the plain entrywise algorithm, stage 2's regression loss."""

import numpy as np
import pytest
import torch

from hhlib.methods.cnnh import CNNH, factorization_objective, factorize_similarity


def prepared(labels, bits, **options):
    method = CNNH(bits, **options)
    method.setup(labels)
    method.prepare(labels)
    return method


def test_hand_computed_loss():
    method = CNNH(2)
    method.setup(torch.eye(3))
    method.H.copy_(torch.tensor([[0.5, -0.2], [-1.0, 1.0], [0.3, 0.9]]))
    u = torch.tensor([[0.5, 0.0], [0.0, 1.0]])
    # targets sign(H[[0, 1]]) = [[1, -1], [-1, 1]]; u - t = [[-0.5, 1], [1, 0]]
    # squares 0.25 + 1 + 1 + 0 = 2.25, mean 0.5625, on the {0, 1} scale (divided by 4): 0.140625
    assert method(u, torch.eye(3)[:2], torch.tensor([0, 1])).item() == pytest.approx(0.140625, abs=1e-12)
    # the relaxed targets instead: u - H = [[0, 0.2], [1, 0]] -> (0.04 + 1) / 4 / 4 = 0.065
    relaxed = CNNH(2, binary_targets=False)
    relaxed.setup(torch.eye(3))
    relaxed.H.copy_(method.H)
    assert relaxed(u, torch.eye(3)[:2], torch.tensor([0, 1])).item() == pytest.approx(0.065, abs=1e-7)


def reference_stage_one(labels, bits, sweeps, seed):
    """The paper's algorithm as written: R = H H^T - K S kept whole, one entry at a time."""
    y = labels.double().numpy()
    s = np.where(y @ y.T > 0, 1.0, -1.0)
    rng = np.random.default_rng(seed)
    h = rng.uniform(-1.0, 1.0, size=(len(y), bits))
    r = h @ h.T - bits * s
    for _ in range(sweeps):
        for i in rng.permutation(len(y)):
            for j in rng.permutation(bits):
                grad = 4 * r[i] @ h[:, j]
                curvature = 4 * (h[:, j] @ h[:, j] + h[i, j] ** 2 + r[i, i])
                if curvature <= 0:
                    continue
                d = min(max(-grad / curvature, -1 - h[i, j]), 1 - h[i, j])
                trial = h.copy()
                trial[i, j] += d
                if d == 0 or ((trial @ trial.T - bits * s) ** 2).sum() >= (r**2).sum():
                    continue  # the safeguard: no step that raises the objective
                column = h[:, j].copy()
                r[i] += d * column
                r[:, i] += d * column
                r[i, i] += d * d
                h[i, j] += d
    return h


def test_stage_one_equals_the_entrywise_algorithm():
    torch.manual_seed(0)
    labels = torch.eye(3)[torch.randint(0, 3, (10,))]
    labels[4] = 0  # an image without labels: similar to nothing, itself included
    h, _ = factorize_similarity(labels, 4, sweeps=2, seed=3)
    np.testing.assert_allclose(h.numpy(), reference_stage_one(labels, 4, 2, 3), atol=1e-12)


def test_objective_against_the_dense_formula():
    torch.manual_seed(0)
    labels = (torch.rand(9, 3) < 0.4).double()
    h = torch.rand(9, 5, dtype=torch.float64) * 2 - 1
    s = torch.where(labels @ labels.T > 0, 1.0, -1.0).double()
    expected = ((s - h @ h.T / 5) ** 2).mean().item()
    assert factorization_objective(h, labels, chunk=4) == pytest.approx(expected, rel=1e-12)


def test_stage_one_codes_agree_within_classes_and_the_objective_decreases():
    classes = torch.arange(40) % 4
    labels = torch.eye(4)[classes]
    method = prepared(labels, 8, sweeps=10)
    history = method.history
    assert len(history) == 11 and all(b <= a for a, b in zip(history, history[1:]))
    assert history[-1] < 0.5 * history[0]
    codes = torch.sign(method.H)
    for c in range(4):
        assert (codes[classes == c] == codes[classes == c][0]).all()  # one code per class
    distinct = {tuple(codes[classes == c][0].tolist()) for c in range(4)}
    assert len(distinct) == 4
    assert set(method.state_dict()) == {"H"}  # the targets travel with the checkpoint


def test_gradcheck_of_the_loss():
    torch.manual_seed(0)
    labels = torch.eye(2)[torch.arange(6) % 2]
    method = prepared(labels, 4, sweeps=2).double()
    u = torch.tanh(torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
    ind = torch.tensor([0, 3, 5, 2])
    assert torch.autograd.gradcheck(lambda u: method(u, labels[ind].double(), ind), (u,))


def test_bad_input_raises_clear_errors():
    labels = torch.eye(2)[torch.arange(6) % 2]
    method = CNNH(4)
    method.setup(labels)
    with pytest.raises(RuntimeError, match="run prepare"):
        method(torch.zeros(2, 4), labels[:2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(6, num_classes\)"):
        method.prepare(labels[:5])
    method.prepare(labels)
    with pytest.raises(ValueError, match=r"u must have shape \(B, 4\)"):
        method(torch.zeros(2, 3), labels[:2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"ind must have shape \(2,\)"):
        method(torch.zeros(2, 4), labels[:2], torch.tensor([0]))
    with pytest.raises(ValueError, match=r"ind must lie in \[0, 6\)"):
        method(torch.zeros(2, 4), labels[:2], torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="sweeps"):
        CNNH(4, sweeps=0)


def test_the_targets_score_lower_than_random_codes():
    torch.manual_seed(0)
    labels = torch.eye(4)[torch.randint(0, 4, (30,))]
    method = prepared(labels, 8, sweeps=3)
    ind = torch.randperm(30)[:12]
    targets = method.targets(ind)
    assert method(targets, labels[ind], ind).item() == 0.0
    assert method(torch.rand(12, 8) * 2 - 1, labels[ind], ind).item() > 0.1
