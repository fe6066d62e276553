"""Validation and batched, idempotent upsert of feed rows."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from catalog.categories import CategoryResolver
from catalog.iterables import batched
from catalog.models import Merchant, Product

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
UPDATED_FIELDS = [
    "title",
    "brand",
    "description",
    "attributes",
    "price",
    "popularity",
    "image_url",
    "category",
    "active",
]


class FeedError(Exception):
    """The feed as a whole cannot be read (missing file, wrong format, unreadable header)."""


@dataclass
class FeedRow:
    """One product as a reader understood it, before validation.

    ``line`` is where it came from (1-based line/row number in the file) so that every
    rejection can name it.
    """

    line: int
    sku: Any
    title: Any
    brand: Any = ""
    description: Any = ""
    categories: list[str] | None = None
    price: Any = None
    popularity: Any = 0
    attributes: Any = None
    image_url: Any = ""
    active: Any = True
    #: what the reader already knows is wrong with the row (unparsable line, unknown category id)
    error: str | None = None


@dataclass
class RowError:
    source: str
    line: int
    sku: str
    reason: str

    def __str__(self) -> str:
        sku = f" sku={self.sku}" if self.sku else ""
        return f"{self.source}:{self.line}{sku}: {self.reason}"


@dataclass
class ImportReport:
    source: str
    merchant: str
    created: int = 0
    updated: int = 0
    rejected: list[RowError] = field(default_factory=list)
    aborted: bool = False  # on_error="reject" and some row was invalid: nothing was written
    product_ids: list[int] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return self.created + self.updated + len(self.rejected)

    def summary(self) -> str:
        status = "ABORTED, nothing written" if self.aborted else "ok"
        return (
            f"{self.source} → {self.merchant}: {self.created} created, {self.updated} updated, "
            f"{len(self.rejected)} rejected ({status})"
        )


@dataclass
class ValidProduct:
    line: int
    values: dict[str, Any]
    sku: str
    category_names: list[str]


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value).strip()[:limit]


def _price(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        price = Decimal(str(value).strip().lstrip("$").replace(",", ""))
    except InvalidOperation as error:
        raise ValueError(f"bad price {value!r}: not a number") from error
    if not price.is_finite() or price < 0:
        raise ValueError(f"bad price {value!r}: must be a non-negative number")
    if price >= Decimal("1e10"):
        raise ValueError(f"bad price {value!r}: too large")
    return price.quantize(Decimal("0.01"))


def _popularity(value: Any) -> float:
    if value in (None, ""):
        return 0.0
    try:
        popularity = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad popularity {value!r}: not a number") from error
    if popularity != popularity or popularity < 0:  # NaN or negative
        raise ValueError(f"bad popularity {value!r}: must be a non-negative number")
    return popularity


def _active(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"", "1", "true", "yes", "y", "active"}:
        return True
    if text in {"0", "false", "no", "n", "inactive"}:
        return False
    raise ValueError(f"bad active flag {value!r}: use true/false")


def validate(row: FeedRow) -> ValidProduct:
    """Check and normalise one row; raises ``ValueError`` with the reason to report."""
    if row.error:
        raise ValueError(row.error)
    sku = _text(row.sku, 64)
    if not sku:
        raise ValueError("missing sku")
    title = _text(row.title, 500)
    if not title:
        raise ValueError("missing title")
    attributes = row.attributes or {}
    if not isinstance(attributes, dict):
        raise ValueError("attributes must be an object of name → value")
    values = {
        "title": title,
        "brand": _text(row.brand, 200),
        "description": _text(row.description, 20_000),
        "attributes": {str(k): v for k, v in attributes.items()},
        "price": _price(row.price),
        "popularity": _popularity(row.popularity),
        "image_url": _text(row.image_url, 500),
        "active": _active(row.active),
    }
    return ValidProduct(row.line, values, sku, [c for c in (row.categories or []) if c])


def import_feed(
    merchant: Merchant,
    rows: Iterable[FeedRow],
    *,
    source: str,
    on_error: str = "skip",
    create_categories: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Upsert ``rows`` into ``merchant``'s catalog.

    Idempotent: products are keyed by (merchant, sku), so importing the same feed twice updates
    rather than duplicates. Each batch of rows is one transaction. With ``on_error="reject"`` the
    whole feed is one transaction and any invalid row rolls everything back (the report still
    lists every invalid row, so the merchant can fix them all at once).
    """
    if on_error not in {"skip", "reject"}:
        raise ValueError("on_error must be 'skip' or 'reject'")
    report = ImportReport(source=source, merchant=merchant.name)
    resolver = CategoryResolver(merchant, create=create_categories)
    if on_error == "skip":
        try:
            _import_batches(merchant, rows, resolver, report, progress)
        finally:  # a feed that breaks half-way still gets docids and indexing for what landed
            _after_import(merchant, report)
        return report
    try:
        with transaction.atomic():
            _import_batches(merchant, rows, resolver, report, progress)
            if report.rejected:
                raise _RejectFeed
    except _RejectFeed:
        report.aborted = True
        report.created = report.updated = 0
        report.product_ids = []
        return report
    _after_import(merchant, report)
    return report


class _RejectFeed(Exception):
    pass


def _import_batches(merchant, rows, resolver, report, progress) -> None:
    seen: dict[str, int] = {}
    for batch in batched(rows, BATCH_SIZE):
        valid: list[ValidProduct] = []
        for row in batch:
            try:
                product = validate(row)
            except ValueError as error:
                report.rejected.append(
                    RowError(report.source, row.line, _text(row.sku, 64), str(error))
                )
                continue
            if product.sku in seen:
                report.rejected.append(
                    RowError(
                        report.source,
                        row.line,
                        product.sku,
                        f"duplicate sku (first seen on line {seen[product.sku]})",
                    )
                )
                continue
            seen[product.sku] = row.line
            valid.append(product)
        with transaction.atomic():
            _upsert(merchant, valid, resolver, report)
        if progress:
            progress(len(batch))


def _upsert(merchant, valid: list[ValidProduct], resolver: CategoryResolver, report) -> None:
    existing = dict(
        Product.objects.filter(merchant=merchant, sku__in=[v.sku for v in valid]).values_list(
            "sku", "pk"
        )
    )
    objects = []
    for item in valid:
        category = resolver.resolve(item.category_names) if item.category_names else None
        if item.category_names and category is None:
            report.rejected.append(
                RowError(
                    report.source,
                    item.line,
                    item.sku,
                    f"unknown category {' > '.join(item.category_names)!r}",
                )
            )
            continue
        objects.append(Product(merchant=merchant, sku=item.sku, category=category, **item.values))
    Product.objects.bulk_create(
        objects,
        update_conflicts=True,
        unique_fields=["merchant", "sku"],
        update_fields=[*UPDATED_FIELDS, "updated_at"],
    )
    for obj in objects:
        if obj.sku in existing:
            report.updated += 1
        else:
            report.created += 1
    ids = dict(
        Product.objects.filter(merchant=merchant, sku__in=[o.sku for o in objects]).values_list(
            "sku", "pk"
        )
    )
    report.product_ids.extend(ids.values())


def _after_import(merchant: Merchant, report: ImportReport) -> None:
    """Give new products docids and tell the search indexes what changed."""
    from catalog import docids
    from catalog.signals import notify_products_changed

    if report.created:
        docids.assign(merchant)
    notify_products_changed(merchant.pk, report.product_ids)
