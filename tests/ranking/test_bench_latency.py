"""``manage.py bench latency``: real HTTP searches per pipeline and concurrency, plus decode."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import psutil
import pytest
from django.core.management import CommandError, call_command

from ranking.benchmarks.latency import ServerCpu, median_rows, percentiles
from tests.learners.conftest import _KAFKA_WARNINGS
from tests.ranking.test_generative_search import publish_version
from tests.web.conftest import offline_events  # noqa: F401 -- searches record impressions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("offline_events"),
    pytest.mark.filterwarnings(f"ignore:{_KAFKA_WARNINGS}:DeprecationWarning"),
]


@pytest.fixture
def queries_file(tmp_path):
    path = tmp_path / "queries.json"
    queries = ["otterbox case", "speck presidio", "galaxy s8", "iphone 7 unlocked"]
    path.write_text(json.dumps([{"qid": str(i), "query": q} for i, q in enumerate(queries)]))
    return path


def test_percentiles():
    cuts = percentiles([float(v) for v in range(1, 101)])
    assert cuts["p50_ms"] == pytest.approx(50.5) and cuts["p99_ms"] == pytest.approx(99.01)
    assert percentiles([]) == {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}


def test_bench_latency_measures_every_pipeline_and_level(
    small_catalog, live_server, queries_file, tmp_path
):
    publish_version({"root": tmp_path / "trained"}, "phone-shop")
    report_path, out = tmp_path / "latency.json", StringIO()
    call_command(
        "bench",
        "latency",
        "--url",
        live_server.url,
        "--pipelines=bm25,hybrid",
        "--concurrency=1,2",
        "--requests=8",
        "--repeat=2",
        "--decode-repeats=5",
        f"--queries={queries_file}",
        "--merchant=phone-shop",
        "--json",
        str(report_path),
        stdout=out,
    )
    report = json.loads(report_path.read_text())
    assert set(report["pipelines"]) == {"bm25", "hybrid"}
    for levels in report["pipelines"].values():
        assert set(levels) == {"1", "2"}
        for row in levels.values():
            assert row["errors"] == 0 and row["qps"] > 0
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
            assert row["qps_min"] <= row["qps"] <= row["qps_max"]
            assert row["client_cpu_ms"] > 0
            assert "server_cpu_ms" not in row  # a --url server's processes are not ours
    runs = report["runs"]
    assert sorted({(r["run"], r["pipeline"], r["clients"]) for r in runs}) == [
        (run, pipeline, clients)
        for run in (1, 2)
        for pipeline in ("bm25", "hybrid")
        for clients in ("1", "2")
    ]
    assert report["decode"]["beam"] == 10 and report["decode"]["p50_ms"] > 0
    assert "search latency" in out.getvalue() and "generative decode" in out.getvalue()


def test_median_rows_take_each_metric_s_median_and_the_spread():
    def row(qps, p99, errors=0):
        return {"hybrid": {"16": {"p50_ms": 10.0, "p99_ms": p99, "qps": qps, "errors": errors}}}

    rows = median_rows([row(100.0, 150.0), row(90.0, 210.0, errors=1), row(130.0, 120.0)])
    assert rows["hybrid"]["16"] == {
        "p50_ms": 10.0,
        "p99_ms": 150.0,
        "qps": 100.0,
        "errors": 1,
        "qps_min": 90.0,
        "qps_max": 130.0,
        "p99_ms_min": 120.0,
        "p99_ms_max": 210.0,
    }
    assert "qps_min" not in median_rows([row(100.0, 150.0)])["hybrid"]["16"]


def test_server_cpu_counts_the_processes_below_the_server(tmp_path):
    """The meter must see gunicorn's workers, not only the master that forked them: here the
    root process sleeps while its child burns CPU."""
    import subprocess
    import sys
    import time

    burn = "; ".join(
        [
            "import time",
            "end = time.process_time() + 0.6",
            "exec('while time.process_time() < end: pass')",
            "time.sleep(30)",  # a worker stays alive: the meter reads live processes
        ]
    )
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {burn!r}])"
    parent += "; time.sleep(30)"
    process = subprocess.Popen([sys.executable, "-c", parent])
    try:
        meter = ServerCpu([process.pid])
        deadline = time.monotonic() + 20
        while meter.seconds() < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert meter.seconds() >= 0.5
    finally:
        for worker in psutil.Process(process.pid).children(recursive=True):
            worker.kill()
        process.kill()
        process.wait()


def test_the_benchmark_server_tracks_searches_into_a_spool_of_its_own(tmp_path, settings):
    """Regression: the benchmark's gunicorn recorded its impressions in the data directory's
    spool (or sent them to the configured broker), so the platform's next start delivered a
    benchmark run into the merchant's event store as shopper impressions."""
    from learners import conf
    from learners.broker import tcp_reachable
    from ranking.benchmarks.latency import server_env

    settings.EVENT_SPOOL_DIR = ""  # the data directory's spool, as on a platform
    env = server_env(tmp_path / "bench")
    assert env["EVENT_SPOOL_DIR"] == str(tmp_path / "bench" / "spool")
    assert Path(env["EVENT_SPOOL_DIR"]) != conf.spool_dir()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] != conf.bootstrap_servers()
    assert not tcp_reachable(env["KAFKA_BOOTSTRAP_SERVERS"])
    assert env["SEARCH_DATA_DIR"] == str(settings.DATA_DIR)  # the caller's catalog and models


