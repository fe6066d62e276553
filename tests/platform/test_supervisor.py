"""The process supervisor: restarts with back-off, state file, clean stop without orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from learners.broker import free_port

pytestmark = pytest.mark.integration

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    """Running, not merely a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def group_members(pgid: int) -> set[int]:
    """Pids whose process group is ``pgid`` (gunicorn workers, celery pool processes...)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.add(int(entry.name))
    return members


@pytest.fixture
def config(supervisor, tmp_path):
    return supervisor.Config(data_dir=tmp_path, port=free_port(), redis_port=free_port())


def test_crashed_child_is_restarted_with_backoff(supervisor, config, monkeypatch):
    monkeypatch.setattr(supervisor, "BACKOFF_BASE_S", 0.2)
    part = supervisor.Component("sleeper", SLEEPER, log_path=config.log_dir / "sleeper.log")
    sup = supervisor.Supervisor([part], config)
    try:
        sup.start_all()
        assert part.status == "running"
        first = part.process.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (sup.tick(), part.status == "backoff")[1], 5, "the exit to be seen")
        assert part.last_exit_code == -signal.SIGKILL
        wait_for(lambda: (sup.tick(), part.restarts == 1)[1], 5, "the restart")
        assert part.process.pid != first and alive(part.process.pid)
        # crashing again at once doubles the wait
        os.kill(part.process.pid, signal.SIGKILL)
        wait_for(lambda: (sup.tick(), part.status == "backoff")[1], 5, "the second exit")
        assert part.next_start - time.time() > 0.25
        state = json.loads(config.state_file.read_text())["components"]["sleeper"]
        assert state["restarts"] == 1 and state["last_exit_code"] == -signal.SIGKILL
    finally:
        sup.shutdown()
    assert part.status == "stopped"


def test_stop_escalates_to_sigkill_and_leaves_no_orphans(supervisor, config, monkeypatch):
    """A child that ignores SIGTERM and has a child of its own: both are gone after stop."""
    stubborn = [
        sys.executable,
        "-c",
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        "time.sleep(120)",
    ]
    part = supervisor.Component("stubborn", stubborn, log_path=config.log_dir / "stubborn.log")
    part.start()
    members = wait_for(lambda: len(group_members(part.process.pid)) == 2, 10, "the grandchild")
    members = group_members(part.process.pid)
    started = time.monotonic()
    part.stop(grace=0.5)
    assert time.monotonic() - started < 5
    assert part.last_exit_code == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in members), 5, "no process of the group left")


def test_components_follow_the_environment(supervisor, tmp_path):
    own = supervisor.components(supervisor.Config(data_dir=tmp_path))
    assert [p.name for p in own] == [
        "tansu",
        "redis",
        "milvus",
        "consumer",
        "celery-worker",
        "celery-beat",
        "web",
    ]
    assert own[0].env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert any(str(tmp_path / "redis") == arg for arg in own[1].argv)
    assert {p.env["MILVUS_URI"] for p in own} == {"http://127.0.0.1:19530"}
    milvus = next(p for p in own if p.name == "milvus")
    assert str(tmp_path / "milvus.db") in milvus.argv
    beat = next(p for p in own if p.name == "celery-beat")
    assert str(tmp_path / "run" / "celerybeat-schedule") in beat.argv
    external = supervisor.Config.from_env(
        {
            "SEARCH_DATA_DIR": str(tmp_path),
            "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
            "CELERY_BROKER_URL": "redis://cache:6379/2",
            "MILVUS_URI": "http://milvus:19530",
        }
    )
    parts = supervisor.components(external)
    assert [p.name for p in parts][:1] == ["consumer"]  # neither tansu, redis nor milvus
    assert {p.env["MILVUS_URI"] for p in parts} == {"http://milvus:19530"}
    assert {p.env["KAFKA_BOOTSTRAP_SERVERS"] for p in parts} == {"kafka-1:9092,kafka-2:9092"}
    assert {p.env["CELERY_BROKER_URL"] for p in parts} == {"redis://cache:6379/2"}
    with pytest.raises(SystemExit, match="unknown component"):
        supervisor.select(parts, "web,nope", "")
    assert [p.name for p in supervisor.select(parts, None, "celery-beat,consumer")] == [
        "celery-worker",
        "web",
    ]


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running(path: Path, *names: str) -> dict | None:
    state = read_state(path)
    if state and all(state["components"][n]["status"] == "running" for n in names):
        return state
    return None


def test_platform_runs_restarts_and_stops_cleanly(supervisor, tmp_path):
    """The real script with redis and gunicorn: /healthz sees them, a killed web server comes
    back, SIGTERM stops everything (no process of any component's group survives)."""
    web_port = free_port()
    external = ("CELERY_BROKER_URL", "DATABASE_URL", "MILVUS_URI")
    env = {k: v for k, v in os.environ.items() if k not in external}
    env |= {
        "SEARCH_DATA_DIR": str(tmp_path),
        "SEARCH_PORT": str(web_port),
        "SEARCH_REDIS_PORT": str(free_port()),
        "SEARCH_MILVUS_PORT": str(free_port()),
        "SEARCH_WEB_WORKERS": "1",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing there: degraded
    }
    state_file = tmp_path / "run" / "platform.json"
    process = subprocess.Popen(
        [sys.executable, str(supervisor.__file__), "--only", "redis,milvus,web"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        state = wait_for(
            lambda: running(state_file, "redis", "milvus", "web"), 60, "redis, milvus and web"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=10) as answer:
            health = json.loads(answer.read())
        assert health["components"]["redis"]["status"] == "ok"
        redis_pid = state["components"]["redis"]["pid"]
        assert health["components"]["redis"]["process"]["pid"] == redis_pid
        assert health["components"]["web"]["process"]["status"] == "running"
        assert health["components"]["kafka"]["status"] == "down"
        assert health["status"] == "degraded"

        old_web = state["components"]["web"]["pid"]
        os.kill(old_web, signal.SIGKILL)
        state = wait_for(
            lambda: (s := running(state_file, "web")) and s["components"]["web"]["restarts"] and s,
            30,
            "web to be restarted",
        )
        assert state["components"]["web"]["pid"] != old_web
        assert state["components"]["web"]["restarts"] == 1
        pids = set()
        for part in state["components"].values():
            pids |= group_members(part["pid"])
        assert len(pids) >= 3  # redis, gunicorn master and its worker
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "web           stopped" in output and "redis         stopped" in output
    assert output.index("web           stopped") < output.index("redis         stopped")
    wait_for(lambda: not any(alive(pid) for pid in pids), 5, "no orphan processes")
    final = read_state(state_file)
    assert {p["status"] for p in final["components"].values()} == {"stopped"}
