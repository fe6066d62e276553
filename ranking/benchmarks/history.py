"""Every benchmark run is kept under ``<SEARCH_DATA_DIR>/bench/<name>/`` so that the merchant
console can show the latest results with their date, without anyone copying JSON around.

A record is ``{"benchmark", "ran_at", "options", "result"}``; ``result`` is what the
benchmark's ``run()`` returned (the same dict it writes with ``--json``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings


def history_dir(name: str) -> Path:
    return Path(settings.DATA_DIR) / "bench" / name


def record(name: str, options: dict[str, Any], result: dict[str, Any]) -> Path:
    """Store one run; the file name sorts by time so ``latest`` needs no index."""
    ran_at = datetime.now(UTC)
    directory = history_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ran_at:%Y%m%dT%H%M%S%fZ}.json"
    body = {
        "benchmark": name,
        "ran_at": ran_at.isoformat(),
        "options": {key: _plain(value) for key, value in sorted(options.items())},
        "result": result,
    }
    path.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
    return path


def latest(name: str) -> dict[str, Any] | None:
    """The newest stored run of benchmark ``name``, or None if it never ran here."""
    for path in sorted(history_dir(name).glob("*.json"), reverse=True):
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
