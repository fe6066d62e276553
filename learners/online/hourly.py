"""``train_hourly_adapter(hour)``: one hour of traffic → a gated LoRA adapter, per merchant.

The one code path behind the Celery task ``learners.tasks.train_hourly_adapter`` (beat, hourly)
and ``manage.py train_adapter --hour``. For every merchant with an active base model:

1. build the hour's pairs from its events (:mod:`~learners.online.pairs`; a benchmark may pass
   another :data:`PairSource`); no pairs → nothing to do;
2. **claim** the hour: the adapter's registry row has a deterministic name
   (``adapter-<merchant>-<YYYYmmddTHH>-b<base id>``) and is created first, with
   ``decision.state = "training"``. The unique name is the lock: a second worker (or a retry
   while the first still runs) fails to create it and returns ``locked``. A claim older than
   ``ONLINE_LOCK_TTL_S`` (a worker killed mid-training) is taken over, atomically, by one
   worker. A finished row makes the call a no-op that returns the recorded outcome, so the
   task is **idempotent** per (hour, merchant, base);
3. mix the pairs with replay (:mod:`~learners.online.replay`), train the adapter starting from
   the serving adapter of the same base (:mod:`~learners.online.adapter`);
4. gate it against the serving model (:mod:`~learners.online.gate`) and record the decision and
   metrics on the row: ``activate`` (serving hot-swaps to it) or ``reject``;
5. add the hour's pairs to the replay buffer (once per hour, whatever the decision: the
   shoppers' behaviour was real even if this adapter was not good enough).

A failure releases the claim (row and directory removed) so a retry starts clean.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from learners import registry
from learners.aggregates import hour_floor
from learners.generative.decode import GenerativeRetriever
from learners.models import ModelVersion
from learners.online import adapter as lora
from learners.online.anchors import BaseAnswers, anchor_pairs
from learners.online.config import OnlineConfig
from learners.online.gate import decide, probe_floor, probe_recall, score
from learners.online.grounding import GroundingVocabulary, grounded_pairs
from learners.online.pairs import HourPairs, build_pairs, by_query
from learners.online.rehearsal import clicked_views
from learners.online.replay import ReplayBuffer, replay_dir, training_mix
from ranking.generative import beam_width

log = logging.getLogger(__name__)

TRAINING = "training"

#: Where an hour's (query → docid) pairs come from: ``(hour, merchant, config) -> HourPairs``.
PairSource = Callable[[datetime, str, OnlineConfig], HourPairs]


def event_pairs(hour: datetime, merchant: str, config: OnlineConfig) -> HourPairs:
    """The pairs shoppers made in ``hour`` (the production source)."""
    return build_pairs(
        hour,
        merchant,
        holdout_fraction=config.holdout_fraction,
        min_weight=config.min_pair_weight,
        max_weight=config.max_pair_weight,
    )


@dataclass
class HourResult:
    merchant: str
    hour: str
    status: str  #: promoted | rejected | no-data | locked | done (already trained) | no-base
    version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "merchant": self.merchant,
            "hour": self.hour,
            "status": self.status,
            "version": self.version,
            **self.details,
        }


def train_hourly_adapter(
    hour: datetime,
    merchant: str | None = None,
    config: OnlineConfig | None = None,
    pairs: PairSource = event_pairs,
) -> list[HourResult]:
    """Train, gate and record the adapter of ``hour`` for one merchant or all of them, on the
    hour's events unless ``pairs`` says otherwise (``bench learning-curve --teach``)."""
    from catalog.models import Merchant

    config = config or OnlineConfig.from_settings()
    hour = hour_floor(hour)
    merchants = Merchant.objects.order_by("pk")
    if merchant:
        merchants = merchants.filter(slug=merchant)
    return [_train_merchant(hour, m.slug, config, pairs) for m in merchants]


def adapter_name(merchant: str, hour: datetime, base: ModelVersion) -> str:
    return f"adapter-{merchant}-{hour:%Y%m%dT%H}-b{base.pk}"


def serving_adapter(merchant: str, base: ModelVersion | None = None) -> ModelVersion | None:
    """The active adapter of ``merchant`` if it belongs to the active base's chain.

    After a monthly rebuild the old chain's adapter stays active in the registry until the new
    chain's first promotion retires it, but it must not be layered on the new base.
    """
    base = base or registry.active("base", merchant)
    adapter = registry.active("adapter", merchant)
    if base is None or adapter is None or lora.chain_base(adapter) != base.name:
        return None
    return adapter


