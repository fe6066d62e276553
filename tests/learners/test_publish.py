"""``publish`` without a broker: reports per event, spools, and never silently drops."""

from __future__ import annotations

import time

import pytest
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner

from learners.broker import free_port
from learners.events import publish, spool_size
from learners.events.producer import KeyHashPartitioner
from learners.events.schema import MAX_BATCH_EVENTS
from tests.learners import factories as f


@pytest.fixture
def no_broker(settings):
    """Point the producer at a port where nothing listens."""
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    settings.EVENT_PRODUCER_MAX_BLOCK_MS = 200


def test_broker_down_events_are_spooled_and_errors_reported(no_broker):
    events = [f.click(), {**f.click(), "position": -1}, f.purchase(), {"type": "nope"}]
    started = time.monotonic()
    report = publish(events)
    assert time.monotonic() - started < 5  # the API keeps serving
    assert (report.accepted, report.rejected, report.spooled, report.failed) == (2, 2, 2, 0)
    assert not report.ok
    assert [e.index for e in report.errors] == [1, 3]
    assert report.errors[0].errors == ("position: Input should be greater than or equal to 1",)
    assert report.errors[0].event_id == events[1]["event_id"]
    # the two dead letters wait in the spool too, for the DLQ topic
    assert spool_size() == 4
    # once degraded, later calls go straight to the spool
    started = time.monotonic()
    assert publish([f.click() for _ in range(50)]).spooled == 50
    assert time.monotonic() - started < 1


def test_full_spool_fails_loudly(no_broker, settings):
    settings.EVENT_SPOOL_MAX_BYTES = 2000
    report = publish([f.click() for _ in range(20)])
    assert report.failed > 0
    assert report.accepted == report.spooled == 20 - report.failed
    assert all(e.errors == ("event spool full: not accepted, retry",) for e in report.errors)
    assert len(report.errors) == report.failed


def test_defaults_are_filled_but_can_be_required(no_broker):
    bare = {k: v for k, v in f.click().items() if k not in ("event_id", "ts", "schema_version")}
    assert publish([bare]).accepted == 1
    strict = publish([bare], fill_defaults=False)
    assert strict.rejected == 1 and "event_id: Field required" in strict.errors[0].errors


def test_batch_limit():
    with pytest.raises(ValueError, match="at most"):
        publish([f.click()] * (MAX_BATCH_EVENTS + 1))


@pytest.mark.parametrize("partitions", [1, 4, 7])
def test_key_hash_partitioner_matches_kafka_default(partitions):
    """Sessions must map to the partitions every other Kafka client picks (murmur2)."""
    cluster = ClusterMetadata()
    cluster.partitions_for_topic = lambda topic: set(range(partitions))
    cluster.topics = lambda: {"events"}
    cluster.available_partitions_for_topic = lambda topic: set(range(partitions))
    cached, default = KeyHashPartitioner(cache_size=8), DefaultPartitioner()
    keys = [f"session-{i}".encode() for i in range(50)] * 2  # the second round hits the cache
    picks = [cached.partition("events", k, k, None, None, cluster) for k in keys]
    assert picks == [default.partition("events", k, k, None, None, cluster) for k in keys]
    assert len(set(picks)) == partitions
