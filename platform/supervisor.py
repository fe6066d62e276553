"""Starts and supervises the platform's processes on one machine.

Run as a file (``python platform/supervisor.py [--only a,b] [--skip c]``), never imported as
``platform.supervisor``: ``platform/`` is not a package, because a package named ``platform``
would shadow Python's standard library module. (Tests load it by file path.)

Components, in start order (later ones depend on earlier ones):

========== ================================================ ===========================
name       what                                             skipped when
========== ================================================ ===========================
tansu      Kafka-protocol broker (memory storage only)      KAFKA_BOOTSTRAP_SERVERS set
redis      redis-server, append-only file in DATA_DIR/redis CELERY_BROKER_URL set
milvus     Milvus Lite server on DATA_DIR/milvus.db         MILVUS_URI set
consumer   ``manage.py consume_events`` (Kafka -> store)
celery-... ``celery worker`` (one process) and ``celery beat``
web        gunicorn serving the Django site
========== ================================================ ===========================

Every child runs in its own session (so Ctrl-C reaches only the supervisor, which then stops
them in reverse order: a consumer can still commit while the broker is up) and gets SIGTERM if
the supervisor dies (Linux ``PR_SET_PDEATHSIG``), so nothing is orphaned. A child that exits
is restarted after an exponential back-off that resets once it has stayed up for a minute.
The state of every component goes to ``$SEARCH_DATA_DIR/run/platform.json`` (read by
``/healthz``) twice a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the apps' helpers below: run as a file, the repo is not on the path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")  # learners.conf reads settings

from learners.broker import kafka_ready, kill_when_parent_dies, tansu_argv, tcp_reachable  # noqa: E402
from learners.redis_server import redis_argv, redis_ready  # noqa: E402

PYTHON = sys.executable
#: A child that stayed up this long is healthy again: its next crash restarts it quickly.
STABLE_AFTER_S = 60.0
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
#: How long a child gets to exit after its stop signal before it is killed.
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 60.0
TICK_S = 0.5


@dataclass(frozen=True)
class Config:
    """Where things run; every field comes from an environment variable (see ``from_env``)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 3
    kafka_port: int = 9092
    redis_port: int = 6379
    #: an external Kafka cluster; the supervisor then starts no broker
    kafka_bootstrap: str | None = None
    #: an external Celery broker; the supervisor then starts no redis-server
    celery_broker: str | None = None
    milvus_port: int = 19530
    #: an external Milvus; the supervisor then starts no Milvus Lite server
    milvus_uri: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        return cls(
            data_dir=Path(env.get("SEARCH_DATA_DIR") or ROOT / "var").resolve(),
            host=env.get("SEARCH_HOST", "127.0.0.1"),
            port=int(env.get("SEARCH_PORT", "8000")),
            web_workers=int(env.get("SEARCH_WEB_WORKERS", "3")),
            kafka_port=int(env.get("SEARCH_KAFKA_PORT", "9092")),
            redis_port=int(env.get("SEARCH_REDIS_PORT", "6379")),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            celery_broker=env.get("CELERY_BROKER_URL") or None,
            milvus_port=int(env.get("SEARCH_MILVUS_PORT", "19530")),
            milvus_uri=env.get("MILVUS_URI") or None,
        )

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "platform.json"

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def broker_url(self) -> str:
        return self.celery_broker or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def vector_uri(self) -> str:
        return self.milvus_uri or f"http://127.0.0.1:{self.milvus_port}"

    def child_env(self) -> dict[str, str]:
        """What every child needs on top of the supervisor's environment."""
        return {
            "DJANGO_SETTINGS_MODULE": "web.settings",
            "PYTHONUNBUFFERED": "1",
            "SEARCH_DATA_DIR": str(self.data_dir),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CELERY_BROKER_URL": self.broker_url,
            "MILVUS_URI": self.vector_uri,
        }


def say(message: str) -> None:
    """One console line: the supervisor's output is read by people, in a terminal."""
    print(f"{time.strftime('%H:%M:%S')} [platform] {message}", flush=True)


