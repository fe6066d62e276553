"""``/healthz``: live checks plus the supervisor's state, ok / degraded / 503."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from learners.broker import free_port
from learners.events.consumer import store_events
from learners.events.schema import parse_event
from learners.redis_server import LocalRedis, start_local_redis
from tests.learners import factories

pytestmark = pytest.mark.django_db

URL = "/healthz"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[LocalRedis]:
    with start_local_redis() as server:
        yield server


@pytest.fixture
def kafka_port() -> Iterator[int]:
    """Something listening where Kafka is expected (the check is TCP reachability)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def all_up(settings, redis_server, kafka_port):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{kafka_port}"
    settings.CELERY_BROKER_URL = redis_server.url


def write_state(data_dir, *, age: float = 0.0, **statuses: str) -> None:
    components = {
        name: {"status": status, "pid": 1234, "port": None, "restarts": 2, "last_exit_code": 1}
        for name, status in statuses.items()
    }
    components.setdefault("web", {"status": "running", "pid": 99})["required"] = True
    state = {"supervisor_pid": 1, "updated_at": time.time() - age, "components": components}
    (data_dir / "run").mkdir(exist_ok=True)
    (data_dir / "run" / "platform.json").write_text(json.dumps(state))


def test_without_a_supervisor_processes_are_unmanaged(client, all_up):
    response = client.get(URL)
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    components = data["components"]
    assert components["supervisor"] == {"status": "unmanaged"}
    assert components["database"]["status"] == "ok" and components["database"]["required"]
    assert components["kafka"]["status"] == "ok"
    assert components["redis"]["status"] == "ok"
    assert components["event_store"] == {"status": "ok", "last_event_at": None}


def test_unreachable_brokers_degrade_but_do_not_fail(client, settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    settings.CELERY_BROKER_URL = f"redis://:secret@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    response = client.get(URL)
    assert time.monotonic() - started < 1.5
    assert response.status_code == 200  # events spool, search serves: keep the traffic
    data = response.json()
    assert data["status"] == "degraded"
    assert data["components"]["kafka"]["status"] == "down"
    assert data["components"]["redis"]["status"] == "down"
    assert "secret" not in response.content.decode()


def test_supervised_processes_are_merged(client, all_up, isolated_data_dir):
    write_state(isolated_data_dir, redis="running", consumer="running")
    data = client.get(URL).json()
    assert data["status"] == "ok"
    assert data["components"]["supervisor"]["status"] == "ok"
    redis = data["components"]["redis"]
    assert redis["status"] == "ok"  # the live check and the process agree
    assert redis["process"] == {
        "status": "running",
        "pid": 1234,
        "port": None,
        "restarts": 2,
        "last_exit_code": 1,
    }
    assert data["components"]["consumer"]["status"] == "ok"


def test_a_crashed_optional_process_degrades(client, all_up, isolated_data_dir):
    write_state(isolated_data_dir, consumer="backoff", redis="starting")
    response = client.get(URL)
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "degraded"
    assert data["components"]["consumer"]["status"] == "down"
    assert data["components"]["redis"]["status"] == "starting"


def test_a_required_component_down_is_503(client, all_up, isolated_data_dir):
    write_state(isolated_data_dir, web="backoff")
    response = client.get(URL)
    assert response.status_code == 503
    assert response.json()["components"]["web"]["status"] == "down"


def test_a_stale_state_file_means_unknown(client, all_up, isolated_data_dir):
    write_state(isolated_data_dir, age=60, consumer="running")
    data = client.get(URL).json()
    assert data["status"] == "degraded"
    assert data["components"]["supervisor"]["status"] == "down"
    assert data["components"]["consumer"]["status"] == "unknown"


def test_newest_stored_event_is_reported(client, all_up):
    store_events([parse_event(factories.click())])
    event_store = client.get(URL).json()["components"]["event_store"]
    assert event_store["status"] == "ok"
    assert event_store["last_event_at"] is not None
    assert 0 <= event_store["age_s"] < 60
