"""Train a generative recall model on one merchant and measure it, standalone.

Examples (from the repository root)::

    SEARCH_DATA_DIR=/tmp/sd1 nice -n 10 .venv/bin/python -m learners.generative.experiment \\
        --merchant bestbuy --version-dir var/generative/bestbuy-exp --max-minutes 20 \\
        --queries ../shared/datasets/bestbuy/queries_dev.json \\
        --qrels ../shared/datasets/bestbuy/qrels_dev.tsv --beams 10,20 --json out.json

    # evaluate an existing version only
    ... -m learners.generative.experiment --merchant bestbuy --version-dir DIR --eval-only ...

Queries/qrels are used **only for measuring** (never for training). Decoded docids map to skus
through the ``Docid`` table; metrics come from ``ranx`` via
:func:`ranking.benchmarks.relevance.evaluate` (the same code that scores the bm25 pipeline), so
numbers are comparable. NDCG@10 / MRR@10 are taken from the run at each ``--beams`` width;
Recall@100 from a run at ``--recall-beam`` (a beam returns at most ``beam`` docids). Latency is
the wall time of ``GenerativeRetriever.search`` per query (tokenise + encode + beam search),
single query, after a warm-up, with ``torch.set_num_threads(--threads)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learners.generative.data import DataConfig

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags for the training data default to :class:`DataConfig`'s, what a served base uses."""
    from learners.generative.data import DataConfig
    from learners.precision import PRECISIONS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--merchant", required=True, help="merchant slug, e.g. bestbuy")
    p.add_argument("--version-dir", type=Path, required=True, help="model version directory")
    p.add_argument("--queries", type=Path, help="JSON list of {qid, query}")
    p.add_argument("--qrels", type=Path, help="TREC qrels: qid 0 sku gain")
    p.add_argument("--max-minutes", type=float, default=20.0, help="training time budget")
    p.add_argument("--max-epochs", type=float, help="optional epoch budget")
    p.add_argument("--eval-only", action="store_true", help="skip training, load version-dir")
    p.add_argument("--fresh", action="store_true", help="delete version-dir before training")
    p.add_argument("--beams", default="10,20", help="beam widths to evaluate (comma-separated)")
    p.add_argument("--recall-beam", type=int, default=100, help="beam for Recall@100 (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--precision", choices=PRECISIONS, default="auto", help="training matrix products"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--layers", type=int, default=4, help="encoder layers")
    p.add_argument("--decoder-layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--stem-input", action="store_true", help="encoder reads word stems")
    p.add_argument("--queries-per-product", type=int, default=DataConfig.queries_per_product)
    p.add_argument(
        "--full-targets", action="store_true", help="train leaves on ambiguous queries too"
    )
    p.add_argument(
        "--teacher-depth", type=int, default=DataConfig.teacher_depth, help="0: no BM25 teacher"
    )
    p.add_argument(
        "--teacher-rate",
        type=float,
        default=DataConfig.teacher_rate,
        help="teacher examples/product",
    )
    p.add_argument(
        "--vocabulary-min-products",
        type=int,
        default=DataConfig.vocabulary_min_products,
        help="the teacher also answers title words and word pairs this many products share",
    )
    p.add_argument("--description-rate", type=float, default=DataConfig.description_rate)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, dest="json_out", help="write the report here")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def setup_django() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    import django

    django.setup()


def data_config(args: argparse.Namespace) -> DataConfig:
    """The training data the flags ask for."""
    from learners.generative.data import DataConfig

    return DataConfig(
        queries_per_product=args.queries_per_product,
        description_rate=args.description_rate,
        ambiguous_prefix_only=not args.full_targets,
        teacher_depth=args.teacher_depth,
        teacher_rate=args.teacher_rate,
        vocabulary_min_products=args.vocabulary_min_products,
        seed=args.seed,
    )


def train_version(args: argparse.Namespace) -> dict[str, Any]:
    import shutil

    from learners.generative.base import lexical_teacher
    from learners.generative.data import load_products
    from learners.generative.model import ModelConfig
    from learners.generative.train import TrainConfig, train

    if args.fresh:
        shutil.rmtree(args.version_dir, ignore_errors=True)
    products = load_products(args.merchant)
    if not products:
        raise SystemExit(f"merchant {args.merchant!r} has no products with docids")
    model_config = ModelConfig(
        d_model=args.d_model,
        d_ff=args.d_ff,
        num_layers=args.layers,
        num_decoder_layers=args.decoder_layers,
        dropout_rate=args.dropout,
        stem_input=args.stem_input,
    )
    config = TrainConfig(
        batch_size=args.batch_size,
        lr=args.lr,
        max_minutes=args.max_minutes,
        max_epochs=args.max_epochs,
        threads=args.threads,
        precision=args.precision,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return train(
        products,
        args.version_dir,
        model_config=model_config,
        data_config=data_config(args),
        config=config,
        merchant=args.merchant,
        teacher=lexical_teacher(args.merchant, products) if args.teacher_depth else None,
    )


def sku_by_docid(merchant: str) -> dict[str, str]:
    from catalog.models import Docid

    rows = Docid.objects.filter(merchant__slug=merchant).values_list("path", "product__sku")
    return dict(rows)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": statistics.median(ordered),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "mean": statistics.fmean(ordered),
    }


