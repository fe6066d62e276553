"""Event ingestion end to end: HTTP POST /api/events -> Kafka -> consumer -> event store.

Self-contained: it starts its own tansu broker on a free port unless ``--bootstrap`` or
``KAFKA_BOOTSTRAP_SERVERS`` names one, a gunicorn serving the real site, and the real
``consume_events`` command, all on fresh per-run topics and consumer group, writing to the
configured database. Generated valid events (a mix of impressions, clicks, cart adds and
purchases) are POSTed in batches from several threads; the run ends when all of them are
stored or the timeout passes. The run's events are tagged (merchant ``bench-ingest``, session
ids unique to the run) so only they are counted, and deleted afterwards unless ``--keep``.

Reported: events/s from the first POST to the last event stored, HTTP-side events/s, lag per
event (stored ``received_at`` minus the ``ts`` set when its batch was sent; p50/p99 ms),
lost (sent and never stored) and duplicated (rows beyond one per event id).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from learners.processes import child, database_url, log_tail

MERCHANT = "bench-ingest"
#: Sessions the events are spread over (the Kafka key: spreads them over the partitions).
SESSIONS = 200
ROOT = Path(__file__).resolve().parents[2]
#: Statuses after which a batch is sent again: no connection, rate limited, spool full.
RETRY_STATUSES = {0, 429, 503}
MAX_RETRIES = 20
#: SendStats fields that are clock readings, not counts.
TIMES = ("first_sent", "last_answered")


def add_arguments(parser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="events to send (20000)")
    parser.add_argument("--batch", type=int, default=500, help="events per POST (500)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent HTTP clients (4)")
    workers = int(os.environ.get("SEARCH_WEB_WORKERS", "3"))
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        help=f"gunicorn workers (default SEARCH_WEB_WORKERS, as the platform runs: {workers})",
    )
    parser.add_argument(
        "--consumers", type=int, default=1, help="consume_events processes sharing the partitions"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="send at this many events/s to measure lag below saturation (default: max speed)",
    )
    parser.add_argument(
        "--bootstrap",
        help="Kafka to use (default KAFKA_BOOTSTRAP_SERVERS; if unset a local tansu is started)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait until all are stored"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's events in the store (default: delete)"
    )
    parser.add_argument("--json", type=Path, dest="json_out", help="write results here")


# -- events ------------------------------------------------------------------------------------


def generate_events(count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` valid events without ``ts`` (stamped when their batch is sent): 40 %
    impressions of 10 results, 35 % clicks, 15 % cart adds, 10 % purchases."""
    events = []
    for i in range(count):
        kind = i % 20
        request_id = f"{tag}-r{i // 4}"
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "session_id": f"{tag}-s{i % SESSIONS}",
            "merchant": MERCHANT,
        }
        if kind < 8:
            items = [{"sku": f"SKU-{(i + p) % 997}", "position": p} for p in range(1, 11)]
            event |= {
                "type": "impression",
                "request_id": request_id,
                "query": f"query {i % 101}",
                "items": items,
                "model_version": "bench",
            }
        elif kind < 15:
            event |= {"type": "click", "request_id": request_id, "sku": f"SKU-{i % 997}"}
            event["position"] = 1 + i % 10
        elif kind < 18:
            event |= {"type": "add_to_cart", "sku": f"SKU-{i % 997}", "quantity": 1}
        else:
            event |= {"type": "purchase", "sku": f"SKU-{i % 997}", "quantity": 1, "price": "9.99"}
        events.append(event)
    return events


@dataclass
class Pipeline:
    """Where the run's events go: broker, per-run topics and group, the HTTP endpoint."""

    bootstrap: str
    topic: str
    dlq: str
    group: str
    workdir: Path
    port: int = 0

    @property
    def env(self) -> dict[str, str]:
        from django.conf import settings

        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "web.settings",
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url(),
            "SEARCH_DATA_DIR": str(settings.DATA_DIR),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "EVENT_TOPIC": self.topic,
            "EVENT_DLQ_TOPIC": self.dlq,
            "EVENT_CONSUMER_GROUP": self.group,
            "EVENT_SPOOL_DIR": str(self.workdir / "spool"),
            "EVENTS_RATE_PER_MIN": "0",  # the benchmark is the one client: no rate limit
        }


@contextlib.contextmanager
def kafka(bootstrap: str | None) -> Iterator[tuple[str, int | None]]:
    """``(bootstrap, broker pid)``: the given Kafka (no pid), or a local tansu for the run."""
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        yield bootstrap, None
        return
    from learners.broker import start_local_broker

    with start_local_broker(create_topics=False) as broker:
        yield broker.bootstrap, broker.process.pid