def _train_merchant(
    hour: datetime, merchant: str, config: OnlineConfig, source: PairSource
) -> HourResult:
    result = HourResult(merchant, hour.isoformat(), "no-base")
    base = registry.active("base", merchant)
    if base is None:
        return result
    name = adapter_name(merchant, hour, base)
    existing = ModelVersion.objects.filter(name=name).first()
    if existing is not None and not _stale_claim(existing, config):
        return _recorded(result, existing)
    pairs = source(hour, merchant, config)
    if not pairs.train:
        result.status, result.details = "no-data", pairs.summary()
        return result
    claim = _claim(name, merchant, base, hour, existing)
    if claim is None:
        result.status, result.version = "locked", name
        return result
    try:
        return _train_claimed(result, claim, base, pairs, config)
    except BaseException:
        _release(claim)
        raise


def _recorded(result: HourResult, version: ModelVersion) -> HourResult:
    if version.decision.get("state") == TRAINING:
        result.status = "locked"
    else:
        result.status = "done"
        result.details = {"decision": version.decision, "metrics": version.metrics}
    result.version = version.name
    return result


# -- the claim (lock) --------------------------------------------------------------------------


def _stale_claim(version: ModelVersion, config: OnlineConfig) -> bool:
    if version.decision.get("state") != TRAINING:
        return False
    claimed = datetime.fromisoformat(version.decision["claimed_at"])
    return timezone.now() - claimed > timedelta(seconds=config.lock_ttl_s)


def _claim(
    name: str,
    merchant: str,
    base: ModelVersion,
    hour: datetime,
    stale: ModelVersion | None,
) -> ModelVersion | None:
    """Create the hour's registry row, or take over a stale one; None if another worker won."""
    if stale is not None:
        taken = ModelVersion.objects.filter(
            pk=stale.pk, decision__claimed_at=stale.decision["claimed_at"]
        ).delete()[0]
        if not taken:
            return None
    path = _version_path(name)
    try:
        with transaction.atomic():
            version = registry.register(
                "adapter",
                name,
                path,
                merchant=merchant,
                parent=serving_adapter(merchant, base) or base,
                metrics={"hour": hour.isoformat(), "base": base.name},
            )
            version.decision = {
                "state": TRAINING,
                "claimed_at": timezone.now().isoformat(),
                "owner": f"{socket.gethostname()}:{os.getpid()}",
            }
            version.save(update_fields=["decision"])
    except IntegrityError:
        return None
    shutil.rmtree(path, ignore_errors=True)  # leftovers of a crashed run
    return version


def _release(claim: ModelVersion) -> None:
    shutil.rmtree(claim.directory, ignore_errors=True)
    ModelVersion.objects.filter(pk=claim.pk).delete()


def _version_path(name: str) -> Path:
    return registry.models_dir() / name


# -- training, gate, record --------------------------------------------------------------------


