"""Dense recall: Milvus Lite store, encoder training, the ``dense`` pipeline and index upkeep."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from django.test import override_settings

from catalog.models import Product
from learners import registry
from ranking import search
from ranking.dense import replica as replica_module
from ranking.dense.encoder import DenseEncoder
from ranking.dense.recall import serving
from ranking.dense.replica import ExactReplica
from ranking.dense.store import VectorStore, filter_expression
from ranking.dense.train import DenseTrainConfig, train_merchant
from ranking.features import content_words

FAST = DenseTrainConfig(epochs=15, minutes=1.0, batch_size=64)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_replica_follows_the_marker_of_its_store_even_after_settings_change(
    db, tmp_path, monkeypatch
):
    # regression: the scale benchmark built its store under an overridden DATA_DIR and searched
    # after the override ended; the replica then read another directory's (absent) marker,
    # took it for a change and reloaded 100k rows in the background during the timing
    monkeypatch.setattr(replica_module, "REFRESH_CHECK_S", 0.0)
    elsewhere = tmp_path / "scratch"  # not the test's own DATA_DIR (which is tmp_path)
    elsewhere.mkdir()
    with override_settings(DATA_DIR=elsewhere):
        store = VectorStore("encoder-test-moved", dim=4)
        store.create()
        store.upsert([1], unit(np.ones((1, 4), np.float32)), ["a"], ["x"])
        replica = ExactReplica(store)
    assert store.generation_marker.is_relative_to(elsewhere)
    reads = []
    real_read = replica_module.read_snapshot
    monkeypatch.setattr(replica_module, "read_snapshot", lambda s: reads.append(s) or real_read(s))
    for _ in range(5):
        replica.search(np.ones(4, np.float32), 1)
        time.sleep(0.05)  # room for a (wrong) background reload to start and run
    assert reads == []


def test_serving_replica_loads_in_the_background_and_asks_milvus_meanwhile(db, monkeypatch):
    # a first load of 100k rows takes about a minute: a web worker must not wait for it
    vectors = unit(np.eye(4, dtype=np.float32) + 0.01)
    store = VectorStore("encoder-test-background", dim=4)
    store.create()
    store.upsert([1, 2, 3], vectors[:3], ["a"] * 3, ["x"] * 3)
    release, real_read = threading.Event(), replica_module.read_snapshot

    def slow_read(store):
        assert release.wait(30)
        return real_read(store)

    monkeypatch.setattr(replica_module, "read_snapshot", slow_read)
    replica = ExactReplica(store, background=True)
    assert not replica.loaded
    expected = [h.product_id for h in store.search(vectors[1], 3)]
    assert [h.product_id for h in replica.search(vectors[1], 3)] == expected  # via Milvus
    np.testing.assert_allclose(replica.vectors([2])[2], vectors[1], atol=1e-5)
    release.set()
    deadline = time.monotonic() + 30
    while not replica.loaded and time.monotonic() < deadline:
        time.sleep(0.02)
    assert replica.loaded and len(replica) == 3
    assert [h.product_id for h in replica.search(vectors[1], 3)] == expected  # from memory


class Searched:
    """The store under test seen through one serving mode: Milvus itself, or its replica
    (reloaded explicitly after each write, as its background check would a second later)."""

    def __init__(self, store: VectorStore, mode: str) -> None:
        self.store = store
        self.index = ExactReplica(store) if mode == "replica" else store

    def after_write(self) -> None:
        if isinstance(self.index, ExactReplica):
            self.index.refresh()


@pytest.mark.parametrize("mode", ["milvus", "replica"])
def test_store_round_trip_with_merchant_and_category_filters(db, mode):
    rng = np.random.default_rng(0)
    vectors = unit(rng.normal(size=(6, 8)))
    store = VectorStore("encoder-test-v1", dim=8)
    store.create()
    store.upsert(
        [1, 2, 3, 4, 5, 6],
        vectors,
        ["a", "a", "a", "b", "b", "a"],
        ["phones/cases", "phones/cases/slim", "phones", "phones/cases", "food", "phonesx"],
    )
    assert store.count() == 6
    searched = Searched(store, mode)
    index = searched.index

    nearest = index.search(vectors[0], 3)
    assert nearest[0].product_id == 1 and nearest[0].score == pytest.approx(1.0, abs=1e-4)
    in_a = {h.product_id for h in index.search(vectors[3], 10, merchant="a")}
    assert in_a == {1, 2, 3, 6}
    # a category filter keeps the subtree, not sibling paths that merely share a prefix
    cases = {h.product_id for h in index.search(vectors[0], 10, category="phones/cases")}
    assert cases == {1, 2, 4}
    both = {h.product_id for h in index.search(vectors[0], 10, merchant="a", category="phones")}
    assert both == {1, 2, 3}
    assert index.search(vectors[0], 10, merchant="no-such-shop") == []

    store.delete([2])
    store.upsert([1], vectors[4:5], ["a"], ["food"])
    searched.after_write()
    assert {h.product_id for h in index.search(vectors[0], 10, category="phones/cases")} == {4}
    np.testing.assert_allclose(index.vectors([1, 99])[1], vectors[4], atol=1e-5)
    assert set(index.vectors([1, 99])) == {1}


def test_replica_ranks_exactly_like_milvus(db):
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(300, 16)))
    store = VectorStore("encoder-test-exact", dim=16)
    store.create()
    categories = [f"c{i % 7}" for i in range(300)]
    store.upsert(list(range(1, 301)), vectors, ["a"] * 300, categories)
    replica = ExactReplica(store)
    for query in unit(rng.normal(size=(5, 16))):
        for category in (None, "c3"):
            expected = store.search(query, 20, category=category)
            got = replica.search(query, 20, category=category)
            assert [h.product_id for h in got] == [h.product_id for h in expected]
            np.testing.assert_allclose(
                [h.score for h in got], [h.score for h in expected], atol=1e-5
            )


def test_replica_reloads_in_the_background_when_another_writer_changes_the_collection(
    db, monkeypatch
):
    monkeypatch.setattr(replica_module, "REFRESH_CHECK_S", 0.0)
    vectors = unit(np.eye(4, dtype=np.float32) + 0.01)
    store = VectorStore("encoder-test-follow", dim=4)
    store.create()
    store.upsert([1, 2], vectors[:2], ["a", "a"], ["x", "x"])
    replica = ExactReplica(store)
    assert len(replica) == 2

    # a second handle stands for another process writing (the marker file is all they share)
    VectorStore("encoder-test-follow", dim=4).upsert([3], vectors[2:3], ["a"], ["x"])
    deadline = time.monotonic() + 30
    while len(replica) < 3 and time.monotonic() < deadline:
        replica.search(vectors[2], 1)  # searching is what notices the change
        time.sleep(0.05)
    assert replica.search(vectors[2], 1)[0].product_id == 3


def test_filter_expression_quotes_values_and_escapes_like_wildcards():
    # the backslash is doubled by string-literal quoting; LIKE then sees a literal "_"
    assert filter_expression('sh"op', "a_b") == (
        'merchant == "sh\\"op" and (category == "a_b" or category like "a\\\\_b/%")'
    )
    assert filter_expression(None, None) == ""


def test_content_words_singular_and_without_stopwords():
    assert content_words("Cases for the iPhones") == frozenset({"case", "iphone"})


def test_encoder_save_load_round_trip(tmp_path):
    encoder = DenseEncoder.new(["otterbox defender case", "galaxy phone"])
    encoder.save(tmp_path / "v")
    loaded = DenseEncoder.load(tmp_path / "v")
    texts = ["otterbox case", "a brand new word"]
    np.testing.assert_allclose(encoder.encode(texts), loaded.encode(texts), atol=1e-6)
    assert np.linalg.norm(loaded.encode(["zzz"]), axis=1) == pytest.approx(1.0)


def handset_path() -> str:
    return Product.objects.get(sku="P3").category.path


def test_trained_encoder_serves_dense_pipeline_and_follows_catalog(
    small_catalog, django_capture_on_commit_callbacks
):
    version = train_merchant("phone-shop", FAST)
    assert version is not None and version.status == "active" and version.kind == "encoder"
    assert version.metrics["vectors"] == 4
    assert registry.active("encoder", "phone-shop") == version

    response = search("galaxy s8 case", k=2, merchant="phone-shop", pipeline="dense")
    assert [r.sku for r in response.results][:1] == ["P2"]
    assert all(r.paths == ["dense"] for r in response.results)
    handsets = search(
        "phone", k=10, merchant="phone-shop", category=handset_path(), pipeline="dense"
    )
    assert {r.sku for r in handsets.results} == {"P3", "P4"}

    # products_changed keeps the collection current: a deactivated product disappears
    product = Product.objects.get(sku="P2")
    product.active = False
    with django_capture_on_commit_callbacks(execute=True):
        product.save()
    assert serving("phone-shop").store.count() == 3
    serving("phone-shop").index.refresh()  # what its background check does within a second
    assert serving("phone-shop").index.vectors([product.pk]) == {}
    response = search("galaxy s8 case", k=4, merchant="phone-shop", pipeline="dense")
    assert "P2" not in {r.sku for r in response.results}


def test_new_encoder_version_gets_its_own_collection_and_old_ones_are_pruned(small_catalog):
    first = train_merchant("phone-shop", DenseTrainConfig(epochs=1, batch_size=64))
    second = train_merchant("phone-shop", DenseTrainConfig(epochs=1, batch_size=64))
    third = train_merchant("phone-shop", DenseTrainConfig(epochs=1, batch_size=64))
    stores = [VectorStore(v.name, 128) for v in (first, second, third)]
    # active (third) and the rollback target (second) keep their vectors
    assert [s.exists() for s in stores] == [False, True, True]
    assert serving("phone-shop").version == third.name


def test_dense_path_is_empty_without_an_encoder(small_catalog):
    response = search("iphone", merchant="phone-shop", pipeline="dense")
    assert response.results == []


def test_train_dense_if_missing_trains_once_for_start_up_scripts(small_catalog):
    from io import StringIO

    from django.core.management import call_command

    from learners import registry

    first = StringIO()
    call_command("train_dense", "--merchant", "phone-shop", "--epochs", "1", "--if-missing",
                 stdout=first)  # fmt: skip
    trained = registry.active("encoder", "phone-shop")
    assert trained is not None and trained.name in first.getvalue()

    again = StringIO()
    call_command("train_dense", "--merchant", "phone-shop", "--if-missing", stdout=again)
    assert "active encoder exists, skipped" in again.getvalue()
    assert registry.active("encoder", "phone-shop") == trained
