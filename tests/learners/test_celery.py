"""The Celery app: configuration, the tasks themselves, and a real worker running them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.schedules import crontab

from learners.celery import BEAT_SCHEDULE, app, create_app
from learners.events.consumer import store_events
from learners.events.schema import parse_event
from learners.models import HourlyAggregate
from learners.tasks import monthly_rebuild
from tests.learners import factories as f
from tests.learners.conftest import child_env, start_celery_worker, stop_child


def test_app_is_configured_from_settings(settings):
    assert {"learners.tasks.aggregate_hour", "learners.tasks.monthly_rebuild"} <= set(app.tasks)
    assert app.conf.task_acks_late and app.conf.timezone == "UTC"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/5"
    assert create_app().conf.broker_url == "redis://127.0.0.1:1/5"


def test_beat_runs_hourly_and_monthly():
    hourly = BEAT_SCHEDULE["aggregate-previous-hour"]
    monthly = BEAT_SCHEDULE["monthly-rebuild"]
    assert hourly["task"] == "learners.tasks.aggregate_hour"
    assert hourly["schedule"] == crontab(minute=5)
    assert monthly["task"] == "learners.tasks.monthly_rebuild"
    assert monthly["schedule"].day_of_month == {1}


def test_monthly_rebuild_assigns_missing_docids_and_retrains_the_encoder(small_catalog, settings):
    from catalog.models import Docid, Product
    from learners import registry

    settings.GENERATIVE_TRAIN_MINUTES = 0.02  # it retrains base models: keep that short here
    settings.DENSE_TRAIN_MINUTES = 0.02  # and the dense encoder
    phones = small_catalog["phones"]
    Product.objects.create(merchant=phones, sku="P5", title="Pixel 8 case", price="9.99")
    result = monthly_rebuild()
    assert result["assigned"][phones.slug] == 1
    assert Docid.objects.filter(product__sku="P5").exists()
    encoder = registry.active("encoder", phones.slug)
    assert encoder is not None and result["encoders"][phones.slug] == encoder.name

    again = monthly_rebuild()
    assert again["assigned"][phones.slug] == 0  # nothing missing any more
    assert again["encoders"][phones.slug] != encoder.name  # a new encoder every month
    assert registry.active("encoder", phones.slug).name == again["encoders"][phones.slug]


def test_a_failed_encoder_retraining_keeps_the_serving_encoder(
    small_catalog, settings, monkeypatch
):
    from celery.exceptions import SoftTimeLimitExceeded

    from learners import registry
    from ranking.dense import train

    settings.GENERATIVE_TRAIN_MINUTES = 0.02
    settings.DENSE_TRAIN_MINUTES = 0.02
    slug = small_catalog["phones"].slug
    serving = monthly_rebuild()["encoders"][slug]

    def fails_with(error: Exception):
        def train_merchant(*args, **kwargs):
            raise error

        return train_merchant

    monkeypatch.setattr(train, "train_merchant", fails_with(ConnectionError("milvus down")))
    result = monthly_rebuild()
    assert result["encoders"][slug] is None
    assert slug in result["models"]  # the base model was still rebuilt
    assert registry.active("encoder", slug).name == serving

    # the task's soft time limit is an Exception too, but it must end the task
    monkeypatch.setattr(train, "train_merchant", fails_with(SoftTimeLimitExceeded()))
    with pytest.raises(SoftTimeLimitExceeded):
        monthly_rebuild()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_process_runs_aggregate_hour(redis_server, tmp_path):
    """A real ``celery worker`` subprocess, over a real Redis, computes the aggregates into
    the (file-backed) test database that this process then reads."""
    store_events(
        parse_event(e)
        for e in (f.impression(ts=f.T0), f.click("P1", ts=f.T0 + timedelta(minutes=1)))
    )
    env = child_env(CELERY_BROKER_URL=redis_server.url)
    log = tmp_path / "worker.log"
    worker = start_celery_worker(env, log)
    client = create_app(broker_url=redis_server.url)
    try:
        result = client.send_task("learners.tasks.aggregate_hour", args=[f.T0.isoformat()])
        summary = result.get(timeout=60)
    except Exception:
        print(log.read_text()[-4000:])
        raise
    finally:
        stop_child(worker)
        client.close()
    assert summary == {"hour": f.T0.isoformat(), "merchant": None, "events": 2, "rows": 7}
    p1 = HourlyAggregate.objects.get(level="query_sku", sku="P1")
    assert (p1.impressions, p1.clicks) == (1, 1)
    assert "learners.tasks.aggregate_hour" in log.read_text()