def _train_claimed(
    result: HourResult,
    claim: ModelVersion,
    base: ModelVersion,
    pairs: HourPairs,
    config: OnlineConfig,
) -> HourResult:
    buffer = prepared_buffer(base, config)
    parent = claim.parent if claim.parent and claim.parent.kind == "adapter" else None
    rng = random.Random(f"{config.seed}:{claim.name}")
    vocabulary = grounding_vocabulary(base, config)
    grounded = grounded_pairs(
        pairs.train, vocabulary, weight=config.grounded_weight, max_weight=config.max_pair_weight
    )
    anchors = anchor_pairs(
        pairs.train,
        vocabulary,
        base_answers(base),
        taught={p.query for p in pairs.train + pairs.holdout + grounded},
        weight=config.anchor_weight,
        max_weight=config.max_pair_weight,
    )
    rehearsed = clicked_views(
        pairs.train,
        buffer.base_pairs() if config.clicked_views_weight > 0 else [],
        weight=config.clicked_views_weight,
        per_product=config.clicked_views_per_product,
        max_weight=config.max_pair_weight,
        taught={p.query for p in pairs.train + pairs.holdout + grounded + anchors},
        seed=f"{config.seed}:{claim.name}",
    )
    mix = training_mix(
        pairs.train + grounded + anchors + rehearsed,
        buffer if config.replay_fraction > 0 else None,
        fraction=config.replay_fraction,
        base_share=config.replay_base_share,
        epochs=config.epochs,
        rng=rng,
    )
    holdout, probe = by_query(pairs.holdout), buffer.probe()
    k, probe_k = config.gate_k, config.probe_k
    base_probe = base_probe_recall(base, buffer, config)
    stats = lora.train_adapter(
        base.directory,
        mix,
        claim.directory,
        init_from=parent.directory if parent else None,
        config=config,
        metadata={"base": base.name, "parent": claim.parent.name, "hour": result.hour},
        probe=lambda bundle: probe_recall(GenerativeRetriever(bundle), probe, probe_k),
        min_probe=probe_floor(base_probe, config),
    )
    candidate = score(
        lora.load_adapted(base.directory, claim.directory), holdout, probe, k, probe_k
    )
    serving_dir = parent.directory if parent else None
    serving = score(lora.load_adapted(base.directory, serving_dir), holdout, probe, k, probe_k)
    decision = decide(candidate, serving, base_probe, config)
    metrics = {
        **claim.metrics,
        **pairs.summary(),
        "grounded_pairs": len(grounded),
        "anchor_pairs": len(anchors),
        "rehearsed_pairs": len(rehearsed),
        "training": stats,
        "gate": decision.as_dict(),
    }
    _record(claim, metrics, decision.promote, decision.reason)
    buffer.add_hour(result.hour, pairs.train + pairs.holdout)
    result.status = "promoted" if decision.promote else "rejected"
    result.version = claim.name
    result.details = {"reason": decision.reason, "train_seconds": stats["seconds"]}
    log.info("adapter %s: %s (%s)", claim.name, result.status, decision.reason)
    return result


def _record(claim: ModelVersion, metrics: dict[str, Any], promote: bool, reason: str) -> None:
    outcome = {"state": "promoted" if promote else "rejected", "reason": reason}
    claim.metrics = metrics
    claim.decision = {**claim.decision, **outcome}
    claim.save(update_fields=["metrics", "decision"])
    if promote:
        registry.activate(claim)
    else:
        registry.reject(claim, outcome)


def base_answers(base: ModelVersion) -> BaseAnswers:
    """The base model's top docid per query (the anchors' targets), loaded only when asked.
    Decoded at the serving beam: what shoppers were shown first. A greedy decode (beam 1) is
    not that: on BestBuy it answers "cell phones" with a travel charger, beam 10 with a phone,
    and anchoring to it taught the very drift anchors are for."""

    def answer(queries: Sequence[str]) -> list[str | None]:
        if not queries:
            return []
        retriever = GenerativeRetriever(lora.load_adapted(base.directory, None))
        found = retriever.search_many(queries, k=1, beam=beam_width())
        return [hits[0].docid if hits else None for hits in found]

    return answer


def grounding_vocabulary(base: ModelVersion, config: OnlineConfig) -> GroundingVocabulary:
    """The merchant's catalog as it is now: a product added since the base still has words."""
    from learners.generative.data import load_products

    if config.grounded_weight <= 0:
        return GroundingVocabulary([])
    return GroundingVocabulary(load_products(base.merchant.slug), config.grounded_generic_share)


def prepared_buffer(base: ModelVersion, config: OnlineConfig) -> ReplayBuffer:
    """The base's replay buffer, built from its training data on first use."""
    from learners.generative.data import DataConfig, load_products
    from learners.generative.model import DOCIDS_FILE, read_metadata
    from learners.generative.train import read_leaf_targets

    buffer = ReplayBuffer(replay_dir(base.name), config.replay_capacity, config.seed)
    if not buffer.ready:
        known = set(json.loads((base.directory / DOCIDS_FILE).read_text()))
        products = [p for p in load_products(base.merchant.slug) if p.docid in known]
        data_config = DataConfig(**read_metadata(base.directory).get("data_config", {}))
        leaf_targets = read_leaf_targets(base.directory)
        buffer.build_base(products, data_config, config.probe_size, leaf_targets)
    return buffer


def base_probe_recall(base: ModelVersion, buffer: ReplayBuffer, config: OnlineConfig) -> float:
    """The base model's probe recall (computed once, cached next to the probe)."""
    cache = buffer.directory / f"probe_recall@{config.probe_k}.txt"
    if not cache.exists():
        retriever = GenerativeRetriever(lora.load_adapted(base.directory, None))
        cache.write_text(str(probe_recall(retriever, buffer.probe(), config.probe_k)))
    return float(cache.read_text())
