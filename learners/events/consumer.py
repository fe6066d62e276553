"""Kafka -> event store: the consume loop behind ``manage.py consume_events``.

Each iteration polls a batch, validates every record again (the topic may have producers other
than ``publish``), dead-letters the invalid ones, inserts the valid ones in one transaction that
ignores ``event_id`` conflicts, and only then commits the offsets. Hence:

* a crash before the commit redelivers the batch, and the unique ``event_id`` makes the second
  insert a no-op -- nothing lost, nothing duplicated;
* dead letters are flushed to the broker before the commit, so an invalid event is never
  acknowledged without being recorded somewhere.

It runs in a consumer group (``EVENT_CONSUMER_GROUP``) so several consumers share the
partitions, or with explicit partitions (``partitions=[...]``), which skips the group join
(~half the session timeout on tansu) but still commits offsets under the group id.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from django.db import close_old_connections, transaction
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError

from learners import conf
from learners.events import dead_letter
from learners.events.producer import make_kafka_producer
from learners.events.schema import AnyEvent, EventValidationError, parse_event
from learners.events.spool import SpoolRecord
from learners.events.topics import ensure_topics
from learners.models import Event

log = logging.getLogger(__name__)

#: Rows per INSERT/SELECT statement: below SQLite's bound-parameter limits with margin.
DB_CHUNK = 500


@dataclass
class ConsumerStats:
    polled: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Records handled per second since start (includes the group-join wait)."""
        return self.polled / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        data = asdict(self)
        data.pop("started")
        data["elapsed_s"] = round(self.elapsed, 3)
        data["records_per_s"] = round(self.rate, 1)
        return data


def event_row(event: AnyEvent) -> Event:
    """The store row for a validated event (typed columns + the full payload)."""
    return Event(
        event_id=event.event_id,
        type=event.type,
        merchant=event.merchant,
        session_id=event.session_id,
        ts=event.ts,
        request_id=getattr(event, "request_id", None) or "",
        query=getattr(event, "query", ""),
        sku=getattr(event, "sku", ""),
        position=getattr(event, "position", None),
        quantity=getattr(event, "quantity", None),
        price=getattr(event, "price", None),
        payload=event.model_dump(mode="json"),
    )


