"""Retrieval metrics: hand-computed cases, brute-force agreement, exact tie expectations, input checks."""

import itertools
import json

import numpy as np
import pytest
import torch

from hhlib.metrics import (
    RetrievalScores,
    _prepare_labels,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
    retrieval_scores,
)
from hhlib.relevance import relevant

QUERY = np.ones((1, 4))  # 4-bit query of all +1: an item's distance is its number of -1


def at(*distances):
    """Database codes at the given Hamming distances from QUERY."""
    return np.array([[1] * (4 - d) + [-1] * d for d in distances])


def approx(value):
    return pytest.approx(value, rel=0, abs=1e-12)


# -- hand-computed cases --------------------------------------------------------
# Case A: distances (1, 1, 0), relevant (no, yes, yes). By (distance, index) the
# ranking is item 2 (relevant), item 0, item 1 (relevant): relevant ranks 1 and 3.
A_DB, A_LABELS = at(1, 1, 0), np.array([0, 1, 1])


def test_ties_by_index():
    assert mean_average_precision(QUERY, A_DB, [1], A_LABELS) == approx((1 / 1 + 2 / 3) / 2)


def test_ties_expected():
    # the d=1 group puts its relevant item at rank 2 (precision 2/2) or 3 (2/3), each with probability 1/2
    want = (1 / 1 + (1 / 2) * (2 / 2) + (1 / 2) * (2 / 3)) / 2
    assert mean_average_precision(QUERY, A_DB, [1], A_LABELS, ties="expected") == approx(want)


def test_topk_and_queries_without_relevant_items():
    assert mean_average_precision(QUERY, A_DB, [1], A_LABELS, topk=2) == approx(1 / 1)  # top 2: item 2, item 0
    assert mean_average_precision(QUERY, A_DB, [1], A_LABELS, topk=99) == approx((1 / 1 + 2 / 3) / 2)  # K > N: all
    # a second query whose class is absent from the database counts 0
    two = np.vstack([QUERY, QUERY])
    assert mean_average_precision(two, A_DB, [1, 5], A_LABELS) == approx(((1 / 1 + 2 / 3) / 2 + 0) / 2)


