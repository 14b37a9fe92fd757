"""HammingIndex: exact search and range search on every backend, persistence, input checks."""

import importlib.util

import numpy as np
import pytest
import torch

from hhlib.hamming import hamming_distances, pack_codes
from hhlib.index import FORMAT_VERSION, HammingIndex

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed")


def random_codes(rng, n, bits):
    return rng.choice(np.array([-1, 1], np.int8), size=(n, bits))


def brute_distances(a, b):
    return (a.shape[1] - a.astype(np.int64) @ b.T.astype(np.int64)) // 2


def brute_search(queries, db, k):
    dist = brute_distances(queries, db)
    ids = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, ids, axis=1), ids


def brute_range(queries, db, radius):
    dist = brute_distances(queries, db)
    out = []
    for row in dist:
        ids = np.argsort(row, kind="stable")
        ids = ids[row[ids] <= radius]
        out.append((row[ids], ids))
    return out


def backends(bits, hashing=False):
    names = ["numpy"]
    if HAS_FAISS and bits % 8 == 0:
        names += ["faiss", "faiss-hash"] if hashing else ["faiss"]
    return names


# 600 codes of 12 or 16 bits: many ties at every distance
@pytest.mark.parametrize("bits", [12, 16, 64])
def test_search_matches_brute_force_with_ties_by_id(bits):
    rng = np.random.default_rng(bits)
    db, queries = random_codes(rng, 600, bits), random_codes(rng, 25, bits)
    index = HammingIndex(bits)
    index.add(db[:250])
    index.add(torch.from_numpy(db[250:]))  # torch tensors are accepted, ids continue
    want_dist, want_ids = brute_search(queries, db, 40)
    for backend in backends(bits):
        dist, ids = index.search(queries, 40, backend=backend)
        assert dist.dtype == np.int32 and ids.dtype == np.int64
        np.testing.assert_array_equal(ids, want_ids, err_msg=backend)
        np.testing.assert_array_equal(dist, want_dist, err_msg=backend)


@pytest.mark.parametrize("bits", [12, 16, 64])
@pytest.mark.parametrize("radius", [0, 2, 5])
def test_range_search_matches_brute_force(bits, radius):
    rng = np.random.default_rng(100 + bits)
    db, queries = random_codes(rng, 500, bits), random_codes(rng, 20, bits)
    queries[0] = db[7]  # at least one exact match
    index = HammingIndex(bits)
    index.add(db)
    want = brute_range(queries, db, radius)
    for backend in backends(bits, hashing=True):
        got = index.range_search(queries, radius, backend=backend)
        assert len(got) == len(queries)
        for (dist, ids), (want_dist, want_ids) in zip(got, want, strict=True):
            np.testing.assert_array_equal(ids, want_ids, err_msg=backend)
            np.testing.assert_array_equal(dist, want_dist, err_msg=backend)


def test_small_hand_case():
    index = HammingIndex(4)
    index.add(np.array([[1, 1, 1, 1], [-1, 1, 1, 1], [1, 1, 1, -1], [-1, -1, -1, -1]]))
    dist, ids = index.search(np.array([[1, 1, 1, 1]]), 3)
    np.testing.assert_array_equal(dist, [[0, 1, 1]])
    np.testing.assert_array_equal(ids, [[0, 1, 2]])  # items 1 and 2 tie at distance 1: by id
    [(dist, ids)] = index.range_search(np.array([[-1, 1, 1, 1]]), 1)
    np.testing.assert_array_equal(ids, [1, 0])  # sorted by distance: item 1 is the query itself
    np.testing.assert_array_equal(dist, [0, 1])
    assert len(index) == 4


def test_k_beyond_size_returns_everything():
    index = HammingIndex(8)
    index.add(random_codes(np.random.default_rng(0), 5, 8))
    dist, ids = index.search(random_codes(np.random.default_rng(1), 2, 8), 100)
    assert ids.shape == (2, 5)
    assert sorted(ids[0]) == list(range(5))


def test_packed_inputs_equal_sign_codes():
    rng = np.random.default_rng(3)
    db, queries = random_codes(rng, 50, 64), random_codes(rng, 4, 64)
    packed = np.packbits(db > 0, axis=1)
    as_words = packed.view(np.uint64)
    index = HammingIndex(64)
    index.add(as_words)
    np.testing.assert_array_equal(index.codes, packed)
    np.testing.assert_array_equal(index.search(np.packbits(queries > 0, axis=1), 5)[1], brute_search(queries, db, 5)[1])


