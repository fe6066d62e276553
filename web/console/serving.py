"""What the serving generative model knows: which docids it was trained on.

A product imported after the serving model was trained has a docid the model cannot decode yet
("not learned"): generative recall misses it until the next base model learns it, and only the
inverted/dense paths find it. The console shows this per product and per category.

It follows the same rules as serving (``ranking.generative``) without loading a model (no torch
in a console request): the merchant's active ``base`` version holds the docid list it was
trained on (``docids.json``, written by ``learners.generative.model.save_version``); an active
``adapter`` serves on top of it when it was trained on that base (its ``metrics["base"]``, as
``learners.online.adapter.chain_base`` reads it) and decodes the same docids. Once serving
exposes a loaded model's docid set without loading one on demand, read it from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from catalog.models import Merchant
from learners import registry
from learners.models import ModelVersion

#: ``learners.generative.model.DOCIDS_FILE``, repeated so the web process need not import torch
#: to read a JSON list (a test keeps the two equal).
DOCIDS_FILE = "docids.json"


@dataclass(frozen=True)
class ServingModel:
    base: ModelVersion
    adapter: ModelVersion | None
    docids: frozenset[str]

    @property
    def version(self) -> ModelVersion:
        """The version serving search: the adapter when one is layered on the base."""
        return self.adapter or self.base

    def learned(self, path: str | None) -> bool:
        return path is not None and path in self.docids


def serving_model(merchant: Merchant) -> ServingModel | None:
    """The merchant's serving generative model with its docid set; None when no base model is
    active or its directory has no docid list."""
    base = registry.active("base", merchant)
    if base is None:
        return None
    docids = _docids(base.directory / DOCIDS_FILE)
    if docids is None:
        return None
    adapter = registry.active("adapter", merchant)
    if adapter is not None and adapter.metrics.get("base") != base.name:
        adapter = None  # trained on an older base: serving falls back to the base
    return ServingModel(base, adapter, docids)


def _docids(path: Path) -> frozenset[str] | None:
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read_docids(str(path), stamp)


@lru_cache(maxsize=16)
def _read_docids(path: str, stamp: int) -> frozenset[str]:
    """Cached per file version (``stamp``): a catalog's list is read once, not per page."""
    return frozenset(json.loads(Path(path).read_text(encoding="utf-8")))
