"""``manage.py bench relevance``: metrics against hand-computable judgments, and clear errors."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ranking import search
from ranking.benchmarks.relevance import evaluate

METRICS = {"ndcg@10", "mrr@10", "recall@100", "map@100", "condensed_ndcg@10", "judged@10"}


@pytest.fixture
def bench_dir(tmp_path) -> Path:
    directory = tmp_path / "bench"
    directory.mkdir()
    return directory


def write_queries(directory: Path, queries) -> Path:
    path = directory / "queries.json"
    path.write_text(json.dumps(queries), encoding="utf-8")
    return path


def write_qrels(directory: Path, lines: list[str]) -> Path:
    path = directory / "qrels.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_bench(queries: Path, qrels: Path, out_json: Path, *extra: str) -> tuple[dict, str]:
    stdout = StringIO()
    call_command(
        "bench", "relevance", "--queries", str(queries), "--qrels", str(qrels),
        "--pipelines", "bm25", "--json", str(out_json), *extra, stdout=stdout,
    )  # fmt: skip
    return json.loads(out_json.read_text(encoding="utf-8")), stdout.getvalue()


def test_perfect_single_answer_query_scores_one(small_catalog, bench_dir):
    # "otterbox" matches only P1 in the phone shop, and P1 is its only relevant product
    assert [r.sku for r in search("otterbox", merchant="phone-shop").results] == ["P1"]
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "otterbox"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 2", "q1 0 P4 0"])
    out_json = bench_dir / "out.json"

    report, stdout = run_bench(queries, qrels, out_json)

    assert set(report["pipelines"]) == {"bm25"}
    assert set(report["pipelines"]["bm25"]) == METRICS
    assert report["pipelines"]["bm25"] == pytest.approx(dict.fromkeys(METRICS, 1.0))
    assert report["queries"] == 1
    assert report["merchant"] == "phone-shop"  # detected from the judged skus
    assert "merchant phone-shop" in stdout
    assert f"wrote {out_json}" in stdout


def test_metrics_average_over_queries(small_catalog, bench_dir):
    # q2: P1 is the only relevant product for "iphone"; find where bm25 ranks it
    ranking = [r.sku for r in search("iphone", merchant="phone-shop", k=100).results]
    rank = ranking.index("P1") + 1
    queries = write_queries(
        bench_dir,
        [
            {"qid": "q1", "query": "otterbox"},
            {"qid": "q2", "query": "iphone"},
            {"qid": "unjudged", "query": "samsung"},
        ],
    )
    qrels = write_qrels(bench_dir, ["q1 0 P1 1", "", "q2 0 P1 1"])

    report, _ = run_bench(queries, qrels, bench_dir / "out.json")

    scores = report["pipelines"]["bm25"]
    assert report["queries"] == 2  # the unjudged query is not evaluated
    assert scores["mrr@10"] == pytest.approx((1 + 1 / rank) / 2)
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(rank + 1)) / 2)
    assert scores["map@100"] == pytest.approx((1 + 1 / rank) / 2)
    assert scores["recall@100"] == pytest.approx(1.0)
    # with the unjudged products removed, P1 is first for both queries
    assert scores["condensed_ndcg@10"] == pytest.approx(1.0)
    top = ranking[:10]
    assert scores["judged@10"] == pytest.approx((1 + ("P1" in top) / len(top)) / 2)
    assert all(0.0 <= value <= 1.0 for value in scores.values())


def test_query_without_results_scores_zero(small_catalog, bench_dir):
    queries = write_queries(
        bench_dir, [{"qid": "q1", "query": "otterbox"}, {"qid": "q2", "query": "zzqxv"}]
    )
    qrels = write_qrels(bench_dir, ["q1 0 P1 1", "q2 0 P2 1"])
    report, _ = run_bench(queries, qrels, bench_dir / "out.json")
    # judged@10 leaves out q2: it showed nothing that could have been judged
    expected = {**dict.fromkeys(METRICS, 0.5), "judged@10": 1.0}
    assert report["pipelines"]["bm25"] == pytest.approx(expected)


def test_merchant_detected_from_judged_skus(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": 7, "query": "bananas"}])  # numeric qid is fine
    qrels = write_qrels(bench_dir, ["7 0 G1 2"])
    report, stdout = run_bench(queries, qrels, bench_dir / "out.json")
    assert report["merchant"] == "grocer"
    assert report["pipelines"]["bm25"]["mrr@10"] == pytest.approx(1.0)
    assert "merchant grocer" in stdout


def test_explicit_merchant_overrides_detection(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "apple"}])
    qrels = write_qrels(bench_dir, ["q1 0 G2 1"])
    report, _ = run_bench(queries, qrels, bench_dir / "out.json", "--merchant", "phone-shop")
    assert report["merchant"] == "phone-shop"
    assert report["pipelines"]["bm25"] == pytest.approx(dict.fromkeys(METRICS, 0.0))


def test_condensed_ndcg_drops_unjudged_products_and_judged_share_counts_them():
    qrels = {"q1": {"A": 2, "B": 0, "C": 1}, "q2": {"D": 1}}
    # q1 shows an unjudged product first and one between A and C; q2 finds nothing judged
    run = {"q1": {"X": 4.0, "A": 3.0, "Y": 2.0, "C": 1.0}, "q2": {"Z": 1.0}}

    scores = evaluate(qrels, run)

    ideal = 2 + 1 / math.log2(3)
    full_q1 = (2 / math.log2(3) + 1 / math.log2(5)) / ideal
    assert scores["ndcg@10"] == pytest.approx(full_q1 / 2)
    # condensed q1 is [A, C]: the ideal order; q2's condensed list is empty
    assert scores["condensed_ndcg@10"] == pytest.approx(1.0 / 2)
    assert scores["judged@10"] == pytest.approx((2 / 4 + 0 / 1) / 2)


# --- errors -----------------------------------------------------------------------------------
def test_missing_queries_file(small_catalog, bench_dir):
    qrels = write_qrels(bench_dir, ["q1 0 P1 1"])
    with pytest.raises(CommandError, match="queries file not found"):
        run_bench(bench_dir / "nope.json", qrels, bench_dir / "out.json")


def test_missing_qrels_file(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    with pytest.raises(CommandError, match="qrels file not found"):
        run_bench(queries, bench_dir / "nope.tsv", bench_dir / "out.json")


@pytest.mark.parametrize("bad_line", ["q2 0 P2", "q2 0 P2 high", "q2 0 P2 1 extra"])
def test_malformed_qrels_line(small_catalog, bench_dir, bad_line):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 1", bad_line])
    with pytest.raises(CommandError, match=r"qrels\.tsv:2: expected 'qid 0 sku gain'"):
        run_bench(queries, qrels, bench_dir / "out.json")
    assert not (bench_dir / "out.json").exists()


@pytest.mark.parametrize(
    "content", ['{"qid": "q1", "query": "iphone"}', '[{"qid": "q1"}]', '["iphone"]', "[oops"]
)
def test_queries_file_not_a_list_of_queries(small_catalog, bench_dir, content):
    queries = bench_dir / "queries.json"
    queries.write_text(content, encoding="utf-8")
    qrels = write_qrels(bench_dir, ["q1 0 P1 1"])
    with pytest.raises(CommandError, match=r"queries\.json: (expected a JSON list|not valid JSON)"):
        run_bench(queries, qrels, bench_dir / "out.json")


def test_empty_qrels(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    qrels = write_qrels(bench_dir, [""])
    with pytest.raises(CommandError, match="no judgments"):
        run_bench(queries, qrels, bench_dir / "out.json")


def test_no_judged_query(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    qrels = write_qrels(bench_dir, ["other 0 P1 1"])
    with pytest.raises(CommandError, match="no query in the queries file has judgments"):
        run_bench(queries, qrels, bench_dir / "out.json")


def test_judged_skus_not_in_catalog(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    qrels = write_qrels(bench_dir, ["q1 0 NOPE 1"])
    with pytest.raises(CommandError, match="none of the judged skus is in the catalog"):
        run_bench(queries, qrels, bench_dir / "out.json")


def test_unknown_pipeline(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "iphone"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 1"])
    with pytest.raises(CommandError, match="unknown pipeline 'quantum'"):
        call_command(
            "bench", "relevance", "--queries", str(queries), "--qrels", str(qrels),
            "--pipelines", "quantum", stdout=StringIO(),
        )  # fmt: skip


def test_each_run_is_kept_in_the_history_for_the_console(small_catalog, bench_dir):
    from ranking.benchmarks import history

    assert history.latest("relevance") is None
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "otterbox"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 2"])
    first, _ = run_bench(queries, qrels, bench_dir / "one.json")
    qrels = write_qrels(bench_dir, ["q1 0 P2 2"])  # now the answer is wrong: scores drop
    second, stdout = run_bench(queries, qrels, bench_dir / "two.json")

    stored = history.latest("relevance")
    assert second != first
    assert stored["pipelines"] == second["pipelines"]
    assert stored["merchant"] == "phone-shop"
    assert stored["benchmark"] == "relevance"
    assert stored["options"]["pipelines"] == "bm25"
    assert stored["options"]["qrels"] == str(qrels)
    assert "verbosity" not in stored["options"]
    assert len(list(history.bench_dir().glob("relevance-*.json"))) == 2
    assert "recorded in" in stdout


def test_pipelines_are_compared_with_the_baseline_query_by_query(small_catalog, bench_dir):
    # no generative model is active, so generative finds nothing and loses on every query
    queries = write_queries(
        bench_dir, [{"qid": "q1", "query": "otterbox"}, {"qid": "q2", "query": "speck"}]
    )
    qrels = write_qrels(bench_dir, ["q1 0 P1 2", "q2 0 P2 1"])
    report, stdout = run_bench(
        queries, qrels, bench_dir / "out.json", "--pipelines", "generative,bm25",
        "--resamples", "200",
    )  # fmt: skip
    comparison = report["comparison"]
    assert comparison["baseline"] == "bm25" and comparison["resamples"] == 200
    assert set(comparison["pipelines"]) == {"generative"}
    generative = comparison["pipelines"]["generative"]
    assert generative["delta"] == pytest.approx(-report["pipelines"]["bm25"]["ndcg@10"])
    assert generative["better_share"] == 0.0
    assert "ndcg@10 against bm25: paired bootstrap" in stdout


def test_an_unknown_baseline_is_refused_before_any_search(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "otterbox"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 2"])
    with pytest.raises(CommandError, match="--baseline 'dense' is not one of"):
        run_bench(queries, qrels, bench_dir / "out.json", "--baseline", "dense")


def test_a_single_pipeline_or_zero_resamples_has_no_comparison(small_catalog, bench_dir):
    queries = write_queries(bench_dir, [{"qid": "q1", "query": "otterbox"}])
    qrels = write_qrels(bench_dir, ["q1 0 P1 2"])
    alone, _ = run_bench(queries, qrels, bench_dir / "a.json")
    skipped, _ = run_bench(
        queries, qrels, bench_dir / "b.json", "--pipelines", "bm25,generative",
        "--resamples", "0",
    )  # fmt: skip
    assert "comparison" not in alone and "comparison" not in skipped
