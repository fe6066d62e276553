"""Search latency through real HTTP: p50/p95/p99 and QPS per pipeline and client concurrency.

Starts gunicorn serving the real site on a free port (unless ``--url`` names a running one),
then for every pipeline × concurrency level fires the queries file's queries (cycled) as
``GET /api/search?q=..&pipeline=..`` from that many client threads, one new connection per
request as a browser behind a proxy would, and measures wall time per request. Each pipeline is
warmed up first and the warm-up is not measured: every query once, from more clients than there
are workers, so each worker has loaded its models and replicas and the per-process caches
(content words of titles, SQLite pages) are in the steady state of a long-running server. QPS
is completed requests over the level's wall time. Failed requests (non-200) are counted, not timed.

CPU per request: with a server started here, the CPU time its processes (gunicorn master and
workers, the Milvus Lite server) spent during a level, over the requests completed
(``server_cpu_ms``), and this process's own, the load generator's (``client_cpu_ms``). On a
shared machine QPS and tail latency move with whatever else runs, while CPU per request barely
does, and it is what capacity follows from: a server alone on ``n`` cores tops out near
``n × 1000 / server_cpu_ms`` requests per second.

``--repeat N`` runs the whole pass (every pipeline × level) N times back to back against the
same server: the report's rows are the per-metric medians, ``runs`` lists every pass's rows,
and the table shows the range of QPS and p99 across passes. One pass on a noisy machine says
little about the next.

Also measured in this process: the generative decoder alone (tokenise + encode + constrained
beam search) for the first query at ``--beam``, the budget that generative recall has to fit
(target p50 ≤ 15 ms).

The client threads share the machine with the server, so on a small box the numbers include
the client's own CPU cost; compare pipelines within one run.

``--catalog-multiplier M`` adds recall latency at scale: BM25 and dense over a synthetic
catalog ``M`` times the merchant's, built in a temporary directory (``ranking.benchmarks.scale``).
``--pipelines=`` (empty) skips the HTTP part, ``--decode-repeats=0`` the decoder.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from ranking.benchmarks.relevance import load_queries

#: Concurrent clients of the warm-up pass (enough to reach every worker).
WARMUP_CLIENTS = 4
STARTUP_TIMEOUT_S = 60.0


def add_arguments(parser) -> None:
    from django.conf import settings

    default_queries = Path(settings.DATASETS_DIR) / "bestbuy" / "queries_dev.json"
    parser.add_argument(
        "--pipelines", default="bm25,generative,hybrid", help="comma-separated pipelines"
    )
    parser.add_argument("--concurrency", default="1,4,16", help="client threads per level")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per pipeline and level (200)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="passes over every pipeline and level; rows are medians (1)",
    )
    parser.add_argument(
        "--queries", type=Path, default=default_queries, help="JSON list of {qid, query}"
    )
    parser.add_argument("--merchant", help="restrict searches to this merchant slug")
    parser.add_argument("--url", help="base URL of a running site (default: start gunicorn)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--beam", type=int, default=10, help="beam of the decode measurement")
    parser.add_argument(
        "--decode-repeats", type=int, default=200, help="decoder runs measured (0: skip)"
    )
    parser.add_argument(
        "--catalog-multiplier",
        help="also time bm25 and dense recall in-process on a synthetic catalog this many times "
        "the merchant's (comma-separated, e.g. 30,300: ~100k and ~1M products from BestBuy); "
        "built in a temporary directory, needs --merchant",
    )
    parser.add_argument("--json", type=Path, dest="json_out", help="write results here")


def run(options: dict[str, Any], out) -> dict[str, Any]:
    queries = list(load_queries(options["queries"]).values())
    if not queries:
        raise ValueError(f"{options['queries']}: no queries")
    multipliers = [int(m) for m in _csv(options.get("catalog_multiplier") or "")]
    if multipliers and not options.get("merchant"):
        raise ValueError("--catalog-multiplier needs --merchant (whose catalog to multiply)")
    pipelines = _csv(options["pipelines"])
    if options["repeat"] < 1:
        raise ValueError(f"--repeat must be at least 1, got {options['repeat']}")
    report: dict[str, Any] = {
        "url": (options.get("url") or "gunicorn") if pipelines else None,
        "pipelines": {},
    }
    if pipelines:
        passes = http_latency(options, pipelines, queries)
        report["pipelines"] = median_rows(passes)
        report["runs"] = [
            {"run": i, "pipeline": pipeline, "clients": clients, **row}
            for i, one in enumerate(passes, start=1)
            for pipeline, levels in one.items()
            for clients, row in levels.items()
        ]
    if options["decode_repeats"]:
        report["decode"] = decode_latency(
            queries[0], options.get("merchant"), options["beam"], options["decode_repeats"]
        )
    if multipliers:
        from ranking.benchmarks.scale import measure_scale

        report["scale"] = {
            str(m): measure_scale(options["merchant"], m, queries) for m in multipliers
        }
    print_table(report, out)
    return report


Rows = dict[str, dict[str, dict[str, float]]]  # pipeline -> clients -> metric -> value


def http_latency(options: dict[str, Any], pipelines: list[str], queries: list[str]) -> list[Rows]:
    """``--repeat`` passes of every pipeline at every concurrency level through the site
    (started here unless ``--url``)."""
    levels = [int(c) for c in _csv(options["concurrency"])]
    with _site(options.get("url"), options["workers"]) as (base_url, server):
        client = Client(base_url, options.get("merchant"), server)
        for pipeline in pipelines:
            client.warm_up(pipeline, queries)
        return [
            {
                pipeline: {
                    str(c): client.measure(pipeline, queries, c, options["requests"])
                    for c in levels
                }
                for pipeline in pipelines
            }
            for _ in range(options["repeat"])
        ]


def median_rows(passes: list[Rows]) -> Rows:
    """Each metric's median over the passes (errors: their sum), and with several passes the
    lowest and highest QPS and p99, so a table shows the spread behind the median."""
    rows: Rows = {}
    for pipeline, levels in passes[0].items():
        rows[pipeline] = {}
        for clients in levels:
            cells = [one[pipeline][clients] for one in passes]
            row = {
                key: round(statistics.median(cell[key] for cell in cells), 2)
                for key in cells[0]
                if key != "errors"
            }
            row["errors"] = sum(cell["errors"] for cell in cells)
            if len(cells) > 1:
                for key in ("qps", "p99_ms"):
                    row[f"{key}_min"] = min(cell[key] for cell in cells)
                    row[f"{key}_max"] = max(cell[key] for cell in cells)
            rows[pipeline][clients] = row
    return rows


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class ServerCpu:
    """CPU seconds used so far by a server's processes: each root process and every process
    below it (gunicorn's workers). A worker that exits takes its time with it, so a level
    during which workers restart reads low; the benchmark's gunicorn does not recycle them."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = [psutil.Process(pid) for pid in roots]

    def seconds(self) -> float:
        total = 0.0
        for root in self.roots:
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
        return total


class Client:
    """Fires searches at ``base_url`` and times them; with ``server`` also counts the CPU the
    server spends on them."""

    def __init__(
        self, base_url: str, merchant: str | None, server: ServerCpu | None = None
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.merchant = merchant
        self.server = server

    def get(self, query: str, pipeline: str) -> tuple[int, float]:
        """One search: (HTTP status, milliseconds)."""
        params = {"q": query, "pipeline": pipeline, "session_id": "bench-latency"}
        if self.merchant:
            params["merchant"] = self.merchant
        started = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", "/api/search?" + urllib.parse.urlencode(params))
            response = connection.getresponse()
            response.read()
            status = response.status
        finally:
            connection.close()
        return status, (time.perf_counter() - started) * 1000

    def warm_up(self, pipeline: str, queries: list[str]) -> None:
        """Every query once, unmeasured; fails at once on a pipeline the site refuses."""
        status, _ = self.get(queries[0], pipeline)
        if status != 200:
            raise ValueError(f"pipeline {pipeline!r}: /api/search answered {status}")
        with ThreadPoolExecutor(WARMUP_CLIENTS) as pool:
            list(pool.map(lambda q: self.get(q, pipeline), queries))

    def measure(
        self, pipeline: str, queries: list[str], concurrency: int, requests: int
    ) -> dict[str, float]:
        plan = [queries[i % len(queries)] for i in range(requests)]
        server_before = self.server.seconds() if self.server else 0.0
        client_before = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = list(pool.map(lambda q: self.get(q, pipeline), plan))
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - client_before
        timings = [ms for status, ms in answers if status == 200]
        done = max(len(timings), 1)
        row = {
            **percentiles(timings),
            "qps": round(len(timings) / wall, 1),
            "client_cpu_ms": round(client_cpu * 1000 / done, 2),
        }
        if self.server:
            row["server_cpu_ms"] = round((self.server.seconds() - server_before) * 1000 / done, 2)
        return {**row, "errors": len(answers) - len(timings)}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (NaN-free: empty input gives zeros)."""
    if len(values) < 2:
        value = round(values[0], 2) if values else 0.0
        return {"p50_ms": value, "p95_ms": value, "p99_ms": value}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
    }


def decode_latency(query: str, merchant: str | None, beam: int, repeats: int) -> dict[str, Any]:
    """The serving decoder alone, in this process, for one query (after a warm-up)."""
    from ranking import generative

    models = generative.serving_models()
    serving = models.get(merchant) if merchant else next(iter(models.values()), None)
    if serving is None:
        return {"skipped": "no generative model serving" + (f" {merchant}" if merchant else "")}
    retriever = serving.recall.retriever
    for _ in range(3):
        retriever.search(query, k=beam, beam=beam)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        retriever.search(query, k=beam, beam=beam)
        timings.append((time.perf_counter() - started) * 1000)
    return {"version": serving.version, "query": query, "beam": beam, **percentiles(timings)}


@contextlib.contextmanager
def _site(url: str | None, workers: int) -> Iterator[tuple[str, ServerCpu | None]]:
    """The base URL to benchmark and the CPU meter of its processes: ``url`` as given (its
    processes are elsewhere: no meter), or a gunicorn started for the run."""
    if url:
        yield url.rstrip("/"), None
        return
    from learners.broker import free_port
    from learners.processes import child

    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "web.wsgi:application", f"--workers={workers}"]
    argv += [f"--bind=127.0.0.1:{port}", "--error-logfile=-", "--log-level=warning"]
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as workdir:
        env = server_env(Path(workdir))
        log = Path(workdir) / "web.log"
        with _vector_server(env, Path(workdir)) as milvus, child(argv, env, log) as process:
            base_url = f"http://127.0.0.1:{port}"
            _wait_healthy(base_url, process, log)
            roots = [process.pid] + ([milvus.pid] if milvus else [])
            yield base_url, ServerCpu(roots)


def server_env(workdir: Path) -> dict[str, str]:
    """The environment of the benchmark's gunicorn: the caller's store and models, and event
    tracking as in production (every search records its impression) but into ``workdir``'s
    spool with no broker to reach. Before, the benchmark's impressions went to the configured
    broker, or to the data directory's spool, which the platform's next start delivered: a
    benchmark run became thousands of shopper impressions in the merchant's event store."""
    from django.conf import settings

    from learners.broker import free_port
    from learners.processes import database_url

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "web.settings",
        "DATABASE_URL": database_url(),
        "SEARCH_DATA_DIR": str(settings.DATA_DIR),
        "SEARCH_INDEX_DIR": str(settings.SEARCH_INDEX_DIR),
        "EVENT_SPOOL_DIR": str(workdir / "spool"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens there
    }


@contextlib.contextmanager
def _vector_server(env: dict[str, str], workdir: Path) -> Iterator[subprocess.Popen | None]:
    """Milvus Lite opens its directory in one process only, so several gunicorn workers need
    a ``milvus-lite server`` in front of it (as the platform's supervisor runs); without one
    every worker but the first failed its dense searches. Sets ``MILVUS_URI`` in ``env`` and
    yields the server's process (None when ``MILVUS_URI`` names one already)."""
    from learners import conf
    from learners.broker import free_port, tcp_reachable
    from learners.processes import child, log_tail

    if conf.get("MILVUS_URI", ""):
        yield None
        return
    from django.conf import settings

    port = free_port()
    server = Path(sys.executable).with_name("milvus-lite")
    argv = [str(server), "server", "--data-dir", str(Path(settings.DATA_DIR) / "milvus.db")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log = workdir / "milvus.log"
    with child(argv, env, log) as process:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not tcp_reachable(f"127.0.0.1:{port}"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ValueError(f"milvus-lite server did not start:\n{log_tail(log)}")
            time.sleep(0.2)
        env["MILVUS_URI"] = f"http://127.0.0.1:{port}"
        yield process


def _wait_healthy(base_url: str, process, log: Path) -> None:
    """Block until the site answers ``/healthz``; fail with its log if it dies or hangs."""
    from learners.processes import log_tail

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    parts = urllib.parse.urlsplit(base_url)
    host, port = parts.hostname, parts.port
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ValueError(f"gunicorn exited ({process.returncode}):\n{log_tail(log)}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection(host, port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status < 500:
                return
        time.sleep(0.2)
    raise ValueError(f"gunicorn did not answer within {STARTUP_TIMEOUT_S:.0f} s:\n{log_tail(log)}")


def print_table(report: dict[str, Any], out) -> None:
    console = Console(file=out, width=100)
    if report["pipelines"]:
        console.print(http_table(report["pipelines"]))
    decode = report.get("decode")
    if decode and "skipped" not in decode:
        console.print(
            f"generative decode in-process ({decode['version']}, beam {decode['beam']}, "
            f"{decode['query']!r}): p50 {decode['p50_ms']:.1f} ms, p95 {decode['p95_ms']:.1f} ms, "
            f"p99 {decode['p99_ms']:.1f} ms"
        )
    elif decode:
        console.print(f"generative decode: skipped ({decode['skipped']})")
    if report.get("scale"):
        console.print(scale_table(report["scale"]))


def scale_table(scale: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="recall latency at catalog scale (in-process, synthetic variants)")
    columns = ("×", "products", "path", "p50 ms", "p95 ms", "p99 ms", "answered", "build s")
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for multiplier, row in scale.items():
        dense = row["dense"]
        cells = [
            ("bm25", row["bm25"], row["bm25"]["build_s"]),
            (f"dense replica ({dense['encoder']})", dense["replica"], dense["replica"]["load_s"]),
            ("dense via Milvus Lite", dense["milvus"], dense["build_s"]),
        ]
        for path, cell, build_s in cells:
            table.add_row(
                multiplier,
                f"{row['products']:,}",
                path,
                *(f"{cell[key]:.1f}" for key in ("p50_ms", "p95_ms", "p99_ms")),
                f"{cell['with_results']}/{cell['queries']}",
                f"{build_s:.0f}",
            )
    return table


def http_table(pipelines: Rows) -> Table:
    rows = [row for levels in pipelines.values() for row in levels.values()]
    spread = any("qps_min" in row for row in rows)
    server = any("server_cpu_ms" in row for row in rows)
    title = "search latency over HTTP (/api/search)"
    table = Table(title=title + (": medians of the passes" if spread else ""))
    columns = ["pipeline", "clients", "p50 ms", "p95 ms", "p99 ms", "QPS"]
    columns += ["QPS range", "p99 range"] if spread else []
    columns += ["server CPU ms/req"] if server else []
    columns += ["client CPU ms/req", "errors"]
    for column in columns:
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for pipeline, levels in pipelines.items():
        for clients, row in levels.items():
            cells = [f"{row[key]:.1f}" for key in ("p50_ms", "p95_ms", "p99_ms", "qps")]
            if spread:
                cells += [_range(row, "qps"), _range(row, "p99_ms")]
            if server:
                cells.append(f"{row['server_cpu_ms']:.1f}" if "server_cpu_ms" in row else "")
            table.add_row(
                pipeline, clients, *cells, f"{row['client_cpu_ms']:.1f}", str(row["errors"])
            )
    return table


def _range(row: dict[str, float], key: str) -> str:
    return f"{row[key + '_min']:.1f}-{row[key + '_max']:.1f}"
