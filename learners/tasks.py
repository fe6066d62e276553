"""Celery tasks of the learners app. Arguments and results are JSON-serialisable."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError

from learners import aggregates
from learners.celery import app

log = logging.getLogger(__name__)


@app.task(name="learners.tasks.aggregate_hour", bind=True, max_retries=3, soft_time_limit=1800)
def aggregate_hour(self: Any, hour: str | None = None, merchant: str | None = None) -> dict:
    """Compute and store one hour's event aggregates (default: the previous complete hour).

    ``hour`` is an ISO-8601 timestamp anywhere inside the hour. Idempotent, so beat re-running
    it or an operator replaying an hour after late events is safe.
    """
    moment = datetime.fromisoformat(hour) if hour else aggregates.previous_hour()
    try:
        report = aggregates.aggregate_hour(moment, merchant)
    except DatabaseError as exc:  # database locked or restarting: retry with back-off
        log.warning("aggregate_hour(%s) failed: %s", hour, exc)
        raise self.retry(exc=exc, countdown=30 * 2**self.request.retries) from exc
    log.info("aggregated %s", report.as_dict())
    return report.as_dict()


@app.task(name="learners.tasks.train_hourly_adapter", soft_time_limit=1800)
def train_hourly_adapter(hour: str | None = None, merchant: str | None = None) -> list[dict]:
    """Train, gate and record each merchant's LoRA adapter for one hour (default: the previous
    complete hour); see :mod:`learners.online.hourly`. Idempotent and locked per hour, so beat,
    a retry and ``manage.py train_adapter`` can never train the same hour twice."""
    from learners.online.hourly import train_hourly_adapter as train_hour

    moment = datetime.fromisoformat(hour) if hour else aggregates.previous_hour()
    results = [r.as_dict() for r in train_hour(moment, merchant)]
    log.info("train_hourly_adapter(%s): %s", moment.isoformat(), results)
    return results


@app.task(name="learners.tasks.retrain_ranker", soft_time_limit=1800)
def retrain_ranker(merchant: str | None = None) -> dict:
    """Retrain each merchant's fusion ranker on fresh pseudo-queries plus the last 30 days of
    shopper events (runs after the hourly adapter, whose model feeds the generative features),
    and activate it; see :mod:`ranking.ranker.train`."""
    from catalog.models import Merchant
    from ranking.ranker.train import train_merchant_ranker

    slugs = [merchant] if merchant else list(Merchant.objects.values_list("slug", flat=True))
    trained = {}
    for slug in slugs:
        version = train_merchant_ranker(slug)
        trained[slug] = version.name if version else None
    log.info("retrain_ranker: %s", trained)
    return trained


@app.task(name="learners.tasks.monthly_rebuild", soft_time_limit=6 * 3600)
def monthly_rebuild() -> dict:
    """Monthly base-model rebuild: give every product without a docid one, then retrain each
    merchant's generative base model on the whole catalog (``manage.py train_base_model``'s
    code), so products added during the month become decodable; the new version is activated
    only if it passes the memorisation gate, else the previous one keeps serving. The dense
    encoder is retrained too, with its full budget (see :func:`_retrain_encoder`)."""
    from catalog import docids
    from catalog.models import Merchant
    from learners.generative.base import default_minutes, train_base_model
    from learners.generative.train import TrainConfig

    assigned: dict[str, int] = {}
    models: dict[str, dict] = {}
    encoders: dict[str, str | None] = {}
    for merchant in Merchant.objects.order_by("pk"):
        report = docids.assign(merchant)
        assigned[merchant.slug] = report.assigned
        log.info(
            "monthly_rebuild: %s assigned=%d kept=%d", merchant.slug, report.assigned, report.kept
        )
        config = TrainConfig(max_minutes=default_minutes(), progress=False)
        try:  # resume: a worker killed mid-training continues from its last checkpoint
            trained = train_base_model(merchant, config=config, resume=True)
        except ValueError as error:  # no products with docids
            log.warning("monthly_rebuild: %s not trained: %s", merchant.slug, error)
            continue
        models[merchant.slug] = trained.as_dict()
        encoders[merchant.slug] = _retrain_encoder(merchant.slug)
    return {"assigned": assigned, "models": models, "encoders": encoders}


def _retrain_encoder(merchant: str) -> str | None:
    """A new dense encoder on the month's catalog, with ``DENSE_TRAIN_MINUTES`` (default
    ``DenseTrainConfig.minutes``) of training: ``run.sh``'s first start gives it two minutes
    (17 of the 72 epochs on BestBuy; hybrid NDCG@10 0.9109 against 0.9119 with all 72, README
    Benchmarks), and the month's new products' words join its vocabulary. Its Milvus collection
    is built before it is activated; the hourly ranker retraining (:45) learns its features
    within the hour."""
    from celery.exceptions import SoftTimeLimitExceeded

    from learners import conf
    from ranking.dense.train import DenseTrainConfig, train_merchant

    minutes = conf.get("DENSE_TRAIN_MINUTES", DenseTrainConfig.minutes)
    try:
        version = train_merchant(merchant, DenseTrainConfig(minutes=minutes))
    except SoftTimeLimitExceeded:  # an Exception too: the task's time is up, not this merchant's
        raise
    except Exception:  # e.g. Milvus down: this merchant keeps its encoder, the others go on
        log.exception("monthly_rebuild: %s encoder not retrained", merchant)
        return None
    name = version.name if version else None
    log.info("monthly_rebuild: %s encoder %s", merchant, name or "skipped (too few products)")
    return name