@dataclass
class Component:
    """One supervised child process and its life so far."""

    name: str
    argv: list[str]
    #: true once the child serves; None: being alive is enough
    ready: Callable[[], bool] | None = None
    port: int | None = None
    #: the platform cannot serve without it (``/healthz`` answers 503 while it is down)
    required: bool = False
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    status: str = "stopped"  # starting | running | backoff | stopped
    restarts: int = 0
    failures: int = 0  # consecutive exits without having been stable
    last_exit_code: int | None = None
    started_at: float = 0.0
    next_start: float = 0.0

    def start(self) -> None:
        assert self.log_path is not None, "the supervisor sets log_path"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches the supervisor only
                preexec_fn=kill_when_parent_dies,
            )
        self.status = "starting"
        self.started_at = time.time()

    def poll(self) -> str | None:
        """Update ``status``; return it when it changed (for the console log)."""
        if self.process is None or self.status in ("backoff", "stopped"):
            return None
        code = self.process.poll()
        if code is not None:
            self._exited(code)
            return self.status
        if self.status == "starting" and (self.ready is None or self.ready()):
            self.status = "running"
            return self.status
        return None

    def _exited(self, code: int) -> None:
        """Schedule the restart: back off exponentially while it keeps crashing."""
        self._sweep()
        self.last_exit_code = code
        stable = time.time() - self.started_at >= STABLE_AFTER_S
        self.failures = 1 if stable else self.failures + 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (self.failures - 1))
        self.next_start = time.time() + delay
        self.status = "backoff"

    def due(self, now: float) -> bool:
        return self.status == "backoff" and now >= self.next_start

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop signal to the child's whole group, SIGKILL after ``grace``; idempotent."""
        if self.process is not None and self.process.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.name}: no exit after {grace:.0f}s, killing")
                self._signal_group(signal.SIGKILL)
                self.process.wait()
            self.last_exit_code = self.process.returncode
        self._sweep()
        self.status = "stopped"

    def _sweep(self) -> None:
        """Kill what is left of the group (a gunicorn or celery worker whose parent died)."""
        if self.process is not None:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def state(self) -> dict[str, object]:
        alive = self.process is not None and self.process.poll() is None
        return {
            "status": self.status,
            "pid": self.process.pid if alive and self.process else None,
            "port": self.port,
            "required": self.required,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "started_at": self.started_at or None,
            "log": str(self.log_path) if self.log_path else None,
        }


def kafka_ready_with_topics(bootstrap: str) -> bool:
    """Ready means serving *and* having the app's topics: the local broker forgets them on
    every restart, and auto-creation would make them with one partition."""
    if not kafka_ready(bootstrap):
        return False
    from kafka.errors import KafkaError

    from learners.events.topics import ensure_topics

    try:
        ensure_topics(bootstrap, timeout_ms=2000)
    except KafkaError as exc:
        say(f"topics not ensured yet on {bootstrap}: {exc}")
        return False
    return True


def manage(*args: str) -> list[str]:
    return [PYTHON, str(ROOT / "manage.py"), *args]


def components(config: Config) -> list[Component]:
    """The processes of a one-machine deployment, in start order."""
    parts = []
    if config.kafka_bootstrap is None:
        parts.append(
            Component(
                "tansu",
                tansu_argv("127.0.0.1", config.kafka_port),
                ready=lambda: kafka_ready_with_topics(config.bootstrap),
                port=config.kafka_port,
                stop_signal=signal.SIGINT,  # SIGTERM waits ~5 s for clients; memory has no state
            )
        )
    if config.celery_broker is None:
        redis_dir = config.data_dir / "redis"
        parts.append(
            Component(
                "redis",
                redis_argv("127.0.0.1", config.redis_port, data_dir=redis_dir, persistent=True),
                ready=lambda: redis_ready(config.broker_url),
                port=config.redis_port,
            )
        )
    if config.milvus_uri is None:
        parts.append(milvus_component(config))
    celery = [PYTHON, "-m", "celery", "-A", "learners.celery"]
    schedule = config.run_dir / "celerybeat-schedule"
    parts += [
        Component("consumer", manage("consume_events", "--stats-every", "60")),
        Component(
            "celery-worker",
            # one pool process: the jobs are long and memory-hungry, not numerous
            celery
            + ["worker", "-Q", "celery", "--concurrency", "1", "--loglevel", "INFO"]
            + ["--without-gossip", "--without-mingle", "--max-tasks-per-child", "20"],
        ),
        Component("celery-beat", celery + ["beat", "--schedule", str(schedule), "-l", "INFO"]),
        Component(
            "web",
            _gunicorn_argv(config),
            ready=_port_check(config.host, config.port),
            port=config.port,
            required=True,
        ),
    ]
    for part in parts:
        part.env = config.child_env()
        part.log_path = config.log_dir / f"{part.name}.log"
    return parts


