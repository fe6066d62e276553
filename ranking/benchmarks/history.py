"""Every benchmark run is kept in ``<SEARCH_DATA_DIR>/bench/`` so that the merchant console's
search-quality panel (``web/console/views/quality.py``) shows the latest results with their
date and model version, without anyone copying JSON around.

A record is ``<benchmark>-<YYYYmmddTHHMMSSffffffZ>.json``: the benchmark's result object (what
its ``run()`` returned, the same dict it writes with ``--json``) plus ``benchmark``,
``created`` (ISO-8601) and ``options``. A result that names a PNG under ``plot`` gets a copy
beside the record (same stem, ``.png``), which the console serves.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings


def bench_dir() -> Path:
    return Path(settings.DATA_DIR) / "bench"


def record(name: str, options: dict[str, Any], result: dict[str, Any]) -> Path:
    """Store one run; file names sort by time within a benchmark, so no index is needed."""
    created = datetime.now(UTC)
    directory = bench_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{created:%Y%m%dT%H%M%S%fZ}.json"
    body = {
        **result,
        "benchmark": name,
        "created": created.isoformat(),
        "options": {key: _plain(value) for key, value in sorted(options.items())},
    }
    path.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
    plot = Path(str(result.get("plot") or ""))
    if plot.suffix == ".png" and plot.is_file():
        shutil.copyfile(plot, path.with_suffix(".png"))
    return path


def latest(name: str) -> dict[str, Any] | None:
    """The newest stored run of benchmark ``name``, or None if it never ran here."""
    for path in sorted(bench_dir().glob(f"{name}-*.json"), reverse=True):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a run being written or a damaged file: fall back to the previous one
    return None


def _plain(value: Any) -> Any:
    """Options hold Paths and other objects; keep JSON-native values, stringify the rest."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
