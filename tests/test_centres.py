"""Hash centres: exact distances of Hadamard centres, balanced random ones, the search never losing
ground, the coding bounds on hand-counted cases, multi-label centres, and clear errors."""

import itertools
import math
import runpy
from pathlib import Path

import pytest
import torch

from hhlib.methods import hash_centres
from hhlib.methods.centres import (
    bernoulli_centres,
    centre_distances,
    code_bounds,
    distance_summary,
    label_centres,
    separate,
)


@pytest.mark.parametrize("classes, bits", [(2, 8), (10, 16), (10, 64), (64, 32), (128, 64)])
def test_hadamard_centres_are_exactly_half_the_bits_apart(classes, bits):
    c = hash_centres(classes, bits, "hadamard")
    assert c.shape == (classes, bits) and set(c.unique().tolist()) == {-1.0, 1.0}
    d = centre_distances(c)
    pairs = d[torch.triu_indices(classes, classes, offset=1).unbind()]
    # a row and its negation are bits apart; every other pair bits / 2
    negations = [(i, i + bits) for i in range(bits) if i + bits < classes]
    assert all(d[i, j] == bits for i, j in negations)
    assert distance_summary(c)["min"] == bits // 2 and (pairs == bits // 2).sum() == len(pairs) - len(negations)


def test_bernoulli_centres_are_balanced_and_seeded():
    c = hash_centres(30, 17, "bernoulli", seed=3)
    assert ((c == -1).sum(1) == 8).all()  # bits // 2 entries -1 in every centre
    assert torch.equal(c, hash_centres(30, 17, "bernoulli", seed=3))
    assert not torch.equal(c, hash_centres(30, 17, "bernoulli", seed=4))


@pytest.mark.parametrize("classes, bits, seed", [(10, 16, 0), (10, 64, 1), (40, 24, 2), (7, 9, 3)])
def test_optimised_centres_are_never_worse_than_the_random_ones_they_start_from(classes, bits, seed):
    start = bernoulli_centres(classes, bits, torch.Generator().manual_seed(seed))
    found = separate(start, steps=300, generator=torch.Generator().manual_seed(seed))
    before, after = distance_summary(start), distance_summary(found)
    assert after["min"] >= before["min"] and after["min"] <= code_bounds(classes, bits)["plotkin"]
    assert set(found.unique().tolist()) <= {-1.0, 1.0}


def test_min_distance_centres_reach_the_plotkin_bound_where_hadamard_does_not():
    # 10 classes in 64 bits: Hadamard centres are 32 apart; the mean-distance (Plotkin) bound is 35
    assert code_bounds(10, 64)["plotkin"] == 35
    assert distance_summary(hash_centres(10, 64, "min-distance"))["min"] == 35
    assert distance_summary(hash_centres(40, 32, "min-distance"))["min"] >= 16  # never below the Hadamard start


def test_bounds_on_hand_counted_cases():
    # 2 codes of 3 bits: the repetition code {000, 111} reaches 3; the Hamming bound: 2 * V(3, 1) = 8 <= 8
    assert code_bounds(2, 3) == {"gilbert_varshamov": 2, "hamming": 3, "plotkin": 3}
    # 4 codes of 3 bits: GV: 4 * V(3, 1) = 16 > 8 but 4 * V(3, 0) = 4 <= 8, so d = 1 is guaranteed;
    # Hamming: d = 2 needs 4 * V(3, 0) <= 8 (yes), d = 3 needs 4 * V(3, 1) = 16 <= 8 (no);
    # Plotkin: 3 * 2 * 2 // 6 = 2. The even-weight code {000, 011, 101, 110} is 2 apart.
    assert code_bounds(4, 3) == {"gilbert_varshamov": 1, "hamming": 2, "plotkin": 2}
    # exhaustive check of the Plotkin bound: the best 4 codes of 3 bits are 2 apart
    codes = [torch.tensor(c, dtype=torch.float32) for c in itertools.product([-1, 1], repeat=3)]
    best = max(distance_summary(torch.stack(s))["min"] for s in itertools.combinations(codes, 4))
    assert best == 2
    assert code_bounds(1, 5)["plotkin"] == 5
    n, m = 64, 10  # the Gilbert-Varshamov distance is the largest d with m * V(n, d - 1) <= 2^n
    d = code_bounds(m, n)["gilbert_varshamov"]
    volume = lambda r: sum(math.comb(n, i) for i in range(r + 1))  # noqa: E731
    assert m * volume(d - 1) <= 2**n < m * volume(d)


def test_multi_label_centres_are_the_sign_of_the_sum_ties_broken_by_the_fixed_code():
    centres = torch.tensor([[1.0, 1, -1, -1], [1, -1, 1, -1], [-1, -1, -1, 1]])
    tie = torch.tensor([-1.0, 1, 1, -1])
    labels = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    expected = torch.tensor(
        [
            [1.0, 1, -1, -1],  # one class: its centre
            [1, 1, 1, -1],  # sum (2, 0, 0, -2): the zeros take tie's 1, 1
            [1, -1, -1, -1],  # sum (1, -1, -1, -1)
            [-1, 1, 1, -1],  # no label: tie
        ]
    )
    assert torch.equal(label_centres(labels, centres, tie), expected)
    with pytest.raises(ValueError, match=r"labels must have shape \(B, 3\)"):
        label_centres(torch.ones(2, 4), centres, tie)


@pytest.mark.parametrize(
    "args, message",
    [
        ((10, 64, "triangular"), "kind must be one of"),
        ((129, 64, "hadamard"), "at most 128 Hadamard centres"),
        ((10, 48, "hadamard"), "power of 2"),
        ((0, 64, "bernoulli"), "num_classes must be a positive integer"),
        ((10, 2.5, "bernoulli"), "bits must be a positive integer"),
    ],
)
def test_bad_arguments_are_one_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        hash_centres(*args)


def test_the_docs_table_is_what_the_code_gives():
    """docs/methods.md's centres table (tools/centres_table.py write), checked on its quick rows."""
    root = Path(__file__).parents[1]
    tool = runpy.run_path(str(root / "tools" / "centres_table.py"), run_name="centres_table")
    text = (root / "docs" / "methods.md").read_text()
    quick = [case for case in tool["CASES"] if case[0] <= 21]
    assert len(quick) >= 3
    for case in quick:
        assert tool["row"](*case) in text, f"{case}: run python tools/centres_table.py write"
