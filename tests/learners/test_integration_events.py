"""End to end against a real tansu broker: publish -> Kafka -> consumer -> event store.

Consumers here take explicit partitions (no group join, ~instant) except where the group is
the point (the kill/restart test), where a 3 s session timeout keeps the join near 2 s.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from learners import conf
from learners.broker import free_port, start_local_broker
from learners.events import flush, get_producer, publish, reset_producer, spool_size
from learners.events.consumer import EventConsumer
from learners.events.topics import ensure_topics, partition_count
from learners.models import Event
from tests.learners import factories as f
from tests.learners.conftest import ROOT, child_env, start_child, stop_child, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def all_partitions(topic: str) -> list[int]:
    return list(range(partition_count(topic)))


def consume(topics, expected: int, idle: float = 10, **kwargs) -> EventConsumer:
    """Read ``expected`` records from all partitions without joining the group."""
    consumer = EventConsumer(partitions=all_partitions(topics.events), **kwargs)
    with consumer:
        consumer.run(max_events=expected, idle_timeout_s=idle)
    return consumer


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 15) -> list:
    """Every record of ``topic`` from the start (no group), until ``expected`` arrived."""
    reader = KafkaConsumer(
        bootstrap_servers=[bootstrap], auto_offset_reset="earliest", enable_auto_commit=False
    )
    reader.assign([TopicPartition(topic, p) for p in all_partitions(topic)])
    records, deadline = [], time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for batch in reader.poll(timeout_ms=200).values():
            records += batch
    reader.close()
    return records


def test_topics_are_created_with_explicit_partitions(kafka_topics, settings):
    assert partition_count(kafka_topics.events) == conf.topic_partitions()[kafka_topics.events]
    assert partition_count(kafka_topics.dlq) == 1
    assert ensure_topics() == []  # idempotent


def test_publish_consume_store(kafka_topics):
    events = f.session_events(125)  # 500 events, 125 sessions
    report = publish(events)
    assert (report.accepted, report.rejected, report.spooled) == (500, 0, 0)
    flush(10)

    consumer = consume(kafka_topics, 500)
    assert consumer.stats.stored == 500 and consumer.stats.duplicates == 0
    assert Event.objects.count() == 500
    stored = Event.objects.get(event_id=events[3]["event_id"])
    assert (stored.type, stored.sku, stored.quantity, str(stored.price)) == (
        "purchase",
        "P2",
        1,
        "29.99",
    )
    impression = Event.objects.get(event_id=events[0]["event_id"])
    assert impression.payload["items"][1] == {"sku": "P2", "position": 2}
    assert impression.query == "iphone case" and impression.request_id == "s-req-0"

    # keyed by session_id: each session's events share one partition (so keep their order)
    partitions = defaultdict(set)
    for record in read_topic(kafka_topics.bootstrap, kafka_topics.events, 500):
        partitions[record.key].add(record.partition)
    assert len(partitions) == 125 and all(len(p) == 1 for p in partitions.values())


def test_invalid_events_are_dead_lettered(kafka_topics):
    good, bad = f.click(), {**f.click(), "position": 0}
    report = publish([good, bad, {"type": "teleport", "session_id": "s9"}])
    assert (report.accepted, report.rejected) == (1, 2)
    flush(10)

    # invalid records reaching the topic from elsewhere are caught by the consumer
    raw = KafkaProducer(bootstrap_servers=[kafka_topics.bootstrap])
    raw.send(kafka_topics.events, b"\xff not json")
    raw.send(kafka_topics.events, json.dumps({**f.purchase(), "price": "free"}).encode())
    raw.flush()
    raw.close()

    consumer = consume(kafka_topics, 3)
    assert (consumer.stats.stored, consumer.stats.dead_lettered) == (1, 2)
    letters = [json.loads(r.value) for r in read_topic(kafka_topics.bootstrap, kafka_topics.dlq, 4)]
    by_source = defaultdict(list)
    for letter in letters:
        by_source[letter["source"]].append(letter)
    assert len(by_source["publish"]) == 2 and len(by_source["consumer"]) == 2
    publish_errors = sorted(e for letter in by_source["publish"] for e in letter["errors"])
    assert publish_errors[0] == "position: Input should be greater than or equal to 1"
    assert json.loads(by_source["publish"][0]["raw"])["event_id"] == bad["event_id"]
    assert all({"topic", "partition", "offset"} <= set(x) for x in by_source["consumer"])
    first_errors = sorted(letter["errors"][0] for letter in by_source["consumer"])
    assert first_errors[0].startswith("Invalid JSON")
    assert first_errors[1] == "price: Input should be a valid decimal"

    # the dead letters' offsets were committed: nothing is redelivered to the group
    again = consume(kafka_topics, 1, idle=1.5)
    assert again.stats.polled == 0


def test_kill_and_restart_loses_and_duplicates_nothing(kafka_topics, tmp_path):
    total = 4000
    events = f.session_events(total // 4)
    for start in range(0, total, 1000):
        assert publish(events[start : start + 1000]).accepted == 1000
    flush(10)
    env = child_env(**kafka_topics.env)
    args = ["manage.py", "consume_events", "--batch-size", "20", "--stats-every", "0"]
    log = tmp_path / "consumer.log"

    first = start_child(args, env, log)
    try:
        wait_for(lambda: Event.objects.count() >= 200, 60, "the first consumer to store rows")
        first.send_signal(signal.SIGKILL)  # no commit, no leave-group: a crash
        first.wait(10)
    finally:
        stop_child(first)
    stored_at_kill = Event.objects.count()
    assert stored_at_kill < total, "consumer finished before the kill; raise total"

    second = start_child(args, env, log)
    try:
        wait_for(lambda: Event.objects.count() >= total, 90, "the restarted consumer")
        time.sleep(1.0)  # let it see any redelivered batch
    finally:
        rc = stop_child(second)  # SIGTERM: finish the batch, commit, leave the group
    assert rc == 0, log.read_text()[-3000:]
    assert Event.objects.count() == total
    assert Event.objects.values("event_id").distinct().count() == total
    stats = json.loads(log.read_text().strip().splitlines()[-1])
    print(f"killed at {stored_at_kill}/{total}; restart stats {stats}")
    assert stats["stored"] == total - stored_at_kill

    # re-delivery of everything (a new group reads from the start) stores nothing new
    replay = consume(kafka_topics, total, group_id=f"{kafka_topics.group}-replay")
    assert (replay.stats.stored, replay.stats.duplicates) == (0, total)
    assert Event.objects.count() == total


def test_broker_down_spools_then_flushes(settings, tmp_path):
    port = free_port()
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{port}"
    settings.EVENT_PRODUCER_MAX_BLOCK_MS = 200
    settings.EVENT_SPOOL_RETRY_SECONDS = 0.2
    events = f.session_events(50)

    report = publish(events)  # no broker: everything goes to the local spool
    assert (report.accepted, report.spooled, report.failed) == (200, 200, 0)
    assert spool_size() == 200

    with start_local_broker(port=port, log_path=tmp_path / "tansu.log") as broker:
        # drained, and out of degraded mode (the drainer leaves it just after the last segment)
        wait_for(lambda: spool_size() == 0 and not get_producer().degraded, 30, "the drain")
        assert publish([f.click(session_id="after")]).spooled == 0  # direct again
        flush(10)
        consumer = EventConsumer(bootstrap=broker.bootstrap, partitions=all_partitions("events"))
        with consumer:
            consumer.run(max_events=201, idle_timeout_s=10)
    assert consumer.stats.stored == 201
    assert set(Event.objects.values_list("event_id", flat=True)) >= {
        __import__("uuid").UUID(e["event_id"]) for e in events
    }


def test_broker_restart_loses_nothing_in_flight(settings, tmp_path):
    """The memory broker restarts (losing topics): records in flight when it died fail after
    the delivery timeout and are spooled, the topics are recreated and the spool drained."""
    port = free_port()
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{port}"
    settings.EVENT_DELIVERY_TIMEOUT_MS = 2000
    settings.EVENT_SPOOL_RETRY_SECONDS = 0.2
    with start_local_broker(port=port, log_path=tmp_path / "tansu-1.log"):
        # the default 1 s send wait covers the first metadata fetch even on a slow machine
        assert publish(f.session_events(5, prefix="before")).spooled == 0
        flush(10)

    in_flight = publish(f.session_events(10, prefix="during"))  # metadata cached: not spooled
    wait_for(lambda: spool_size() == 40, 20, "in-flight records to fail over to the spool")
    assert in_flight.accepted == 40

    with start_local_broker(port=port, log_path=tmp_path / "tansu-2.log") as broker:
        wait_for(lambda: spool_size() == 0, 30, "the spool to drain into the new broker")
        consumer = EventConsumer(bootstrap=broker.bootstrap, partitions=all_partitions("events"))
        with consumer:
            consumer.run(max_events=40, idle_timeout_s=10)
    assert consumer.stats.stored == 40
    assert Event.objects.filter(session_id__startswith="during").count() == 40


def test_closing_during_an_outage_spools_what_was_in_flight(settings, tmp_path):
    """A worker shutting down while the broker is gone neither raises nor drops the records
    the client still holds (kafka-python's close() raised, leaving them in a live I/O thread:
    a CI run then failed the next test's producer too)."""
    port = free_port()
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{port}"
    settings.EVENT_DELIVERY_TIMEOUT_MS = 60_000  # they stay in flight until the close
    with start_local_broker(port=port, log_path=tmp_path / "tansu.log"):
        assert publish(f.session_events(2, prefix="before")).spooled == 0
        flush(10)

    in_flight = publish(f.session_events(5, prefix="during"))  # metadata cached: not spooled
    assert (in_flight.accepted, in_flight.spooled) == (20, 0)
    reset_producer(timeout=0.5)
    assert spool_size() == 20

    with start_local_broker(port=port, log_path=tmp_path / "tansu-2.log") as broker:
        get_producer().wake()  # the next process's producer sends what this one spooled
        wait_for(lambda: spool_size() == 0, 30, "the spool to drain into the new broker")
        consumer = EventConsumer(bootstrap=broker.bootstrap, partitions=all_partitions("events"))
        with consumer:
            consumer.run(max_events=20, idle_timeout_s=10)
    assert Event.objects.filter(session_id__startswith="during").count() == 20


#: A process that publishes, waits for a line on stdin, publishes again and exits normally.
PUBLISH_THEN_EXIT = """
import sys, django
django.setup()
from learners.events import flush, publish
from tests.learners import factories as f
assert publish(f.session_events(2, prefix="before")).spooled == 0
flush(10)
print("sent", flush=True)
sys.stdin.readline()
print(publish(f.session_events(5, prefix="during")).spooled, flush=True)
"""


def test_a_process_exiting_during_an_outage_spools_what_was_in_flight(settings, tmp_path):
    """Nothing closes the producer of a gunicorn worker by hand: its exit hook must, before
    kafka-python's own (which raises and keeps the records in its I/O thread)."""
    port = free_port()
    settings.EVENT_SPOOL_DIR = str(tmp_path / "spool")
    env = child_env(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        EVENT_SPOOL_DIR=settings.EVENT_SPOOL_DIR,
        EVENT_DELIVERY_TIMEOUT_MS="60000",  # in flight until the exit
    )
    with start_local_broker(port=port, log_path=tmp_path / "tansu.log"):
        child = subprocess.Popen(
            [sys.executable, "-c", PUBLISH_THEN_EXIT],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "sent"
    stdout, stderr = child.communicate("go\n", timeout=60)
    assert child.returncode == 0, stderr
    assert stdout.strip() == "0"  # sent, not spooled: the broker vanished under them
    assert "Traceback" not in stderr  # kafka-python's exit hook did not get to raise
    assert spool_size() == 20
