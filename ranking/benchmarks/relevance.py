"""Offline relevance of search pipelines against graded judgments (NDCG@10, MRR@10, R@100, MAP).

Every query runs through ``ranking.search`` exactly as the storefront runs it, restricted to
the merchant that owns the judged products. Metrics come from ``ranx``; products that were
not judged count as irrelevant.

That last rule is how the acceptance metric is defined, and it is unfair to a pipeline that
did not help build the judgment pools (BestBuy's were BM25's top 30 plus popular products of
the query's category): what it finds outside the pools scores as irrelevant whether it is or
not. Two more columns say how much that matters for each pipeline:

* ``judged@10`` -- the share of the results shown in the top 10 that carry a judgment at all;
* ``condensed_ndcg@10`` -- NDCG@10 of the ranking with the unjudged products removed (the
  "condensed list" of Sakai & Kando, 2008, the usual way to compare systems under incomplete
  judgments). It tends to flatter a pipeline whose unjudged results would be irrelevant, so it
  complements ``ndcg@10`` and never replaces it.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ranking.benchmarks import significance

RUN_DEPTH = 100


def ranx_metrics(k: int) -> list[str]:
    return [f"ndcg@{k}", f"mrr@{k}", "recall@100", "map@100"]


def metric_names(k: int) -> list[str]:
    """Every column of the report: ranx's metrics, then the two about the judgment pools."""
    return [*ranx_metrics(k), f"condensed_ndcg@{k}", f"judged@{k}"]


def add_arguments(parser) -> None:
    parser.add_argument(
        "--queries", type=Path, required=True, help="JSON list of {qid, query} objects"
    )
    parser.add_argument("--qrels", type=Path, required=True, help="TREC qrels: qid 0 sku gain")
    parser.add_argument(
        "--pipelines", default="bm25", help="comma-separated pipelines to compare (default: bm25)"
    )
    parser.add_argument("--merchant", help="merchant slug (default: owner of the judged skus)")
    parser.add_argument("--k", type=int, default=10, help="cut-off shown for NDCG/MRR (10)")
    parser.add_argument(
        "--baseline",
        help="pipeline the others are compared with by a paired bootstrap over the queries "
        "(default: bm25 when compared, else the first pipeline)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=significance.RESAMPLES,
        help=f"bootstrap resamples of the query set (default {significance.RESAMPLES:,}; "
        "0 skips the comparison)",
    )
    parser.add_argument("--json", type=Path, dest="json_out", help="write results here")


def load_queries(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise FileNotFoundError(f"queries file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list) or not all(
        isinstance(q, dict) and "qid" in q and "query" in q for q in data
    ):
        raise ValueError(f"{path}: expected a JSON list of objects with 'qid' and 'query'")
    return {str(q["qid"]): str(q["query"]) for q in data}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"qrels file not found: {path}")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected 'qid 0 sku gain', got {line!r}")
        qid, _, sku, gain = parts
        qrels.setdefault(qid, {})[sku] = int(gain)
    if not qrels:
        raise ValueError(f"{path}: no judgments")
    return qrels


def owning_merchant(qrels: dict[str, dict[str, int]]) -> str:
    """The merchant whose catalog holds most of the judged skus."""
    from catalog.models import Product

    skus = {sku for judged in qrels.values() for sku in judged}
    owners = Counter(Product.objects.filter(sku__in=skus).values_list("merchant__slug", flat=True))
    if not owners:
        raise ValueError("none of the judged skus is in the catalog: import the feed first")
    return owners.most_common(1)[0][0]


def run_pipeline(pipeline: str, queries: dict[str, str], merchant: str) -> dict[str, dict]:
    """qid → {sku: score} for the top ``RUN_DEPTH`` results of each query."""
    from ranking import search

    run: dict[str, dict[str, float]] = {}
    for qid, text in queries.items():
        response = search(text, k=RUN_DEPTH, merchant=merchant, pipeline=pipeline)
        # ranx ranks by score; rank-derived scores keep the pipeline's exact order
        run[qid] = {r.sku: float(RUN_DEPTH - i) for i, r in enumerate(response.results)}
    return run


def evaluate(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int = 10
) -> dict[str, float]:
    relevant = relevant_judgments(qrels)
    result = ranx_scores(relevant, run, ranx_metrics(k))
    condensed = {
        qid: {sku: score for sku, score in docs.items() if sku in qrels.get(qid, {})}
        for qid, docs in run.items()
    }
    result[f"condensed_ndcg@{k}"] = ranx_scores(relevant, condensed, [f"ndcg@{k}"])[f"ndcg@{k}"]
    result[f"judged@{k}"] = judged_share(qrels, {qid: run.get(qid, {}) for qid in relevant}, k)
    return result


def per_query(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metric: str
) -> dict[str, float]:
    """qid -> ``metric`` for every query with a relevant judgment (what the mean averages)."""
    relevant = relevant_judgments(qrels)
    return ranx_scores(relevant, run, [metric], per_query=True)[metric]


