"""The local server helpers the platform supervisor uses."""

from __future__ import annotations

import pytest
import redis

from learners.broker import kafka_ready, start_local_broker
from learners.redis_server import start_local_redis

pytestmark = pytest.mark.integration


def test_local_redis_context_manager():
    with start_local_redis() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert not server.running
    server.stop()  # idempotent


def test_local_broker_without_topics(tmp_path):
    with start_local_broker(create_topics=False, log_path=tmp_path / "t.log") as broker:
        assert kafka_ready(broker.bootstrap)
    assert not broker.running
    assert "listening on" in broker.log_tail()
