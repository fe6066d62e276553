"""The Celery application of the platform (``celery -A learners.celery worker|beat``).

It lives in ``learners`` because every periodic job of the design belongs to this app: the
hourly job (today: event aggregates; later: the hourly LoRA adapter) and the monthly rebuild.
Configuration comes from Django settings prefixed ``CELERY_`` plus the broker/result URLs from
:mod:`learners.conf` (setting or environment ``CELERY_BROKER_URL``, default the local Redis).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")

from learners import conf  # noqa: E402  (needs DJANGO_SETTINGS_MODULE)

#: Beat schedule. The hourly job runs at :05 on the previous hour so that events in flight at
#: the turn of the hour (producer batching, consumer lag) are stored before it counts them.
BEAT_SCHEDULE = {
    "aggregate-previous-hour": {
        "task": "learners.tasks.aggregate_hour",
        "schedule": crontab(minute=5),
    },
    # after the aggregates, so the hour's late events are in the store
    "train-hourly-adapter": {
        "task": "learners.tasks.train_hourly_adapter",
        "schedule": crontab(minute=10),
    },
    # after the hourly adapter (soft limit 30 min from :10): the ranker sees its candidates
    "retrain-ranker": {
        "task": "learners.tasks.retrain_ranker",
        "schedule": crontab(minute=45),
    },
    "monthly-rebuild": {
        "task": "learners.tasks.monthly_rebuild",
        "schedule": crontab(minute=30, hour=3, day_of_month=1),
    },
}


def create_app(broker_url: str | None = None, result_backend: str | None = None) -> Celery:
    """A configured Celery app; explicit URLs let a test or script talk to another Redis."""
    app = Celery("learners")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    broker = broker_url or conf.celery_broker_url()
    app.conf.update(
        broker_url=broker,
        result_backend=result_backend or (broker if broker_url else conf.celery_result_backend()),
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
        task_acks_late=True,  # a worker killed mid-task leaves the task queued, not lost
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long tasks: do not hoard them on one worker
        broker_connection_retry_on_startup=True,
        beat_schedule=BEAT_SCHEDULE,
    )
    app.autodiscover_tasks()
    return app


app = create_app()
