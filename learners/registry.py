"""The model registry: which trained model versions exist and which one serves.

Life cycle of a :class:`~learners.models.ModelVersion`::

    register() -> candidate --activate()--> active --(next activate)--> retired
                      |                        |                          |
                      +--reject()--> rejected  +--rollback()--> rejected  +--rollback()--> active

* training code writes a version directory (:func:`new_version_dir`), then :func:`register`\\ s
  it as a ``candidate`` with its metrics;
* a gate (or an operator) calls :func:`activate` -- the previous active version of the same
  ``(kind, merchant)`` becomes ``retired`` in the same transaction -- or :func:`reject`;
* :func:`rollback` undoes the last activation: the active version is marked ``rejected`` (so a
  second rollback goes one step further back instead of toggling) and the most recently retired
  version is re-activated.

Serving polls :func:`active` (one indexed query) and swaps models without a restart. At most one
version per ``(kind, merchant)`` is active: every change runs in a transaction that first locks
the competing rows (``select_for_update``; SQLite serialises writers instead), and partial unique
indexes make the database refuse a second active row whatever the code path.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import Merchant
from learners import conf
from learners.models import ModelVersion

KINDS = ("base", "adapter", "ranker", "encoder")
MerchantRef = Merchant | str | None


class RegistryError(Exception):
    """A registry operation that cannot be done (unknown kind, nothing to roll back to, ...)."""


def models_dir() -> Path:
    """Root of all version directories: ``SEARCH_MODELS_DIR`` or ``<DATA_DIR>/models``."""
    configured = conf.get("SEARCH_MODELS_DIR", "")
    return Path(configured) if configured else Path(settings.DATA_DIR) / "models"


def new_version_dir(kind: str, merchant: MerchantRef = None) -> tuple[str, Path]:
    """A fresh, unique version name and its (created, empty) directory under :func:`models_dir`.

    Names sort by creation time and say what they are: ``base-phone-shop-20260301T1000-3f9a``.
    """
    _check_kind(kind)
    slug = _merchant(merchant)
    owner = slug.slug if slug else "global"
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    name = f"{kind}-{owner}-{stamp}-{secrets.token_hex(2)}"
    path = models_dir() / name
    path.mkdir(parents=True, exist_ok=False)
    return name, path


def register(
    kind: str,
    name: str,
    path: Path | str,
    *,
    merchant: MerchantRef = None,
    parent: ModelVersion | None = None,
    metrics: dict[str, Any] | None = None,
    status: str = "candidate",
) -> ModelVersion:
    """Record a trained version. ``status="active"`` registers and activates in one go."""
    _check_kind(kind)
    if status not in {"candidate", "active", "rejected"}:
        raise RegistryError(f"cannot register a version as {status!r}")
    version = ModelVersion.objects.create(
        name=name,
        kind=kind,
        merchant=_merchant(merchant),
        parent=parent,
        path=_stored_path(Path(path)),
        metrics=metrics or {},
        status="candidate" if status == "active" else status,
    )
    return activate(version) if status == "active" else version


def register_successor(
    kind: str,
    name: str,
    path: Path | str,
    *,
    merchant: MerchantRef,
    metrics: dict[str, Any],
    activate: bool = True,
) -> ModelVersion:
    """Record a retrained version whose parent is the one serving now (encoders, rankers),
    active at once unless ``activate`` is False."""
    return register(
        kind,
        name,
        path,
        merchant=merchant,
        parent=active(kind, merchant),
        metrics=metrics,
        status="active" if activate else "candidate",
    )


def activate(version: ModelVersion | str) -> ModelVersion:
    """Make ``version`` the serving one of its ``(kind, merchant)``; retire the previous one."""
    with transaction.atomic():
        version = _locked(version)
        if version.status == "active":
            return version
        if version.status == "rejected":
            raise RegistryError(f"{version.name} was rejected; register a new version instead")
        now = timezone.now()
        _competitors(version).filter(status="active").update(status="retired", retired_at=now)
        version.status = "active"
        version.activated_at = now
        version.save(update_fields=["status", "activated_at"])
    return version


def active(kind: str, merchant: MerchantRef = None) -> ModelVersion | None:
    """The serving version of ``(kind, merchant)``, or None."""
    return (
        ModelVersion.objects.filter(kind=kind, merchant=_merchant(merchant), status="active")
        .select_related("merchant", "parent")
        .first()
    )


def rollback(kind: str, merchant: MerchantRef = None) -> ModelVersion:
    """Re-activate the most recently retired version; the current active one is rejected."""
    owner = _merchant(merchant)
    with transaction.atomic():
        rows = ModelVersion.objects.select_for_update().filter(kind=kind, merchant=owner)
        previous = rows.filter(status="retired").order_by("-retired_at", "-pk").first()
        if previous is None:
            raise RegistryError(f"no retired {kind} version of {owner or 'global'} to roll back to")
        current = rows.filter(status="active").first()
        if current is not None:
            _mark_rejected(current, {"reason": "rolled back", "restored": previous.name})
        previous.status = "active"
        previous.activated_at = timezone.now()
        previous.save(update_fields=["status", "activated_at"])
    return previous


def reject(version: ModelVersion | str, decision: dict[str, Any]) -> ModelVersion:
    """Mark a version as not to be served, recording why (gate result, operator note)."""
    with transaction.atomic():
        version = _locked(version)
        _mark_rejected(version, decision)
    return version


def versions(kind: str | None = None, merchant: MerchantRef = None) -> list[ModelVersion]:
    """Registered versions, newest first, optionally of one kind and/or merchant."""
    rows = ModelVersion.objects.select_related("merchant", "parent")
    if kind:
        rows = rows.filter(kind=kind)
    if merchant is not None:
        rows = rows.filter(merchant=_merchant(merchant))
    return list(rows)


def _mark_rejected(version: ModelVersion, decision: dict[str, Any]) -> None:
    was_active = version.status == "active"
    version.status = "rejected"
    version.decision = {**version.decision, **decision}
    version.retired_at = timezone.now() if was_active else version.retired_at
    version.save(update_fields=["status", "decision", "retired_at"])


def _locked(version: ModelVersion | str) -> ModelVersion:
    """Re-read ``version`` with a row lock, and lock its competitors, inside a transaction."""
    name = version if isinstance(version, str) else version.name
    row = ModelVersion.objects.select_for_update().filter(name=name).first()
    if row is None:
        raise RegistryError(f"unknown model version {name!r}")
    list(_competitors(row).select_for_update().values_list("pk", flat=True))
    return row


def _competitors(version: ModelVersion):  # -> QuerySet[ModelVersion]
    return ModelVersion.objects.filter(kind=version.kind, merchant_id=version.merchant_id).exclude(
        pk=version.pk
    )


def _merchant(merchant: MerchantRef) -> Merchant | None:
    if merchant is None or isinstance(merchant, Merchant):
        return merchant
    found = Merchant.objects.filter(slug=merchant).first()
    if found is None:
        raise RegistryError(f"unknown merchant {merchant!r}")
    return found


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise RegistryError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")


def _stored_path(path: Path) -> str:
    root = models_dir().resolve()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)
