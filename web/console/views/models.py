"""Models panel: base versions with their hourly adapter chains, gate metrics and decisions.

Everyone sees the versions serving their store (their own and global ones); only staff may
promote or roll back, through the registry (``learners.registry``), which keeps "one active
version per kind and merchant" atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from catalog.models import Merchant
from learners import registry
from learners.models import ModelVersion
from web.console.access import merchant_view
from web.console.views import render_panel

#: Adapters listed under each base version; older ones are summarised by a count.
ADAPTERS_SHOWN = 48


def visible_versions(merchant: Merchant) -> QuerySet[ModelVersion]:
    """Versions that can serve ``merchant``: its own and the global ones."""
    return ModelVersion.objects.filter(Q(merchant=merchant) | Q(merchant__isnull=True))


#: The metrics a row shows at a glance, per kind (flattened names); the rest stay one click
#: away. An adapter records thirty-odd numbers (training, gate, checkpoints) and listing them
#: all made each row a screen high.
HEADLINE_METRICS = {
    "base": ("memorisation_exact_match", "epochs", "train_seconds", "products"),
    "adapter": (
        "events",
        "train_pairs",
        "holdout_pairs",
        "gate.candidate.holdout_recall",
        "gate.serving.holdout_recall",
        "training.seconds",
    ),
    "ranker": ("holdout_ndcg@10", "holdout_bm25_ndcg@10", "logged_queries", "trained_heads"),
    "encoder": ("pseudo_recall@10", "epochs", "vectors"),
}
#: What a decision says at a glance (claim bookkeeping such as owner and claimed_at waits).
HEADLINE_DECISION = ("state", "passed", "reason")
#: Without a known headline, this many metrics show before the rest fold away.
FALLBACK_SHOWN = 6


@dataclass
class VersionRow:
    """A version with its metrics and decision flattened for a table: a headline shown at
    once, the rest behind a disclosure."""

    version: ModelVersion
    metrics: list[tuple[str, str]]
    decision: list[tuple[str, str]]
    more_metrics: list[tuple[str, str]] = field(default_factory=list)
    more_decision: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class BaseChain:
    base: VersionRow
    adapters: list[VersionRow] = field(default_factory=list)
    hidden: int = 0


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``{"probe": {"recall@10": 0.41}}`` -> ``[("probe.recall@10", "0.4100")]``."""
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flatten(value, f"{name}."))
        elif isinstance(value, float):
            out.append((name, f"{value:.4f}"))
        elif isinstance(value, list | tuple):
            out.append((name, json.dumps(value)[:120]))
        else:
            out.append((name, str(value)))
    return out


def headline(
    items: list[tuple[str, str]], keys: tuple[str, ...] | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``items`` split into (shown, folded): the ``keys`` in their order, then the rest; with
    no ``keys`` (or none present) the first ``FALLBACK_SHOWN``."""
    values = dict(items)
    shown = [(k, values[k]) for k in keys or () if k in values]
    if not shown:
        return items[:FALLBACK_SHOWN], items[FALLBACK_SHOWN:]
    picked = {k for k, _ in shown}
    return shown, [(k, v) for k, v in items if k not in picked]


def _row(version: ModelVersion) -> VersionRow:
    metrics, more_metrics = headline(
        flatten(version.metrics or {}), HEADLINE_METRICS.get(version.kind)
    )
    decision, more_decision = headline(flatten(version.decision or {}), HEADLINE_DECISION)
    return VersionRow(version, metrics, decision, more_metrics, more_decision)


def _base_of(version: ModelVersion, by_pk: dict[int, ModelVersion]) -> ModelVersion | None:
    """Follow parent links from an adapter to the base version it was trained on."""
    seen: set[int] = set()
    node: ModelVersion | None = version
    while node is not None and node.pk not in seen:
        if node.kind == "base":
            return node
        seen.add(node.pk)
        node = by_pk.get(node.parent_id) if node.parent_id else None
    return None


def chains(versions: list[ModelVersion]) -> tuple[list[BaseChain], list[VersionRow]]:
    """Base versions (newest first) with their adapters, and everything that is neither a
    base nor an adapter of a known base (rankers, encoders, orphan adapters)."""
    by_pk = {v.pk: v for v in versions}
    bases = {v.pk: BaseChain(_row(v)) for v in versions if v.kind == "base"}
    others: list[VersionRow] = []
    for version in versions:  # newest first (model ordering)
        if version.kind == "base":
            continue
        base = _base_of(version, by_pk) if version.kind == "adapter" else None
        chain = bases.get(base.pk) if base else None
        if chain is None:
            others.append(_row(version))
        elif len(chain.adapters) < ADAPTERS_SHOWN:
            chain.adapters.append(_row(version))
        else:
            chain.hidden += 1
    return list(bases.values()), others


@merchant_view()
def model_list(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    versions = list(visible_versions(merchant).select_related("merchant", "parent"))
    base_chains, others = chains(versions)
    active = [v for v in versions if v.status == "active"]
    return render_panel(
        request,
        "models.html",
        "models",
        {"chains": base_chains, "others": others, "active": active},
    )


@require_POST
@merchant_view(staff=True)
def model_activate(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    version = get_object_or_404(visible_versions(merchant), pk=pk)
    try:
        registry.activate(version)
    except registry.RegistryError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{version.name} is now the active {version.kind} model.")
    return redirect("console:models", merchant_slug=merchant.slug)


@require_POST
@merchant_view(staff=True)
def model_rollback(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    """Roll back the ``(kind, owner)`` of the active version ``pk`` to its predecessor."""
    version = get_object_or_404(visible_versions(merchant), pk=pk, status="active")
    try:
        restored = registry.rollback(version.kind, version.merchant)
    except registry.RegistryError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Rolled back {version.name}; {restored.name} serves again.")
    return redirect("console:models", merchant_slug=merchant.slug)
