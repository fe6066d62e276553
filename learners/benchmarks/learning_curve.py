"""Learning curve of online learning: generative NDCG@10 after each hour of simulated traffic.

Self-contained: it starts a local tansu broker on a free port unless ``--bootstrap`` or
``KAFKA_BOOTSTRAP_SERVERS`` names one, uses fresh per-run topics, and consumes them in-process
into the configured event store (manual partition assignment: no group join to wait for).
Simulated shoppers (:mod:`learners.online.simulator`, cascade clicks from the judged labels)
search the **train** queries through ``ranking.search`` and publish their events through
``learners.events.publish`` -- the real Kafka path; the HTTP hop is left out because it adds
nothing but noise here (``manage.py simulate_traffic`` drives the real API). Each simulated hour
is then trained, gated and recorded by ``train_hourly_adapter`` -- the Celery task's code --
and the serving model (base + promoted adapter, hot-swapped through the registry exactly as in
the web workers) is measured:

* ``eval_ndcg@10``: the ``generative`` pipeline on the **eval** queries, never used as traffic;
* ``probe_ndcg@10``: the base's fixed replay probe (forgetting of catalog knowledge);
* ``eval_hybrid_ndcg@10``: the ``hybrid`` pipeline on the eval queries, when it exists;
* ``traffic_hybrid_ndcg@10``: the ``hybrid`` pipeline on the **train** queries, the ones
  shoppers searched: where query-level click history exists (what the ranker's click and
  purchase heads may use; they leave never-searched queries alone).

With ``--ranker`` each hour also runs what Celery beat runs after the adapter: the hour's
aggregates (``aggregate_hour``) and a retrained fusion ranker (``retrain_ranker``'s code), so
the hybrid column includes what the click and purchase heads and the CTR features learn from
the traffic. Off by default: it adds about a minute per hour, and the eval queries, never
searched, have no query-level click history -- what can carry over is product-level evidence.

``--teach judgments`` replaces the shoppers by the judgments themselves: each hour teaches
every judged relevant product of the train queries, weighted by its gain, with a fixed seeded
fifth held out (:func:`judged_pairs`). No traffic is simulated. It bounds what the curve can
reach from these queries -- shoppers only click what they are shown -- and, with
``ONLINE_MIN_GAIN=-1`` (the held-out gate off: on ~30 answers a query, held-out recall@1 is no
measure), how far the recipe carries perfect knowledge of them.

The train/eval split comes from ``--train-*``/``--eval-*`` files, or from ``--queries``/
``--qrels`` split by ``--eval-fraction`` and ``--split-seed`` (written to ``--split-out``).
Adapters are registered and promoted in the configured store, so run it on a benchmark data
directory (``SEARCH_DATA_DIR``) with the catalog imported and an active base model (or pass
``--base-dir`` to register one). ``--no-replay`` trains without replay, to show what it buys.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from learners.online.config import OnlineConfig
    from learners.online.hourly import PairSource
    from learners.online.pairs import HourPairs

K = 10
DEFAULT_START = "2030-01-07T00:00:00+00:00"
TEACH = ("traffic", "judgments")


def add_arguments(parser) -> None:
    parser.add_argument("--train-queries", type=Path, help="queries whose traffic is simulated")
    parser.add_argument("--train-qrels", type=Path, help="their judgments (click model labels)")
    parser.add_argument("--eval-queries", type=Path, help="held-out queries, measured only")
    parser.add_argument("--eval-qrels", type=Path, help="their judgments")
    parser.add_argument("--queries", type=Path, help="or: one queries file to split")
    parser.add_argument("--qrels", type=Path, help="and its qrels")
    parser.add_argument("--eval-fraction", type=float, default=0.5, help="share held out (0.5)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the split (0)")
    parser.add_argument("--split-out", type=Path, help="write the split's query files here")
    parser.add_argument("--hours", type=int, default=24, help="simulated hours (24)")
    parser.add_argument("--sessions-per-hour", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="traffic seed (0)")
    parser.add_argument(
        "--replay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mix replay into adapter training (default); --no-replay to measure forgetting",
    )
    parser.add_argument(
        "--teach",
        choices=TEACH,
        default="traffic",
        help="what each hour's adapter learns from: simulated shoppers (default) or every "
        "judged relevant product of the train queries (an upper bound; no traffic)",
    )
    parser.add_argument(
        "--ranker",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="after each hour, aggregate its events and retrain the fusion ranker, as Celery "
        "beat does (off by default)",
    )
    parser.add_argument("--merchant", help="merchant slug (default: owner of the judged skus)")
    parser.add_argument("--start", default=DEFAULT_START, help="first simulated hour (ISO)")
    parser.add_argument("--base-dir", type=Path, help="register this base model if none active")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: a local tansu)")
    parser.add_argument("--json", type=Path, dest="json_out", help="write results here")
    parser.add_argument("--plot", type=Path, help="PNG of the curve (default: next to --json)")


# -- queries -----------------------------------------------------------------------------------


def load_split(options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """``(train queries, eval queries, qrels)``; train and eval never share a query."""
    from ranking.benchmarks.relevance import load_qrels, load_queries

    if options.get("train_queries"):
        needed = ("train_qrels", "eval_queries", "eval_qrels")
        if not all(options.get(name) for name in needed):
            raise ValueError("--train-queries needs --train-qrels, --eval-queries, --eval-qrels")
        train = load_queries(options["train_queries"])
        evaluation = load_queries(options["eval_queries"])
        qrels = {**load_qrels(options["train_qrels"]), **load_qrels(options["eval_qrels"])}
    elif options.get("queries") and options.get("qrels"):
        qrels = load_qrels(options["qrels"])
        judged = {q: t for q, t in load_queries(options["queries"]).items() if q in qrels}
        train, evaluation = split_queries(judged, options["eval_fraction"], options["split_seed"])
        if options.get("split_out"):
            write_split(options["split_out"], train, evaluation)
    else:
        raise ValueError("give --train-queries/--eval-queries files or --queries/--qrels to split")
    train = {q: t for q, t in train.items() if q in qrels and q not in evaluation}
    evaluation = {q: t for q, t in evaluation.items() if q in qrels}
    if not train or not evaluation:
        raise ValueError("need judged queries on both sides of the split")
    return train, evaluation, qrels


def split_queries(
    queries: Mapping[str, str], eval_fraction: float, seed: int
) -> tuple[dict[str, str], dict[str, str]]:
    """A seeded random split of ``queries`` into (train, eval)."""
    qids = sorted(queries)
    random.Random(seed).shuffle(qids)
    cut = round(len(qids) * eval_fraction)
    return {q: queries[q] for q in sorted(qids[cut:])}, {q: queries[q] for q in sorted(qids[:cut])}


def write_split(directory: Path, train: Mapping[str, str], evaluation: Mapping[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("eval", evaluation)):
        rows = [{"qid": q, "query": t} for q, t in part.items()]
        (directory / f"{name}_queries.json").write_text(json.dumps(rows, indent=1))


def judged_pairs(queries: Mapping[str, str], qrels: Mapping, merchant: str) -> PairSource:
    """A pair source that teaches, every hour, each judged relevant product of ``queries``
    with its gain as weight; the same seeded share (``ONLINE_HOLDOUT_FRACTION``) is held out
    for the gate every hour. Products judged irrelevant, unjudged ones and skus without a
    docid are left out."""
    from learners.generative.data import clean
    from learners.online.pairs import HourPairs, Pair, docids_of

    docids = docids_of(merchant, {sku for qid in queries for sku in qrels.get(qid, {})})
    pairs = [
        Pair(clean(queries[qid]), docids[sku], float(gain))
        for qid in sorted(queries)
        for sku, gain in sorted(qrels.get(qid, {}).items())
        if gain > 0 and sku in docids
    ]
    random.Random(0).shuffle(pairs)

    def source(hour: datetime, slug: str, config: OnlineConfig) -> HourPairs:
        cut = round(len(pairs) * config.holdout_fraction)
        return HourPairs(hour=hour, merchant=slug, train=pairs[cut:], holdout=pairs[:cut])

    return source


# -- the event pipeline ------------------------------------------------------------------------


@contextmanager
def event_pipeline(bootstrap: str | None) -> Iterator[Any]:
    """Kafka (given or a local tansu), fresh topics for the run, a consumer on all partitions.

    The run's producer spools into a directory of its own: with the data directory's spool it
    adopted the segments other processes had left there (a platform's events from a broker
    outage) and drained them into this run's broker, which the run then stopped."""
    from django.test import override_settings

    from learners.benchmarks.ingest import kafka
    from learners.events import reset_producer
    from learners.events.consumer import EventConsumer
    from learners.events.topics import ensure_topics, partition_count

    suffix = uuid.uuid4().hex[:8]
    with kafka(bootstrap) as (servers, _pid), tempfile.TemporaryDirectory() as spool:
        names = {
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "EVENT_TOPIC": f"events-curve-{suffix}",
            "EVENT_DLQ_TOPIC": f"events-curve-dlq-{suffix}",
            "EVENT_SPOOL_DIR": spool,
        }
        with override_settings(**names):
            reset_producer(timeout=5)
            ensure_topics(servers)
            partitions = range(partition_count(names["EVENT_TOPIC"], servers))
            consumer = EventConsumer(partitions=list(partitions))
            consumer.start()
            try:
                yield consumer
            finally:
                consumer.close()
                reset_producer(timeout=5)