def run_queries(
    retriever: Any, queries: dict[str, str], beam: int, skus: dict[str, str]
) -> tuple[dict[str, dict[str, float]], list[float]]:
    """qid → {sku: log-prob} at ``beam``, and per-query latencies in ms."""
    for text in list(queries.values())[:5]:  # warm-up
        retriever.search(text, k=beam, beam=beam)
    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    for qid, text in queries.items():
        started = time.perf_counter()
        hits = retriever.search(text, k=beam, beam=beam)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = {skus[h.docid]: h.score for h in hits if h.docid in skus}
    return run, latencies


def judged_at(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int) -> float:
    """Share of the top-``k`` results that were judged at all (gain 0 included).

    The dev judgments were pooled from earlier systems (mostly lexical), so an unjudged result
    counts as irrelevant even when it fits the query; a low value flags that pool bias.
    """
    shares = []
    for qid, scores in run.items():
        top = sorted(scores, key=lambda s: -scores[s])[:k]
        if top:
            shares.append(sum(s in qrels.get(qid, {}) for s in top) / len(top))
    return statistics.fmean(shares) if shares else 0.0


def by_wording(version_dir: Path, queries: dict[str, str]) -> dict[str, list[str]]:
    """The query ids whose exact wording the BM25 teacher answered during training, and the
    rest. The teacher asks catalog-structure queries ("cell phones chargers"), which shoppers
    type too, so a dev set holds both kinds: the split tells how much of the model's score is
    recall of what it was taught and how much carries to wordings it never saw."""
    from learners.generative.data import clean
    from learners.generative.train import read_leaf_targets

    taught = set(read_leaf_targets(version_dir) or {})
    seen = [qid for qid, text in queries.items() if clean(text) in taught]
    return {"teacher-answered": seen, "other wordings": [q for q in queries if q not in seen]}


def ndcg_by_wording(
    groups: dict[str, list[str]], qrels: dict[str, dict[str, int]], run: dict[str, dict]
) -> dict[str, dict[str, float]]:
    from ranking.benchmarks.relevance import evaluate as ranx_evaluate

    return {
        name: {
            "queries": len(qids),
            "ndcg@10": ranx_evaluate({q: qrels[q] for q in qids}, run)["ndcg@10"] if qids else 0.0,
        }
        for name, qids in groups.items()
    }


def evaluate(args: argparse.Namespace, retriever: Any) -> dict[str, Any]:
    from ranking.benchmarks.relevance import evaluate as ranx_evaluate
    from ranking.benchmarks.relevance import load_qrels, load_queries

    qrels = load_qrels(args.qrels)
    queries = {q: t for q, t in load_queries(args.queries).items() if q in qrels}
    skus = sku_by_docid(args.merchant)
    groups = by_wording(args.version_dir, queries)
    report: dict[str, Any] = {"queries": len(queries), "beams": {}}
    for beam in [int(b) for b in args.beams.split(",") if b.strip()]:
        run, latencies = run_queries(retriever, queries, beam, skus)
        scores = ranx_evaluate(qrels, run)
        report["beams"][beam] = {
            "ndcg@10": scores["ndcg@10"],
            "mrr@10": scores["mrr@10"],
            "judged@10": judged_at(qrels, run, 10),
            "by_wording": ndcg_by_wording(groups, qrels, run),
            "latency_ms": percentiles(latencies),
        }
    if args.recall_beam:
        run, latencies = run_queries(retriever, queries, args.recall_beam, skus)
        scores = ranx_evaluate(qrels, run)
        report["recall@100"] = scores["recall@100"]
        report["recall_beam"] = {
            "beam": args.recall_beam,
            **scores,
            "latency_ms": percentiles(latencies),
        }
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    setup_django()
    import torch

    from learners.generative.decode import GenerativeRetriever
    from learners.generative.model import read_metadata

    torch.set_num_threads(args.threads)
    if not args.eval_only:
        train_version(args)
    metadata = read_metadata(args.version_dir)
    report: dict[str, Any] = {
        "version_dir": str(args.version_dir),
        "parameters": metadata.get("parameters"),
        "training": metadata.get("training"),
        "metrics": metadata.get("metrics"),
        "model_config": metadata.get("model_config"),
    }
    if args.queries and args.qrels:
        retriever = GenerativeRetriever.load(args.version_dir)
        report["retrieval"] = evaluate(args, retriever)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
