"""Train a merchant's fusion ranker and register it (kind ``ranker``).

Candidates come from the same recall paths as the ``hybrid`` pipeline serves with, so the
features the ranker learns on are the ones it will see. A tenth of the pseudo-queries is held
out; the version's metrics report NDCG@10 on them for the ranker and for the BM25 order alone
(pseudo-labels, not human judgments: a training check, not a benchmark).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ranking.features import FEATURES
from ranking.ranker.data import logged_query_groups, pseudo_query_groups
from ranking.ranker.model import FusionRanker, QueryGroup, RankerConfig, train_ranker


def ndcg_at(labels: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    gains = 2.0 ** labels.astype(np.float64) - 1.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(gains)[::-1][:k]
    best = float((ideal * discounts[: len(ideal)]).sum())
    if best == 0:
        return 0.0
    got = gains[np.argsort(-scores, kind="stable")][:k]
    return float((got * discounts[: len(got)]).sum()) / best


def holdout_metrics(ranker: FusionRanker, groups: Sequence[QueryGroup]) -> dict[str, float]:
    bm25 = FEATURES.index("bm25_score")
    labelled = [g for g in groups if g.relevance is not None]
    if not labelled:
        return {}
    return {
        "holdout_queries": len(labelled),
        "holdout_ndcg@10": float(
            np.mean([ndcg_at(g.relevance, ranker.score(g.features)[0]) for g in labelled])
        ),
        "holdout_bm25_ndcg@10": float(
            np.mean([ndcg_at(g.relevance, g.features[:, bm25]) for g in labelled])
        ),
    }


def train_merchant_ranker(
    merchant: str,
    config: RankerConfig | None = None,
    *,
    queries: int = 1500,
    activate: bool = True,
    progress: bool = False,
):  # -> learners.models.ModelVersion | None
    """Build training queries, fit, save and register a ranker; None without training data."""
    from learners import registry
    from ranking.service import PIPELINES

    paths = PIPELINES["hybrid"]()
    pseudo = pseudo_query_groups(merchant, paths, queries=queries, progress=progress)
    random.Random(0).shuffle(pseudo)
    holdout, pseudo = pseudo[: len(pseudo) // 10], pseudo[len(pseudo) // 10 :]
    logged = logged_query_groups(merchant, paths)
    groups = pseudo + logged
    if not groups:
        return None
    ranker, metrics = train_ranker(groups, config, progress=progress)
    metrics.update(holdout_metrics(ranker, holdout), logged_queries=len(logged))
    metrics["trained_heads"] = list(ranker.trained_heads)
    name, path = registry.new_version_dir("ranker", merchant)
    ranker.save(path, metrics)
    return registry.register_successor(
        "ranker", name, path, merchant=merchant, metrics=metrics, activate=activate
    )
