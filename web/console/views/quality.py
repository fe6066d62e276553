"""Search quality panel: the newest benchmark results and plots, with their date and model.

``manage.py bench`` records every run (:mod:`ranking.benchmarks.history`) as
``<SEARCH_DATA_DIR>/bench/<benchmark>-<timestamp>.json``: a JSON object with ``benchmark``,
``created`` (ISO-8601), ``options``, optional ``model_version`` and ``merchant`` (slug), and
its results; a plot is ``<same stem>.png`` beside it (e.g. the learning curve).
Results are rendered generically: a ``{row: {metric: number}}`` object (``pipelines``), a
list of ``{column: value}`` objects, or several equally long lists of values (the learning
curve's ``hours``, ``eval_ndcg@10``, ... one entry per hour) become a table, scalars become
facts, and any other object is a section rendered the same way under its name (the relevance
benchmark's ``comparison``: its baseline and resamples, and a table of the other pipelines).
Runs for another merchant are not shown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from numbers import Number
from pathlib import Path
from typing import Any

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime

from catalog.models import Merchant
from ranking.benchmarks.history import bench_dir
from web.console import charts
from web.console.access import merchant_view
from web.console.views import render_panel

_STAMP = re.compile(r"-\d{8}T\d{6}\d*Z?$")
#: Keys describing a run rather than being a result.
META_KEYS = {"benchmark", "created", "model_version", "merchant", "options", "plot"}
HISTORY_RUNS = 20


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]

    @property
    def headings(self) -> list[str]:
        """Column names a header can wrap ("eval hybrid ndcg@10", not one 19-letter word):
        a learning curve has nine columns."""
        return [c.replace("_", " ") for c in self.columns]


@dataclass
class Run:
    path: Path
    benchmark: str
    created: datetime
    data: dict[str, Any]
    plot: str = ""  # file name of the run's PNG, if any

    @property
    def model_version(self) -> str:
        return str(self.data.get("model_version") or "")

    @property
    def merchant(self) -> str:
        return str(self.data.get("merchant") or "")


@dataclass
class Benchmark:
    name: str
    runs: list[Run]  # newest first
    tables: list[Table] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    history: str = ""

    @property
    def latest(self) -> Run:
        return self.runs[0]


def read_run(path: Path) -> Run | None:
    """One result file, or None if it is not a JSON object (half-written, foreign file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    created = parse_datetime(str(data.get("created", ""))) if data.get("created") else None
    if created is None:
        created = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    name = str(data.get("benchmark") or _STAMP.sub("", path.stem))
    plot = path.with_suffix(".png")
    return Run(path, name, created, data, plot.name if plot.exists() else "")


def runs_for(merchant: Merchant) -> list[Run]:
    """Every readable run for ``merchant`` (or for no merchant in particular), newest first."""
    directory = bench_dir()
    if not directory.is_dir():
        return []
    runs = [run for p in directory.glob("*.json") if (run := read_run(p)) is not None]
    runs = [r for r in runs if r.merchant in ("", merchant.slug)]
    return sorted(runs, key=lambda r: r.created, reverse=True)


#: name endings of measurements in milliseconds, seconds or per second: one decimal place
UNIT_SUFFIXES = ("_ms", "_s", "qps")
#: endings of a spread around such a measurement ("p99_ms_min"), read past to find its unit
SPREAD_SUFFIXES = ("_min", "_max")


def _number(value: Any, name: str = "") -> str:
    """A cell as shown: scores (NDCG, recall) need four places; milliseconds, seconds and QPS
    one, which a ``name`` ending in a unit says even for small values (0.7 ms of CPU)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    stem = name[: -len("_min")] if name.endswith(SPREAD_SUFFIXES) else name
    return f"{value:,.1f}" if abs(value) >= 10 or stem.endswith(UNIT_SUFFIXES) else f"{value:.4f}"


def tables_of(data: dict[str, Any]) -> tuple[list[Table], list[tuple[str, str]]]:
    """Split a result object into tables and scalar facts (see the module docstring)."""
    tables: list[Table] = []
    facts: list[tuple[str, str]] = []
    for key, value in data.items():
        if key in META_KEYS:
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            flat = metric_rows(value)
            columns = list(dict.fromkeys(c for v in flat.values() for c in v))
            rows = [(r, [_number(v.get(c, ""), c) for c in columns]) for r, v in flat.items()]
            tables.append(Table(key, columns, rows))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(c for v in value for c in v))
            rows = [("", [_number(v.get(c, ""), c) for c in columns]) for v in value]
            tables.append(Table(key, columns, rows))
        elif isinstance(value, dict) and value:  # a section: its own tables and facts
            inner_tables, inner_facts = tables_of(value)
            tables += [Table(f"{key} {t.title}", t.columns, t.rows) for t in inner_tables]
            facts += [(f"{key} {name}", shown) for name, shown in inner_facts]
        elif isinstance(value, str | Number):
            facts.append((key, _number(value, key)))
    return tables + column_tables(data), facts


def metric_rows(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{row: {metric: value}}``, with a row that nests one more level (the latency
    benchmark's ``{pipeline: {clients: {metric: value}}}``) split into one row per inner key
    (``hybrid / 16``)."""
    flat: dict[str, dict[str, Any]] = {}
    for name, metrics in rows.items():
        if metrics and all(isinstance(v, dict) for v in metrics.values()):
            flat.update({f"{name} / {inner}": values for inner, values in metrics.items()})
        else:
            flat[str(name)] = metrics
    return flat


def column_tables(data: dict[str, Any]) -> list[Table]:
    """One table per group of two or more equally long lists of plain values, each list a
    column, titled by the first (a curve's ``hours``)."""
    by_length: dict[int, list[str]] = {}
    for key, value in data.items():
        if key not in META_KEYS and _plain_list(value):
            by_length.setdefault(len(value), []).append(key)
    return [
        Table(keys[0], keys, [("", [_number(data[k][i], k) for k in keys]) for i in range(n)])
        for n, keys in by_length.items()
        if len(keys) > 1
    ]


def _plain_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(v is None or isinstance(v, str | Number) for v in value)
    )


