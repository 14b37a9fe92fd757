"""HammingIndex's approximate backends (faiss binary IVF and multi-index hashing) against exact search."""

import json

import numpy as np
import pytest

from hhlib.index import HammingIndex

BITS = 64


def clustered(n: int, centres: int, flips: int, seed: int) -> np.ndarray:
    """(n, BITS) -1/+1 codes: random centres, each item its centre with up to ``flips`` bits flipped."""
    rng = np.random.default_rng(seed)
    middle = np.where(rng.random((centres, BITS)) < 0.5, 1, -1).astype(np.int8)
    codes = middle[rng.integers(0, centres, n)]
    for _ in range(flips):
        codes[np.arange(n), rng.integers(0, BITS, n)] *= -1
    return codes


@pytest.fixture(scope="module")
def data():
    database = clustered(6000, 60, flips=2, seed=0)
    queries = database[::100].copy()
    queries[:, 0] *= -1  # one bit away from a database item
    exact = HammingIndex(BITS)
    exact.add(database)
    return database, queries, exact


def true_distances(queries: np.ndarray, database: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return (queries[:, None, :] != database[ids]).sum(-1)


def built(backend: str, database: np.ndarray, **options) -> HammingIndex:
    index = HammingIndex(BITS, backend, **options)
    index.add(database)
    return index


# With every cell probed, IVF visits every code; 4 substrings with 1 flip each find every code within
# 4 * (1 + 1) - 1 = 7 bits (pigeonhole), more than any distance to a query's neighbours here.
EXHAUSTIVE = [("ivf", {"nlist": 16, "nprobe": 16}), ("mih", {"nhash": 4, "nflip": 1})]


@pytest.mark.parametrize(("backend", "options"), EXHAUSTIVE)
def test_an_exhaustive_approximate_search_gives_the_exact_answer(data, backend, options):
    database, queries, exact = data
    index = built(backend, database, **options)
    for radius in (0, 3):
        got, want = index.range_search(queries, radius), exact.range_search(queries, radius)
        for (d, i), (d_exact, i_exact) in zip(got, want, strict=True):
            np.testing.assert_array_equal(i, i_exact)
            np.testing.assert_array_equal(d, d_exact)
    dist, ids = index.search(queries, 10)
    dist_exact, _ = exact.search(queries, 10)
    np.testing.assert_array_equal(dist, dist_exact)
    np.testing.assert_array_equal(dist, true_distances(queries, database, ids))


@pytest.mark.parametrize(("backend", "options"), [("ivf", {"nlist": 60, "nprobe": 1}), ("mih", {"nflip": 0})])
def test_a_narrow_search_returns_true_distances_sorted_and_most_neighbours(data, backend, options):
    database, queries, exact = data
    index = built(backend, database, **options)
    dist, ids = index.search(queries, 10)
    found = ids >= 0
    assert (dist[~found] == -1).all() and (np.diff(found.astype(int), axis=1) <= 0).all()  # missing ones last
    np.testing.assert_array_equal(dist[found], true_distances(queries, database, np.where(found, ids, 0))[found])
    keys = np.where(found, dist.astype(np.int64) * len(database) + ids, np.iinfo(np.int64).max)
    assert (np.diff(keys, axis=1)[found[:, 1:]] > 0).all()  # by (distance, id), no id twice
    tenth = exact.search(queries, 10)[0][:, -1:]
    recall = (found & (dist <= tenth)).sum() / dist.size
    assert recall >= 0.7, f"{backend} {options}: recall@10 {recall:.2f}"
    for (d, i), (_, i_exact) in zip(index.range_search(queries, 2), exact.range_search(queries, 2), strict=True):
        assert (d <= 2).all() and set(i) <= set(i_exact)


def test_a_search_that_finds_fewer_than_k_pads_with_minus_one():
    ones, alternating = np.ones(BITS, np.int8), np.tile(np.array([1, -1], np.int8), BITS // 2)
    database = np.stack([ones] * 3 + [alternating] * 3 + [-alternating])
    index = built("mih", database, nhash=8, nflip=0)  # finds only codes equal to the query on a whole byte
    dist, ids = index.search(-ones[None], 5)  # equal to no stored code on any byte
    assert ids.tolist() == [[-1] * 5] and dist.tolist() == [[-1] * 5]
    dist, ids = index.search(alternating[None], 5)
    assert ids.tolist() == [[3, 4, 5, -1, -1]] and dist.tolist() == [[0, 0, 0, -1, -1]]


def test_the_backend_is_saved_and_can_be_overridden_on_load(data, tmp_path):
    database, queries, _ = data
    index = built("ivf", database, nlist=20, nprobe=3)
    path = index.save(tmp_path / "db.npz")
    again = HammingIndex.load(path, bits=BITS)
    assert (again.backend, again.options) == ("ivf", {"nlist": 20, "nprobe": 3})
    np.testing.assert_array_equal(again.search(queries, 5)[0], index.search(queries, 5)[0])
    assert HammingIndex.load(path, backend="exact").backend == "exact"
    assert repr(again) == "HammingIndex(bits=64, size=6000, backend='ivf', nlist=20, nprobe=3)"
    chosen = HammingIndex.load(path, backend="mih", nflip=1)
    assert chosen.options == {"nhash": None, "nflip": 1}  # nhash: chosen from the size when built
    assert chosen.resolved_options() == {"nhash": round(64 / np.log2(6000)), "nflip": 1}


def test_an_index_file_without_a_backend_loads_as_exact(tmp_path):
    path = tmp_path / "old.npz"
    codes = np.packbits(clustered(10, 2, 0, seed=2) > 0, axis=1)
    np.savez(path, format_version=np.int64(1), bits=np.int64(BITS), codes=codes, metadata=np.array("{}"))
    assert HammingIndex.load(path).backend == "exact"


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("lsh", {}, "unknown search backend 'lsh'"),
        ("ivf", {"nflip": 1}, "backend 'ivf' takes ['nlist', 'nprobe'], not ['nflip']"),
        ("exact", {"nprobe": 2}, "backend 'exact' takes no options"),
        ("ivf", {"nprobe": 0}, "ivf option nprobe must be a positive integer"),
        ("mih", {"nflip": -1}, "mih option nflip must be a non-negative integer"),
        ("mih", {"nhash": 2.5}, "mih option nhash must be a positive integer"),
    ],
)
def test_bad_backends_and_options_are_one_line_errors(backend, options, message):
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")) as error:
        HammingIndex(BITS, backend, **options)
    assert "\n" not in str(error.value)


