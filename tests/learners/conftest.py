"""Fixtures for the learners suite: a real tansu broker and a real redis-server per session,
per-test topics, and a file-backed test database that subprocesses can share.

Why a file-backed test database: pytest-django's SQLite test database is in memory, visible
only to the pytest process, but the integration tests run the consumer and a Celery worker as
real subprocesses that must read and write the same rows. ``pytest_configure`` below gives the
default database's test copy a file name (in a fresh temp directory) when none is configured;
as settings are global this applies to the whole session once this directory is collected,
which only makes SQLite test databases file-backed (WAL mode lets both processes work on it).
With PostgreSQL (``DATABASE_URL``) nothing changes: the test database is already shared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from learners.broker import LocalBroker, start_local_broker
from learners.processes import database_url
from learners.redis_server import LocalRedis, start_local_redis

ROOT = Path(__file__).resolve().parents[2]
# kafka-python 3.0.12 loads its protocol schemas through deprecated importlib.resources calls,
# hundreds of warnings on first import. This conftest may load in the middle of collection
# (after pytest installed its warning filters), so import kafka once here with them silenced.
_KAFKA_WARNINGS = r"(read|open)_text is deprecated"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", _KAFKA_WARNINGS, DeprecationWarning)
    import kafka.admin  # noqa: F401
_TEMP_DB_DIR: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _TEMP_DB_DIR
    config.addinivalue_line("filterwarnings", f"ignore:{_KAFKA_WARNINGS}:DeprecationWarning")
    db = settings.DATABASES["default"]
    test = db.setdefault("TEST", {})
    if db["ENGINE"].endswith("sqlite3") and not test.get("NAME"):
        _TEMP_DB_DIR = Path(tempfile.mkdtemp(prefix="learners-testdb-"))
        test["NAME"] = str(_TEMP_DB_DIR / "test.sqlite3")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _TEMP_DB_DIR is not None:
        shutil.rmtree(_TEMP_DB_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalBroker]:
    broker = start_local_broker(create_topics=False)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    server = start_local_redis()
    yield server
    server.stop()


@dataclass
class Topics:
    """One test's private topics and group on the shared broker, and the environment that
    points a subprocess at them."""

    bootstrap: str
    events: str
    dlq: str
    group: str
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def kafka_topics(kafka_broker: LocalBroker, settings) -> Topics:
    from learners.events.topics import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "EVENT_TOPIC": f"events-{suffix}",
        "EVENT_DLQ_TOPIC": f"events-dlq-{suffix}",
        "EVENT_CONSUMER_GROUP": f"store-{suffix}",
        "EVENT_CONSUMER_SESSION_TIMEOUT_MS": "3000",
        "EVENT_SPOOL_RETRY_SECONDS": "0.2",
        # a real broker is up: sends get the production wait for their first metadata fetch
        # (suites that run offline lower it to fail fast, which a slow CI box can exceed)
        "EVENT_PRODUCER_MAX_BLOCK_MS": "1000",
    }
    for name, value in values.items():
        setattr(settings, name, value)
    ensure_topics()
    return Topics(
        kafka_broker.bootstrap,
        values["EVENT_TOPIC"],
        values["EVENT_DLQ_TOPIC"],
        values["EVENT_CONSUMER_GROUP"],
        env=values,
    )


@pytest.fixture(autouse=True)
def _fresh_producer() -> Iterator[None]:
    """Each test gets its own producer (and so its own spool directory and settings)."""
    yield
    from learners.events import reset_producer

    reset_producer(timeout=2)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a manage.py / celery subprocess sharing this test's database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "DATABASE_URL": database_url(),
        "SEARCH_DATA_DIR": str(settings.DATA_DIR),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start_child(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as output:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )


#: A real Celery worker for tests: one in-process pool, no cluster chatter to wait for.
CELERY_WORKER_ARGS = [
    "-m", "celery", "-A", "learners.celery", "worker", "--pool=solo", "--concurrency=1",
    "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
]  # fmt: skip


def start_celery_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    return start_child(CELERY_WORKER_ARGS, env, log_path)


def stop_child(process: subprocess.Popen, timeout: float = 20) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
