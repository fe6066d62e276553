"""Start and stop a local ``redis-server`` (Debian package ``redis-server``): the Celery broker
of the embedded deployment, and a real Redis for the integration tests."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from learners.broker import LocalProcess, launch

INSTALL_HINT = "redis-server not found: apt-get install -y redis-server"


class LocalRedis(LocalProcess):
    """A running redis-server; ``url`` is a redis:// URL for database 0."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


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
    a restart (the platform wants that; tests do not, and then nothing is written to disk).
    """
    argv_for = partial(redis_argv, host, data_dir=data_dir, persistent=persistent)
    return launch(
        LocalRedis,
        argv_for,
        lambda server: redis_ready(server.url),
        host=host,
        port=port,
        log_path=log_path,
        timeout=timeout,
        die_with_parent=die_with_parent,
    )


def redis_argv(host: str, port: int, *, data_dir: Path | None, persistent: bool) -> list[str]:
    if persistent and data_dir is None:
        raise ValueError("a persistent redis-server needs a data_dir")
    argv = [redis_binary(), "--port", str(port), "--bind", host, "--save", ""]
    argv += ["--daemonize", "no", "--protected-mode", "yes"]
    if persistent:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        argv += ["--dir", str(data_dir), "--appendonly", "yes"]
    else:
        argv += ["--appendonly", "no"]
    return argv