def create_topics(pipeline: Pipeline) -> int:
    """Create the run's topics (configured partition counts); return the events' partitions."""
    from django.test import override_settings

    from learners.events.topics import ensure_topics, partition_count

    with override_settings(EVENT_TOPIC=pipeline.topic, EVENT_DLQ_TOPIC=pipeline.dlq):
        ensure_topics(pipeline.bootstrap)
    return partition_count(pipeline.topic, pipeline.bootstrap)


def start_web(pipeline: Pipeline, workers: int) -> contextlib.AbstractContextManager:
    from learners.broker import free_port

    pipeline.port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "web.wsgi:application"]
    argv += [f"--bind=127.0.0.1:{pipeline.port}", f"--workers={workers}", "--error-logfile=-"]
    argv += ["--log-level=warning", "--timeout=120"]
    return child(argv, pipeline.env, pipeline.workdir / "web.log")


@contextlib.contextmanager
def start_consumers(
    pipeline: Pipeline, partitions: int, count: int
) -> Iterator[list[subprocess.Popen]]:
    """``count`` real consumers, each on explicit partitions (every ``count``-th): no group
    join to wait for (offsets are still committed under the run's group)."""
    count = max(1, min(count, partitions))
    with contextlib.ExitStack() as stack:
        processes = []
        for index in range(count):
            argv = [sys.executable, str(ROOT / "manage.py"), "consume_events", "--stats-every=0"]
            argv.append("--partitions=" + ",".join(map(str, range(index, partitions, count))))
            log = pipeline.workdir / f"consumer-{index}.log"
            processes.append(stack.enter_context(child(argv, pipeline.env, log)))
        yield processes


# -- sending -----------------------------------------------------------------------------------


@dataclass
class SendStats:
    requests: int = 0
    retries: int = 0
    accepted: int = 0
    rejected: int = 0
    spooled: int = 0
    failed: int = 0
    http_errors: list[str] = field(default_factory=list)
    first_sent: float = 0.0
    last_answered: float = 0.0


def post(port: int, body: str) -> tuple[int, bytes]:
    """One POST; a connection error reads as status 0 (retried like a 503)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/events", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, repr(exc).encode()
    finally:
        connection.close()


def post_batch(port: int, events: list[dict[str, Any]], stats: SendStats, lock) -> None:
    """POST one batch, stamping ``ts`` now; resend it (same event ids) on 429, 503 or a
    connection error."""
    for _attempt in range(MAX_RETRIES):
        now = datetime.now(UTC).isoformat()
        status, data = post(port, json.dumps({"events": [{**e, "ts": now} for e in events]}))
        with lock:
            stats.requests += 1
            stats.last_answered = time.time()
            if status == 202:
                answer = json.loads(data)
                for key in ("accepted", "rejected", "spooled", "failed"):
                    setattr(stats, key, getattr(stats, key) + answer[key])
                return
            if status not in RETRY_STATUSES:
                stats.http_errors.append(f"{status}: {data[:200]!r}")
                return
            stats.retries += 1
        time.sleep(0.2)
    with lock:
        stats.http_errors.append(f"gave up after {MAX_RETRIES} tries: {status} {data[:200]!r}")


def send_all(
    port: int, events: list[dict[str, Any]], batch: int, threads: int, rate: float = 0.0
) -> SendStats:
    """Send ``events`` in batches from ``threads`` concurrent clients, as fast as they go or,
    with ``rate`` > 0, paced to that many events per second (a batch waits for its slot)."""
    stats, lock = SendStats(), threading.Lock()
    stats.first_sent = time.time()
    slots: queue.SimpleQueue[tuple[float, list[dict[str, Any]]]] = queue.SimpleQueue()
    for start in range(0, len(events), batch):
        offset = start / rate if rate > 0 else 0.0
        slots.put((time.monotonic() + offset, events[start : start + batch]))

    def client() -> None:
        while True:
            try:
                due, chunk = slots.get_nowait()
            except queue.Empty:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            post_batch(port, chunk, stats, lock)

    workers = [threading.Thread(target=client, name=f"bench-client-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return stats


# -- counting ----------------------------------------------------------------------------------


def run_rows(first_pk: int, tag: str):
    """The run's stored rows: after ``first_pk`` (an index range) and in its sessions."""
    from learners.models import Event

    return Event.objects.filter(pk__gt=first_pk, session_id__startswith=f"{tag}-")


