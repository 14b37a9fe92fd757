"""hhlib.analysis: every number on small cases worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from hhlib import analysis as an
from hhlib import mean_average_precision
from hhlib.data import split_protocol
from hhlib.data.memory import build_splits
from hhlib.losses import WeightedLikelihoodLoss
from hhlib.quantize import SignQuantizer

# Four items, three bits: bit 0 balanced, bit 1 +1 for three items of four, bit 2 always -1.
TOY = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, -1], [-1, 1, -1]], dtype=np.int8)
TOY_CLASSES = np.array([0, 0, 1, 1])
LABELS = np.repeat(np.arange(10), 600)  # a balanced pool: 600 images per class


def random_codes(n=60, bits=16, seed=0):
    return np.where(np.random.default_rng(seed).random((n, bits)) < 0.5, 1, -1).astype(np.int8)


# --------------------------------------------------------------------------- inputs


def test_inputs_are_checked_and_converted():
    assert an.codes_array(torch.tensor(TOY, dtype=torch.float32)).dtype == np.int8
    with pytest.raises(ValueError, match="-1 and \\+1"):
        an.codes_array(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        an.codes_array(np.ones(4))
    np.testing.assert_array_equal(an.label_matrix([2, 0]), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(an.class_ids(np.array([[0, 1, 1], [1, 0, 0]])), [1, 0])  # the first label
    with pytest.raises(ValueError, match="rows"):
        an.label_matrix(TOY_CLASSES, 3)
    with pytest.raises(ValueError, match="non-negative"):
        an.label_matrix(np.array([0.5, 1.0]))


# --------------------------------------------------------------------------- bits


def test_bit_balance_of_a_4x3_matrix():
    np.testing.assert_array_equal(an.bit_balance(TOY), [0.5, 0.75, 0.0])


def test_bit_entropy_by_hand():
    # p = 0.5, 0.75, 0: 1 bit, -(0.75 log2 0.75 + 0.25 log2 0.25) bits, 0 bits
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    np.testing.assert_allclose(an.bit_entropy(TOY), [1.0, expected, 0.0], rtol=1e-12)


def test_bit_correlation_of_two_known_bits():
    correlation = an.bit_correlation(TOY)
    # centred bit 0: (1, 1, -1, -1), std 1; bit 1: (.5, .5, -1.5, .5), std sqrt(.75); covariance 2 / 4
    assert correlation[0, 1] == pytest.approx(0.5 / math.sqrt(0.75)) == pytest.approx(1 / math.sqrt(3))
    assert correlation[1, 0] == correlation[0, 1]
    np.testing.assert_array_equal(np.diag(correlation), 1.0)
    assert correlation[2, 0] == 0 and correlation[1, 2] == 0  # the constant bit
    same_and_opposite = np.array([[1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    np.testing.assert_allclose(an.bit_correlation(same_and_opposite)[0], [1, 1, -1])
    codes = random_codes()
    np.testing.assert_allclose(an.bit_correlation(codes), np.corrcoef(codes.T), atol=1e-12)


def test_class_mean_codes_with_ids_and_a_multi_label_matrix():
    np.testing.assert_array_equal(an.class_mean_codes(TOY, TOY_CLASSES), [[1, 1, -1], [-1, 0, -1]])
    # item 3 belongs to both classes; class 2 has no item
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.uint8)
    means = an.class_mean_codes(TOY, labels)
    np.testing.assert_allclose(means[:2], [[1 / 3, 1, -1], [-1, 0, -1]])
    assert np.all(np.isnan(means[2]))
    with pytest.raises(ValueError, match="rows"):
        an.class_mean_codes(TOY, TOY_CLASSES[:3])


def test_sample_per_class_groups_positions_by_class():
    classes = np.array([2, 0, 1, 0, 2, 2])
    np.testing.assert_array_equal(an.sample_per_class(classes, per_class=5), [1, 3, 2, 0, 4, 5])
    picked = an.sample_per_class(classes, per_class=1, seed=3)
    assert classes[picked].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(picked, an.sample_per_class(classes, per_class=1, seed=3))
    with pytest.raises(ValueError, match="per_class"):
        an.sample_per_class(classes, per_class=0)


# --------------------------------------------------------------------------- distances


def test_pair_distances_split_into_relevant_and_irrelevant_by_hand():
    query = np.array([[1, 1, 1, 1], [-1, -1, 1, 1]])
    database = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1]])
    # distances: query 0 -> 0, 1, 4; query 1 -> 2, 3, 2. Query 0 (class 0) shares a class with
    # items 0 and 2, query 1 (class 1) with item 1.
    relevant, irrelevant = an.pair_distances(query, database, [0, 1], [0, 1, 0])
    assert relevant.tolist() == [0, 4, 3] and irrelevant.tolist() == [1, 2, 2]
    assert relevant.dtype == np.int64
    # the same as label matrices; item 2 now carries both classes, so it is relevant to both queries
    query_labels = np.array([[1, 0], [0, 1]])
    relevant, irrelevant = an.pair_distances(query, database, query_labels, np.array([[1, 0], [0, 1], [1, 1]]))
    assert relevant.tolist() == [0, 4, 3, 2] and irrelevant.tolist() == [1, 2]
    # class ids of different ranges on the two sides
    relevant, irrelevant = an.pair_distances(query, database, [0, 0], [0, 1, 2])
    assert relevant.tolist() == [0, 2] and irrelevant.tolist() == [1, 4, 3, 2]


def test_pair_distances_samples_and_checks():
    relevant, irrelevant = an.pair_distances(
        random_codes(50), random_codes(80, seed=1), np.arange(50) % 3, np.arange(80) % 3, max_queries=10, max_items=20
    )
    assert len(relevant) + len(irrelevant) == 200
    with pytest.raises(ValueError, match="bits"):
        an.pair_distances(TOY, TOY[:, :2], TOY_CLASSES, TOY_CLASSES)


def test_flipped_bits_by_hand():
    after = TOY.copy()
    after[0] *= -1
    after[3, 1] = -1
    np.testing.assert_array_equal(an.flipped_bits(TOY, after), [3, 0, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        an.flipped_bits(TOY, TOY[:2])


class PixelSigns(torch.nn.Module):
    """A 'model' whose 16 bits are the signs of the top-left 4 x 4 pixels: a shift must flip some."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.quantizer = SignQuantizer()  # what hhlib.train.encode applies to relaxed codes

    def forward(self, images):  # (B, 3, 8, 8) -> (B, 16)
        return images[:, 0, :4, :4].reshape(len(images), 16) + self.dummy


