"""Start and stop a local ``redis-server`` (Debian package ``redis-server``): the Celery broker
of the embedded deployment, and a real Redis for the integration tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from learners.broker import LocalProcess, free_port, spawn, wait_until

INSTALL_HINT = "redis-server not found: apt-get install -y redis-server"


class LocalRedis(LocalProcess):
    """A running redis-server; ``url`` is a redis:// URL for database 0."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def __enter__(self) -> LocalRedis:
        return self


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise FileNotFoundError(INSTALL_HINT)
    return path


def redis_ready(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def start_local_redis(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    data_dir: Path | None = None,
    persistent: bool = False,
    timeout: float = 15.0,
    log_path: Path | None = None,
    die_with_parent: bool = True,
) -> LocalRedis:
    """Start redis-server on ``host:port`` (a free port if None) and wait for PING.

    ``persistent`` turns on the append-only file in ``data_dir`` so queued Celery tasks survive
    a restart (the platform wants that; tests do not).
    """
    data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="redis-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        chosen = port if port is not None else free_port(host)
        argv = [
            redis_binary(),
            "--port", str(chosen),
            "--bind", host,
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if persistent else "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        process, path = spawn(argv, log_path, die_with_parent=die_with_parent)
        server = LocalRedis(process, host, chosen, path)
        try:
            wait_until(lambda s=server: redis_ready(s.url), server, timeout, "redis-server")
        except RuntimeError:
            if attempt + 1 == attempts:
                raise
            continue
        return server
    raise AssertionError("unreachable")
