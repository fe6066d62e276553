"""Learned fusion at search time: features -> multitask ranker -> MMR.

Used by the ``hybrid`` pipeline when the merchant has an active ``ranker`` version (otherwise the
service falls back to reciprocal-rank fusion). The ranker orders the union of each path's top
``CANDIDATE_DEPTH`` candidates; anything the paths found deeper follows in RRF order, so recall
at depth is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learners.models import ModelVersion
from ranking import catalog_cache, diversity
from ranking.active_models import ActiveModels
from ranking.features import FEATURES, ProductInfo, candidate_features, signals
from ranking.ranker.data import CANDIDATE_DEPTH
from ranking.ranker.model import HEADS, FusionRanker
from ranking.recall import RecallRequest, RecallResult
from ranking.types import Candidate, SearchResult


def _load(version: ModelVersion, merchant: str) -> FusionRanker:
    return FusionRanker.load(version.directory)


rankers: ActiveModels[FusionRanker] = ActiveModels("ranker", _load)


@dataclass
class Reranked:
    candidates: list[Candidate]
    version: str
    explain: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: the rows features were computed from; the result page reuses them
    products: dict[int, ProductInfo] = field(default_factory=dict)


def rerank(
    request: RecallRequest,
    results: dict[str, RecallResult],
    fallback: list[Candidate],
    debug: bool = False,
) -> Reranked | None:
    """The learned order of ``results``, or None when no ranker serves the merchant.

    ``fallback`` is the RRF order of all candidates; it orders those below the ranked window.
    """
    if not request.merchant:
        return None
    active = rankers.get(request.merchant)
    if active is None:
        return None
    version, ranker = active
    window = {
        name: RecallResult(r.candidates[:CANDIDATE_DEPTH], r.total) for name, r in results.items()
    }
    infos = catalog_cache.catalog.product_rows(
        c.product_id for r in window.values() for c in r.candidates
    )
    shoppers = signals.rates(request.merchant)
    pids, features = candidate_features(request.query, window, infos, shoppers)
    # the heads correct the rank-fusion order (its weights were measured, see service.py)
    fused_rank = {c.product_id: rank for rank, c in enumerate(fallback, start=1)}
    prior = np.array([1.0 / fused_rank[pid] for pid in pids], dtype=np.float32)
    evidence = shoppers.evidence(request.query, [infos[pid].sku for pid in pids])
    final, heads = ranker.score(features, prior, evidence)
    order = [int(i) for i in np.argsort(-final, kind="stable")]
    order = _diversify(order, final, pids, infos, request.merchant)
    path_of = {c.product_id: c.path for c in fallback}  # "bm25+dense": the paths that found it
    scores = final.tolist()
    ranked = [
        Candidate(pids[i], scores[i], path_of[pids[i]], rank)
        for rank, i in enumerate(order, start=1)
    ]
    seen = set(pids)
    rest = [c for c in fallback if c.product_id not in seen]
    for rank, candidate in enumerate(rest, start=len(ranked) + 1):
        candidate.rank = rank
    explain = _explain(pids, features, heads, final, path_of, evidence) if debug else {}
    return Reranked(ranked + rest, version, explain, infos)


def _diversify(
    order: list[int],
    final: np.ndarray,
    pids: list[int],
    infos: dict[int, ProductInfo],
    merchant: str,
) -> list[int]:
    lam = diversity.mmr_lambda()
    head = order[: diversity.mmr_depth()]
    if lam >= 1.0 or len(head) < 3:
        return order
    similarity = _similarity([pids[i] for i in head], infos, merchant)
    picked = diversity.mmr([float(final[i]) for i in head], similarity, lam)
    return [head[j] for j in picked] + order[len(head) :]


def _similarity(ids: list[int], infos: dict[int, ProductInfo], merchant: str) -> np.ndarray:
    """Dense-vector cosine when the merchant has an encoder with all these vectors."""
    from ranking.dense.recall import serving

    current = serving(merchant)
    if current is not None:
        vectors = current.index.vectors(ids)
        if len(vectors) == len(ids):
            return diversity.vector_similarity(np.stack([vectors[i] for i in ids]))
    return diversity.structural_similarity(
        [infos[i].category_path for i in ids], [infos[i].brand for i in ids]
    )


def _explain(
    pids: list[int],
    features: np.ndarray,
    heads: np.ndarray,
    final: np.ndarray,
    path_of: dict[int, str],
    evidence: np.ndarray,
) -> dict[int, dict[str, Any]]:
    return {
        pid: {
            "paths": path_of[pid].split("+"),
            "features": {n: round(float(v), 4) for n, v in zip(FEATURES, features[i], strict=True)},
            "heads": {h: round(float(v), 4) for h, v in zip(HEADS, heads[i], strict=True)},
            "ranker_score": round(float(final[i]), 4),
            "event_evidence": round(float(evidence[i]), 4),
        }
        for i, pid in enumerate(pids)
    }


def explain_hits(
    hits: list[SearchResult], reranked: Reranked | None, query_intent: str | None = None
) -> None:
    """Fill each result's ``debug`` with the paths that found it, what the query was read to
    ask for (``ranking.intent``) and, when the ranker ordered it, its features and head
    scores (``search(..., debug=True)``)."""
    for hit in hits:
        details = reranked.explain.get(hit.product_id, {}) if reranked else {}
        hit.debug = {
            **(hit.debug or {}),
            "paths": hit.paths,
            "fusion": f"ranker {reranked.version}" if reranked else "rrf",
            "query_intent": query_intent,
            **details,
        }