def store_events(events: Iterable[AnyEvent]) -> tuple[int, int]:
    """Insert ``events`` idempotently; return ``(stored, duplicates)``.

    Duplicates (already stored, or repeated within the batch) are counted by a lookup first so
    that the stats say what happened; the insert still ignores conflicts, which keeps two
    consumers racing on the same event correct.
    """
    events = list(events)
    unique: dict[uuid.UUID, AnyEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    ids = list(unique)
    with transaction.atomic():
        existing: set[uuid.UUID] = set()
        for start in range(0, len(ids), DB_CHUNK):
            chunk = ids[start : start + DB_CHUNK]
            found = Event.objects.filter(event_id__in=chunk).values_list("event_id", flat=True)
            existing.update(found)
        rows = [event_row(e) for eid, e in unique.items() if eid not in existing]
        Event.objects.bulk_create(rows, batch_size=DB_CHUNK, ignore_conflicts=True)
    return len(rows), len(events) - len(rows)


class EventConsumer:
    """One consumer process's loop. ``stop()`` is safe from a signal handler or another
    thread: the current batch is finished and committed before ``run`` returns."""

    def __init__(
        self,
        *,
        bootstrap: str | None = None,
        topic: str | None = None,
        group_id: str | None = None,
        partitions: Sequence[int] | None = None,
        batch_size: int | None = None,
        session_timeout_ms: int | None = None,
        poll_timeout_ms: int = 500,
    ) -> None:
        self.bootstrap = bootstrap or conf.bootstrap_servers()
        self.topic = topic or conf.events_topic()
        self.group_id = group_id or conf.consumer_group()
        self.partitions = list(partitions) if partitions is not None else None
        self.batch_size = batch_size or conf.consumer_batch_size()
        self.session_timeout_ms = session_timeout_ms or conf.consumer_session_timeout_ms()
        self.poll_timeout_ms = poll_timeout_ms
        self.stats = ConsumerStats()
        self._stopping = False
        self._consumer: KafkaConsumer | None = None
        self._dlq: KafkaProducer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    def start(self) -> None:
        """Create the topics if needed and join the group (or take the given partitions)."""
        ensure_topics(self.bootstrap)
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 5),
            allow_auto_create_topics=False,
            client_id=f"event-store-{uuid.uuid4().hex[:8]}",
        )
        if self.partitions is None:
            self._consumer.subscribe([self.topic])
        else:
            self._consumer.assign([TopicPartition(self.topic, p) for p in self.partitions])

    def close(self) -> None:
        """Leave the group (so partitions move at once) and release the clients."""
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
        if self._dlq is not None:
            self._dlq.close(timeout=5)
            self._dlq = None

    def __enter__(self) -> EventConsumer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the loop --------------------------------------------------------------------------

    def run(
        self, *, max_events: int | None = None, idle_timeout_s: float | None = None
    ) -> ConsumerStats:
        """Consume until ``stop()``, ``max_events`` handled, or ``idle_timeout_s`` without
        records while partitions are assigned (the group join does not count as idle)."""
        if self._consumer is None:
            self.start()
        last_busy = time.monotonic()
        while not self._stopping:
            if max_events is not None and self.stats.polled >= max_events:
                break
            limit = self.batch_size
            if max_events is not None:
                limit = min(limit, max_events - self.stats.polled)
            records = self.poll(limit)
            if records:
                self.process(records)
            if records or not self.assigned():
                last_busy = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last_busy > idle_timeout_s:
                break
        return self.stats

    def assigned(self) -> bool:
        return bool(self._consumer is not None and self._consumer.assignment())

    def poll(self, limit: int) -> list[ConsumerRecord]:
        assert self._consumer is not None, "start() first"
        batches = self._consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=limit)
        return [record for batch in batches.values() for record in batch]

    def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Store, dead-letter, then commit one polled batch."""
        close_old_connections()  # a long-running process must survive DB restarts
        valid, letters = self._validate(records)
        stored, duplicates = store_events(valid)
        if letters:
            self._send_dead_letters(letters)
        self._commit()
        self.stats.polled += len(records)
        self.stats.stored += stored
        self.stats.duplicates += duplicates
        self.stats.dead_lettered += len(letters)
        self.stats.batches += 1

    def _validate(
        self, records: Sequence[ConsumerRecord]
    ) -> tuple[list[AnyEvent], list[SpoolRecord]]:
        valid, letters = [], []
        for record in records:
            value = record.value or b""
            try:
                valid.append(parse_event(value))
            except EventValidationError as exc:
                where = {"topic": record.topic, "partition": record.partition}
                letters.append(
                    dead_letter(value, exc.errors, source="consumer", offset=record.offset, **where)
                )
        return valid, letters

    def _send_dead_letters(self, letters: Sequence[SpoolRecord]) -> None:
        """Send and confirm the batch's dead letters; raise (so the batch is not committed
        and is redelivered) if any could not be written."""
        if self._dlq is None:
            self._dlq = make_kafka_producer(self.bootstrap)
        try:
            futures = [letter.send_with(self._dlq) for letter in letters]
            self._dlq.flush(timeout=30)
            for future in futures:
                future.get(timeout=0)
        except KafkaError:
            self._dlq.close(timeout=1)
            self._dlq = None  # a fresh client next time: no stale state after a broker restart
            raise

    def _commit(self) -> None:
        assert self._consumer is not None
        try:
            self._consumer.commit()
            self.stats.commits += 1
        except CommitFailedError as exc:
            # the group rebalanced mid-batch: the batch is redelivered to the new owner and
            # its rows are ignored as duplicates
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); batch will be redelivered", exc)