def test_pack_codes_bit_counts():
    codes = random_codes(np.random.default_rng(4), 3, 12)
    packed, bits = pack_codes(codes)
    assert bits == 12 and packed.shape == (3, 2)
    assert pack_codes(packed, 12)[1] == 12
    assert pack_codes(packed)[1] == 16  # packed bytes default to 8 bits each
    words = np.zeros((3, 8), np.uint8)
    words[:, :2] = packed
    assert np.array_equal(pack_codes(words.view(np.uint64), 12)[0], packed)


def test_hamming_distances():
    rng = np.random.default_rng(5)
    a, b = random_codes(rng, 7, 300), random_codes(rng, 9, 300)  # > 255 bits: uint16 distances
    np.testing.assert_array_equal(hamming_distances(a, b), brute_distances(a, b))


def test_save_load_round_trip(tmp_path):
    index = HammingIndex(12)
    index.add(random_codes(np.random.default_rng(6), 30, 12))
    index.metadata = {"dataset": "digits", "labels": [1, 2, 3]}
    path = tmp_path / "sub" / "db.npz"
    assert index.save(path) == path
    loaded = HammingIndex.load(path, bits=12)
    assert loaded.bits == 12 and len(loaded) == 30
    np.testing.assert_array_equal(loaded.codes, index.codes)
    assert loaded.metadata == {"dataset": "digits", "labels": [1, 2, 3]}
    assert len(HammingIndex.load(path)) == 30


def test_save_load_empty(tmp_path):
    HammingIndex(16).save(tmp_path / "empty.npz")
    assert len(HammingIndex.load(tmp_path / "empty.npz", bits=16)) == 0


def test_load_refuses_other_bits_and_versions(tmp_path):
    index = HammingIndex(16)
    index.add(random_codes(np.random.default_rng(7), 3, 16))
    index.save(tmp_path / "db.npz")
    with pytest.raises(ValueError, match="holds 16-bit codes, expected 32"):
        HammingIndex.load(tmp_path / "db.npz", bits=32)
    np.savez(tmp_path / "future.npz", format_version=FORMAT_VERSION + 1, bits=16, codes=index.codes)
    with pytest.raises(ValueError, match="format version 2"):
        HammingIndex.load(tmp_path / "future.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a HammingIndex file"):
        HammingIndex.load(tmp_path / "other.npz")


@pytest.mark.parametrize(
    ("codes", "bits", "message"),
    [
        (np.array([[1, -1, 0.5]]), None, "only -1 and \\+1"),
        (np.array([[1, -1, 0]]), None, "only -1 and \\+1"),
        (np.array([[True, False]]), None, "dtype bool"),
        (np.array([1, -1, 1]), None, "2-D"),
        (np.zeros((0, 8)), None, "empty"),
        (np.array([[1, -1, 1]]), 4, "3 bits per code but bits=4"),
        (np.array([[0b1111_0001]], np.uint8), 4, "padding bits"),
        (np.zeros((1, 3), np.uint8), 8, "does not fit bits=8"),
        (np.array([[1, -1]]), 0, "positive integer"),
    ],
)
def test_pack_codes_errors(codes, bits, message):
    with pytest.raises(ValueError, match=message):
        pack_codes(codes, bits)


def test_index_errors():
    with pytest.raises(ValueError, match="positive integer"):
        HammingIndex(0)
    index = HammingIndex(12)
    with pytest.raises(ValueError, match="empty"):
        index.search(random_codes(np.random.default_rng(8), 1, 12), 1)
    index.add(random_codes(np.random.default_rng(9), 10, 12))
    queries = random_codes(np.random.default_rng(10), 2, 12)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="radius must be an integer in 0..12"):
        index.range_search(queries, 13)
    with pytest.raises(ValueError, match="backend must be one of"):
        index.search(queries, 1, backend="gpu")
    with pytest.raises(ValueError, match="bits divisible by 8"):
        index.search(queries, 1, backend="faiss")
    with pytest.raises(ValueError, match="16 bits per code but bits=12"):
        index.add(random_codes(np.random.default_rng(11), 2, 16))