def relevant_judgments(qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The positive judgments of each query that has any: the queries every metric averages."""
    relevant = {qid: {s: g for s, g in docs.items() if g > 0} for qid, docs in qrels.items()}
    return {qid: docs for qid, docs in relevant.items() if docs}


def ranx_scores(
    relevant: dict[str, dict[str, int]],
    run: dict[str, dict[str, float]],
    names: list[str],
    *,
    per_query: bool = False,
) -> dict[str, Any]:
    """ranx's mean of each metric (or, with ``per_query``, its qid -> score mapping)."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")
    # ranx needs an entry for every judged query; a query with no results scores zero
    ranx_run = Run({qid: run.get(qid) or {"__none__": 0.0} for qid in relevant})
    scores = ranx_evaluate(Qrels(relevant), ranx_run, names, make_comparable=True)
    if per_query:
        return {name: {q: float(v) for q, v in ranx_run.scores[name].items()} for name in names}
    if not isinstance(scores, dict):  # ranx answers one metric with a bare number
        scores = {names[0]: scores}
    return {name: float(scores[name]) for name in names}


def judged_share(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int
) -> float:
    """Mean share of each query's top ``k`` results that carry a judgment (any grade); queries
    without results are left out, they have nothing to judge."""
    shares = []
    for qid, docs in run.items():
        top = sorted(docs, key=lambda sku: -docs[sku])[:k]
        if top:
            shares.append(sum(sku in qrels.get(qid, {}) for sku in top) / len(top))
    return sum(shares) / len(shares) if shares else 0.0


def run(options: dict[str, Any], out) -> dict[str, Any]:
    queries = load_queries(options["queries"])
    qrels = load_qrels(options["qrels"])
    queries = {qid: text for qid, text in queries.items() if qid in qrels}
    if not queries:
        raise ValueError("no query in the queries file has judgments in the qrels file")
    merchant = options.get("merchant") or owning_merchant(qrels)
    pipelines = [p.strip() for p in options["pipelines"].split(",") if p.strip()]
    k = options.get("k") or 10
    baseline = baseline_of(pipelines, options)

    results: dict[str, dict[str, float]] = {}
    scored: dict[str, dict[str, float]] = {}
    for pipeline in pipelines:
        pipeline_run = run_pipeline(pipeline, queries, merchant)
        results[pipeline] = evaluate(qrels, pipeline_run, k)
        scored[pipeline] = per_query(qrels, pipeline_run, f"ndcg@{k}")

    report: dict[str, Any] = {"queries": len(queries), "merchant": merchant, "pipelines": results}
    resamples = options.get("resamples", significance.RESAMPLES)
    if len(pipelines) > 1 and resamples:
        report["comparison"] = compare(scored, baseline, resamples, k)
    print_table(report, out, k)
    return report


def baseline_of(pipelines: list[str], options: dict[str, Any]) -> str:
    baseline = options.get("baseline") or ("bm25" if "bm25" in pipelines else pipelines[0])
    if baseline not in pipelines:
        raise ValueError(f"--baseline {baseline!r} is not one of --pipelines {pipelines}")
    return baseline


def compare(
    scored: dict[str, dict[str, float]], baseline: str, resamples: int, k: int
) -> dict[str, Any]:
    """Every other pipeline's NDCG@k against ``baseline``'s, query by query (significance)."""
    return {
        "metric": f"ndcg@{k}",
        "baseline": baseline,
        "resamples": resamples,
        "confidence": significance.CONFIDENCE,
        "pipelines": {
            name: significance.paired_bootstrap(scored[baseline], scores, resamples).as_dict()
            for name, scores in scored.items()
            if name != baseline
        },
    }


def print_table(report: dict[str, Any], out, k: int) -> None:
    table = Table(title=f"relevance on {report['queries']} queries (merchant {report['merchant']})")
    table.add_column("pipeline")
    for metric in metric_names(k):
        table.add_column(metric, justify="right")
    for pipeline, scores in report["pipelines"].items():
        table.add_row(pipeline, *(f"{scores[m]:.4f}" for m in metric_names(k)))
    console = Console(file=out, width=140)
    console.print(table)
    if "comparison" in report:
        console.print(comparison_table(report["comparison"]))


def comparison_table(comparison: dict[str, Any]) -> Table:
    share = f"{comparison['confidence']:.0%}"
    table = Table(
        title=f"{comparison['metric']} against {comparison['baseline']}: paired bootstrap over "
        f"the queries, {comparison['resamples']:,} resamples, {share} intervals"
    )
    for column in (
        "pipeline",
        "difference",
        share,
        "shortfall closed",
        share,
        "better in resamples",
    ):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for pipeline, c in comparison["pipelines"].items():
        table.add_row(
            pipeline,
            f"{c['delta']:+.4f}",
            f"[{c['delta_low']:+.4f}, {c['delta_high']:+.4f}]",
            f"{c['closed']:.1%}",
            f"[{c['closed_low']:.1%}, {c['closed_high']:.1%}]",
            f"{c['better_share']:.1%}",
        )
    return table
