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
from functools import partial
from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError

from learners import conf
from learners.events import dead_letter
from learners.events.heap import freeze_long_lived
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


def event_columns(event: AnyEvent) -> dict[str, Any]:
    """The typed store columns of a validated event (all but ``payload`` and ``received_at``).

    Read from the model's ``__dict__``, where pydantic keeps the validated values: a field the
    event's type lacks is then a cheap ``dict.get`` miss, not pydantic's ``__getattr__``
    raising an AttributeError."""
    fields = event.__dict__
    return {
        "event_id": fields["event_id"],
        "type": fields["type"],
        "merchant": fields["merchant"],
        "session_id": fields["session_id"],
        "ts": fields["ts"],
        "request_id": fields.get("request_id") or "",
        "query": fields.get("query", ""),
        "sku": fields.get("sku", ""),
        "position": fields.get("position"),
        "quantity": fields.get("quantity"),
        "price": fields.get("price"),
    }


def event_row(event: AnyEvent) -> Event:
    """The store row for a validated event, as a model instance."""
    return Event(**event_columns(event), payload=event.model_dump(mode="json"))


#: The columns ``store_events`` writes, in the order of its INSERT parameters.
COLUMNS = (
    "event_id",
    "type",
    "merchant",
    "session_id",
    "ts",
    "request_id",
    "query",
    "sku",
    "position",
    "quantity",
    "price",
    "payload",
    "received_at",
)


def _insert_sql(db: BaseDatabaseWrapper) -> str:
    quote = db.ops.quote_name
    columns = ", ".join(quote(Event._meta.get_field(name).column) for name in COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    return (
        f"INSERT INTO {quote(Event._meta.db_table)} ({columns}) VALUES ({marks}) "
        "ON CONFLICT (event_id) DO NOTHING"
    )


def _db_rows(events: Sequence[AnyEvent], db: BaseDatabaseWrapper) -> list[tuple]:
    """INSERT parameters (in ``COLUMNS`` order) for validated events.

    Validated values already have the columns' Python types, so only the uuid, datetime and
    decimal columns go through Django's adaptation for ``db``, and the payload is pydantic's
    own JSON text (a JSON column takes JSON text on SQLite and PostgreSQL alike). Adapting
    every value through its field's ``get_db_prep_save`` and encoding the payload by
    ``model_dump`` + ``json.dumps`` was half the consumer's CPU (cProfile of bench ingest).
    """
    prep_id = partial(Event._meta.get_field("event_id").get_db_prep_save, connection=db)
    prep_price = partial(Event._meta.get_field("price").get_db_prep_save, connection=db)
    prep_time = db.ops.adapt_datetimefield_value
    received_at = prep_time(timezone.now())
    rows = []
    for event in events:
        c = event_columns(event)
        price = None if c["price"] is None else prep_price(c["price"])
        rows.append(
            (
                prep_id(c["event_id"]),
                c["type"],
                c["merchant"],
                c["session_id"],
                prep_time(c["ts"]),
                c["request_id"],
                c["query"],
                c["sku"],
                c["position"],
                c["quantity"],
                price,
                event.model_dump_json(),
                received_at,
            )
        )
    return rows


def store_events(events: Iterable[AnyEvent]) -> tuple[int, int]:
    """Insert ``events`` idempotently; return ``(stored, duplicates)``.

    One ``INSERT ... ON CONFLICT (event_id) DO NOTHING`` per chunk, counted by the database's
    row count: no model instances and no look-up first, which halved the consumer's CPU per
    event (``bench ingest``). Two consumers racing on the same event stay correct because the
    unique key decides, not a read.
    """
    events = list(events)
    if not events:
        return 0, 0
    db = connections[DEFAULT_DB_ALIAS]
    rows = _db_rows(events, db)
    stored = 0
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        sql = _insert_sql(db)
        for start in range(0, len(rows), DB_CHUNK):
            cursor.executemany(sql, rows[start : start + DB_CHUNK])
            stored += max(0, cursor.rowcount)
    return stored, len(events) - stored


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
        freeze_long_lived()  # Django and the clients are built: keep GC off them

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
