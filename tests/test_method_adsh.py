"""ADSH: the coordinate-descent step against brute force, the loss on a hand-computed case, the
alternation's timing, the memory-mapped database codes, the gradient, and clear errors."""

import itertools
import os

import pytest
import torch

from hhlib.methods import ADSH, METHODS
from hhlib.methods.adsh import dcc_bit, dcc_step, soft_similarity


def objective(V, U, S, K, gamma, Ubar):
    """ADSH's objective in V: sum_ij (u_i . v_j - K S_ij)^2 + gamma ||v_i - u_i||^2 over the sampled rows."""
    sampled = Ubar.abs().sum(1) > 0
    return ((U @ V.T - K * S.T) ** 2).sum() + gamma * ((V - Ubar)[sampled] ** 2).sum()


def test_attributes_defaults_and_registry():
    assert ADSH.name == "adsh" and ADSH.family == "asymmetric" and ADSH.database == "learned"
    assert ADSH.trains_on == "database" and METHODS["adsh"] is ADSH and ADSH.output == "tanh"
    assert ADSH.defaults() == {"gamma": 200.0, "samples": 2000, "inner_epochs": 3, "seed": 0}


def test_soft_similarity():
    a, b = torch.eye(2)[[0, 1]], torch.eye(2)[[0, 0, 1]]
    assert soft_similarity(a, b, 0.25).tolist() == [[1, 1, -0.25], [-0.25, -0.25, 1]]


def test_each_bit_of_the_dcc_step_is_the_brute_force_minimiser_of_its_column():
    generator = torch.Generator().manual_seed(0)
    n, m, K, gamma = 4, 3, 3, 2.0
    U = torch.rand(m, K, generator=generator, dtype=torch.float64) * 2 - 1  # the sample's codes
    S = torch.where(torch.rand(n, m, generator=generator) > 0.5, 1.0, -0.5).double()  # database x sample
    Ubar = torch.zeros(n, K, dtype=torch.float64)
    Ubar[[0, 2]] = U[:2]  # database rows 0 and 2 are sample items 0 and 1
    Q = -2 * K * S @ U - 2 * gamma * Ubar
    V = torch.where(torch.rand(n, K, generator=generator) > 0.5, 1, -1).to(torch.int8)
    G = U.T @ U
    for k in range(K):
        # the best column k by brute force over its 2^n values, the other columns as the sweep left them
        def with_column(col, k=k):
            return torch.cat([V[:, :k], torch.tensor(col, dtype=V.dtype)[:, None], V[:, k + 1 :]], 1)

        best = min(
            itertools.product([-1, 1], repeat=n),
            key=lambda col: objective(with_column(col).double(), U, S, K, gamma, Ubar).item(),
        )
        dcc_bit(V, G, Q, k)
        assert V[:, k].tolist() == list(best), k


def test_a_full_sweep_never_raises_the_objective():
    generator = torch.Generator().manual_seed(1)
    n, m, K, gamma = 30, 8, 6, 200.0
    U = torch.rand(m, K, generator=generator, dtype=torch.float64) * 2 - 1
    S = torch.where(torch.rand(n, m, generator=generator) > 0.7, 1.0, -0.3).double()
    Ubar = torch.zeros(n, K, dtype=torch.float64)
    Ubar[:m] = U
    Q = -2 * K * S @ U - 2 * gamma * Ubar
    V = torch.where(torch.rand(n, K, generator=generator) > 0.5, 1, -1).to(torch.int8)
    values = [objective(V.double(), U, S, K, gamma, Ubar).item()]
    for _ in range(4):
        dcc_step(V, U, Q)
        values.append(objective(V.double(), U, S, K, gamma, Ubar).item())
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:])) and values[-1] < values[0]
    assert set(V.unique().tolist()) <= {-1, 1}


def method_on(labels, **options):
    method = ADSH(2, **options)
    method.setup(labels)
    method.prepare(labels)
    return method


def test_hand_computed_loss():
    labels = torch.eye(2)[[0, 1]]  # two database images, dissimilar: r = 2 similar / 2 dissimilar = 1
    method = method_on(labels, gamma=0.5)
    method.V.copy_(torch.tensor([[1, 1], [1, -1]], dtype=torch.int8))
    method.begin_epoch(1, 3)
    u = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    value = method(u, labels[:1].double(), torch.tensor([0])).item()
    # u . v = (1, 0); K S = 2 * (1, -1): squares (1 - 2)^2 + (0 + 2)^2 = 5; gamma ||v_0 - u||^2 = 0.5 * 0.5
    assert value == pytest.approx((5 + 0.25) / (2 * 1))


def test_v_is_learned_after_each_outer_iteration_and_at_the_end_only():
    labels = torch.eye(2)[torch.arange(12) % 2]
    method = method_on(labels, samples=6, inner_epochs=2)
    for epoch in (1, 2, 3):
        method.begin_epoch(epoch, 3)
        sample = method.epoch_indices(epoch, 12)
        assert len(sample) == 6 and method.epoch_size(12) == 6
        before = method.V.clone()
        sign = -1.0 if epoch == 3 else 1.0  # the last epoch's codes swap the classes' codes: V must follow
        u = torch.tanh(torch.randn(6, 2)) + sign * labels[sample] @ torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
        method(u.clamp(-0.99, 0.99), labels[sample], sample)
        method.end_epoch(epoch)
        changed = not torch.equal(before, method.V)
        assert changed == (epoch in (2, 3)), epoch  # after the 2-epoch iteration, and after the last epoch
    assert torch.equal(method.epoch_indices(1, 12), method.epoch_indices(2, 12))  # one sample per iteration
    assert not torch.equal(method.epoch_indices(2, 12), method.epoch_indices(3, 12))
    codes = method.database_codes()
    assert codes.shape == (12, 2) and set(codes.unique().tolist()) <= {-1, 1}
    # images of a class share their code: V follows the labels
    assert len({tuple(row) for row in codes[labels[:, 0] == 1].tolist()}) == 1


def test_database_codes_are_memory_mapped_and_travel_with_the_state_dict():
    labels = torch.eye(3)[torch.arange(50) % 3]
    method = method_on(labels)
    assert os.fstat(method._file.fileno()).st_size == 50 * 2  # one byte per bit, on disk
    method.V.copy_(torch.where(torch.rand(50, 2) > 0.5, 1, -1).to(torch.int8))
    restored = method_on(labels)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.V, method.V) and "Y" not in method.state_dict()


def test_gradcheck():
    labels = torch.eye(2)[torch.arange(6) % 2]
    method = method_on(labels, gamma=3.0).double()
    method.V.copy_(torch.where(torch.rand(6, 2) > 0.5, 1, -1).to(torch.int8))
    u = (torch.rand(3, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    sample = method.epoch_indices(1, 6)[:3]
    assert torch.autograd.gradcheck(lambda v: method(v, labels[sample].double(), sample), (u,))


def test_rows_outside_the_sample_and_bad_options_are_clear_errors():
    labels = torch.eye(2)[torch.arange(10) % 2]
    method = method_on(labels, samples=4)
    outside = sorted(set(range(10)) - set(method.epoch_indices(1, 10).tolist()))[:2]
    with pytest.raises(ValueError, match="this epoch's sample"):
        method(torch.zeros(2, 2), labels[outside], torch.tensor(outside))
    for bad in ({"samples": 0}, {"inner_epochs": 1.5}, {"gamma": -1}):
        with pytest.raises(ValueError, match="must be a"):
            ADSH(8, **bad)
