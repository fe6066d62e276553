"""``manage.py bench latency``: real HTTP searches per pipeline and concurrency, plus decode."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ranking import generative
from ranking.benchmarks.latency import percentiles
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


@pytest.fixture(autouse=True)
def fresh_serving(settings):
    settings.GENERATIVE_RELOAD_SECONDS = 0.0
    generative.reset_cache()
    yield
    generative.reset_cache()


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
    assert report["decode"]["beam"] == 10 and report["decode"]["p50_ms"] > 0
    assert "search latency" in out.getvalue() and "generative decode" in out.getvalue()


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
