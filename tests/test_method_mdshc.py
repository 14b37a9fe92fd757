"""MDSHC: min-distance centres, the cosine softmax and positive-pair terms on hand-computed batches,
the epoch the pair term starts, its gradient, its checks."""

import math

import pytest
import torch

from hhlib.methods import MDSHC, METHODS
from hhlib.methods.centres import distance_summary


def prepared(bits=4, classes=2, train=None, **options):
    method = MDSHC(bits, **options)
    labels = torch.eye(classes) if train is None else train
    method.setup(labels)
    method.prepare(labels)
    return method


def test_attributes_defaults_and_registry():
    assert MDSHC.name == "mdshc" and MDSHC.family == "central" and MDSHC.output == "tanh"
    assert METHODS["mdshc"] is MDSHC and len(MDSHC.stages) == 2
    assert MDSHC.defaults() == {"beta": 1.0, "lam": 1e-4, "pair_start": 10, "centres": "min-distance", "seed": 0}


def test_centres_are_the_min_distance_ones():
    method = prepared(64, 10)
    assert distance_summary(method.class_centres)["min"] == 35  # Hadamard rows would be 32 apart


def test_hand_computed_centre_and_quantisation_terms():
    method = prepared(4, 2, lam=0.5, centres="hadamard")  # centres (1, 1, 1, 1) and (1, -1, 1, -1)
    u = torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    value = method(u, y, torch.arange(1)).item()  # epoch 1: no pair term
    # cos with the centres: 1 and 0; logits sqrt(4) * (1, 0) = (2, 0); p = (e^2, 1) / (e^2 + 1)
    p = math.exp(2) / (math.exp(2) + 1)
    centre = -(math.log(p) + math.log(p)) / 2  # s = (1, 0): log p_0 and log(1 - p_1) = log p_0
    assert value == pytest.approx(centre + 0.5 * 0.25)


def test_pair_term_starts_at_its_epoch_and_counts_only_similar_pairs():
    train = torch.eye(2)[[0, 0, 1]]
    method = prepared(4, 2, train=train, lam=0.0, centres="hadamard", pair_start=3)
    first = torch.tensor([[1.0, 1, 1, -1], [1, 1, -1, -1], [-1, 1, 1, 1]], dtype=torch.float64)
    method(first, train.double(), torch.arange(3))  # writes the bank
    u = torch.tensor([[1.0, 1, 1, 1]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0]], dtype=torch.float64)
    method.begin_epoch(2, 5)
    without = method(u, y, torch.tensor([0])).item()  # writes u over bank row 0
    method.begin_epoch(3, 5)
    with_pairs = method(u, y, torch.tensor([0])).item()
    # similar rows of the bank: 0 (now u itself, cos 1) and 1 (cos(u, (1, 1, -1, -1)) = 0)
    pairs = (math.log(1 + math.exp(0)) + math.log(1 + math.exp(0.5))) / 2
    assert with_pairs - without == pytest.approx(pairs)


def test_gradcheck():
    train = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    method = prepared(8, 3, train=train, pair_start=1).double()
    generator = torch.Generator().manual_seed(0)
    method(torch.rand(6, 8, generator=generator, dtype=torch.float64) - 0.5, train.double(), torch.arange(6))
    u = (torch.rand(3, 8, generator=generator, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    # each image of the batch (bank rows 0-2) is similar to itself, a constant term, and to one
    # fixed row (3-5): so the loss depends on u only through the terms autograd differentiates
    assert torch.autograd.gradcheck(lambda v: method(v, train[:3].double(), torch.arange(3)), (u,))


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="pair_start must be a positive integer"):
        MDSHC(8, pair_start=0)
    with pytest.raises(ValueError, match="beta must be a non-negative number"):
        MDSHC(8, beta=-0.1)
    with pytest.raises(ValueError, match="centres must be one of"):
        MDSHC(8, centres="far")
