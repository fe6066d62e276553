"""MMR: λ=1 keeps the ranker's order; lower λ reorders only within its bound."""

from __future__ import annotations

import numpy as np
import pytest

from ranking import diversity


def test_lambda_one_keeps_the_order():
    similarity = np.ones((5, 5))
    assert diversity.mmr([5, 4, 3, 2, 1], similarity, 1.0) == [0, 1, 2, 3, 4]


def test_near_duplicates_are_spread_out():
    # 0 and 1 are the same product in two colours; 2 is different and almost as relevant
    similarity = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert diversity.mmr([1.0, 0.95, 0.9], similarity, 0.5) == [0, 2, 1]
    assert diversity.mmr([1.0, 0.95, 0.9], similarity, 1.0) == [0, 1, 2]


@pytest.mark.parametrize("lam", [0.95, 0.8, 0.5])
def test_reorders_only_within_lambda(lam):
    """An item may jump a better one only when their scaled relevance differs by at most
    (1-λ)/λ: similarity, the price of relevance, is at most 1."""
    rng = np.random.default_rng(int(lam * 100))
    for _ in range(20):
        scores = np.sort(rng.random(12))[::-1]
        vectors = rng.normal(size=(12, 4))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        order = diversity.mmr(scores, diversity.vector_similarity(vectors), lam)
        assert sorted(order) == list(range(12)) and order[0] == 0
        relevance = (scores - scores.min()) / (scores.max() - scores.min())
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                assert relevance[b] - relevance[a] <= (1 - lam) / lam + 1e-9


def test_structural_similarity_uses_category_and_brand():
    similarity = diversity.structural_similarity(["a", "a", "b", ""], ["X", "y", "x", ""])
    assert similarity[0, 1] == pytest.approx(diversity.SAME_CATEGORY)
    assert similarity[0, 2] == pytest.approx(diversity.SAME_BRAND)
    assert similarity[3, 3] == 0.0


def test_lambda_comes_from_settings_and_is_validated(settings):
    settings.SEARCH_MMR_LAMBDA = 0.7
    assert diversity.mmr_lambda() == 0.7
    settings.SEARCH_MMR_LAMBDA = 1.5
    with pytest.raises(ValueError, match="SEARCH_MMR_LAMBDA"):
        diversity.mmr_lambda()
