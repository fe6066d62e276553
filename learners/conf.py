"""Settings of the event pipeline, read at call time.

Every knob is looked up as: a Django setting of that name if ``web/settings.py`` (or a test's
``settings`` fixture) defines it, else an environment variable of that name, else the default
below. Reading at call time rather than import time lets tests override a setting per test and
lets the platform configure subprocesses (consumer, Celery worker) through the environment
without ``web/settings.py`` having to know every name.

=================================  ========================  ==============================
name                               default                   what
=================================  ========================  ==============================
KAFKA_BOOTSTRAP_SERVERS            127.0.0.1:9092            comma-separated host:port list
KAFKA_API_VERSION                  3.9                       protocol version, or ``auto``
KAFKA_REPLICATION_FACTOR           1                         for topics created on start-up
EVENT_TOPIC                        events                    accepted events
EVENT_DLQ_TOPIC                    events-dlq                dead letters
EVENT_TOPIC_PARTITIONS             4                         partitions of EVENT_TOPIC
EVENT_DLQ_PARTITIONS               1                         partitions of EVENT_DLQ_TOPIC
EVENT_CONSUMER_GROUP               event-store               consumer group id
EVENT_CONSUMER_BATCH_SIZE          500                       records per poll / DB write
EVENT_CONSUMER_SESSION_TIMEOUT_MS  10000                     group session timeout
EVENT_PRODUCER_LINGER_MS           5                         batching delay
EVENT_PRODUCER_BATCH_BYTES         65536                     max batch per partition
EVENT_PRODUCER_MAX_BLOCK_MS        1000                      max wait in ``send``
EVENT_DELIVERY_TIMEOUT_MS          15000                     give up and spool after
EVENT_SPOOL_DIR                    DATA_DIR/spool            local spool directory
EVENT_SPOOL_MAX_BYTES              67108864 (64 MiB)         spool bound
EVENT_SPOOL_SEGMENT_BYTES          1048576 (1 MiB)           spool file rotation size
EVENT_SPOOL_RETRY_SECONDS          1.0                       broker probe interval
CELERY_BROKER_URL                  redis://127.0.0.1:6379/0  Celery broker
CELERY_RESULT_BACKEND              (CELERY_BROKER_URL)       Celery results
=================================  ========================  ==============================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from django.conf import settings

T = TypeVar("T", str, int, float)

_MISSING = object()


def get(name: str, default: T) -> T:
    """Django setting > environment variable > ``default``, cast to the default's type."""
    value = getattr(settings, name, _MISSING)
    if value is _MISSING or value is None:
        value = os.environ.get(name, _MISSING)
    if value is _MISSING or value == "":
        return default
    return type(default)(value)


def bootstrap_servers() -> str:
    return get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def api_version() -> tuple[int, ...] | None:
    """The Kafka protocol version to assume, or None to probe the broker.

    A fixed version (the default, which both Apache Kafka 3.9+/4.x and tansu speak) lets a
    producer be constructed without contacting the broker, so a request thread never blocks
    for the 30 s bootstrap timeout when the broker is down; ``auto`` probes instead.
    """
    raw = get("KAFKA_API_VERSION", "3.9").strip().lower()
    if raw == "auto":
        return None
    return tuple(int(part) for part in raw.split("."))


def events_topic() -> str:
    return get("EVENT_TOPIC", "events")


def dlq_topic() -> str:
    return get("EVENT_DLQ_TOPIC", "events-dlq")


def topic_partitions() -> dict[str, int]:
    """Explicit partition counts of the topics this app owns (created on start-up)."""
    return {
        events_topic(): get("EVENT_TOPIC_PARTITIONS", 4),
        dlq_topic(): get("EVENT_DLQ_PARTITIONS", 1),
    }


def replication_factor() -> int:
    return get("KAFKA_REPLICATION_FACTOR", 1)


def consumer_group() -> str:
    return get("EVENT_CONSUMER_GROUP", "event-store")


def consumer_batch_size() -> int:
    return get("EVENT_CONSUMER_BATCH_SIZE", 500)


def consumer_session_timeout_ms() -> int:
    """Kept well below Kafka's 45 s default: the measured group-join time on tansu is about
    half the session timeout, and a crashed consumer's partitions move after one timeout."""
    return get("EVENT_CONSUMER_SESSION_TIMEOUT_MS", 10_000)


def producer_linger_ms() -> int:
    return get("EVENT_PRODUCER_LINGER_MS", 5)


def producer_batch_bytes() -> int:
    return get("EVENT_PRODUCER_BATCH_BYTES", 64 * 1024)


def producer_max_block_ms() -> int:
    return get("EVENT_PRODUCER_MAX_BLOCK_MS", 1000)


def delivery_timeout_ms() -> int:
    return get("EVENT_DELIVERY_TIMEOUT_MS", 15_000)


def spool_dir() -> Path:
    configured = get("EVENT_SPOOL_DIR", "")
    if configured:
        return Path(configured)
    return Path(settings.DATA_DIR) / "spool"


def spool_max_bytes() -> int:
    return get("EVENT_SPOOL_MAX_BYTES", 64 * 1024 * 1024)


def spool_segment_bytes() -> int:
    return get("EVENT_SPOOL_SEGMENT_BYTES", 1024 * 1024)


def spool_retry_seconds() -> float:
    return get("EVENT_SPOOL_RETRY_SECONDS", 1.0)


def celery_broker_url() -> str:
    return get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")


def celery_result_backend() -> str:
    return get("CELERY_RESULT_BACKEND", celery_broker_url())