def deliver(consumer: Any, accepted: int, timeout: float = 120.0) -> int:
    """Flush the producer and consume until ``accepted`` more events were handled."""
    from learners.events import flush

    flush(timeout=timeout)
    target = consumer.stats.polled + accepted
    deadline = time.monotonic() + timeout
    while consumer.stats.polled < target and time.monotonic() < deadline:
        consumer.run(max_events=target, idle_timeout_s=2.0)  # max_events counts from start
    return accepted - max(0, target - consumer.stats.polled)


# -- measuring ---------------------------------------------------------------------------------


def pipeline_ndcg(pipeline: str, queries: dict, qrels: dict, merchant: str) -> float:
    """Mean NDCG@10 over ``queries`` alone: ``qrels`` also judges the traffic queries, and
    ``evaluate`` scores every judged query (a query without results scores zero)."""
    from ranking.benchmarks.relevance import evaluate, run_pipeline

    judged = {qid: qrels[qid] for qid in queries if qid in qrels}
    return evaluate(judged, run_pipeline(pipeline, queries, merchant), K)[f"ndcg@{K}"]


def probe_ndcg(merchant: str, probe: list) -> float:
    """NDCG@10 of the serving generative model on the probe (one relevant docid per query)."""
    from ranking import generative
    from ranking.benchmarks.relevance import evaluate

    serving = generative.load_active(merchant)
    if serving is None:
        raise ValueError(f"no generative model serves {merchant}")
    retriever = serving.recall.retriever
    qrels = {str(i): {p.docid: 1} for i, p in enumerate(probe)}
    found = retriever.search_many([p.query for p in probe], k=K)
    run = {
        str(i): {h.docid: float(K - r) for r, h in enumerate(hits)} for i, hits in enumerate(found)
    }
    return evaluate(qrels, run, K)[f"ndcg@{K}"]


