"""The process-wide Kafka producer behind ``learners.events.publish``.

Requirements that shape it:

* the API keeps serving when the broker is down, and nothing is silently dropped: a record
  that cannot be handed to Kafka -- broker unreachable at send time, or a send that fails
  later in the background -- goes to a bounded local :class:`~learners.events.spool.FileSpool`;
  only a full spool refuses records, and then the caller is told (``SendResult.failed``);
* a request thread never waits long for the broker: the client is built with a fixed protocol
  version (no bootstrap round trip), ``send`` blocks at most ``EVENT_PRODUCER_MAX_BLOCK_MS``
  once, after which the producer is *degraded* and spools at once until a background thread
  sees the broker again, (re)creates the topics (the local broker forgets them on restart)
  and drains the spool; until the spool is drained new records are spooled behind the old
  ones, so a session's events keep their order;
* durability on the broker: ``acks=all``, records keyed by session_id (one session's events
  stay in one partition, in order), batched by ``linger_ms``/``batch_size``; duplicates from
  retries are harmless because the consumer is idempotent on event_id.

The producer is a lazy singleton per process and per configuration (bootstrap servers and spool
directory), re-created after a fork, so gunicorn workers and tests that override settings get
their own.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaConfigurationError, KafkaError
from kafka.partitioner.default import DefaultPartitioner, murmur2

from learners import conf
from learners.broker import tcp_reachable
from learners.events import topics
from learners.events.heap import freeze_long_lived
from learners.events.spool import FileSpool, SpoolRecord

log = logging.getLogger(__name__)


@dataclass
class SendResult:
    """What became of records handed to :meth:`EventProducer.send` (indexes into the input)."""

    sent: int = 0
    spooled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


@dataclass
class ProducerStats:
    sent: int = 0
    acked: int = 0
    spooled: int = 0
    flushed_from_spool: int = 0
    lost: int = 0  #: failed in the background *and* the spool was full (logged as errors)


class EventProducer:
    """kafka-python producer + spool + background drainer. Thread-safe."""

    def __init__(self, bootstrap: str, spool: FileSpool) -> None:
        self.bootstrap = bootstrap
        self.spool = spool
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self._kafka: KafkaProducer | None = None
        spool.adopt_orphans()
        self._degraded = spool.has_sendable()  # left-overs of an earlier run go first
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="event-spool", daemon=True)
        self._thread.start()

    # -- sending ---------------------------------------------------------------------------

    def send(self, records: Sequence[SpoolRecord]) -> SendResult:
        """Hand ``records`` to Kafka, or to the spool when Kafka cannot take them now."""
        result = SendResult()
        start = 0
        if not self._degraded:
            start = self._send_direct(records, result)
        if start < len(records):
            self._spool(records, start, result)
        return result

    def _send_direct(self, records: Sequence[SpoolRecord], result: SendResult) -> int:
        """Send until the first failure; return how many records were handed over."""
        for index, record in enumerate(records):
            try:
                client = self._kafka or self._client()
                future = record.send_with(client)
            except KafkaError as exc:
                self._degrade(f"send failed: {exc}")
                return index
            future.add_callback(self._on_ack)
            future.add_errback(self._on_error, record)
            result.sent += 1
        self.stats.sent += result.sent
        return len(records)

    def _spool(self, records: Sequence[SpoolRecord], start: int, result: SendResult) -> None:
        taken = self.spool.append(records[start:])
        result.spooled.extend(range(start, start + taken))
        result.failed.extend(range(start + taken, len(records)))
        self.stats.spooled += taken
        if result.failed:
            log.error("event spool full: %d record(s) refused", len(result.failed))
        self._wake.set()

    def _client(self) -> KafkaProducer:
        """The kafka-python client, built on first use. A configuration error is raised, not
        mistaken for an outage (that would spool forever)."""
        with self._lock:
            if self._kafka is None:
                try:
                    self._kafka = make_kafka_producer(self.bootstrap)
                except KafkaConfigurationError as exc:
                    raise ImproperlyConfigured(f"event producer: {exc}") from exc
                close_at_exit()
            return self._kafka

    def _reset_client(self) -> None:
        with self._lock:
            old, self._kafka = self._kafka, None
        if old is not None:
            close_kafka_producer(old, timeout=1)

    def _on_ack(self, _metadata: object) -> None:
        self.stats.acked += 1

    def _on_error(self, record: SpoolRecord, exc: BaseException) -> None:
        """Runs on the client's I/O thread when a record could not be delivered."""
        self._degrade(f"delivery failed: {exc}")
        if self.spool.append([record]) == 1:
            self.stats.spooled += 1
        else:
            self.stats.lost += 1
            log.error("event LOST (spool full) topic=%s key=%s", record.topic, record.key)

    def _degrade(self, reason: str) -> None:
        if not self._degraded:
            log.warning("event broker %s unavailable (%s); spooling", self.bootstrap, reason)
        self._degraded = True
        self._wake.set()

    @property
    def degraded(self) -> bool:
        return self._degraded

    # -- draining the spool ----------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(conf.spool_retry_seconds())
            self._wake.clear()
            if self._stop.is_set():
                return
            self.spool.adopt_orphans()
            if not self._degraded and not self.spool.has_sendable():
                continue
            try:
                self._drain()
            except KafkaError as exc:  # broker still down: the normal case during an outage
                log.debug("event broker still unavailable: %s", exc)
            except Exception:  # keep the thread alive whatever happens
                log.exception("event spool drain failed; will retry")

    def _drain(self) -> None:
        if not tcp_reachable(self.bootstrap):  # cheap check first: a refused connect is instant
            return
        topics.ensure_topics(self.bootstrap, timeout_ms=2000)  # raises while the broker is down
        if not self._drain_ready() or not self._degraded:
            return
        # Leave degraded mode, then send what was spooled while the last segments were in
        # flight: from here on new records go direct. Records spooled in that short window may
        # overtake nothing but the few sent direct meanwhile (ordering is best effort there).
        self._degraded = False
        log.warning("event broker %s is back; spool drained", self.bootstrap)
        self._drain_ready()

    def _drain_ready(self) -> bool:
        """Send every sendable segment; False if one failed (it stays for the next round)."""
        self.spool.rotate()
        for segment in self.spool.claim_ready():
            if self._stop.is_set():
                self.spool.release(segment)
                return False
            if not self._send_segment(segment):
                return False
        return True

    def _send_segment(self, segment: Path) -> bool:
        """Send one claimed segment; delete it only once every record is acknowledged."""
        try:
            records = self.spool.read(segment)
            client = self._client()
            futures = [record.send_with(client) for record in records]
            client.flush(timeout=conf.delivery_timeout_ms() / 1000)
            failures = [f.exception for f in futures if not f.succeeded()]
            if failures:
                log.info("spool drain: %d/%d failed: %s", len(failures), len(futures), failures[0])
            delivered = not failures
        except KafkaError as exc:
            log.info("spool drain interrupted: %s", exc)
            delivered = False
        if not delivered:
            self.spool.release(segment)
            self._reset_client()  # start the next round with a client that has no stale state
            return False
        self.spool.complete(segment)
        self.stats.flushed_from_spool += len(records)
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record sent directly so far is acknowledged or has failed."""
        if self._kafka is not None:
            self._kafka.flush(timeout=timeout)

    def wake(self) -> None:
        """Ask the drainer to try the broker now instead of at its next interval."""
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the drainer and the client, waiting up to ``timeout`` for records in flight.

        Never raises for an unreachable broker: a worker shutting down during an outage must
        still shut down, and whatever the broker could not take ends up in the spool."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._kafka is not None:
            close_kafka_producer(self._kafka, timeout)
        self.spool.close()


def make_kafka_producer(bootstrap: str) -> KafkaProducer:
    """A kafka-python producer with the platform's delivery settings (see module docstring)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        api_version=conf.api_version(),
        acks="all",
        # No idempotent producer: its producer-id state does not survive a restart of the
        # memory-only broker (measured: InitProducerId fails and the client is dead), and
        # the consumer already deduplicates on event_id. One request in flight keeps
        # retries from reordering a partition, at no measured throughput cost here.
        enable_idempotence=False,
        max_in_flight_requests_per_connection=1,
        linger_ms=conf.producer_linger_ms(),
        batch_size=conf.producer_batch_bytes(),
        max_block_ms=conf.producer_max_block_ms(),
        # kafka-python requires delivery > linger + request timeout
        request_timeout_ms=max(500, min(5000, conf.delivery_timeout_ms() // 2)),
        delivery_timeout_ms=conf.delivery_timeout_ms(),
        reconnect_backoff_max_ms=1000,  # notice a returning broker within a second
        allow_auto_create_topics=False,  # topics are created explicitly, with partition counts
        bootstrap_timeout_ms=2000,
        partitioner=KeyHashPartitioner(),
    )


def close_kafka_producer(client: KafkaProducer, timeout: float) -> None:
    """Close ``client``; if the broker cannot take its batches within ``timeout``, force it.

    kafka-python's ``close`` flushes first and *raises* when the flush times out, leaving its
    I/O thread alive with the unsent batches (which a process exit then drops). Forcing the
    sender closed aborts those batches instead, so their errbacks run -- and the producer's
    errback spools each record. kafka-python has no public force-close, hence ``_sender``."""
    try:
        client.close(timeout=timeout)
    except KafkaError as exc:
        log.warning(
            "event broker did not take the last records in %.1f s (%s); spooling", timeout, exc
        )
        sender = client._sender
        sender.force_close()
        sender.join(timeout)
        client.close(timeout=0)  # the batches are aborted now: nothing left to flush


class KeyHashPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner (murmur2 of the key, as the Java client does, so
    every producer maps a session to the same partition) with the hash cached per key.

    A session sends many events, and the pure-Python murmur2 was one of the larger items of
    ``KafkaProducer.send`` in cProfile (~10 % of it). Records without a key keep the default's
    random choice."""

    def __init__(self, cache_size: int = 65_536) -> None:
        self._hash = functools.lru_cache(maxsize=cache_size)(murmur2)

    def partition(
        self,
        topic: str,
        key: object,
        serialized_key: bytes | None,
        value: object,
        serialized_value: bytes | None,
        cluster: ClusterMetadata,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        ordered = sorted(partitions)
        return ordered[(self._hash(bytes(serialized_key)) & 0x7FFFFFFF) % len(ordered)]


_singleton: EventProducer | None = None
_singleton_key: tuple[object, ...] | None = None
_singleton_lock = threading.Lock()


def get_producer() -> EventProducer:
    """The producer for the current process and configuration (created on first use)."""
    global _singleton, _singleton_key
    key = (os.getpid(), conf.bootstrap_servers(), str(conf.spool_dir()))
    with _singleton_lock:
        if _singleton is None or _singleton_key != key:
            old, _singleton = _singleton, None
            if old is not None and _singleton_key and _singleton_key[0] == os.getpid():
                old.close(timeout=2)
            spool = FileSpool(conf.spool_dir(), conf.spool_max_bytes(), conf.spool_segment_bytes())
            _singleton = EventProducer(conf.bootstrap_servers(), spool)
            _singleton_key = key
            freeze_long_lived()  # the first publish of a process: its app is loaded by now
        return _singleton


def reset_producer(timeout: float = 10.0) -> None:
    """Close and forget the singleton (tests; process shutdown)."""
    global _singleton, _singleton_key
    with _singleton_lock:
        old, old_key = _singleton, _singleton_key
        _singleton, _singleton_key = None, None  # forgotten even if closing it fails
        if old is not None and old_key and old_key[0] == os.getpid():
            old.close(timeout=timeout)


#: How long a process that exits waits for the broker to take its records in flight.
EXIT_TIMEOUT_S = 2.0


def close_at_exit() -> None:
    """Have the process close the producer when it exits (a gunicorn or Celery worker, a
    command), so records still in flight reach the broker or, failing that, the spool.

    Called whenever a Kafka client is built: kafka-python registers its own exit hook then, one
    that raises during an outage and leaves the records in its I/O thread. Exit hooks run last
    registered first, so moving ours to the end makes it close the client before that one
    (whose hook a clean close unregisters)."""
    atexit.unregister(_close_at_exit)
    atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    reset_producer(timeout=EXIT_TIMEOUT_S)


def spool_size() -> int:
    """Events waiting in the local spool (of every process sharing the spool directory)."""
    return FileSpool(
        conf.spool_dir(), conf.spool_max_bytes(), conf.spool_segment_bytes()
    ).pending_events()


def flush(timeout: float | None = None) -> None:
    """Wait for the current producer's in-flight records (no-op if none was created)."""
    if _singleton is not None:
        _singleton.flush(timeout)
