"""The multitask ranker: heads, IPW position debiasing, learning from an event log."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch
from django.utils import timezone

from learners import registry
from learners.aggregates import QUERY_SKU, SKU
from learners.models import HourlyAggregate
from ranking import search
from ranking.features import FEATURES, signals
from ranking.ranker.model import (
    FusionRanker,
    QueryGroup,
    RankerConfig,
    group_loss,
    rerank_with_evidence,
    train_ranker,
)
from ranking.ranker.serving import rankers
from ranking.ranker.train import ndcg_at, train_merchant_ranker


@pytest.fixture(autouse=True)
def fresh_caches():
    rankers.clear()
    signals.clear()
    yield
    rankers.clear()
    signals.clear()


def synthetic_groups(n: int, seed: int = 0) -> list[QueryGroup]:
    """Relevance is feature 0; purchases follow feature 1 (unrelated to relevance)."""
    rng = np.random.default_rng(seed)
    groups = []
    for i in range(n):
        features = rng.random((8, len(FEATURES))).astype(np.float32)
        relevance = np.digitize(features[:, 0], [0.5, 0.8])
        exam = np.full(8, 10.0, dtype=np.float32)
        purchases = np.round(features[:, 1] * 6).astype(np.float32)
        groups.append(
            QueryGroup(
                f"q{i}",
                features,
                relevance=relevance if i % 2 == 0 else None,
                clicks=purchases * 1.5 if i % 2 else None,
                purchases=purchases if i % 2 else None,
                examination=exam if i % 2 else None,
            )
        )
    return groups


def test_heads_learn_their_own_labels_and_survive_save_load(tmp_path):
    ranker, metrics = train_ranker(synthetic_groups(60), RankerConfig(epochs=30))
    assert set(ranker.trained_heads) == {"relevance", "click", "purchase"}
    test = synthetic_groups(10, seed=1)
    heads = np.concatenate([ranker.heads(g.features) for g in test])
    features = np.concatenate([g.features for g in test])
    assert np.corrcoef(heads[:, 0], features[:, 0])[0, 1] > 0.8
    assert np.corrcoef(heads[:, 2], features[:, 1])[0, 1] > 0.8
    assert np.corrcoef(heads[:, 0], features[:, 1])[0, 1] < 0.5

    ranker.save(tmp_path / "r")
    loaded = FusionRanker.load(tmp_path / "r")
    np.testing.assert_allclose(loaded.score(features)[0], ranker.score(features)[0], atol=1e-5)


def test_serving_scores_in_numpy_what_the_torch_network_computes():
    """Serving scores with ``forward_numpy``; it must be the trained network's forward, and
    follow the live weights (read through views, not a copy taken before training)."""
    ranker, _ = train_ranker(synthetic_groups(20), RankerConfig(epochs=3))
    features = np.concatenate([g.features for g in synthetic_groups(5, seed=2)])
    standardised = torch.from_numpy((features - ranker.mean) / ranker.std)
    with torch.no_grad():
        expected = ranker.net(standardised).numpy()
        np.testing.assert_allclose(ranker.heads(features), expected, atol=1e-5)
        ranker.net.heads.bias.add_(1.0)  # in place, as an optimiser step changes it
        np.testing.assert_allclose(ranker.heads(features), expected + 1.0, atol=1e-5)


def test_serving_prior_replaces_the_trained_one_and_corrections_stay_bounded():
    only_relevance = [g for g in synthetic_groups(20) if g.relevance is not None]
    ranker, _ = train_ranker(only_relevance, RankerConfig(epochs=2))
    features = only_relevance[0].features
    fused_order_prior = 1.0 / np.arange(1, len(features) + 1, dtype=np.float32)

    final, _ = ranker.score(features, fused_order_prior)

    bound = ranker.config.bounds[0]  # only the relevance head is trained here
    assert np.all(np.abs(final - fused_order_prior) <= bound + 1e-6)
    trained_prior, _ = ranker.score(features)
    assert not np.allclose(final, trained_prior)


def test_untrained_heads_do_not_score():
    only_relevance = [g for g in synthetic_groups(20) if g.relevance is not None]
    ranker, _ = train_ranker(only_relevance, RankerConfig(epochs=2))
    assert ranker.trained_heads == ("relevance",)
    assert list(ranker.weights) == [1.0, 0.0, 0.0]


def test_click_loss_is_position_debiased():
    """Same clicks, fewer expected examinations (shown lower) -> higher target click rate:
    the loss is lowest at a higher predicted probability."""

    def best_probability(examination: float) -> float:
        group = QueryGroup(
            "q",
            np.zeros((1, len(FEATURES)), np.float32),
            clicks=np.array([1.0]),
            purchases=None,
            examination=np.array([examination]),
        )
        grid = torch.linspace(-4, 4, 161)
        losses = [
            float(group_loss(torch.tensor([[0.0, float(g), 0.0]]), group, (1, 1, 1))) for g in grid
        ]
        return float(torch.sigmoid(grid[int(np.argmin(losses))]))

    top, low = best_probability(4.0), best_probability(1.5)  # 4 views at top vs deep down
    assert top == pytest.approx(0.25, abs=0.02) and low == pytest.approx(1 / 1.5, abs=0.02)


def test_ndcg_at():
    assert ndcg_at(np.array([2, 0, 1]), np.array([3.0, 2.0, 1.0])) < 1.0
    assert ndcg_at(np.array([2, 1, 0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(1.0)


def aggregate(
    sku: str, *, hours_ago: int, query: str, impressions: int, exam: float, clicks: int, buys: int
):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
    for level, q in ((QUERY_SKU, query), (SKU, "")):
        HourlyAggregate.objects.create(
            hour=hour,
            merchant="phone-shop",
            level=level,
            query=q,
            sku=sku,
            impressions=impressions,
            examination=exam,
            clicks=clicks,
            purchases=buys,
        )


def train_on_cases_bought_as_p1():
    """Both cases match "case"; P2 was always shown first (more examinations) yet never
    bought, P1 sat lower and was bought -- for four case queries."""
    for hours_ago, query in enumerate(("case", "cases", "phone case", "protective case"), 1):
        aggregate(
            "P2", hours_ago=hours_ago, query=query, impressions=200, exam=200.0, clicks=30, buys=0
        )
        aggregate(
            "P1", hours_ago=hours_ago, query=query, impressions=200, exam=100.0, clicks=40, buys=25
        )
    version = train_merchant_ranker("phone-shop", RankerConfig(epochs=60), queries=0)
    rankers.clear()  # serving re-reads the registry every 2 s; don't wait for it
    return version


def test_ranker_trained_on_event_log_ranks_purchased_items_higher(small_catalog):
    before = [r.sku for r in search("case", merchant="phone-shop", pipeline="hybrid").results]
    assert before[:2] == ["P2", "P1"] or before[:2] == ["P1", "P2"]
    version = train_on_cases_bought_as_p1()
    assert version is not None and version.kind == "ranker" and version.status == "active"
    assert registry.active("ranker", "phone-shop") == version
    assert set(version.metrics["trained_heads"]) == {"click", "purchase"}

    response = search("case", merchant="phone-shop", pipeline="hybrid", debug=True)
    skus = [r.sku for r in response.results]
    assert skus.index("P1") < skus.index("P2")
    assert version.name in (response.model_version or "")
    top = response.results[0].debug
    assert top["heads"]["purchase"] > response.results[1].debug["heads"]["purchase"]


def test_event_heads_leave_a_query_nobody_searched_in_fused_order(small_catalog):
    """The heads learnt that P1 sells; a query with no impressions of its own keeps the order
    the recall paths gave it (regression: hourly rankers reordered never-searched queries)."""

    def unseen():
        return search("samsung galaxy case", merchant="phone-shop", pipeline="hybrid", debug=True)

    before = [r.sku for r in unseen().results]
    assert before.index("P2") < before.index("P1")
    train_on_cases_bought_as_p1()

    after = unseen().results
    assert [r.sku for r in after] == before
    # only the (untrained) relevance head may correct it: the score is the fused prior 1/rank
    assert [r.debug["event_evidence"] for r in after] == [0.0] * len(after)
    assert [r.debug["ranker_score"] for r in after] == pytest.approx(
        [1 / rank for rank in range(1, len(after) + 1)], abs=1e-4
    )
    searched = search("phone case", merchant="phone-shop", pipeline="hybrid", debug=True)
    assert searched.results[0].sku == "P1"
    assert searched.results[0].debug["event_evidence"] == pytest.approx(200 / (200 + 50), abs=1e-4)


def test_event_heads_reorder_only_what_shoppers_saw_among_its_own_places():
    """Regression: never-shown products (event logits extrapolated, here the highest) rose
    above shown ones; now they keep their places, and among theirs the shown ones clicked more
    than their average move up while the least clicked is not pushed down."""
    base = np.array([1.0, 0.5, 0.33, 0.25, 0.2], dtype=np.float32)
    events = np.array([-4.0, 3.0, -1.0, 5.0, 0.0], dtype=np.float32)
    evidence = np.array([0.8, 0.0, 0.8, 0.0, 0.8], dtype=np.float32)

    final = rerank_with_evidence(base, events, evidence, bound=1.0)

    order = list(np.argsort(-final, kind="stable"))
    assert order[1] == 1 and order[3] == 3  # no evidence: same places, same scores
    assert final[1] == base[1] and final[3] == base[3]
    assert [order[0], order[2], order[4]] == [0, 4, 2]
    assert sorted(final) == sorted(base)
    unseen = rerank_with_evidence(base, events, np.zeros(5, np.float32), bound=1.0)
    np.testing.assert_array_equal(unseen, base)


def test_retrain_task_registers_and_activates_a_ranker(small_catalog):
    from learners.tasks import retrain_ranker

    trained = retrain_ranker("phone-shop")
    active = registry.active("ranker", "phone-shop")
    assert active is not None and trained == {"phone-shop": active.name}
    assert active.metrics["trained_heads"] == ["relevance"]
