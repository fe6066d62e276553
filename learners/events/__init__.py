"""Shopper events: the public surface other apps call.

``publish(events)`` is what the storefront and the JSON API call with a list of event dicts
(see :mod:`learners.events.schema` for the fields). It validates each event, hands the valid
ones to Kafka (or to the local spool while the broker is down) and dead-letters the invalid ones
with their errors, then reports per event what happened -- it never raises for bad events, so
one malformed event does not cost the good ones in the same batch.

Mapping to HTTP for the endpoint author: ``report.rejected`` > 0 -> 400 with ``report.errors``
(or 207-style partial success), ``report.failed`` > 0 -> 503 (the spool is full), a batch larger
than ``MAX_BATCH_EVENTS`` -> ``ValueError`` -> 413.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from learners import conf
from learners.events.producer import flush, get_producer, reset_producer, spool_size
from learners.events.schema import (
    MAX_BATCH_EVENTS,
    AnyEvent,
    EventValidationError,
    parse_and_encode,
    with_defaults,
)
from learners.events.spool import SpoolRecord

__all__ = [
    "EventError",
    "PublishReport",
    "flush",
    "publish",
    "reset_producer",
    "spool_size",
    "dead_letter",
]

#: Raw input kept in a dead letter, truncated so that a huge payload cannot clog the DLQ.
MAX_DEAD_LETTER_CHARS = 16 * 1024


@dataclass(frozen=True)
class EventError:
    """Why the event at ``index`` of the published list was not accepted."""

    index: int
    event_id: str | None
    errors: tuple[str, ...]


@dataclass(frozen=True)
class PublishReport:
    accepted: int  #: valid and handed to Kafka or to the spool (includes ``spooled``)
    rejected: int  #: invalid; dead-lettered with their errors
    spooled: int = 0  #: accepted but waiting in the local spool for the broker
    failed: int = 0  #: valid but refused because the spool is full -- retry later
    errors: list[EventError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.failed == 0


def publish(events: Sequence[Mapping[str, Any]], *, fill_defaults: bool = True) -> PublishReport:
    """Validate and send ``events``; see the module docstring. Never blocks for long.

    ``fill_defaults`` adds a missing ``event_id``, ``ts`` and ``schema_version`` (emitters on
    the server side rarely have a reason to choose them); pass False to validate strictly.
    """
    if len(events) > MAX_BATCH_EVENTS:
        raise ValueError(f"{len(events)} events in one batch; at most {MAX_BATCH_EVENTS}")
    valid: list[tuple[int, AnyEvent]] = []
    records: list[SpoolRecord] = []
    errors: list[EventError] = []
    letters: list[SpoolRecord] = []
    topic = conf.events_topic()
    for index, raw in enumerate(events):
        data = with_defaults(raw) if fill_defaults and isinstance(raw, Mapping) else raw
        try:
            event, wire = parse_and_encode(data)
        except EventValidationError as exc:
            errors.append(EventError(index, _event_id(data), tuple(exc.errors)))
            letters.append(dead_letter(data, exc.errors, source="publish"))
            continue
        valid.append((index, event))
        records.append(SpoolRecord(topic, event.session_id, wire.decode()))
    result = get_producer().send(records + letters)
    failed = [i for i in result.failed if i < len(records)]
    errors.extend(_spool_full(valid[i]) for i in failed)
    errors.sort(key=lambda e: e.index)
    return PublishReport(
        accepted=len(valid) - len(failed),
        rejected=len(letters),
        spooled=sum(1 for i in result.spooled if i < len(records)),
        failed=len(failed),
        errors=errors,
    )


def _spool_full(item: tuple[int, AnyEvent]) -> EventError:
    index, event = item
    return EventError(index, str(event.event_id), ("event spool full: not accepted, retry",))


def _event_id(data: object) -> str | None:
    value = data.get("event_id") if isinstance(data, Mapping) else None
    return str(value) if value is not None else None


def dead_letter(raw: object, errors: Sequence[str], *, source: str, **where: Any) -> SpoolRecord:
    """A DLQ record: the errors, where the event came from and (truncated) what was received."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
    body = {
        "errors": list(errors),
        "source": source,
        "dead_lettered_at": datetime.now(UTC).isoformat(),
        "raw": text[:MAX_DEAD_LETTER_CHARS],
        "truncated": len(text) > MAX_DEAD_LETTER_CHARS,
        **where,
    }
    key = raw.get("session_id") if isinstance(raw, Mapping) else None
    return SpoolRecord(conf.dlq_topic(), key if isinstance(key, str) else None, json.dumps(body))