#: score name -> the report's series of it (base value under ``base_`` + the same name)
SERIES = {
    "eval": "eval_ndcg@10",
    "probe": "probe_ndcg@10",
    "hybrid": "eval_hybrid_ndcg@10",
    "traffic_hybrid": "traffic_hybrid_ndcg@10",
}


def measure(
    merchant: str, train: dict, evaluation: dict, qrels: dict, probe: list
) -> dict[str, float]:
    from ranking.service import PIPELINES

    scores = {
        "eval": pipeline_ndcg("generative", evaluation, qrels, merchant),
        "probe": probe_ndcg(merchant, probe),
    }
    if "hybrid" in PIPELINES:
        scores["hybrid"] = pipeline_ndcg("hybrid", evaluation, qrels, merchant)
        scores["traffic_hybrid"] = pipeline_ndcg("hybrid", train, qrels, merchant)
    return scores


# -- the run -----------------------------------------------------------------------------------


def active_base(merchant: str, base_dir: Path | None) -> Any:
    from learners import registry

    base = registry.active("base", merchant)
    if base is None and base_dir is not None:
        name = f"base-{merchant}-{base_dir.name}"
        base = registry.register("base", name, base_dir, merchant=merchant, status="active")
    if base is None:
        raise ValueError(
            f"no active base model for {merchant}: run 'train_base_model --merchant {merchant}' "
            "or pass --base-dir"
        )
    return base