def history_chart(runs: list[Run]) -> str:
    """The first numeric metric of each ``pipelines`` row across the runs, oldest to newest."""
    charted = [
        (r.created.strftime("%b %d %H:%M"), metric_rows(r.data["pipelines"]))
        for r in reversed(runs[:HISTORY_RUNS])
        if isinstance(r.data.get("pipelines"), dict)
    ]
    if len(charted) < 2:
        return ""
    newest = next(iter(charted[-1][1].values()), {})
    metric = next((m for m, v in newest.items() if _plottable(v)), None)
    if metric is None:
        return ""
    names = list(dict.fromkeys(name for _, table in charted for name in table))
    series = [
        charts.Series(
            f"{name} {metric}",
            [_plottable_or_none(table.get(name, {}).get(metric)) for _, table in charted],
        )
        for name in names
    ]
    labels = [label for label, _ in charted]
    return charts.chart(labels, series, fmt=lambda v: f"{v:.3g}", title=f"{metric} over runs")


def _plottable(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _plottable_or_none(value: Any) -> float | None:
    return float(value) if _plottable(value) else None


def benchmarks(merchant: Merchant) -> list[Benchmark]:
    grouped: dict[str, list[Run]] = {}
    for run in runs_for(merchant):
        grouped.setdefault(run.benchmark, []).append(run)
    out = []
    for name, runs in grouped.items():
        tables, facts = tables_of(runs[0].data)
        out.append(Benchmark(name, runs, tables, facts, history_chart(runs)))
    return out


@merchant_view()
def quality(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    return render_panel(
        request,
        "quality.html",
        "quality",
        {"benchmarks": benchmarks(merchant), "bench_dir": bench_dir()},
    )


@merchant_view()
def plot(request: HttpRequest, merchant: Merchant, name: str) -> FileResponse:
    """A run's PNG, only if it belongs to a run this merchant may see."""
    visible = {run.plot for run in runs_for(merchant) if run.plot}
    if name not in visible:
        raise Http404("no such plot")
    return FileResponse((bench_dir() / name).open("rb"), content_type="image/png")
