"""Generation markers: how one process tells the others on the host that data they cache
changed, without a message bus.

A marker is a small file holding a random token; every change replaces it atomically
(write-then-rename, so a reader never sees half a token). A reader compares the token with the
one it last saw, at most once per check interval: one small file read a second per process,
instead of re-reading the data itself on a timer. Markers live under ``SEARCH_DATA_DIR``, so
they reach the processes of one host; another host's caches fall back on their refresh
interval (README "Scaling out").
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from django.conf import settings


def marker(folder: str, name: str) -> Path:
    return Path(settings.DATA_DIR) / folder / name


def bump(path: Path) -> None:
    """Announce a change (atomic replace: never a torn read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    scratch.write_text(uuid.uuid4().hex)
    os.replace(scratch, path)


def current(path: Path) -> str:
    """The token now in the marker ("" before the first change)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class Watch:
    """Looks at a marker at most every ``interval`` seconds; :meth:`changed` says whether a
    change was announced since the last look that found one."""

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._seen = current(path)
        self._checked_at = time.monotonic()

    def changed(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at < self.interval:
            return False
        self._checked_at = now
        token = current(self.path)
        if token == self._seen:
            return False
        self._seen = token
        return True