def test_augmentation_flips_with_a_model_that_reads_pixels():
    pixels = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    parts = {"train": np.arange(4), "query": np.arange(4, 12), "database": np.arange(4)}
    splits = build_splits(pixels, np.arange(12) % 2, 2, parts, img_size=8, augment=True, flip=True)
    state = torch.random.get_rng_state()
    flips = an.augmentation_flips(PixelSigns(), splits["query"], repeats=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global random state is untouched
    assert flips.shape == (3, 8) and flips.min() >= 0 and flips.max() <= 16 and flips.sum() > 0
    np.testing.assert_array_equal(flips, an.augmentation_flips(PixelSigns(), splits["query"], repeats=3, seed=1))
    assert an.augmentation_flips(PixelSigns(), splits["query"], max_items=5).shape == (1, 5)
    with pytest.raises(ValueError, match="TensorTransform"):
        an.augmentation_flips(PixelSigns(), torch.utils.data.TensorDataset(torch.zeros(3)))


# --------------------------------------------------------------------------- embeddings


def test_pca_of_two_code_words_by_hand():
    codes = np.array([[1, 1], [1, 1], [-1, -1], [-1, -1]])
    # centred already; the first component is (1, 1) / sqrt 2, the projections +-sqrt 2, the second is 0
    coords, positions = an.embed_codes(codes, method="pca")
    np.testing.assert_array_equal(positions, [0, 1, 2, 3])
    np.testing.assert_allclose(np.abs(coords[:, 0]), math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(coords[:, 1], 0, atol=1e-6)
    assert coords[0, 0] == pytest.approx(coords[1, 0]) == pytest.approx(-coords[2, 0])


def test_tsne_samples_and_separates_classes():
    rng = np.random.default_rng(0)
    centres = random_codes(3, 32, seed=2)
    classes = np.repeat(np.arange(3), 20)
    codes = centres[classes] * np.where(rng.random((60, 32)) < 0.05, -1, 1)  # 5 % noise around each centre
    coords, positions = an.embed_codes(codes, max_items=45, seed=0)
    assert coords.shape == (45, 2) and len(np.unique(positions)) == 45
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1) + np.eye(45) * 1e9
    assert np.mean(classes[positions][d.argmin(1)] == classes[positions]) > 0.9  # the neighbour is of its class
    with pytest.raises(ValueError, match="method"):
        an.embed_codes(codes, method="mds")
    with pytest.raises(ValueError, match="at least 4"):
        an.embed_codes(codes[:3])


def test_embedding_places_merge_items_of_a_class_at_one_place():
    coords = np.array([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0], [2.0, 3.0], [2.0, 3.0], [5.0, 5.0]])
    places = an.embedding_places(coords, np.array([0, 2, 0, 2, 2, 0]))
    expected = pd.DataFrame({"class": [0, 0, 2], "x": [0.0, 5.0, 2.0], "y": [1.0, 5.0, 3.0], "count": [2, 1, 3]})
    pd.testing.assert_frame_equal(places, expected)
    with pytest.raises(ValueError, match="coords"):
        an.embedding_places(np.zeros((6, 3)), np.zeros(6, int))


