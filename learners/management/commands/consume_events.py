"""``manage.py consume_events``: run the Kafka -> event store consumer until stopped.

SIGTERM / SIGINT finish the current batch, commit its offsets and leave the group, so a
supervisor can stop or restart it at any time; a SIGKILL is safe too (the uncommitted batch is
redelivered and ignored as duplicates).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from learners.events.consumer import EventConsumer

log = logging.getLogger("learners.consume_events")


class Command(BaseCommand):
    help = "Consume shopper events from Kafka into the event store (idempotent on event_id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bootstrap", help="host:port list (default KAFKA_BOOTSTRAP_SERVERS)")
        parser.add_argument("--topic", help="default EVENT_TOPIC")
        parser.add_argument("--group", help="consumer group id (default EVENT_CONSUMER_GROUP)")
        parser.add_argument(
            "--partitions",
            help="comma-separated partitions to read without joining the group, e.g. 0,1",
        )
        parser.add_argument("--batch-size", type=int, help="default EVENT_CONSUMER_BATCH_SIZE")
        parser.add_argument("--session-timeout-ms", type=int)
        parser.add_argument("--max-events", type=int, help="exit after this many records")
        parser.add_argument(
            "--idle-timeout", type=float, help="exit after this many seconds without records"
        )
        parser.add_argument(
            "--stats-every", type=float, default=10.0, help="log progress every N seconds"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        consumer = EventConsumer(
            bootstrap=options["bootstrap"],
            topic=options["topic"],
            group_id=options["group"],
            partitions=_partitions(options["partitions"]),
            batch_size=options["batch_size"],
            session_timeout_ms=options["session_timeout_ms"],
        )
        _stop_on_signals(consumer)
        reporter = _start_reporter(consumer, options["stats_every"])
        try:
            consumer.start()
            log.info("consuming %s as group %s", consumer.topic, consumer.group_id)
            stats = consumer.run(
                max_events=options["max_events"], idle_timeout_s=options["idle_timeout"]
            )
        finally:
            reporter.set()
            consumer.close()
        self.stdout.write(json.dumps(stats.as_dict()))


def _partitions(raw: str | None) -> list[int] | None:
    if not raw:
        return None
    return [int(part) for part in raw.split(",") if part.strip()]


def _stop_on_signals(consumer: EventConsumer) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch", signum)
        consumer.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _start_reporter(consumer: EventConsumer, every: float) -> threading.Event:
    """Log the stats periodically from a daemon thread; set the returned event to stop it."""
    done = threading.Event()

    def report() -> None:
        while not done.wait(every):
            log.info("consumer stats %s", json.dumps(consumer.stats.as_dict()))

    if every > 0:
        threading.Thread(target=report, name="consumer-stats", daemon=True).start()
    return done