def test_unknown_pipeline_is_a_clear_error(small_catalog, live_server, queries_file):
    with pytest.raises(CommandError, match="answered 400"):
        call_command(
            "bench",
            "latency",
            "--url",
            live_server.url,
            "--pipelines=nope",
            "--concurrency=1",
            "--requests=2",
            "--decode-repeats=0",
            f"--queries={queries_file}",
            stdout=StringIO(),
        )


def test_catalog_multiplier_times_bm25_and_dense_on_a_scratch_catalog(
    small_catalog, queries_file, tmp_path
):
    from catalog.models import Product
    from ranking import inverted

    report_path, out = tmp_path / "latency.json", StringIO()
    call_command(
        "bench",
        "latency",
        "--pipelines=",
        "--decode-repeats=0",
        "--catalog-multiplier=5",
        "--merchant=phone-shop",
        f"--queries={queries_file}",
        "--json",
        str(report_path),
        stdout=out,
    )
    scale = json.loads(report_path.read_text())["scale"]["5"]
    assert scale["products"] == 20  # 4 phone-shop products x 5
    assert scale["bm25"]["indexed"] == scale["dense"]["indexed"] == 20
    timed = [scale["bm25"], scale["dense"]["replica"], scale["dense"]["milvus"]]
    for row in timed:
        assert row["queries"] == 4 and row["with_results"] == 4
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert scale["dense"]["encoder"].startswith("untrained")
    assert "dense via Milvus Lite" in out.getvalue()
    assert "catalog scale" in out.getvalue()
    # the caller's catalog and index are untouched
    assert Product.objects.count() == 6
    assert inverted.get_index("phone-shop").num_docs() == 4


def test_variants_are_deterministic_and_distinct(small_catalog):
    from ranking.benchmarks.scale import load_catalog, variant

    catalog = load_catalog("phone-shop", 3)
    products = list(catalog.products())
    assert len(products) == len(catalog) == 12
    assert [p.pk for p in products] == list(range(1, 13))
    source = catalog.sources[0]
    assert products[0].title == source.title and products[0].sku == f"{source.sku}-v0"
    again = variant(source, 2, pk=99)
    assert again.sku == f"{source.sku}-v2" and again.title == products[8].title
    assert again.title.startswith(source.title) and again.title != source.title
    assert len({p.title for p in products}) > len(catalog.sources)


def test_catalog_multiplier_needs_a_merchant(small_catalog, queries_file):
    with pytest.raises(CommandError, match="needs --merchant"):
        call_command(
            "bench",
            "latency",
            "--pipelines=",
            "--catalog-multiplier=2",
            f"--queries={queries_file}",
            stdout=StringIO(),
        )