# --------------------------------------------------------------------------- labels and relevance


def test_relevance_matrix_is_at_least_one_shared_label():
    query = np.array([[1, 0, 1, 0], [0, 1, 0, 1]])
    database = np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    expected = [[True, True, False, False], [False, True, True, False]]
    assert an.relevance_matrix(query, database).tolist() == expected
    assert an.relevance_matrix(torch.tensor(query), torch.tensor(database)).tolist() == expected
    by_ids = an.relevance_matrix(np.array([0, 2]), np.array([2, 0, 0]))
    assert by_ids.tolist() == [[False, True, True], [True, False, False]]
    np.testing.assert_array_equal(an.shared_label_counts(query, database), [[1, 1, 0, 0], [0, 1, 1, 0]])
    with pytest.raises(ValueError):
        an.relevance_matrix(query, database[:, :3])
    with pytest.raises(ValueError):
        an.shared_label_counts(np.array([0, 1]), np.array([1]))


def test_class_balance_weights_by_hand():
    labels = np.eye(3)[[0, 0, 1, 2, 2, 2]]  # (6, 3)
    weights = an.class_balance_weights(labels[:2], labels)
    # both batch items are of class 0, which has 2 members: 4 similar pairs of 12
    assert (weights.similar_pairs, weights.dissimilar_pairs) == (4, 8)
    assert weights.positive_weight == 3.0 and weights.negative_weight == 1.5
    assert "S/S1 = 3.000" in str(weights)
    empty = an.class_balance_weights(labels[:2], np.zeros_like(labels))  # a bank not filled yet
    assert (empty.similar_pairs, empty.positive_weight, empty.negative_weight) == (0, 12.0, 1.0)
    with pytest.raises(ValueError, match="same C"):
        an.class_balance_weights(labels[:2], labels[:, :2])


def test_code_scale_loss_starts_at_two_log_two_and_equals_the_loss():
    rng = np.random.default_rng(0)
    labels = np.eye(4)[rng.integers(0, 4, 40)]
    codes = rng.choice([-1.0, 1.0], (40, 16))
    losses = an.code_scale_loss(codes, labels, [0.0, 0.5, 1.0], alpha=0.5)
    assert losses.shape == (3,) and losses[0] == pytest.approx(2 * math.log(2))
    criterion = WeightedLikelihoodLoss(40, 4, 16, alpha=0.5)
    u, y = torch.tensor(codes, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32)
    assert losses[1] == pytest.approx(float(criterion(0.5 * u, y, torch.arange(40))), rel=1e-5)
    with pytest.raises(ValueError, match="same N"):
        an.code_scale_loss(codes[:3], labels, [1.0])