def milvus_component(config: Config) -> Component:
    """Milvus Lite opens its data directory in one process only, so the web workers, the
    Celery worker and the management commands share it through this gRPC server."""
    milvus = Path(PYTHON).with_name("milvus-lite")
    data = config.data_dir / "milvus.db"  # the path a single-process Milvus Lite client uses
    return Component(
        "milvus",
        [str(milvus), "server", "--data-dir", str(data), "--host", "127.0.0.1"]
        + ["--port", str(config.milvus_port), "--max-workers", "8"],
        ready=_port_check("127.0.0.1", config.milvus_port),
        port=config.milvus_port,
    )


def _gunicorn_argv(config: Config) -> list[str]:
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "web.wsgi:application",
        f"--bind={config.host}:{config.port}",
        f"--workers={config.web_workers}",
        f"--access-logfile={config.log_dir / 'web-access.log'}",
        "--error-logfile=-",
        "--timeout=60",
    ]


def _port_check(host: str, port: int) -> Callable[[], bool]:
    target = "127.0.0.1" if host in ("", "0.0.0.0") else host  # a wildcard bind answers locally
    return lambda: tcp_reachable(f"{target}:{port}", timeout=0.2)


class Supervisor:
    def __init__(self, parts: list[Component], config: Config) -> None:
        self.parts = parts
        self.config = config
        self.stopping = False
        self.started_at = time.time()

    def run(self) -> None:
        """Start everything, supervise until SIGINT/SIGTERM, then stop in reverse order."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        try:
            self.start_all()
            if not self.stopping:
                say(f"storefront on http://{self.config.host}:{self.config.port}/ (Ctrl-C stops)")
            while not self.stopping:
                self.tick()
                time.sleep(TICK_S)
        finally:
            self.shutdown()

    def start_all(self) -> None:
        for part in self.parts:
            if self.stopping:
                return
            part.start()
            self._wait_ready(part)

    def _wait_ready(self, part: Component, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until ``part`` serves (its dependents need it), exits, or the timeout passes;
        a component that fails to start is left to the restart loop."""
        deadline = time.time() + timeout
        while time.time() < deadline and not self.stopping and part.status == "starting":
            part.poll()
            time.sleep(0.1)
        self._report(part)
        self.write_state()

    def tick(self) -> None:
        now = time.time()
        for part in self.parts:
            if part.poll() is not None:
                self._report(part)
            if part.due(now):
                part.restart()
                say(f"{part.name}: restart #{part.restarts}")
        self.write_state()

    def _report(self, part: Component) -> None:
        detail = f"pid {part.process.pid}" if part.process else ""
        if part.port is not None:
            detail += f", port {part.port}"
        if part.status == "backoff":
            wait = max(0.0, part.next_start - time.time())
            detail = f"exited with {part.last_exit_code}, restarting in {wait:.0f}s"
        say(f"{part.name:<13} {part.status:<8} {detail}  (log {part.log_path})")

    def write_state(self) -> None:
        """Atomically replace the state file (``/healthz`` may read it at any moment)."""
        state = {
            "supervisor_pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": time.time(),
            "components": {p.name: p.state() for p in self.parts},
        }
        path = self.config.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        say("stopping ...")
        for part in reversed(self.parts):
            part.stop()
            say(f"{part.name:<13} stopped (exit {part.last_exit_code})")
        self.write_state()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start the platform's processes and keep them running until Ctrl-C. "
        "Environment: SEARCH_DATA_DIR, SEARCH_HOST, SEARCH_PORT, SEARCH_WEB_WORKERS, "
        "SEARCH_KAFKA_PORT, SEARCH_REDIS_PORT; KAFKA_BOOTSTRAP_SERVERS / CELERY_BROKER_URL "
        "point at external services instead of starting tansu / redis-server."
    )
    parser.add_argument("--only", help="comma-separated components to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated components not to run")
    return parser.parse_args(argv)


def select(parts: list[Component], only: str | None, skip: str) -> list[Component]:
    names = {p.name for p in parts}
    wanted = set(only.split(",")) if only else names
    unwanted = set(filter(None, skip.split(",")))
    unknown = (wanted | unwanted) - names
    if unknown:
        raise SystemExit(f"unknown component(s) {sorted(unknown)}; known: {sorted(names)}")
    return [p for p in parts if p.name in wanted - unwanted]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = Config.from_env(os.environ)
    Supervisor(select(components(config), args.only, args.skip), config).run()


if __name__ == "__main__":
    main()