def test_search_options_change_without_a_rebuild(data):
    database, queries, exact = data
    index = built("ivf", database, nlist=60, nprobe=1)
    narrow = index.search(queries, 10)
    structure = index._approximate_index()
    index.set_search_options(nprobe=60)  # every cell: the exact answer
    assert index._approximate_index() is structure and structure.nprobe == 60 and index.options["nprobe"] == 60
    np.testing.assert_array_equal(index.search(queries, 10)[0], exact.search(queries, 10)[0])
    assert not np.array_equal(narrow[0], exact.search(queries, 10)[0])
    mih = built("mih", database, nhash=4, nflip=0)
    mih.search(queries[:1], 1)
    mih.set_search_options(nflip=1)
    assert mih._approximate_index().nflip == 1
    for backend, options, message in [
        (index, {"nlist": 8}, "backend 'ivf' sets ['nprobe'] at search time, not ['nlist']"),
        (mih, {"nprobe": 8}, "backend 'mih' sets ['nflip'] at search time, not ['nprobe']"),
        (exact, {"nprobe": 8}, "backend 'exact' sets nothing at search time"),
        (index, {"nprobe": 0}, "ivf option nprobe must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            backend.set_search_options(**options)


def test_options_given_to_load_override_the_saved_ones(data, tmp_path):
    database, _, _ = data
    path = built("ivf", database, nlist=20, nprobe=3).save(tmp_path / "db.npz")
    assert HammingIndex.load(path, nprobe=np.int64(7)).options == {"nlist": 20, "nprobe": 7}
    assert HammingIndex.load(path, backend="ivf", nprobe=7).options == {"nlist": None, "nprobe": 7}
    wide = HammingIndex(BITS, "mih", nflip=np.int64(1))  # NumPy integers are stored as plain ints
    wide.add(database[:50])
    assert json.loads(np.load(wide.save(tmp_path / "mih.npz"))["backend"][()]) == {
        "name": "mih",
        "nhash": None,
        "nflip": 1,
    }


def test_structures_that_cannot_be_built_are_one_line_errors(data):
    database, queries, _ = data
    with pytest.raises(ValueError, match="^ivf: nlist 7000 is more than the 6000 codes to cluster$"):
        built("ivf", database, nlist=7000).search(queries, 1)
    short = HammingIndex(12, "mih", nhash=13)
    short.add(np.packbits(database[:10, :12] > 0, axis=1))
    with pytest.raises(ValueError, match="^mih: nhash 13 is more than the 12 bits of a code$"):
        short.search(np.packbits(queries[:1, :12] > 0, axis=1), 1)
