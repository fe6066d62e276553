"""Simulated traffic, the learning-curve benchmark and the hourly task on a real Celery worker.

The end-to-end tests run the real pieces: HTTP API (live server), tansu Kafka, the consumer,
Redis and a ``celery worker`` subprocess, on the 24-product shop of test_online_learning.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Product
from learners import registry
from learners.broker import free_port
from learners.celery import create_app
from learners.events.consumer import EventConsumer
from learners.events.schema import parse_event
from learners.events.spool import SpoolRecord
from learners.models import Event, ModelVersion
from learners.online.simulator import Page, Result, ShopperModel, Simulator
from tests.learners.conftest import child_env, start_celery_worker, stop_child
from tests.learners.test_online_learning import HOUR, SHOP, make_shop, tiny_base

#: Queries BM25 answers in the shop, with the products judged exact (2) or substitute (1).
QUERIES = {"q1": "otterbox case", "q2": "car charger", "q3": "power bank"}
QRELS = {
    "q1": {"P00": 2, "P04": 1},
    "q2": {"P01": 2, "P07": 2, "P13": 1},
    "q3": {"P03": 2, "P09": 1},
}


class FixedShelf:
    """A storefront double that always shows the same ten results and records the events."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.searches = 0

    def search(self, query: str, k: int, merchant: str, session_id: str) -> Page:
        self.searches += 1
        skus = ["P00", "P10", "P11", "P12", "P04", "P14", "P15", "P16", "P17", "P18"]
        return Page(f"req-{self.searches}", "base-1", [Result(s, "9.99") for s in skus[:k]])

    def send(self, events) -> int:
        self.sent += events
        return len(events)


def simulate(seed: int, sessions: int = 400) -> FixedShelf:
    shelf = FixedShelf()
    Simulator(shelf, {"q1": "otterbox case"}, QRELS, SHOP, seed=seed).run_hour(HOUR, sessions)
    return shelf


def test_cascade_shoppers_prefer_relevant_and_top_results_and_are_reproducible():
    shelf = simulate(seed=7)
    assert shelf.sent == simulate(seed=7).sent and shelf.sent != simulate(seed=8).sent
    events = [parse_event(e) for e in shelf.sent]  # every event is valid
    assert all(HOUR <= e.ts < HOUR + timedelta(hours=1) for e in events)
    clicks = Counter(e.position for e in events if e.type == "click")
    # P00 (exact) at 1 beats the unjudged 2-4; P04 (substitute) at 5 beats unjudged 6-10
    assert clicks[1] > 3 * max(clicks[2], clicks[3], clicks[4])
    assert clicks[5] > max(clicks[p] for p in range(6, 11))
    assert clicks[2] > clicks[4]  # position bias among equally irrelevant results
    kinds = Counter(e.type for e in events)
    assert kinds["impression"] == 400 and kinds["click"] > kinds["add_to_cart"] > kinds["purchase"]
    bought = Counter(e.sku for e in events if e.type == "purchase")
    assert bought["P00"] > sum(n for sku, n in bought.items() if sku not in ("P00", "P04"))


def test_the_cascade_stops_after_a_click_unless_the_shopper_goes_on():
    model = ShopperModel(attractiveness={2: 1.0, 1: 1.0, 0: 1.0}, continue_after_click=0.0)
    sim = Simulator(FixedShelf(), QUERIES, QRELS, SHOP, model=model)
    results = FixedShelf().search("x", 10, SHOP, "s").results
    assert [p for p, _ in sim.cascade(random.Random(0), "q1", results)] == [1]


def queries_files(tmp_path) -> tuple:
    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps([{"qid": q, "query": t} for q, t in QUERIES.items()]))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("".join(f"{q} 0 {s} {g}\n" for q, d in QRELS.items() for s, g in d.items()))
    return queries, qrels


@pytest.fixture
def live_shop(transactional_db, tmp_path_factory, settings):
    from ranking import inverted

    settings.EVENTS_RATE_PER_MIN = 0
    merchant = make_shop()
    inverted.rebuild_index()
    path = tiny_base(tmp_path_factory.getbasetemp())
    return registry.register("base", "base-shop-1", path, merchant=merchant, status="active")


