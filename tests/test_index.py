"""HammingIndex: exact search and range search (faiss, ties by id), persistence, input checks."""

import numpy as np
import pytest
import torch

from hhlib.hamming import hamming_distances, pack_codes
from hhlib.index import FORMAT_VERSION, HammingIndex


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


# 600 codes of 12 or 16 bits: many ties at every distance
@pytest.mark.parametrize("bits", [12, 16, 64])
def test_search_matches_brute_force_with_ties_by_id(bits):
    rng = np.random.default_rng(bits)
    db, queries = random_codes(rng, 600, bits), random_codes(rng, 25, bits)
    index = HammingIndex(bits)
    index.add(db[:250])
    index.add(torch.from_numpy(db[250:]))  # torch tensors are accepted, ids continue
    want_dist, want_ids = brute_search(queries, db, 40)
    dist, ids = index.search(queries, 40)
    assert dist.dtype == np.int32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(dist, want_dist)


@pytest.mark.parametrize("bits", [12, 16, 64])
@pytest.mark.parametrize("radius", [0, 2, 5])
def test_range_search_matches_brute_force(bits, radius):
    rng = np.random.default_rng(100 + bits)
    db, queries = random_codes(rng, 500, bits), random_codes(rng, 20, bits)
    queries[0] = db[7]  # at least one exact match
    index = HammingIndex(bits)
    index.add(db)
    want = brute_range(queries, db, radius)
    got = index.range_search(queries, radius)
    assert len(got) == len(queries)
    for (dist, ids), (want_dist, want_ids) in zip(got, want, strict=True):
        assert dist.dtype == np.int32 and ids.dtype == np.int64
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(dist, want_dist)


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


def test_hand_case_distances_and_radius():
    """8-bit codes written as bytes: distances are the popcounts of the XORs."""
    db = np.array([[0b0000_0000], [0b1111_1111], [0b0000_0011], [0b0000_0001], [0b1000_0001]], np.uint8)
    index = HammingIndex(8)
    index.add(db)
    dist, ids = index.search(np.array([[0b0000_0001], [0b1111_1110]], np.uint8), 5)
    np.testing.assert_array_equal(dist, [[0, 1, 1, 1, 7], [1, 7, 7, 7, 8]])
    np.testing.assert_array_equal(ids, [[3, 0, 2, 4, 1], [1, 0, 2, 4, 3]])  # ties by id
    hits = index.range_search(np.array([[0b0000_0001], [0b1111_1110]], np.uint8), 2)
    np.testing.assert_array_equal(hits[0][0], [0, 1, 1, 1])
    np.testing.assert_array_equal(hits[0][1], [3, 0, 2, 4])
    np.testing.assert_array_equal(hits[1][0], [1])
    np.testing.assert_array_equal(hits[1][1], [1])
    [(dist, ids)] = index.range_search(np.array([[0b0101_0101]], np.uint8), 1)
    assert len(dist) == len(ids) == 0  # nothing that close: an empty pair, not a missing one


@pytest.mark.parametrize("bits", [12, 64])
def test_ties_among_equal_codes_come_by_id(bits):
    """A database full of one code: every k-NN row is 0..k-1, every radius answer is 0..n-1."""
    code = random_codes(np.random.default_rng(bits), 1, bits)
    index = HammingIndex(bits)
    index.add(np.repeat(code, 3000, axis=0))
    other = code.copy()
    other[0, :3] *= -1  # at distance 3
    for k in (1, 10, 1000, 2999):
        dist, ids = index.search(np.concatenate([code, other]), k)
        np.testing.assert_array_equal(ids, np.tile(np.arange(k), (2, 1)))
        np.testing.assert_array_equal(dist, [[0] * k, [3] * k])
    [(dist, ids)] = index.range_search(other, 3)
    np.testing.assert_array_equal(ids, np.arange(3000))
    assert np.all(dist == 3)


def test_ties_by_id_whatever_order_faiss_returns(monkeypatch):
    """The (distance, id) order is made after faiss: a k-NN that picks the *last* tied ids still gives the first."""
    rng = np.random.default_rng(12)
    base = random_codes(rng, 8, 16)
    db = base[rng.integers(0, 8, size=2000)]  # 8 codes, about 250 copies each: long runs of ties
    queries = random_codes(rng, 10, 16)
    index = HammingIndex(16)
    index.add(db)
    all_dist = brute_distances(queries, db)

    def adversarial_knn(queries_packed, k):
        # an exact k-NN that breaks ties by *descending* id, in a shuffled row order
        order = np.lexsort((-np.arange(len(db))[None].repeat(len(queries), 0), all_dist), axis=1)[:, :k]
        order = rng.permuted(order, axis=1)
        return np.take_along_axis(all_dist, order, 1).astype(np.int32), order.astype(np.int64)

    monkeypatch.setattr(index, "_knn", adversarial_knn)
    for k in (1, 5, 300, 700):
        want_dist, want_ids = brute_search(queries, db, k)
        dist, ids = index.search(queries, k)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(dist, want_dist)


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


def test_save_is_atomic(tmp_path, monkeypatch):
    """A write that fails half-way leaves the earlier file whole, and no temporary file behind."""
    path = tmp_path / "db.npz"
    old = HammingIndex(16)
    old.add(random_codes(np.random.default_rng(12), 5, 16))
    old.save(path)
    before = path.read_bytes()

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    new = HammingIndex(16)
    new.add(random_codes(np.random.default_rng(13), 50, 16))
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["db.npz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(HammingIndex.load(path).codes, old.codes)


def test_load_refuses_truncated_and_foreign_files_in_one_line(tmp_path):
    index = HammingIndex(64)
    index.add(random_codes(np.random.default_rng(14), 200, 64))
    index.save(tmp_path / "db.npz")
    whole = (tmp_path / "db.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "notes.npz").write_text("not an archive")
    cases = [("cut.npz", "truncated or damaged"), ("array.npy", "not an .npz archive"), ("notes.npz", "not an .npz")]
    for name, message in cases:
        with pytest.raises(ValueError, match=message) as caught:
            HammingIndex.load(tmp_path / name)
        assert str(caught.value).startswith(str(tmp_path / name)) and "\n" not in str(caught.value)
    np.savez(tmp_path / "floats.npz", format_version=FORMAT_VERSION, bits=64, codes=np.zeros((2, 8)))
    with pytest.raises(ValueError, match="float64 codes of shape \\(2, 8\\), not 64-bit codes"):
        HammingIndex.load(tmp_path / "floats.npz")
    with pytest.raises(FileNotFoundError, match="no index file"):
        HammingIndex.load(tmp_path / "missing.npz")


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
    with pytest.raises(TypeError):
        index.search(queries, 1, backend="numpy")  # one backend: faiss
    with pytest.raises(ValueError, match="16 bits per code but bits=12"):
        index.add(random_codes(np.random.default_rng(11), 2, 16))
