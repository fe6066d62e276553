"""A bounded on-disk spool for records that could not be handed to Kafka.

Layout of the spool directory (shared by every process of one deployment, e.g. the web
server's workers)::

    seg-<time_ns>-<pid>.open          being appended to by process <pid>
    seg-<time_ns>-<pid>.ready         closed, waiting to be sent (any process may claim it)
    seg-<time_ns>-<pid>.ready.<pid2>  claimed by process <pid2>, being sent

Each segment holds JSON lines ``{"t": topic, "k": key, "v": value}``. Claiming is an atomic
rename, so two processes never send the same segment; a segment is deleted only after Kafka
acknowledged every record in it. A process that dies leaves its ``.open`` / claimed segments
behind; they are re-adopted (renamed back to ``.ready``) once their pid is gone, so a crash
can at worst resend a segment -- harmless, because the consumer is idempotent on event_id.

The bound is on the total bytes of the directory: when it is reached ``append`` refuses
records and says how many it took, so callers can report them as failed instead of dropping
them. The directory is measured at most every ``SIZE_RECHECK_S`` (listing it on every append
cost a search request a millisecond during an outage); in between a process adds what it
wrote itself, so the bound can be overshot by at most one second of the *other* processes'
appends. Appends are flushed to the OS on every call (they survive a process crash, not a power
loss); the spool is an outage buffer, not a second database.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_PREFIX = "seg-"
#: Longest time ``append`` trusts its last measurement of the directory's size.
SIZE_RECHECK_S = 1.0


@dataclass(frozen=True)
class SpoolRecord:
    """One record on its way to Kafka: the spool stores exactly what the producer sends."""

    topic: str
    key: str | None
    value: str

    def line(self) -> bytes:
        return (json.dumps({"t": self.topic, "k": self.key, "v": self.value}) + "\n").encode()

    def send_with(self, client: Any) -> Any:
        """``client.send`` this record (a kafka-python producer); returns its future."""
        key = self.key.encode() if self.key is not None else None
        return client.send(self.topic, key=key, value=self.value.encode())

    @classmethod
    def from_line(cls, line: bytes) -> SpoolRecord:
        data = json.loads(line)
        return cls(topic=data["t"], key=data["k"], value=data["v"])


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> int:
    """The pid that holds ``path``: the claimer of a claimed segment, else the writer."""
    suffix = path.name.rsplit(".", 1)[-1]
    if suffix.isdigit():
        return int(suffix)
    return int(path.name.split(".", 1)[0].rsplit("-", 1)[-1])


class FileSpool:
    """Thread-safe within a process; safe across processes through atomic renames."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._active: Path | None = None
        self._handle: IO[bytes] | None = None
        self._size = 0  # bytes in the directory when last measured, plus our writes since
        self._measured_at: float | None = None
        self.directory.mkdir(parents=True, exist_ok=True)

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[SpoolRecord]) -> int:
        """Append as many of ``records`` (in order) as the bound allows; return that number."""
        with self._lock:
            now = time.monotonic()
            if self._measured_at is None or now - self._measured_at >= SIZE_RECHECK_S:
                self._size, self._measured_at = self.size_bytes(), now
            taken = 0
            for record in records:
                line = record.line()
                if self._size + len(line) > self.max_bytes:
                    break
                self._write(line)
                self._size += len(line)
                taken += 1
            if self._handle is not None:
                self._handle.flush()
            return taken

    def _write(self, line: bytes) -> None:
        if self._handle is None:
            self._active = self.directory / f"{_PREFIX}{time.time_ns()}-{os.getpid()}.open"
            self._handle = open(self._active, "ab")  # noqa: SIM115 -- kept open across calls
        self._handle.write(line)
        if self._handle.tell() >= self.segment_bytes:
            self._close_active()

    def _close_active(self) -> None:
        if self._handle is None or self._active is None:
            return
        self._handle.close()
        self._active.rename(self._active.with_suffix(".ready"))
        self._handle = None
        self._active = None

    def rotate(self) -> None:
        """Close this process's open segment so that it can be sent."""
        with self._lock:
            self._close_active()

    def close(self) -> None:
        self.rotate()

    # -- reading ---------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.startswith(_PREFIX))
        except FileNotFoundError:
            return []

    def size_bytes(self) -> int:
        total = 0
        for path in self._segments():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # claimed and sent by another process meanwhile
                continue
        return total

    def pending_events(self) -> int:
        """Records in the spool (all processes'); reads the files, so O(spool size)."""
        count = 0
        for path in self._segments():
            try:
                with open(path, "rb") as handle:
                    count += sum(1 for line in handle if line.strip())
            except FileNotFoundError:
                continue
        return count

    def is_empty(self) -> bool:
        return not self._segments()

    def has_sendable(self) -> bool:
        """Whether this process has something to send: ready segments or its own open one
        (other live processes' open segments are theirs to send)."""
        own_open = f"-{os.getpid()}.open"
        return any(p.suffix == ".ready" or p.name.endswith(own_open) for p in self._segments())

    def adopt_orphans(self) -> int:
        """Make segments of dead processes sendable again; return how many were adopted."""
        adopted = 0
        for path in self._segments():
            if path.suffix == ".ready" or _pid_alive(_owner(path)):
                continue
            base = path.name.split(".", 1)[0]
            try:
                path.rename(self.directory / f"{base}.ready")
            except FileNotFoundError:
                continue
            log.warning("spool: adopted %s left by a process that is gone", path.name)
            adopted += 1
        return adopted

    def claim_ready(self) -> Iterator[Path]:
        """Yield this process's claims on ready segments, oldest first."""
        for path in self._segments():
            if path.suffix != ".ready":
                continue
            claimed = path.with_name(f"{path.name}.{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process claimed it first
                continue
            yield claimed

    @staticmethod
    def read(segment: Path) -> list[SpoolRecord]:
        records = []
        with open(segment, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    records.append(SpoolRecord.from_line(line))
                except (ValueError, KeyError):
                    # only a torn last write after a crash can do this; say so loudly
                    log.error("spool: unreadable line %d in %s skipped", number, segment.name)
        return records

    @staticmethod
    def complete(segment: Path) -> None:
        segment.unlink(missing_ok=True)

    @staticmethod
    def release(segment: Path) -> None:
        """Give a claimed segment back (sending failed) so it is retried later."""
        segment.rename(segment.with_name(segment.name.rsplit(".", 1)[0]))