@pytest.mark.integration
def test_simulate_traffic_goes_through_http_and_kafka_and_trains_an_adapter(
    live_shop, live_server, kafka_topics, tmp_path, settings
):
    from learners.online.config import OnlineConfig
    from learners.online.hourly import train_hourly_adapter

    queries, qrels = queries_files(tmp_path)
    call_command(
        "simulate_traffic",
        queries=queries,
        qrels=qrels,
        hours=1,
        sessions_per_hour=60,
        seed=3,
        url=live_server.url,
        start=HOUR.isoformat(),
    )
    with EventConsumer(partitions=range(4)) as consumer:
        consumer.run(idle_timeout_s=3.0)
    simulated = Event.objects.filter(ts__gte=HOUR, ts__lt=HOUR + timedelta(hours=1))
    assert simulated.filter(type="impression").count() == 60
    # searched with track=0: the API recorded no second, real-time impression per page
    assert Event.objects.filter(type="impression").count() == 60
    assert simulated.filter(type="click").exists()
    config = OnlineConfig(lr=1e-2, min_steps=40, probe_size=60, gate_k=1, max_probe_drop=100.0)
    [result] = train_hourly_adapter(HOUR, SHOP, config)
    assert result.status in {"promoted", "rejected"}
    version = ModelVersion.objects.get(name=result.version)
    assert version.metrics["train_pairs"] > 0 and version.metrics["events"] > 0


@pytest.mark.integration
def test_learning_curve_benchmark_end_to_end(live_shop, kafka_broker, tmp_path, settings):
    settings.ONLINE_MIN_STEPS = 40
    settings.ONLINE_LR = 1e-2
    settings.ONLINE_PROBE_SIZE = 60
    queries, qrels = queries_files(tmp_path)
    out = tmp_path / "curve.json"
    left_behind = orphan_segment(tmp_path / "data-spool", settings)
    progress = StringIO()
    call_command(
        "bench",
        "learning-curve",
        queries=queries,
        qrels=qrels,
        eval_fraction=0.34,
        split_out=tmp_path / "split",
        hours=2,
        sessions_per_hour=40,
        ranker=True,
        bootstrap=kafka_broker.bootstrap,
        json_out=out,
        stdout=progress,
    )
    report = json.loads(out.read_text())
    assert report["hours"] == [1, 2] and len(report["eval_ndcg@10"]) == 2
    lines = progress.getvalue().splitlines()
    assert lines[0] == f"base: eval ndcg@10 {report['base_eval_ndcg@10']:.4f}, " + (
        f"probe ndcg@10 {report['base_probe_ndcg@10']:.4f}"
    )
    assert lines[1].startswith("hour 1: ") and "adapter trained in" in lines[1]
    # --ranker: every hour was aggregated and a ranker retrained on its clicks, as beat does
    assert "ranker in" in lines[1] and len(report["ranker_train_s"]) == 2
    assert f"eval hybrid ndcg@10 {report['eval_hybrid_ndcg@10'][0]:.4f}" in lines[1]
    # the hybrid pipeline is also measured on the queries shoppers searched
    assert len(report["traffic_hybrid_ndcg@10"]) == 2 and "base_traffic_hybrid_ndcg@10" in report
    assert f"traffic hybrid ndcg@10 {report['traffic_hybrid_ndcg@10'][1]:.4f}" in lines[2]
    rankers = ModelVersion.objects.filter(kind="ranker", merchant__slug=SHOP)
    assert rankers.count() == 2
    latest = registry.active("ranker", SHOP)
    assert latest.metrics["logged_queries"] > 0 and "click" in latest.metrics["trained_heads"]
    assert {"base_eval_ndcg@10", "base_probe_ndcg@10", "adapter_train_s"} <= set(report)
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
    from ranking.benchmarks.history import bench_dir

    assert report["plot"] == str(tmp_path / "curve.png")
    assert len(list(bench_dir().glob("learning-curve-*.png"))) == 1  # the console's copy
    evaluation = json.loads((tmp_path / "split" / "eval_queries.json").read_text())
    searched = set(Event.objects.filter(type="impression").values_list("query", flat=True))
    assert searched and not searched & {q["query"] for q in evaluation}  # eval never trafficked
    # regression: the run's producer adopted the data spool's segments and drained them into
    # its own broker, which it then stopped
    assert left_behind.read_bytes() == ORPHAN.line()


ORPHAN = SpoolRecord("events", "s1", '{"left": "by a platform whose broker was down"}')


def orphan_segment(directory: Path, settings) -> Path:
    """A sendable spool segment in ``directory`` (now the configured spool) whose writer is
    gone, as a platform leaves after a broker outage."""
    settings.EVENT_SPOOL_DIR = str(directory)
    directory.mkdir()
    segment = directory / "seg-1-999999999.ready"
    segment.write_bytes(ORPHAN.line())
    return segment


