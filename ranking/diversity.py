"""Maximal marginal relevance (MMR): diversify the top of a ranked list.

A query like "iphone case" would otherwise show ten colours of one case. MMR picks, one slot at
a time, the candidate maximising ``λ·relevance − (1−λ)·max similarity to those already picked``
(Carbonell & Goldstein, 1998). ``λ = 1`` keeps the ranker's order exactly; lower values trade
relevance for variety. Relevance is the ranker's score min-max scaled over the re-ordered
window, so λ means the same whatever the scale of the scores.

Similarity is the cosine of the products' dense vectors when the dense path serves the merchant,
otherwise catalog structure: same category and/or same brand.

``SEARCH_MMR_LAMBDA`` sets λ (default below, chosen on the dev set among three values);
``SEARCH_MMR_DEPTH`` how many top candidates MMR may reorder (the rest keep their order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learners import conf

#: Off by default: on the BestBuy dev set λ=1.0 / 0.9 / 0.7 gave NDCG@10 0.849 / 0.841 / 0.762
#: (graded judgments reward near-duplicates that are all relevant); shops that want variety
#: lower it.
DEFAULT_LAMBDA = 1.0
DEFAULT_DEPTH = 30
#: weights of structural similarity when no vectors are available
SAME_CATEGORY, SAME_BRAND = 0.6, 0.4


def mmr_lambda() -> float:
    value = conf.get("SEARCH_MMR_LAMBDA", DEFAULT_LAMBDA)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"SEARCH_MMR_LAMBDA must be within [0, 1], got {value}")
    return value


def mmr_depth() -> int:
    return conf.get("SEARCH_MMR_DEPTH", DEFAULT_DEPTH)


def structural_similarity(categories: Sequence[str], brands: Sequence[str]) -> np.ndarray:
    """[n, n] similarity from shared category and brand (case-insensitive)."""
    cats = np.asarray(categories, dtype=object)
    brand = np.asarray([b.lower() for b in brands], dtype=object)
    same_cat = (cats[:, None] == cats[None, :]) & (cats[:, None] != "")
    same_brand = (brand[:, None] == brand[None, :]) & (brand[:, None] != "")
    return SAME_CATEGORY * same_cat + SAME_BRAND * same_brand


def vector_similarity(vectors: np.ndarray) -> np.ndarray:
    """[n, n] cosine similarity of unit vectors, clipped at 0 (opposites are not "diverse")."""
    return np.clip(vectors @ vectors.T, 0.0, 1.0)


def mmr(scores: Sequence[float], similarity: np.ndarray, lam: float) -> list[int]:
    """Order of the indexes of ``scores`` (already sorted best-first) after MMR."""
    n = len(scores)
    if n < 3 or lam >= 1.0:
        return list(range(n))
    values = np.asarray(scores, dtype=np.float64)
    span = values.max() - values.min()
    relevance = (values - values.min()) / span if span > 0 else np.ones(n)
    picked = [0]
    closest = similarity[0].astype(np.float64).copy()
    remaining = np.ones(n, dtype=bool)
    remaining[0] = False
    for _ in range(n - 1):
        gain = np.where(remaining, lam * relevance - (1 - lam) * closest, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        remaining[best] = False
        closest = np.maximum(closest, similarity[best])
    return picked
