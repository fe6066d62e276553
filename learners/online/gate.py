"""The promotion gate: a candidate adapter serves only if it predicts the hour's *later*
behaviour better than the serving model and has not forgotten the catalog.

Two measurements, both recall@k of constrained beam search (``gate_k``, 1 by default, and
``probe_k``, 10):

* **held-out recall** on the last slice of the hour (:mod:`~learners.online.pairs`): the share
  of held-out signal weight whose docid the model puts in its top k for that query. Weighted,
  so a purchased product counts more than a clicked one, as in training;
* **probe recall** on the base model's fixed probe set of pseudo-queries
  (:mod:`~learners.online.replay`): each probe query has one docid; a drop is forgetting.

Promote iff there is held-out data, the candidate's held-out recall beats the serving model's
by more than ``min_gain``, and its probe recall is at most ``max_probe_drop`` *points* below the
base model's. The probe is compared with the base rather than with the previous adapter so
that small per-hour losses cannot add up over a day of promotions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from learners.generative.decode import GenerativeRetriever
from learners.generative.model import GenerativeModel
from learners.online.config import OnlineConfig
from learners.online.pairs import Pair


@dataclass(frozen=True)
class Scores:
    holdout_recall: float | None  #: None when there was nothing held out
    probe_recall: float


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate: Scores
    serving: Scores
    base_probe_recall: float
    thresholds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def weighted_recall(
    retriever: GenerativeRetriever, judged: Mapping[str, Mapping[str, float]], k: int
) -> float | None:
    """Share of the judged weight whose docid is in the top ``k`` of its query (None if empty)."""
    total = hit = 0.0
    queries = list(judged)
    for query, hits in zip(queries, retriever.search_many(queries, k=k), strict=True):
        found = {h.docid for h in hits}
        for docid, weight in judged[query].items():
            total += weight
            hit += weight if docid in found else 0.0
    return hit / total if total else None


def probe_recall(retriever: GenerativeRetriever, probe: Sequence[Pair], k: int) -> float:
    judged = {p.query: {p.docid: 1.0} for p in probe}
    return weighted_recall(retriever, judged, k) or 0.0


def score(
    bundle: GenerativeModel,
    holdout: Mapping[str, Mapping[str, float]],
    probe: Sequence[Pair],
    k: int,
    probe_k: int | None = None,
) -> Scores:
    retriever = GenerativeRetriever(bundle)
    return Scores(
        weighted_recall(retriever, holdout, k), probe_recall(retriever, probe, probe_k or k)
    )


#: Probe recalls are multiples of 1/len(probe): a drop of exactly the bound (4 of 400 queries
#: for 1 point) must pass although 100 * (0.54 - 0.53) is 1.0000000000000009 in floating point.
ROUNDING = 1e-9


def probe_floor(base_probe: float, config: OnlineConfig) -> float:
    """The lowest probe recall within the forgetting bound (the gate's, and training's
    checkpoint selection's)."""
    return base_probe - config.max_probe_drop / 100.0 - ROUNDING


def decide(
    candidate: Scores, serving: Scores, base_probe: float, config: OnlineConfig
) -> GateDecision:
    """Apply the rule of the module docstring."""
    thresholds = {
        "min_gain": config.min_gain,
        "max_probe_drop_points": config.max_probe_drop,
        "gate_k": config.gate_k,  # the registry then says which recall the scores are
        "probe_k": config.probe_k,
    }
    drop = 100.0 * (base_probe - candidate.probe_recall)
    if candidate.holdout_recall is None or serving.holdout_recall is None:
        promote, reason = False, "no held-out events this hour: nothing to judge the adapter on"
    elif candidate.holdout_recall <= serving.holdout_recall + config.min_gain:
        promote = False
        reason = (
            f"held-out recall@{config.gate_k} {candidate.holdout_recall:.4f} does not beat "
            f"serving {serving.holdout_recall:.4f} by more than {config.min_gain}"
        )
    elif candidate.probe_recall < probe_floor(base_probe, config):
        promote = False
        reason = (
            f"probe recall@{config.probe_k} dropped {drop:.2f} points below the base "
            f"(max {config.max_probe_drop})"
        )
    else:
        promote = True
        reason = (
            f"held-out recall@{config.gate_k} {serving.holdout_recall:.4f} → "
            f"{candidate.holdout_recall:.4f}; probe {drop:.2f} points below the base"
        )
    return GateDecision(promote, reason, candidate, serving, base_probe, thresholds)