@pytest.mark.integration
def test_learning_curve_can_teach_the_judgments_instead_of_traffic(
    live_shop, tmp_path, settings, monkeypatch
):
    """``--teach judgments``: no shopper is simulated and no broker used (the configured one
    is dead); each hour learns the train queries' judged answers (the curve's upper bound).
    It cannot retrain a ranker on no events."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # nothing listens
    settings.ONLINE_MIN_STEPS = 40
    settings.ONLINE_LR = 1e-2
    settings.ONLINE_PROBE_SIZE = 60
    queries, qrels = queries_files(tmp_path)
    common = {"queries": queries, "qrels": qrels, "eval_fraction": 0.34, "hours": 1}
    with pytest.raises(CommandError, match="no events to retrain a ranker"):
        call_command("bench", "learning-curve", teach="judgments", ranker=True, **common)
    out = tmp_path / "curve.json"
    call_command(
        "bench",
        "learning-curve",
        teach="judgments",
        json_out=out,
        stdout=StringIO(),
        **common,
    )
    report = json.loads(out.read_text())
    assert report["teach"] == "judgments" and report["events"] == [0]
    assert report["decisions"][0] in {"promoted", "rejected"}
    assert not Event.objects.exists()  # nobody searched
    adapter = ModelVersion.objects.get(kind="adapter")
    assert adapter.metrics["events"] == 0 and adapter.metrics["train_pairs"] > 0


def test_judged_pairs_are_every_relevant_judged_product_of_the_queries(db):
    from learners.benchmarks.learning_curve import judged_pairs
    from learners.online.config import OnlineConfig

    make_shop()
    docids = dict(Product.objects.values_list("sku", "docid__path"))
    qrels = {**QRELS, "q1": {**QRELS["q1"], "P05": 0, "GONE": 2}}
    source = judged_pairs({"q1": "OtterBox  Case", "q2": "car charger"}, qrels, SHOP)
    config = OnlineConfig(holdout_fraction=0.4)
    hour = source(HOUR, SHOP, config)
    taught = sorted((p.query, p.docid, p.weight) for p in hour.train + hour.holdout)
    assert taught == sorted(
        [
            ("otterbox case", docids["P00"], 2.0),  # cleaned as queries are; gain = weight
            ("otterbox case", docids["P04"], 1.0),
            ("car charger", docids["P01"], 2.0),
            ("car charger", docids["P07"], 2.0),
            ("car charger", docids["P13"], 1.0),
        ]
    )  # not judged irrelevant (P05), not without a docid (GONE), not another query's (q3)
    assert len(hour.holdout) == 2 and hour.events == 0
    assert source(HOUR + timedelta(hours=1), SHOP, config).holdout == hour.holdout


def test_curve_scores_the_eval_queries_alone(small_catalog):
    """Regression: the eval NDCG@10 was averaged over every judged query, the traffic half
    scoring zero, so every curve reported half the true value."""
    from learners.benchmarks.learning_curve import pipeline_ndcg

    qrels = {"eval": {"P1": 2}, "traffic": {"P2": 2}}
    assert pipeline_ndcg("bm25", {"eval": "otterbox"}, qrels, "phone-shop") == 1.0


@pytest.mark.integration
def test_a_celery_worker_trains_the_hour_once(live_shop, redis_server, tmp_path):
    from tests.learners.test_online_learning import TAUGHT, teach

    teach(TAUGHT, sessions=4)
    env = child_env(
        CELERY_BROKER_URL=redis_server.url,
        ONLINE_LR="0.01",
        ONLINE_MIN_STEPS="40",
        ONLINE_PROBE_SIZE="60",
        ONLINE_GATE_K="1",
        ONLINE_EPOCHS="8",
        ONLINE_HOLDOUT_FRACTION="0.25",
        ONLINE_MAX_PROBE_DROP="100",
    )
    log = tmp_path / "worker.log"
    worker = start_celery_worker(env, log)
    client = create_app(broker_url=redis_server.url)
    try:
        first = client.send_task("learners.tasks.train_hourly_adapter", args=[HOUR.isoformat()])
        [trained] = first.get(timeout=240)
        again = client.send_task("learners.tasks.train_hourly_adapter", args=[HOUR.isoformat()])
        [repeated] = again.get(timeout=120)
    except Exception:
        print(log.read_text()[-4000:])
        raise
    finally:
        stop_child(worker)
        client.close()
    assert trained["status"] == "promoted", trained
    assert repeated["status"] == "done" and repeated["version"] == trained["version"]
    assert registry.active("adapter", SHOP).name == trained["version"]
