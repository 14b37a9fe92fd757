"""hhlib.retrieval: the database index of a model and a split, its metadata, its cache and the stale-model check.

A freshly initialised CPU-preset HybridHash at 16 px on the digits dataset
(60 items per split): its codes mean nothing, but which file is reused,
which is encoded again and which model is refused can all be checked.
"""

import numpy as np
import pytest
import torch

from hhlib.data import get_dataset
from hhlib.index import HammingIndex
from hhlib.model import HybridHash, HybridHashConfig
from hhlib.quantize import make_quantizer
from hhlib.retrieval import Query, Retriever, check_index, database_index, index_metadata, model_fingerprint
from hhlib.train import encode

BITS = 16


@pytest.fixture(scope="module")
def data():
    return get_dataset("digits", img_size=16, limit=60)


def make_model(seed: int) -> HybridHash:
    torch.manual_seed(seed)
    return HybridHash(HybridHashConfig.cpu(bits=BITS, img_size=16)).eval()


@pytest.fixture(scope="module")
def model():
    return make_model(0)


def test_fingerprint_follows_the_weights_and_the_quantizer(model):
    assert model_fingerprint(model) == model_fingerprint(make_model(0))  # same weights, same fingerprint
    assert len(model_fingerprint(model)) == 16
    assert model_fingerprint(make_model(1)) != model_fingerprint(model)
    nudged = make_model(0)
    with torch.no_grad():
        next(nudged.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(nudged) != model_fingerprint(model)

    rotated = make_model(0)
    rotated.quantizer = make_quantizer("rotation", BITS, seed=0)
    assert model_fingerprint(rotated) != model_fingerprint(model)
    rotated_again = make_model(0)
    rotated_again.quantizer = make_quantizer("rotation", BITS, seed=1)
    assert model_fingerprint(rotated_again) != model_fingerprint(rotated)


def test_index_metadata(model, data, tmp_path):
    meta = index_metadata(model, data, "database", checkpoint=tmp_path / "model.pt")
    assert meta["checkpoint"] == str((tmp_path / "model.pt").resolve())
    assert meta["model"] == model_fingerprint(model)
    assert (meta["dataset"], meta["split"], meta["split_seed"], meta["bits"]) == ("digits", "database", 0, BITS)
    assert meta["limit"] == 60 and meta["count"] == 60  # the limit shortened the database
    assert meta["labels"] == data.database.labels.argmax(1).tolist()
    assert meta["class_names"] == list(data.class_names)
    query = index_metadata(model, data, "query")
    assert query["checkpoint"] is None and query["split"] == "query" and query["items"] != meta["items"]
    whole = get_dataset("digits", img_size=16)
    assert index_metadata(model, whole, "query")["limit"] is None  # 200 queries: a limit of 60 would cut them
    with pytest.raises(ValueError, match="split must be one of"):
        index_metadata(model, data, tmp_path / "database.npz")


def test_database_index_encodes_the_split(model, data):
    index = database_index(model, data, "query", progress=False)
    np.testing.assert_array_equal(index.codes, np.packbits(encode(model, data.query, progress=False) > 0, axis=1))
    assert index.metadata == index_metadata(model, data, "query")


def test_cache_is_reused_for_the_same_model_and_encoded_again_otherwise(model, data, tmp_path):
    path = tmp_path / "database.npz"
    first = database_index(model, data, cache=path, progress=False)
    stamp = path.stat().st_mtime_ns
    again = database_index(make_model(0), data, cache=path, progress=False)  # same weights, another object
    assert path.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.codes, first.codes)
    assert again.metadata == first.metadata

    other = make_model(1)
    changed = database_index(other, data, cache=path, progress=False)
    assert changed.metadata["model"] == model_fingerprint(other)
    np.testing.assert_array_equal(changed.codes, np.packbits(encode(other, data.database, progress=False) > 0, 1))
    assert HammingIndex.load(path).metadata["model"] == model_fingerprint(other)  # the file was replaced

    other_split = database_index(other, data, "query", cache=path, progress=False)
    assert other_split.metadata["split"] == "query" and len(other_split) == len(data.query)


def test_a_broken_or_foreign_cache_is_encoded_again(model, data, tmp_path):
    path = tmp_path / "database.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    assert len(database_index(model, data, cache=path, progress=False)) == len(data.database)
    short = HammingIndex(BITS)
    short.add(encode(model, data.database, progress=False)[:10])
    short.metadata = index_metadata(model, data, "database")
    short.save(path)
    assert len(database_index(model, data, cache=path, progress=False)) == len(data.database)
    assert len(HammingIndex.load(path)) == len(data.database)


def test_check_index_refuses_other_weights_and_bit_counts(model, data):
    index = database_index(model, data, progress=False)
    check_index(index, model)
    check_index(index, make_model(0))
    with pytest.raises(ValueError, match="made by other weights") as caught:
        check_index(index, make_model(1))
    assert "\n" not in str(caught.value)
    wide = HammingIndex(32)
    wide.add(np.ones((3, 32), np.int8))
    with pytest.raises(ValueError, match="holds 32-bit codes but the model makes 16-bit codes"):
        check_index(wide, model)
    by_hand = HammingIndex(BITS)
    by_hand.add(np.ones((3, BITS), np.int8))
    check_index(by_hand, make_model(1))  # no fingerprint recorded: only the bit count can be checked


def test_retriever_search_caches_codes_and_judges_relevance(model, data, monkeypatch):
    retriever = Retriever(model, data, database_index(model, data, progress=False))
    calls = []
    real_encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x: calls.append(1) or real_encode(x))
    query = retriever.query_item(4)
    wide = retriever.search(query, 20, BITS)
    narrow = retriever.search(retriever.query_item(4), 20, 3)
    assert len(calls) == 1  # the second search reused the code
    assert len(wide.ids) == 20 and np.all(narrow.distances <= 3)
    np.testing.assert_array_equal(narrow.ids, wide.ids[wide.distances <= 3])
    same_class = data.database.labels[wide.ids].argmax(1) == data.query.labels[4].argmax()
    np.testing.assert_array_equal(wide.relevant, same_class)
    unlabelled = retriever.search(Query("no label", query.image, query.display, None), 5, BITS)
    assert unlabelled.relevant is None and unlabelled.precision is None and len(calls) == 2
    with pytest.raises(ValueError, match="0..59"):
        retriever.query_item(60)
