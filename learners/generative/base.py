"""Train a merchant's base model into the registry: the code behind ``manage.py
train_base_model`` and the monthly Celery rebuild.

One call trains (or resumes) a version directory under the registry's models directory,
registers it with its metrics and activates it only if it passes the memorisation criterion
(title → own docid exact match ≥ ``GENERATIVE_MIN_EXACT_MATCH``, default 0.9): a model that has
not memorised the catalog decodes the wrong products, so it stays a ``candidate`` with the reason
in ``decision`` and serving keeps the previous version (or bm25 alone).

Resuming: a version directory that holds a checkpoint but is not registered is an interrupted
run; ``resume=True`` continues the newest such directory of the merchant (same tokenizer, same
data position), so a killed worker or a Ctrl-C'd command loses at most one checkpoint interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.models import Merchant
from learners import conf, registry
from learners.generative.data import LeafTeacher, ProductDoc, load_products
from learners.generative.model import ModelConfig
from learners.generative.train import CHECKPOINT_DIR, STATE_FILE, TrainConfig, train
from learners.models import ModelVersion

log = logging.getLogger(__name__)


def min_exact_match() -> float:
    """The memorisation criterion for activating a base model."""
    return conf.get("GENERATIVE_MIN_EXACT_MATCH", 0.9)


def default_minutes() -> float:
    """Training budget when none is given (``GENERATIVE_TRAIN_MINUTES``)."""
    return conf.get("GENERATIVE_TRAIN_MINUTES", 20.0)


@dataclass
class BaseTrainingReport:
    merchant: str
    version: str
    status: str
    resumed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "merchant": self.merchant,
            "version": self.version,
            "status": self.status,
            "resumed": self.resumed,
            "metrics": self.metrics,
            "decision": self.decision,
        }


def train_base_model(
    merchant: Merchant | str,
    *,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    activate: bool = True,
    bootstrap: bool = False,
) -> BaseTrainingReport:
    """Train a base model on ``merchant``'s products with docids and register it.

    ``bootstrap`` (the run command's first start) activates the model even below the
    memorisation bar when the merchant has no serving base at all: the gate exists to keep a
    worse model from replacing a better one, and an undertrained model only adds candidates
    to the fusion next to bm25, while no model adds nothing.
    """
    shop = merchant if isinstance(merchant, Merchant) else Merchant.objects.get(slug=merchant)
    products = load_products(shop.slug)
    if not products:
        raise ValueError(f"merchant {shop.slug!r} has no active products with docids")
    unfinished = interrupted_runs(shop) if resume else []
    if unfinished:
        name, path = unfinished[0].name, unfinished[0]
        log.info("resuming %s", name)
    else:
        name, path = registry.new_version_dir("base", shop)
    metadata = train(
        products,
        path,
        model_config=model_config,
        config=config or TrainConfig(max_minutes=default_minutes()),
        merchant=shop.slug,
        teacher=lexical_teacher(shop.slug, products),
    )
    metrics = summarise(metadata)
    version = registry.register("base", name, path, merchant=shop, metrics=metrics)
    decision = gate(metrics)
    if bootstrap and not decision["passed"] and registry.active("base", shop) is None:
        decision = {
            "passed": True,
            "bootstrap": True,
            "reason": f"first model of {shop.slug}, served although {decision['reason']}",
        }
    version.decision = decision
    version.save(update_fields=["decision"])
    if decision["passed"] and activate:
        version = registry.activate(version)
    return BaseTrainingReport(
        shop.slug, version.name, version.status, bool(unfinished), metrics, decision
    )


def lexical_teacher(merchant: str, products: list[ProductDoc]) -> LeafTeacher | None:
    """The merchant's BM25 index as the teacher of group queries' leaves (None while empty),
    read the way hybrid search reads it: the products the query asks for first
    (``ranking.intent``), so "cell phones cases" teaches cases, not phones.

    Without an index the group queries train their docid prefix only, as before teachers.
    """
    from ranking import intent
    from ranking.inverted import get_index, query_terms
    from ranking.types import Candidate

    index = get_index(merchant)
    if index.num_docs() == 0:
        log.warning("no inverted index for %s: group pseudo-queries train prefixes only", merchant)
        return None
    by_id = {p.product_id: p for p in products}
    window = intent.depth()

    def rank(text: str, depth: int) -> list[str]:
        hits, _ = index.search(query_terms(text), limit=max(depth, window), merchant=merchant)
        found = [
            Candidate(h.product_id, h.score, "bm25", r)
            for r, h in enumerate(hits, start=1)
            if h.product_id in by_id
        ]
        ranked, _ = intent.read_query(text, found, by_id, window)
        return [by_id[c.product_id].docid for c in ranked[:depth]]

    return rank


def gate(metrics: dict[str, Any]) -> dict[str, Any]:
    """The activation decision for a base model, with the reason in words."""
    exact, need = float(metrics.get("memorisation_exact_match", 0.0)), min_exact_match()
    if exact >= need:
        return {"passed": True, "reason": f"memorised {exact:.1%} of titles (≥ {need:.0%})"}
    return {
        "passed": False,
        "reason": f"memorised only {exact:.1%} of titles (< {need:.0%}); serving keeps the "
        "previous version -- train again with a larger --max-minutes / --epochs budget",
    }


def summarise(metadata: dict[str, Any]) -> dict[str, Any]:
    """The registry metrics of a trained version: memorisation, size and training cost."""
    training = metadata.get("training", {})
    return {
        **metadata.get("metrics", {}),
        "products": metadata.get("products"),
        "parameters": metadata.get("parameters"),
        "epochs": training.get("epoch"),
        "steps": training.get("step"),
        "train_seconds": round(float(training.get("train_seconds", 0.0)), 1),
        "samples_per_second": round(float(training.get("samples_per_second", 0.0)), 1),
    }


def interrupted_runs(merchant: Merchant) -> list[Path]:
    """Unregistered version directories of ``merchant`` holding a checkpoint, newest first."""
    root = registry.models_dir()
    if not root.is_dir():
        return []
    registered = set(ModelVersion.objects.values_list("name", flat=True))
    found = [
        path
        for path in root.glob(f"base-{merchant.slug}-*")
        if path.name not in registered and (path / CHECKPOINT_DIR / STATE_FILE).exists()
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)
