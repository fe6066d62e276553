"""Web tests publish shopper events into the real producer and spool with no broker behind it
(a free port), so pages never wait on Kafka and ``spooled_events()`` shows exactly what
``publish`` accepted; tests that need the real broker use ``kafka_topics`` (tansu)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from learners import conf
from learners.broker import free_port
from tests.learners.conftest import (  # noqa: F401 -- fixtures shared with the learners suite
    _KAFKA_WARNINGS,
    kafka_broker,
    kafka_topics,
)


def pytest_configure(config: pytest.Config) -> None:
    """kafka-python's noisy deprecation warnings, silenced as in the learners suite."""
    config.addinivalue_line("filterwarnings", f"ignore:{_KAFKA_WARNINGS}:DeprecationWarning")


@pytest.fixture(autouse=True)
def offline_events(settings) -> Iterator[None]:
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    settings.EVENT_PRODUCER_MAX_BLOCK_MS = 100
    cache.clear()  # rate-limit buckets live in the cache
    yield
    # imported here, after tests.learners.conftest silenced kafka-python's import warnings
    from learners.events import reset_producer

    reset_producer(timeout=2)


def spooled_records(topic: str) -> list[dict[str, Any]]:
    """The JSON values the producer spooled for ``topic``, oldest first."""
    records = []
    for segment in sorted(conf.spool_dir().glob("seg-*")):
        for line in segment.read_bytes().splitlines():
            if line.strip():
                record = json.loads(line)
                if record["t"] == topic:
                    records.append(json.loads(record["v"]))
    return records


def spooled_events(kind: str | None = None) -> list[dict[str, Any]]:
    """Accepted events waiting in the spool, optionally only those of type ``kind``."""
    events = spooled_records(conf.events_topic())
    return [e for e in events if kind is None or e["type"] == kind]


def dead_letters() -> list[dict[str, Any]]:
    return spooled_records(conf.dlq_topic())
