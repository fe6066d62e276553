"""Which model version serves a merchant, following the registry without restarts.

Serving asks for the active version of a ``(kind, merchant)`` on every request; the registry is
re-read at most every ``CHECK_INTERVAL_S`` seconds per merchant and a version is loaded once, so
activating or rolling back a version reaches every worker within seconds. A swap only replaces
the cache entry: a request that already holds the loaded object finishes with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from learners import registry
from learners.models import ModelVersion

CHECK_INTERVAL_S = 2.0
T = TypeVar("T")


class ActiveModels(Generic[T]):
    """merchant slug -> (version name, loaded model) of one model kind."""

    def __init__(self, kind: str, loader: Callable[[ModelVersion, str], T]) -> None:
        self.kind = kind
        self.loader = loader
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, str | None, T | None]] = {}

    def get(self, merchant: str) -> tuple[str, T] | None:
        """(version name, model) serving ``merchant`` now, or None."""
        now = time.monotonic()
        with self.lock:
            checked, name, model = self.entries.get(merchant, (float("-inf"), None, None))
        if now - checked >= CHECK_INTERVAL_S:
            version = registry.active(self.kind, merchant)
            if version is None:
                name, model = None, None
            elif version.name != name:
                name, model = version.name, self.loader(version, merchant)
            with self.lock:
                self.entries[merchant] = (now, name, model)
        return (name, model) if name is not None and model is not None else None

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