# --------------------------------------------------------------------------- rankings and splits


def test_ranking_table_and_its_average_precision():
    distances = np.array([3, 0, 5, 2, 2, 7, 1, 4])
    relevant = np.array([1, 1, 0, 0, 1, 0, 0, 1], dtype=bool)
    assert an.ranking_order(distances).tolist() == [1, 6, 3, 4, 0, 7, 2, 5]  # ties by position
    table = an.ranking_table(distances, relevant)
    assert table["rank"].tolist() == list(range(1, 9))
    assert table["item"].tolist() == [1, 6, 3, 4, 0, 7, 2, 5]
    assert table["distance"].tolist() == [0, 1, 2, 2, 3, 4, 5, 7]
    # relevant at ranks 1, 4, 5, 6
    np.testing.assert_allclose(table["precision"], [1, np.nan, np.nan, 2 / 4, 3 / 5, 4 / 6, np.nan, np.nan])
    ap = table["precision"].mean()
    query, database = np.ones((1, 8)), np.ones((8, 8))
    for item, d in enumerate(distances):  # codes at these distances from the query
        database[item, :d] = -1
    assert mean_average_precision(query, database, np.array([0]), np.where(relevant, 0, 1)) == pytest.approx(ap)
    with pytest.raises(ValueError, match="shape"):
        an.ranking_table(distances, relevant[:3])
    with pytest.raises(ValueError):
        an.ranking_order(np.zeros((2, 2)))


@pytest.mark.parametrize("protocol, train_only, train_in_database", [("cifar10", 5000, 0), ("cifar10-1", 0, 5000)])
def test_protocol_layout_counts_overlaps(protocol, train_only, train_in_database):
    assert an.protocol_layout(split_protocol(LABELS, protocol), 6000) == {
        "query": 1000,
        "train": train_only,
        "train and database": train_in_database,
        "database": 0,
        "unused": 0,
    }


def test_protocol_layout_with_unused_images_and_errors():
    labels = np.repeat(np.arange(10), 700)
    layout = an.protocol_layout(split_protocol(labels, "cifar10"), 7000)
    assert layout == {"query": 1000, "train": 5000, "train and database": 0, "database": 1000, "unused": 0}
    assert an.protocol_layout(split_protocol(labels, "cifar10"), 7500)["unused"] == 500
    with pytest.raises(ValueError, match="beyond"):
        an.protocol_layout(split_protocol(labels, "cifar10"), 10)


def test_split_class_counts_table():
    counts = an.split_class_counts(split_protocol(LABELS, "cifar10"), LABELS)
    assert list(counts.columns) == ["query", "train", "database"] and list(counts.index) == list(range(10))
    assert counts["query"].tolist() == [100] * 10 and counts["train"].tolist() == [500] * 10
    assert counts["database"].sum() == 0


def test_split_class_counts_count_every_label_of_multi_label_images():
    rng = np.random.default_rng(0)
    labels = np.zeros((21 * 700, 21), dtype=np.uint8)
    labels[np.arange(len(labels)), np.arange(len(labels)) % 21] = 1  # 700 images of each class
    extra = rng.random(len(labels)) < 0.3  # and a second label on some
    labels[np.flatnonzero(extra), rng.integers(0, 21, extra.sum())] = 1
    split = split_protocol(labels, "nuswide_21")
    counts = an.split_class_counts(split, labels)
    assert counts["query"].min() >= 100
    assert counts["query"].sum() == labels[split.query].sum()


# --------------------------------------------------------------------------- feature maps


def test_channel_norm_by_hand():
    feature_map = torch.zeros(2, 3, 4)
    feature_map[0, 1, 2], feature_map[1, 1, 2] = 3.0, 4.0  # a 3-4-5 triangle at (1, 2)
    norm = an.channel_norm(feature_map)
    assert norm.shape == (3, 4) and norm[1, 2] == 5.0 and norm.sum() == 5.0
    np.testing.assert_array_equal(an.channel_norm(feature_map[None].numpy()), norm)
    with pytest.raises(ValueError):
        an.channel_norm(np.zeros((2, 2)))