def wait_stored(
    first_pk: int, tag: str, expected: int, timeout: float, consumers: list[subprocess.Popen]
) -> int:
    """Poll the store until ``expected`` distinct events of the run are in (or timeout, or
    the consumer died); return how many are.

    Polls count rows, which is cheap; the costlier distinct count runs only once the rows
    suffice (duplicates could otherwise hide a missing event). The finish time is taken from
    the rows' ``received_at``, so the poll interval does not affect the measurement."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    stored = 0
    with tqdm(total=expected, desc="stored", unit="ev", disable=None, leave=False) as bar:
        while stored < expected and time.monotonic() < deadline and _alive(consumers):
            time.sleep(0.25)
            rows = run_rows(first_pk, tag)
            now = rows.count()
            if now >= expected:
                now = rows.values("event_id").distinct().count()
            bar.update(now - bar.n)
            stored = now
    return stored


def _alive(processes: list[subprocess.Popen]) -> bool:
    return all(process.poll() is None for process in processes)


def check_alive(pipeline: Pipeline, consumers: list[subprocess.Popen]) -> None:
    """A consumer that died makes the run meaningless: say why instead of reporting losses."""
    for index, process in enumerate(consumers):
        if process.poll() is not None:
            tail = log_tail(pipeline.workdir / f"consumer-{index}.log")
            raise RuntimeError(f"consumer {index} exited with {process.returncode}:\n{tail}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def measure(first_pk: int, tag: str, sent: int, stats: SendStats) -> dict[str, Any]:
    """Throughput, lag and loss of the run from what is in the store."""
    rows = list(run_rows(first_pk, tag).values_list("event_id", "ts", "received_at"))
    distinct = len({row[0] for row in rows})
    lags = sorted((received - ts).total_seconds() * 1000 for _, ts, received in rows)
    last = max((row[2].timestamp() for row in rows), default=stats.first_sent)
    elapsed = max(1e-9, last - stats.first_sent)
    http_elapsed = max(1e-9, stats.last_answered - stats.first_sent)
    return {
        "events": sent,
        "events_per_s": round(distinct / elapsed, 1),
        "lost": sent - distinct,
        "duplicated": len(rows) - distinct,
        "lag_ms_p50": round(percentile(lags, 0.5), 1),
        "lag_ms_p99": round(percentile(lags, 0.99), 1),
        "lag_ms_max": round(lags[-1], 1) if lags else None,
        "elapsed_s": round(elapsed, 3),
        "http_events_per_s": round(sent / http_elapsed, 1),
        "http_elapsed_s": round(http_elapsed, 3),
        "send": {
            k: v for k, v in asdict(stats).items() if k not in ("first_sent", "last_answered")
        },
    }


class CpuMeter:
    """CPU time the pipeline's parts spend from now on (Linux ``/proc``): unlike events/s, it
    does not depend on what else the machine is running, and it says where the time goes.

    Parts are process groups (gunicorn and its workers), the broker's process, and this
    process (the HTTP clients and the store polling)."""

    def __init__(self, groups: dict[str, list[int]], broker_pid: int | None) -> None:
        self.groups = groups
        self.broker_pid = broker_pid
        self.start = self.sample()

    def sample(self) -> dict[str, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        used: dict[str, float] = dict.fromkeys(self.groups, 0.0)
        by_group = {pgid: name for name, pgids in self.groups.items() for pgid in pgids}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid = int(stat.parent.name)
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, ValueError):
                continue  # exited meanwhile
            seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            if int(fields[2]) in by_group:
                used[by_group[int(fields[2])]] += seconds
            if pid == self.broker_pid:
                used["broker"] = seconds
        used["client"] = time.process_time()
        return used

    def per_event(self, count: int) -> dict[str, float]:
        """Microseconds of CPU per event for each part and in total."""
        end = self.sample()
        parts = {k: (end[k] - self.start.get(k, 0.0)) * 1e6 / count for k in end}
        parts["total"] = sum(parts.values())
        return {k: round(v, 1) for k, v in parts.items()}


# -- the benchmark -----------------------------------------------------------------------------


def warm_up(
    pipeline: Pipeline,
    first_pk: int,
    consumers: list[subprocess.Popen],
    workers: int,
    timeout: float,
) -> None:
    """Load the app in every web worker, connect its producer and start the consumers: none
    of that belongs in the measured events/s. Raise with the logs if it does not work."""
    tag = f"warm{uuid.uuid4().hex[:8]}"
    events = generate_events(20 * workers, tag)
    send_all(pipeline.port, events, 10, workers)
    if wait_stored(first_pk, tag, len(events), timeout, consumers) < len(events):
        logs = "\n".join(
            f"--- {path.name}\n{log_tail(path)}" for path in sorted(pipeline.workdir.glob("*.log"))
        )
        raise RuntimeError(f"warm-up events were not stored within {timeout:.0f}s\n{logs}")


def run(options: dict[str, Any], out) -> dict[str, Any]:
    from learners.models import Event

    count, batch = options["events"], options["batch"]
    if count < 1 or not 1 <= batch <= 1000:
        raise ValueError("--events must be >= 1 and --batch between 1 and 1000")
    run_id = uuid.uuid4().hex[:8]
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir,
        kafka(options.get("bootstrap")) as (bootstrap, broker_pid),
    ):
        pipeline = Pipeline(
            bootstrap,
            f"bench-events-{run_id}",
            f"bench-dlq-{run_id}",
            f"bench{run_id}",
            Path(workdir),
        )
        partitions = create_topics(pipeline)
        first_pk = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        try:
            report = run_pipeline(pipeline, partitions, first_pk, broker_pid, options)
        finally:
            if not options.get("keep"):
                Event.objects.filter(pk__gt=first_pk, merchant=MERCHANT).delete()
    report |= {
        "rate": options["rate"] or None,
        "batch": batch,
        "threads": options["threads"],
        "web_workers": options["workers"],
        "partitions": partitions,
        "broker": "local tansu (memory)" if broker_pid else bootstrap,
        "cpus": os.cpu_count(),
    }
    print_table(report, out)
    return report


def run_pipeline(
    pipeline: Pipeline, partitions: int, first_pk: int, broker_pid: int | None, options: dict
) -> dict[str, Any]:
    """Start web and consumers, warm up, then send and wait: the measured part."""
    from learners.broker import tcp_reachable

    count, tag = options["events"], pipeline.group
    with (
        start_web(pipeline, options["workers"]) as web,
        start_consumers(pipeline, partitions, options["consumers"]) as consumers,
    ):
        deadline = time.monotonic() + 60
        while not tcp_reachable(f"127.0.0.1:{pipeline.port}", timeout=0.2):
            if time.monotonic() > deadline or web.poll() is not None:
                raise RuntimeError(log_tail(pipeline.workdir / "web.log"))
            time.sleep(0.1)
        warm_up(pipeline, first_pk, consumers, options["workers"], 90.0)
        events = generate_events(count, tag)
        groups = {"web": [web.pid], "consumer": [c.pid for c in consumers]}
        meter = CpuMeter(groups, broker_pid)
        stats = send_all(
            pipeline.port, events, options["batch"], options["threads"], options["rate"] or 0.0
        )
        wait_stored(first_pk, tag, count, options["timeout"], consumers)
        check_alive(pipeline, consumers)
        cpu = meter.per_event(count)
        report = measure(first_pk, tag, count, stats)
        return report | {"cpu_us_per_event": cpu, "consumers": len(consumers)}


def print_table(report: dict[str, Any], out) -> None:
    table = Table(title=f"ingest: {report['events']} events, POST /api/events -> event store")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "events_per_s",
        "http_events_per_s",
        "elapsed_s",
        "lag_ms_p50",
        "lag_ms_p99",
        "lag_ms_max",
        "lost",
        "duplicated",
    ):
        table.add_row(key, str(report[key]))
    send = report["send"]
    table.add_row(
        "accepted / rejected / spooled / failed",
        "{accepted} / {rejected} / {spooled} / {failed}".format(**send),
    )
    table.add_row("requests (retries)", f"{send['requests']} ({send['retries']})")
    cpu = report["cpu_us_per_event"]
    table.add_row(
        "CPU µs/event (" + "+".join(k for k in cpu if k != "total") + ")",
        " + ".join(f"{v:.0f}" for k, v in cpu.items() if k != "total") + f" = {cpu['total']:.0f}",
    )
    table.add_row(
        "setup",
        f"rate {report['rate'] or 'max'}, batch {report['batch']}, {report['threads']} clients, "
        f"{report['web_workers']} web workers, {report['consumers']} consumer(s), "
        f"{report['partitions']} partitions",
    )
    table.add_row("broker", report["broker"])
    Console(file=out, width=110).print(table)
