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


@app.task(name="learners.tasks.monthly_rebuild", soft_time_limit=6 * 3600)
def monthly_rebuild() -> dict:
    """Monthly maintenance. For now: give every product without a docid one (the real base
    model rebuild -- re-derive docids, retrain -- replaces this with its own issue)."""
    from catalog import docids
    from catalog.models import Merchant

    assigned: dict[str, int] = {}
    for merchant in Merchant.objects.order_by("pk"):
        report = docids.assign(merchant)
        assigned[merchant.slug] = report.assigned
        log.info(
            "monthly_rebuild: %s assigned=%d kept=%d", merchant.slug, report.assigned, report.kept
        )
    return {"assigned": assigned}
