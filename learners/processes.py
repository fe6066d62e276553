"""Child processes of benchmarks and integration tests: a server or worker started for a run
(gunicorn, a Milvus Lite server, a consumer) that shares this process's database, lives in its
own process group and never outlives us."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of this process's database, for the ``DATABASE_URL`` of a child process."""
    from django.db import connection

    d = connection.settings_dict
    if d["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{d['NAME']}"
    user, password = quote(d["USER"] or "", safe=""), quote(d["PASSWORD"] or "", safe="")
    return f"postgres://{user}:{password}@{d['HOST']}:{d['PORT'] or 5432}/{d['NAME']}"


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A child process in its own group (gunicorn forks workers) that dies with us; on exit
    SIGTERM to the group, SIGKILL after 20 s."""
    from learners.broker import kill_when_parent_dies

    with open(log_path, "ab") as output:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=kill_when_parent_dies,
        )
    try:
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