def check_fresh(merchant: str, base: Any, start: datetime, hours: int) -> None:
    from learners.models import ModelVersion
    from learners.online.hourly import adapter_name

    names = [adapter_name(merchant, start + timedelta(hours=h), base) for h in range(hours)]
    if ModelVersion.objects.filter(name__in=names).exists():
        raise ValueError(
            "adapters for these simulated hours exist already (an earlier run): use a fresh "
            "SEARCH_DATA_DIR or another --start"
        )


def run(options: dict[str, Any], out) -> dict[str, Any]:
    import torch
    from django.test import override_settings

    from learners.online.config import OnlineConfig
    from learners.online.hourly import event_pairs, prepared_buffer, train_hourly_adapter
    from learners.online.simulator import LocalStorefront, Simulator
    from ranking.benchmarks.relevance import owning_merchant

    train, evaluation, qrels = load_split(options)
    merchant = options.get("merchant") or owning_merchant(qrels)
    base = active_base(merchant, options.get("base_dir"))
    start = datetime.fromisoformat(options.get("start") or DEFAULT_START)
    hours = options["hours"]
    check_fresh(merchant, base, start, hours)
    judged = options.get("teach") == "judgments"
    if judged and options.get("ranker"):
        raise ValueError("--teach judgments simulates no traffic: no events to retrain a ranker")
    pairs = judged_pairs(train, qrels, merchant) if judged else event_pairs
    config = OnlineConfig.from_settings(
        **({} if options.get("replay", True) else {"replay_fraction": 0.0})
    )
    torch.set_num_threads(config.threads)  # decoding on a shared CPU: 1 thread is ~20x faster
    probe = prepared_buffer(base, config).probe()
    report: dict[str, Any] = {
        "merchant": merchant,
        "replay": config.replay_fraction > 0,
        "replay_fraction": config.replay_fraction,
        "ranker": bool(options.get("ranker")),
        "train_queries": len(train),
        "eval_queries": len(evaluation),
        "probe_queries": len(probe),
        "teach": "judgments" if judged else "traffic",
        "sessions_per_hour": 0 if judged else options["sessions_per_hour"],
        "hours": [],
        "adapter_train_s": [],
        "ranker_train_s": [],
        "events": [],
        "decisions": [],
    }
    # judged pairs need no events: no broker, no shoppers
    pipeline = nullcontext() if judged else event_pipeline(options.get("bootstrap"))
    # serving reloads the registry on every search, so each hour measures its promoted adapter
    with pipeline as consumer, override_settings(GENERATIVE_RELOAD_SECONDS=0.0):
        base_scores = measure(merchant, train, evaluation, qrels, probe)
        for name, value in base_scores.items():
            report[f"base_{SERIES[name]}"] = value
            report[SERIES[name]] = []
        out.write(
            f"base: eval ndcg@10 {base_scores['eval']:.4f}, "
            f"probe ndcg@10 {base_scores['probe']:.4f}\n"
        )
        simulator = None
        if not judged:
            simulator = Simulator(LocalStorefront(), train, qrels, merchant, seed=options["seed"])
        for h in range(hours):
            hour = start + timedelta(hours=h)
            stored = 0
            if simulator is not None:
                traffic = simulator.run_hour(hour, options["sessions_per_hour"])
                stored = deliver(consumer, traffic.accepted)
            [result] = train_hourly_adapter(hour, merchant, config, pairs)
            if report["ranker"]:
                report["ranker_train_s"].append(retrain_ranker(hour, merchant))
            scores = measure(merchant, train, evaluation, qrels, probe)
            _record_hour(report, h + 1, stored, result, scores)
            out.write(_progress_line(report))
    print_table(report, out)
    _write(report, options, out)
    return report


def retrain_ranker(hour: datetime, merchant: str) -> float:
    """The rest of beat's hour, run in process through the same Celery tasks: aggregate it,
    retrain and activate the ranker; its seconds.

    The CTR features are cached per process for minutes (``ranking.features.signals``); the
    web workers of a platform pick the new aggregates up when that cache expires, the
    benchmark at once, so the hour is measured with what it taught."""
    from learners import tasks
    from ranking.features import signals

    started = time.perf_counter()
    tasks.aggregate_hour(hour.isoformat(), merchant)
    tasks.retrain_ranker(merchant)
    signals.clear()
    return time.perf_counter() - started


