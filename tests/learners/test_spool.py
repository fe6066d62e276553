"""The local spool: bounded, ordered, claimable once, and recoverable after a crash."""

from __future__ import annotations

import subprocess

from learners.events.spool import FileSpool, SpoolRecord


def records(n: int, start: int = 0) -> list[SpoolRecord]:
    return [SpoolRecord("events", f"s{i}", f'{{"n": {i}}}') for i in range(start, start + n)]


def drain(spool: FileSpool) -> list[SpoolRecord]:
    out = []
    spool.rotate()
    for segment in spool.claim_ready():
        out += spool.read(segment)
        spool.complete(segment)
    return out


def test_append_rotate_drain_in_order(tmp_path):
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert spool.append(records(10)) == 10
    assert spool.append(records(5, start=10)) == 5
    assert spool.pending_events() == 15
    assert len(list(tmp_path.iterdir())) > 1  # rotated into several segments
    assert drain(spool) == records(15)
    assert spool.is_empty() and spool.size_bytes() == 0


def test_bound_refuses_instead_of_dropping(tmp_path):
    one = len(records(1)[0].line())
    spool = FileSpool(tmp_path, max_bytes=one * 3 + 1, segment_bytes=1 << 20)
    assert spool.append(records(5)) == 3
    assert spool.append(records(1)) == 0
    assert spool.pending_events() == 3


def test_bound_counts_other_writers_once_the_directory_is_measured_again(tmp_path, monkeypatch):
    from learners.events import spool as spool_module

    now = [100.0]
    monkeypatch.setattr(spool_module.time, "monotonic", lambda: now[0])
    one = len(records(1)[0].line())
    mine = FileSpool(tmp_path, max_bytes=one * 4, segment_bytes=1 << 20)
    theirs = FileSpool(tmp_path, max_bytes=one * 4, segment_bytes=1 << 20)  # another process
    assert mine.append(records(1)) == 1
    assert theirs.append(records(2)) == 2
    assert mine.append(records(1)) == 1  # within the recheck interval: their 2 not seen yet
    now[0] += spool_module.SIZE_RECHECK_S
    assert mine.append(records(1)) == 0  # measured again: 4 records, the bound
    assert mine.pending_events() == 4


def test_released_segment_is_retried(tmp_path):
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.append(records(3))
    spool.rotate()
    [claimed] = list(spool.claim_ready())
    assert list(spool.claim_ready()) == []  # claimed once
    spool.release(claimed)
    assert drain(spool) == records(3)


def test_segments_of_a_dead_process_are_adopted(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    dead = child.pid
    (tmp_path / f"seg-1-{dead}.open").write_bytes(b"".join(r.line() for r in records(2)))
    (tmp_path / f"seg-2-1.ready.{dead}").write_bytes(records(1, start=2)[0].line())
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    assert spool.adopt_orphans() == 2
    assert drain(spool) == records(3)


def test_torn_line_is_skipped(tmp_path):
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.append(records(2))
    spool.rotate()
    [segment] = list(tmp_path.iterdir())
    with open(segment, "ab") as handle:
        handle.write(b'{"t": "events", "k"')  # a crash mid-write
    assert drain(spool) == records(2)


def test_only_ready_or_own_segments_are_sendable(tmp_path):
    spool = FileSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    (tmp_path / "seg-1-1.open").write_bytes(records(1)[0].line())  # pid 1 is alive: not ours
    assert not spool.has_sendable() and not spool.is_empty()
    spool.append(records(1))
    assert spool.has_sendable()