def test_expected_when_the_cut_splits_a_tie_group():
    # distances (0, 1, 1, 1), only item 1 relevant, K = 2: the cut takes 1 of the 3 items at d=1
    db, labels = at(0, 1, 1, 1), np.array([0, 1, 0, 0])
    assert mean_average_precision(QUERY, db, [1], labels, topk=2) == approx((1 / 2) / 1)
    # expected: relevant item in the top 2 with probability 1/3 (AP = 1/2), else AP = 0 (not 1/2:
    # R_K is random, so this is not a ratio of expectations)
    assert mean_average_precision(QUERY, db, [1], labels, topk=2, ties="expected") == approx((1 / 3) * (1 / 2))
    # over all ranks: the relevant item is at rank 2, 3 or 4 with probability 1/3 each
    assert mean_average_precision(QUERY, db, [1], labels, ties="expected") == approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_multi_label():
    # query classes {0, 2}; items: {1} d0, {2} d2, {0, 1} d1, {1} d1, {} d3
    db = at(0, 2, 1, 1, 3)
    labels = np.array([[0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    query = np.array([[1, 0, 1]])
    # ranking: item 0, item 2 (relevant), item 3, item 1 (relevant), item 4
    assert mean_average_precision(QUERY, db, query, labels) == approx((1 / 2 + 2 / 4) / 2)
    assert mean_average_precision(QUERY, db, query, labels, topk=3) == approx((1 / 2) / 1)


def test_one_hot_equals_class_ids():
    one_hot = np.eye(3, dtype=np.float32)
    assert mean_average_precision(QUERY, A_DB, one_hot[[1]], one_hot[A_LABELS]) == approx((1 / 1 + 2 / 3) / 2)


def test_precision_at_k():
    np.testing.assert_allclose(precision_at_k(QUERY, A_DB, [1], A_LABELS, ks=[1, 2, 3]), [1 / 1, 1 / 2, 2 / 3])
    # expected: top 2 = item 2 (relevant) + one of the two d=1 items (relevant with probability 1/2)
    np.testing.assert_allclose(precision_at_k(QUERY, A_DB, [1], A_LABELS, ks=[2], ties="expected"), [(1 + 1 / 2) / 2])


def test_precision_within_radius():
    assert precision_within_radius(QUERY, A_DB, [1], A_LABELS, radius=0) == approx(1 / 1)
    assert precision_within_radius(QUERY, A_DB, [1], A_LABELS, radius=1) == approx(2 / 3)
    # second query (all -1) is at distance 3, 3 and 4 from the items: retrieves nothing within 2, counts 0
    two = np.vstack([QUERY, -QUERY])
    assert precision_within_radius(two, A_DB, [1, 1], A_LABELS) == approx((2 / 3 + 0) / 2)


def test_precision_recall_curve():
    # query 1 as in case A; query 2 has no relevant item in the database
    precision, recall = precision_recall_curve(np.vstack([QUERY, QUERY]), A_DB, [1, 7], A_LABELS)
    np.testing.assert_allclose(precision, np.array([1, 2 / 3, 2 / 3, 2 / 3, 2 / 3]) / 2)
    np.testing.assert_allclose(recall, np.array([1 / 2, 1, 1, 1, 1]) / 2)
    assert precision[2] == approx(precision_within_radius(np.vstack([QUERY, QUERY]), A_DB, [1, 7], A_LABELS))


# -- agreement with a brute-force stable sort ------------------------------------


def brute_map(query_codes, db_codes, query_labels, db_labels, topk):
    dist = (query_codes.shape[1] - query_codes @ db_codes.T) / 2
    if query_labels.ndim == 1:
        relevant = query_labels[:, None] == db_labels[None, :]
    else:
        relevant = query_labels @ db_labels.T > 0
    aps = []
    for row, rel in zip(dist, relevant, strict=True):
        hits = rel[np.argsort(row, kind="stable")][:topk]
        ranks = np.flatnonzero(hits) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks) if len(ranks) else 0.0)
    return np.mean(aps)


def random_problem(rng, n_queries, n_items, bits, multi_label):
    codes = rng.choice([-1.0, 1.0], size=(n_queries + n_items, bits))
    if multi_label:
        labels = (rng.random((n_queries + n_items, 5)) < 0.3).astype(np.int64)
    else:
        labels = rng.integers(0, 4, n_queries + n_items)
    return codes[:n_queries], codes[n_queries:], labels[:n_queries], labels[n_queries:]


# bits=12 exercises the NumPy ranking; bits=64 with a short top-k exercises faiss' counting top-k
@pytest.mark.parametrize("bits", [12, 64])
@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize(("n_queries", "n_items"), [(1, 1), (7, 50), (40, 700)])
def test_index_ties_match_stable_sort(bits, multi_label, n_queries, n_items):
    rng = np.random.default_rng(bits + n_items + multi_label)
    problem = random_problem(rng, n_queries, n_items, bits, multi_label)
    for topk in {None, 1, 10, n_items // 2 + 1, n_items}:
        want = brute_map(*problem, topk or n_items)
        assert mean_average_precision(*problem, topk=topk) == approx(want), topk
    for ks in ([1, max(1, n_items // 3), n_items], [1, min(5, n_items)]):
        want = [brute_relevant(*problem)[0][:, :k].mean() for k in ks]
        np.testing.assert_allclose(precision_at_k(*problem, ks=ks), want, rtol=0, atol=1e-12)


def brute_relevant(query_codes, db_codes, query_labels, db_labels):
    """Relevance in stable-sorted rank order, and the sorted distances."""
    dist = (query_codes.shape[1] - query_codes @ db_codes.T) / 2
    if query_labels.ndim == 1:
        relevant = query_labels[:, None] == db_labels[None, :]
    else:
        relevant = query_labels @ db_labels.T > 0
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(relevant, order, axis=1), np.take_along_axis(dist, order, axis=1)


@pytest.mark.parametrize("multi_label", [False, True])
def test_radius_metrics_match_brute_force(multi_label):
    rng = np.random.default_rng(7)
    problem = random_problem(rng, 30, 400, 10, multi_label)
    relevant, dist = brute_relevant(*problem)
    precision, recall = precision_recall_curve(*problem)
    for radius in range(11):
        inside = dist <= radius
        found, retrieved = (relevant & inside).sum(1), inside.sum(1)
        want_p = np.mean(np.where(retrieved > 0, found / np.maximum(retrieved, 1), 0))
        want_r = np.mean(np.where(relevant.sum(1) > 0, found / np.maximum(relevant.sum(1), 1), 0))
        assert precision[radius] == approx(want_p) and recall[radius] == approx(want_r)
        assert precision_within_radius(*problem, radius=radius) == approx(want_p)


# -- ties="expected" against an explicit average over all orders -------------------


def average_over_tie_orders(query, db, query_label, db_labels, k, metric):
    dist = ((len(query) - db @ query) / 2).astype(int)
    groups = [np.flatnonzero(dist == d) for d in np.unique(dist)]
    values = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        relevant = db_labels[np.concatenate(orders)[:k]] == query_label
        values.append(metric(relevant))
    return np.mean(values)


def ap_of(relevant):
    ranks = np.flatnonzero(relevant) + 1
    return np.mean(np.arange(1, len(ranks) + 1) / ranks) if len(ranks) else 0.0


def test_expected_matches_average_over_permutations():
    rng = np.random.default_rng(0)
    for _ in range(12):
        bits, n_items = int(rng.integers(2, 4)), int(rng.integers(1, 7))
        queries, db = rng.choice([-1, 1], size=(2, bits)), rng.choice([-1, 1], size=(n_items, bits))
        query_labels, db_labels = rng.integers(0, 2, 2), rng.integers(0, 2, n_items)
        for k in range(1, n_items + 1):
            want = [
                average_over_tie_orders(q, db, ql, db_labels, k, ap_of)
                for q, ql in zip(queries, query_labels, strict=True)
            ]
            got = mean_average_precision(queries, db, query_labels, db_labels, topk=k, ties="expected")
            assert got == approx(np.mean(want)), k
            want_p = [
                average_over_tie_orders(q, db, ql, db_labels, k, np.mean)
                for q, ql in zip(queries, query_labels, strict=True)
            ]
            assert precision_at_k(queries, db, query_labels, db_labels, ks=[k], ties="expected")[0] == approx(
                np.mean(want_p)
            )


# -- input conventions --------------------------------------------------------------


def test_torch_and_packed_inputs_give_the_same_values():
    rng = np.random.default_rng(1)
    q, db, ql, dl = random_problem(rng, 5, 60, 12, multi_label=True)
    want = mean_average_precision(q, db, ql, dl, topk=20)
    as_torch = [torch.from_numpy(x) for x in (q, db, ql, dl)]
    assert mean_average_precision(*as_torch, topk=20) == approx(want)
    packed_q, packed_db = np.packbits(q > 0, axis=1), np.packbits(db > 0, axis=1)
    assert mean_average_precision(packed_q, packed_db, ql, dl, topk=20, bits=12) == approx(want)
    assert mean_average_precision(packed_q, db, ql, dl, topk=20, bits=12) == approx(want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_codes": np.ones((2, 3))}, "query_codes have 3 bits per code but db_codes have 4"),
        ({"db_codes": np.full((3, 4), 0.5)}, "db_codes must contain only -1 and \\+1"),
        ({"db_codes": np.ones((0, 4))}, "db_codes is empty"),
        ({"query_labels": [1, 0, 1]}, "query_labels has 3 rows but query_codes has 2"),
        ({"db_labels": np.eye(3)}, "both be class ids"),
        ({"db_labels": [0.0, 1.0, 1.0]}, "integer class ids"),
        ({"query_labels": np.array([[1, 2], [0, 1]]), "db_labels": np.eye(3)[:, :2]}, "only 0 and 1"),
        ({"ties": "random"}, "ties must be 'index' or 'expected'"),
        ({"topk": 0}, "topk must be a positive integer"),
        ({"topk": 2.5}, "topk must be a positive integer"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    args = {"query_codes": np.ones((2, 4)), "db_codes": A_DB, "query_labels": [1, 0], "db_labels": A_LABELS}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mean_average_precision(**args)


def test_bad_cutoffs_raise():
    with pytest.raises(ValueError, match="ks must be a non-empty list of integers in 1..3"):
        precision_at_k(QUERY, A_DB, [1], A_LABELS, ks=[4])
    with pytest.raises(ValueError, match="ks must be"):
        precision_at_k(QUERY, A_DB, [1], A_LABELS, ks=[])
    with pytest.raises(ValueError, match="radius must be an integer in 0..4"):
        precision_within_radius(QUERY, A_DB, [1], A_LABELS, radius=5)
    with pytest.raises(ValueError, match="query_codes have 8 bits per code but db_codes have 4"):
        precision_recall_curve(np.ones((1, 8)), A_DB, [1], A_LABELS)


# -- the one evaluator ---------------------------------------------------------------


def test_retrieval_scores_by_hand():
    # case A plus a query (all -1) at distances 3, 3, 4 from the items, whose class 1 is that of items 1, 2
    queries = np.vstack([QUERY, -QUERY])
    scores = retrieval_scores(queries, A_DB, [1, 1], A_LABELS, ks=[1, 3])
    assert isinstance(scores, RetrievalScores)
    assert scores.bits == 4 and scores.topk is None and scores.radius == 2
    # query 2 ranks item 0, item 1 (relevant), item 2 (relevant): AP (1/2 + 2/3) / 2
    assert scores.map_index == approx(((1 / 1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    # query 2: its d=3 group {0, 1} puts item 1 at rank 1 or 2; item 2 is at rank 3
    query2 = ((1 / 1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2
    assert scores.map_expected == approx(((1 / 1 + (1 / 2) * (2 / 2) + (1 / 2) * (2 / 3)) / 2 + query2) / 2)
    assert scores.precision_radius == approx((2 / 3 + 0) / 2) and scores.precision_radius2 == scores.precision_radius
    np.testing.assert_allclose(scores.precision, [1 / 2, 2 / 6, 2 / 6, (2 / 3 + 1 / 2) / 2, 2 / 3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores.recall, [1 / 4, 1 / 2, 1 / 2, 3 / 4, 1], rtol=0, atol=1e-12)
    assert scores.ks.tolist() == [1, 3]
    np.testing.assert_allclose(scores.precision_at, [(1 + 0) / 2, (2 / 3 + 2 / 3) / 2], rtol=0, atol=1e-12)


def assert_same_as_separate_functions(problem, topk, ks, radius):
    scores = retrieval_scores(*problem, topk=topk, ks=ks, radius=radius)
    assert scores.map_index == mean_average_precision(*problem, topk=topk)
    assert scores.map_expected == mean_average_precision(*problem, topk=topk, ties="expected")
    assert scores.precision_radius == precision_within_radius(*problem, radius=radius)
    precision, recall = precision_recall_curve(*problem)
    assert np.array_equal(scores.precision, precision) and np.array_equal(scores.recall, recall)
    assert np.array_equal(scores.precision_at, precision_at_k(*problem, ks=scores.ks))
    return scores


# bits=12: the separate mAP sorts the whole ranking; bits=64 with topk < N: it asks HammingIndex.search
@pytest.mark.parametrize("bits", [12, 64])
@pytest.mark.parametrize("multi_label", [False, True])
def test_retrieval_scores_equal_the_separate_functions_exactly(bits, multi_label):
    rng = np.random.default_rng(3 + bits + multi_label)
    problem = random_problem(rng, 60, 900, bits, multi_label)
    for topk in (None, 1, 50, 900, 5000):
        for ks in (None, [1, 7, 900], [33]):
            scores = assert_same_as_separate_functions(problem, topk, ks, radius=2)
            assert scores.topk == topk
    scores = assert_same_as_separate_functions(problem, 100, [5], radius=bits // 2)
    assert scores.radius == bits // 2


def test_default_cutoffs_and_radius_two():
    rng = np.random.default_rng(5)
    problem = random_problem(rng, 4, 3000, 16, multi_label=False)
    scores = retrieval_scores(*problem)
    assert scores.ks.tolist() == np.unique(np.linspace(1, 1000, 20).round()).astype(int).tolist()
    assert scores.precision_radius2 == precision_within_radius(*problem, radius=2)
    small = retrieval_scores(*random_problem(rng, 2, 5, 16, multi_label=False))
    assert small.ks.tolist() == [1, 2, 3, 4, 5]
    # at another radius the radius-2 property still reads the curve at 2
    other = retrieval_scores(*problem, radius=5)
    assert other.precision_radius2 == other.precision[2]
    assert other.precision_radius == precision_within_radius(*problem, radius=5)


def test_retrieval_scores_to_dict_is_plain_json():
    rng = np.random.default_rng(9)
    scores = retrieval_scores(*random_problem(rng, 5, 40, 8, multi_label=True), topk=np.int64(10), ks=[1, 10])
    data = scores.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["topk"] == 10 and type(data["topk"]) is int and data["ks"] == [1, 10]
    assert data["map_index"] == scores.map_index and data["precision"] == scores.precision.tolist()
    assert data["precision_radius2"] == scores.precision_radius2 and data["radius"] == 2
    assert set(data) == {
        "bits",
        "topk",
        "map_index",
        "map_expected",
        "radius",
        "precision_radius",
        "precision_radius2",
        "precision",
        "recall",
        "ks",
        "precision_at",
    }
    assert all(type(v) is float for key in ("precision", "recall", "precision_at") for v in data[key])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topk": 0}, "topk must be a positive integer"),
        ({"ks": [4]}, "ks must be a non-empty list of integers in 1..3"),
        ({"ks": [0, 1]}, "ks must be"),
        ({"radius": 5}, "radius must be an integer in 0..4"),
        ({"radius": -1}, "radius must be an integer"),
        ({"radius": 1.0}, "radius must be an integer"),
        ({"query_codes": np.ones(4)}, "query_codes must be a 2-D array"),
        ({"db_labels": [0, 1]}, "db_labels has 2 rows but db_codes has 3"),
    ],
)
def test_retrieval_scores_bad_inputs_raise(kwargs, message):
    args = {"query_codes": QUERY, "db_codes": A_DB, "query_labels": [1], "db_labels": A_LABELS}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        retrieval_scores(**args)


# -- relevance: the packed fast path is hhlib.relevance's rule ------------------------


@pytest.mark.parametrize("kind", ["class ids", "one-hot", "multi-hot", "multi-hot, 20 classes"])
def test_packed_relevance_equals_the_relevance_rule(kind):
    rng = np.random.default_rng(11)
    n_classes = 20 if "20" in kind else 5
    if kind == "class ids":
        query, db = rng.integers(0, n_classes, 30), rng.integers(0, n_classes, 200)
    elif kind == "one-hot":
        eye = np.eye(n_classes, dtype=np.float32)
        query, db = eye[rng.integers(0, n_classes, 30)], eye[rng.integers(0, n_classes, 200)]
    else:  # some rows empty, some with several labels
        query = (rng.random((30, n_classes)) < 0.25).astype(np.int64)
        db = (rng.random((200, n_classes)) < 0.25).astype(np.int64)
    labels = _prepare_labels(query, db, len(query), len(db))
    assert labels.single == (kind != "multi-hot" and "multi" not in kind)
    want = relevant(query, db)
    assert np.array_equal(labels.block(slice(None)), want)
    assert np.array_equal(labels.block(slice(7, 19)), want[7:19])
    ids = rng.integers(0, len(db), (12, 9))
    assert np.array_equal(labels.of(slice(7, 19), ids), np.take_along_axis(want[7:19], ids, axis=1))