def _record_hour(report: dict, hour: int, events: int, result: Any, scores: dict) -> None:
    report["hours"].append(hour)
    report["events"].append(events)
    for name, value in scores.items():
        report[SERIES[name]].append(value)
    report["adapter_train_s"].append(result.details.get("train_seconds"))
    report["decisions"].append(result.status)


def _progress_line(report: dict) -> str:
    seconds = report["adapter_train_s"][-1]
    trained = f", adapter trained in {seconds:.0f} s" if seconds is not None else ""
    if report["ranker_train_s"]:
        trained += f", ranker in {report['ranker_train_s'][-1]:.0f} s"
    fused = ""
    if report.get("eval_hybrid_ndcg@10"):
        fused = (
            f", eval hybrid ndcg@10 {report['eval_hybrid_ndcg@10'][-1]:.4f}"
            f", traffic hybrid ndcg@10 {report['traffic_hybrid_ndcg@10'][-1]:.4f}"
        )
    return (
        f"hour {report['hours'][-1]}: {report['events'][-1]} events, "
        f"{report['decisions'][-1]}, eval ndcg@10 {report['eval_ndcg@10'][-1]:.4f}, "
        f"probe ndcg@10 {report['probe_ndcg@10'][-1]:.4f}{fused}{trained}\n"
    )


def print_table(report: dict, out) -> None:
    hybrid = "eval_hybrid_ndcg@10" in report
    table = Table(
        title=f"learning curve ({report['merchant']}, replay "
        f"{'on' if report['replay'] else 'off'}, " + _taught(report) + ")"
    )
    for column in ("hour", "events", "decision", "train s", "eval ndcg@10", "probe ndcg@10"):
        table.add_column(column, justify="right")
    series = [SERIES["eval"], SERIES["probe"]]
    if hybrid:
        table.add_column("hybrid ndcg@10", justify="right")
        table.add_column("traffic hybrid", justify="right")
        series += [SERIES["hybrid"], SERIES["traffic_hybrid"]]
    table.add_row("base", "", "", "", *(f"{report[f'base_{key}']:.4f}" for key in series))
    for i, hour in enumerate(report["hours"]):
        seconds = report["adapter_train_s"][i]
        row = [
            str(hour),
            str(report["events"][i]),
            report["decisions"][i],
            "" if seconds is None else f"{seconds:.1f}",
            *(f"{report[key][i]:.4f}" for key in series),
        ]
        table.add_row(*row)
    Console(file=out, width=120).print(table)


def _taught(report: dict) -> str:
    if report.get("teach") == "judgments":
        return "taught the judgments"
    return f"{report['sessions_per_hour']} sessions/h"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    hours = [0, *report["hours"]]
    fig, ax = plt.subplots(figsize=(9, 4))
    series = [("eval", "eval_ndcg@10", "base_eval_ndcg@10")]
    series.append(("probe (forgetting)", "probe_ndcg@10", "base_probe_ndcg@10"))
    if "eval_hybrid_ndcg@10" in report:
        series.append(("eval, hybrid", "eval_hybrid_ndcg@10", "base_eval_hybrid_ndcg@10"))
        series.append(("traffic, hybrid", "traffic_hybrid_ndcg@10", "base_traffic_hybrid_ndcg@10"))
    for label, key, base_key in series:
        ax.plot(hours, [report[base_key], *report[key]], marker="o", label=label)
    ax.set_xlabel("simulated hours of traffic")
    ax.set_ylabel("NDCG@10")
    replay = "on" if report["replay"] else "off"
    ax.set_title(f"online learning, replay {replay}, {_taught(report)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: no curve is hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write(report: dict, options: dict, out) -> None:
    """Draw the PNG (beside ``--json`` unless ``--plot`` names it) and name it in the report, so
    the benchmark history keeps a copy for the console; ``bench`` writes the JSON itself."""
    json_out, png = options.get("json_out"), options.get("plot")
    png = png or (Path(json_out).with_suffix(".png") if json_out else None)
    if png:
        plot(report, Path(png))
        report["plot"] = str(png)
        out.write(f"wrote {png}\n")
