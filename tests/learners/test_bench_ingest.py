"""``manage.py bench ingest`` end to end with a small run (own broker, gunicorn, consumer)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from learners.benchmarks.ingest import MERCHANT, generate_events, percentile
from learners.events.schema import parse_event
from learners.models import Event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_generated_events_are_valid_and_mixed():
    events = generate_events(40, "t")
    kinds = {parse_event({**e, "ts": "2026-01-01T00:00:00Z"}).type for e in events}
    assert kinds == {"impression", "click", "add_to_cart", "purchase"}
    assert len({e["event_id"] for e in events}) == 40
    assert all(e["session_id"].startswith("t-") for e in events)


def test_percentile():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5, abs=0.1)
    assert percentile(values, 0.99) == pytest.approx(99, abs=0.1)
    assert percentile([7.0], 0.99) == 7.0


def test_bench_ingest_stores_every_event_once(tmp_path, monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)  # start its own broker
    out, report_path = StringIO(), tmp_path / "ingest.json"
    args = ["--events=300", "--batch=100", "--rate=1500", "--json", str(report_path)]
    call_command("bench", "ingest", *args, stdout=out)
    report = json.loads(report_path.read_text())
    assert report["events"] == 300
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["send"]["accepted"] == 300 and report["send"]["http_errors"] == []
    assert report["events_per_s"] > 0
    assert report["http_elapsed_s"] >= 200 / 1500  # paced: the last batch's slot
    assert report["cpu_us_per_event"]["total"] > report["cpu_us_per_event"]["consumer"] > 0
    assert 0 < report["lag_ms_p50"] <= report["lag_ms_p99"]
    assert report["broker"] == "local tansu (memory)"
    assert "events_per_s" in out.getvalue()
    assert not Event.objects.filter(merchant=MERCHANT).exists()  # cleaned up
