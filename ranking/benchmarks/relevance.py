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
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    warnings.filterwarnings("ignore", message="unsafe cast from uint64 to int64")

    relevant = {qid: {s: g for s, g in docs.items() if g > 0} for qid, docs in qrels.items()}
    relevant = {qid: docs for qid, docs in relevant.items() if docs}

    def ranx_scores(a_run: dict[str, dict[str, float]], names: list[str]) -> dict[str, float]:
        # ranx needs an entry for every judged query; a query with no results scores zero
        full_run = {qid: a_run.get(qid) or {"__none__": 0.0} for qid in relevant}
        scores = ranx_evaluate(Qrels(relevant), Run(full_run), names, make_comparable=True)
        if not isinstance(scores, dict):  # ranx answers one metric with a bare number
            scores = {names[0]: scores}
        return {name: float(scores[name]) for name in names}

    result = ranx_scores(run, ranx_metrics(k))
    condensed = {
        qid: {sku: score for sku, score in docs.items() if sku in qrels.get(qid, {})}
        for qid, docs in run.items()
    }
    result[f"condensed_ndcg@{k}"] = ranx_scores(condensed, [f"ndcg@{k}"])[f"ndcg@{k}"]
    result[f"judged@{k}"] = judged_share(qrels, {qid: run.get(qid, {}) for qid in relevant}, k)
    return result


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

    results: dict[str, dict[str, float]] = {}
    for pipeline in pipelines:
        results[pipeline] = evaluate(qrels, run_pipeline(pipeline, queries, merchant), k)

    report = {
        "queries": len(queries),
        "merchant": merchant,
        "pipelines": results,
    }
    print_table(report, out, k)
    return report


def print_table(report: dict[str, Any], out, k: int) -> None:
    table = Table(title=f"relevance on {report['queries']} queries (merchant {report['merchant']})")
    table.add_column("pipeline")
    for metric in metric_names(k):
        table.add_column(metric, justify="right")
    for pipeline, scores in report["pipelines"].items():
        table.add_row(pipeline, *(f"{scores[m]:.4f}" for m in metric_names(k)))
    console = Console(file=out, width=140)
    console.print(table)
