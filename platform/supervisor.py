"""Starts and supervises the platform's processes on one machine.

Run as a file (``python platform/supervisor.py``), never imported: ``platform/`` is not a
package, because a package named ``platform`` would shadow Python's standard library module.

Each component is a child process. The supervisor starts them in order, waits until each is
ready (a TCP port accepting connections, or simply alive), restarts a crashed one with
exponential back-off, writes their state to ``$SEARCH_DATA_DIR/run/platform.json`` (read by
``/healthz``), and on Ctrl-C or SIGTERM stops them in reverse order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DATA_DIR = Path(os.environ.get("SEARCH_DATA_DIR", ROOT / "var")).resolve()
STATE_FILE = DATA_DIR / "run" / "platform.json"
LOG_DIR = DATA_DIR / "log"
HOST = os.environ.get("SEARCH_HOST", "127.0.0.1")
PORT = int(os.environ.get("SEARCH_PORT", "8000"))
WEB_WORKERS = os.environ.get("SEARCH_WEB_WORKERS", "3")


@dataclass
class Component:
    name: str
    command: list[str]
    ready_port: int | None = None  # ready once this port on 127.0.0.1 accepts connections
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    status: str = "stopped"
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        # the child keeps its own copy of the log file descriptor
        with open(LOG_DIR / f"{self.name}.log", "ab") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children
            )
        self.status = "starting"
        self.started_at = time.time()

    def poll(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is not None:
            self.status = f"exited ({self.process.returncode})"
            return
        if self.status == "starting" and (self.ready_port is None or port_open(self.ready_port)):
            self.status = "running"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self.status = "stopped"
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.status = "stopped"

    def state(self) -> dict:
        return {
            "status": self.status,
            "pid": self.process.pid if self.process else None,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "log": str(LOG_DIR / f"{self.name}.log"),
        }


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def components() -> list[Component]:
    """The processes of a one-machine deployment, in start order."""
    return [
        Component(
            "web",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "web.wsgi:application",
                "--bind",
                f"{HOST}:{PORT}",
                "--workers",
                WEB_WORKERS,
                "--access-logfile",
                str(LOG_DIR / "web-access.log"),
                "--error-logfile",
                "-",
                "--timeout",
                "60",
            ],
            ready_port=PORT,
        ),
    ]


class Supervisor:
    def __init__(self, parts: list[Component]) -> None:
        self.parts = parts
        self.stopping = False

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        for part in self.parts:
            part.start()
            self._wait_ready(part)
        print(f"[platform] storefront on http://{HOST}:{PORT}/  (Ctrl-C stops everything)")
        try:
            while not self.stopping:
                self._tick()
                time.sleep(0.5)
        finally:
            self.shutdown()

    def _wait_ready(self, part: Component, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline and not self.stopping:
            part.poll()
            if part.status != "starting":
                break
            time.sleep(0.2)
        print(f"[platform] {part.name}: {part.status}")
        self._write_state()

    def _tick(self) -> None:
        now = time.time()
        for part in self.parts:
            part.poll()
            if part.status.startswith("exited") and now >= part.next_start:
                part.restarts += 1
                delay = min(60.0, 2.0 ** min(part.restarts, 6))
                print(f"[platform] {part.name} {part.status}; restart #{part.restarts}")
                part.start()
                part.next_start = now + delay
        self._write_state()

    def _write_state(self) -> None:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "components": {p.name: p.state() for p in self.parts},
        }
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(STATE_FILE)

    def _request_stop(self, signum, frame) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        print("[platform] stopping …")
        for part in reversed(self.parts):
            part.stop()
            print(f"[platform] {part.name}: stopped")
        self._write_state()


if __name__ == "__main__":
    Supervisor(components()).run()
