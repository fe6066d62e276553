"""Fusion: features with missing paths, the hybrid pipeline with and without a ranker, debug."""

from __future__ import annotations

import pytest

from ranking import search
from ranking.features import FEATURES, candidate_features, load_products, signals
from ranking.ranker.model import RankerConfig
from ranking.ranker.serving import rankers
from ranking.ranker.train import train_merchant_ranker
from ranking.recall import RecallResult
from ranking.types import Candidate


@pytest.fixture(autouse=True)
def fresh_caches():
    for cache in (rankers, signals):
        cache.clear()
    yield
    for cache in (rankers, signals):
        cache.clear()


def result(path: str, ids_scores: list[tuple[int, float]]) -> RecallResult:
    return RecallResult(
        [Candidate(pid, score, path, rank) for rank, (pid, score) in enumerate(ids_scores, 1)],
        total=len(ids_scores),
    )


def feature(row, name: str) -> float:
    return float(row[FEATURES.index(name)])


def test_features_with_a_missing_path(small_catalog):
    from catalog.models import Product

    ids = dict(Product.objects.values_list("sku", "pk"))
    results = {"bm25": result("bm25", [(ids["P1"], 9.0), (ids["P3"], 3.0)])}
    pids, matrix = candidate_features("iphone case", results, load_products([ids["P1"], ids["P3"]]))
    assert pids == [ids["P1"], ids["P3"]] and matrix.shape == (2, len(FEATURES))
    p1, p3 = matrix
    assert feature(p1, "bm25_found") == 1 and feature(p1, "bm25_score") == 1.0
    assert feature(p3, "bm25_score") == 0.0 and feature(p3, "bm25_rr") == 0.5
    assert feature(p1, "dense_found") == feature(p1, "generative_found") == 0
    assert feature(p1, "title_all_words") == 1 and feature(p3, "title_all_words") == 0
    assert feature(p1, "title_overlap") == 1.0 and feature(p3, "title_overlap") == 0.5
    assert feature(p1, "intent_share") == 0.5


def test_docid_prefix_agreement_only_when_generative_contributed(small_catalog):
    from catalog.models import Product

    ids = dict(Product.objects.values_list("sku", "pk"))
    infos = load_products([ids["P1"], ids["P2"], ids["P3"]])
    bm25 = result("bm25", [(ids["P1"], 2.0), (ids["P3"], 1.0)])
    generative = result("generative", [(ids["P2"], -0.1)])  # a case: P1's category too
    _, without = candidate_features("case", {"bm25": bm25}, infos)
    pids, with_gen = candidate_features("case", {"bm25": bm25, "generative": generative}, infos)
    assert without[:, FEATURES.index("docid_prefix_share")].tolist() == [0.0, 0.0]
    shares = dict(zip(pids, with_gen[:, FEATURES.index("docid_prefix_share")], strict=True))
    assert shares[ids["P1"]] == 1.0 and shares[ids["P3"]] == 0.0


def test_hybrid_without_ranker_is_rrf_and_debug_names_paths(small_catalog):
    response = search("iphone", merchant="phone-shop", pipeline="hybrid", debug=True)
    assert response.results
    for hit in response.results:
        assert hit.debug["fusion"] == "rrf" and hit.debug["paths"] == ["bm25"]


def test_a_failing_path_is_left_out_of_hybrid_but_fails_its_own_pipeline(
    small_catalog, monkeypatch, caplog
):
    """Regression: a dense path that could not reach Milvus answered /api/search with 500."""
    from ranking.dense.recall import DenseRecall

    def unreachable(self, request):
        raise ConnectionError("vector store unreachable")

    monkeypatch.setattr(DenseRecall, "recall", unreachable)
    hybrid = search("iphone", merchant="phone-shop", pipeline="hybrid")
    assert [r.sku for r in hybrid.results] == [
        r.sku for r in search("iphone", merchant="phone-shop", pipeline="bm25").results
    ]
    assert "recall path dense failed" in caplog.text
    with pytest.raises(ConnectionError):
        search("iphone", merchant="phone-shop", pipeline="dense")


def test_ranker_serves_hybrid_with_missing_paths_and_explains(small_catalog):
    # no encoder and no generative model: only bm25 proposes candidates
    version = train_merchant_ranker("phone-shop", RankerConfig(epochs=5), queries=40)
    assert version is not None and "relevance" in version.metrics["trained_heads"]
    response = search("samsung galaxy", merchant="phone-shop", pipeline="hybrid", debug=True)
    assert {r.sku for r in response.results} == {"P2", "P4"}
    debug = response.results[0].debug
    assert debug["fusion"] == f"ranker {version.name}" and debug["paths"] == ["bm25"]
    assert set(debug["heads"]) == {"relevance", "click", "purchase"}
    assert set(debug["features"]) == set(FEATURES)
    assert version.name in response.model_version
