"""Shopper-facing pages: the search page (with store landing and category browsing) and the
product detail page.

Three modes share ``/``:

* ``?q=...`` — a search through ``ranking.search()``, with category facets and pagination;
* ``?category=path`` without a query — browse a category straight from the catalog;
* neither — the store's landing page: top categories and popular products.

A search page records an impression of the results it shows, and its result links go through
the click-through redirect (``web.views.events.click_through``), which records the click and
lands on the product page with ``?rid=`` so that the cart can credit the search.

All product text goes through Django's auto-escaping; nothing here marks product data safe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

import ranking
from catalog.models import Category, Docid, Merchant, Product
from ranking.types import SearchResponse
from web.tracking import is_identifier, record_impressions, tracks_session
from web.views.cart import MAX_LINE_QUANTITY
from web.views.events import click_url

PAGE_SIZE = 20
TOP_CATEGORIES = 12
POPULAR_PRODUCTS = 10
PAGE_WINDOW = 2  # page links shown on each side of the current page
BREADCRUMB_SEPARATOR = " > "


@dataclass
class Card:
    """What a product card (search result, browse or popular product) shows."""

    title: str
    brand: str
    price: Decimal | None
    url: str
    image_url: str
    crumbs: list[str] = field(default_factory=list)
    sku: str = ""
    #: the link goes through the click recorder: crawlers must not follow it (fake clicks)
    tracked: bool = False


@dataclass
class CategoryLink:
    path: str
    name: str
    count: int
    depth: int = 0
    parent: str = ""  # ancestors' names, for a facet whose leaf name alone is ambiguous
    children: list[CategoryLink] = field(default_factory=list)


class CategoryIndex:
    """A merchant's category tree in memory, for breadcrumbs and counts without N+1 queries."""

    def __init__(self, merchant: Merchant) -> None:
        self.by_id: dict[int, Category] = {}
        self.by_path: dict[str, Category] = {}
        for category in Category.objects.filter(merchant=merchant).only(
            "id", "parent_id", "name", "slug", "path", "depth"
        ):
            self.by_id[category.id] = category
            self.by_path[category.path] = category
        self._counts: dict[str, int] | None = None
        self.merchant = merchant

    def chain(self, category: Category | None) -> list[Category]:
        out: list[Category] = []
        seen: set[int] = set()
        while category is not None and category.id not in seen:
            seen.add(category.id)
            out.append(category)
            category = self.by_id.get(category.parent_id) if category.parent_id else None
        return list(reversed(out))

    def names(self, category_id: int | None) -> list[str]:
        return [c.name for c in self.chain(self.by_id.get(category_id))] if category_id else []

    def display_name(self, path: str) -> str:
        category = self.by_path.get(path)
        if category is None:
            return path
        return " › ".join(c.name for c in self.chain(category))

    def subtree_counts(self) -> dict[str, int]:
        """Active products per category path, each count including all descendants."""
        if self._counts is None:
            counts: dict[str, int] = {}
            rows = (
                Product.objects.filter(merchant=self.merchant, active=True)
                .exclude(category=None)
                .values("category__path")
                .annotate(n=Count("id"))
            )
            for row in rows:
                slugs = row["category__path"].split(Category.SEPARATOR)
                for i in range(1, len(slugs) + 1):
                    prefix = Category.SEPARATOR.join(slugs[:i])
                    counts[prefix] = counts.get(prefix, 0) + row["n"]
            self._counts = counts
        return self._counts

    def children_links(
        self, parent: Category | None, limit: int | None = None
    ) -> list[CategoryLink]:
        counts = self.subtree_counts()
        parent_id = parent.id if parent is not None else None
        links = [
            CategoryLink(c.path, c.name, counts.get(c.path, 0), c.depth)
            for c in self.by_id.values()
            if c.parent_id == parent_id and counts.get(c.path, 0) > 0
        ]
        links.sort(key=lambda link: (-link.count, link.name.lower()))
        return links[:limit] if limit else links

    def top_categories(self, limit: int = TOP_CATEGORIES) -> list[CategoryLink]:
        roots = self.children_links(None, limit)
        for root in roots:
            root.children = self.children_links(self.by_path[root.path], 4)
        return roots


def _int_or(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _choose_merchant(request: HttpRequest, merchants: list[Merchant]) -> tuple[Merchant, bool]:
    """The merchant asked for by ``?merchant=``, else the configured default, else the first.

    Returns the merchant and whether the requested slug was unknown."""
    wanted = request.GET.get("merchant", "").strip()
    by_slug = {m.slug: m for m in merchants}
    if wanted in by_slug:
        return by_slug[wanted], False
    default = by_slug.get(getattr(settings, "SEARCH_DEFAULT_MERCHANT", "")) or merchants[0]
    return default, bool(wanted)


def _product_url(merchant_slug: str, sku: str, back: dict[str, Any] | None = None) -> str:
    url = reverse("product", kwargs={"merchant_slug": merchant_slug, "sku": sku})
    back = {k: v for k, v in (back or {}).items() if v not in (None, "", 1)}
    return f"{url}?{urlencode(back)}" if back else url


def _page_links(page: int, pages: int) -> list[int | None]:
    """Page numbers to show: first, last and a window around ``page``; None marks a gap."""
    wanted = {1, pages, *range(page - PAGE_WINDOW, page + PAGE_WINDOW + 1)}
    shown = sorted(p for p in wanted if 1 <= p <= pages)
    out: list[int | None] = []
    for number in shown:
        if out and number - (out[-1] or 0) > 1:
            out.append(None)
        out.append(number)
    return out


def _pagination(page: int, total: int) -> dict[str, Any]:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    first = (page - 1) * PAGE_SIZE + 1
    return {
        "page": page,
        "pages": pages,
        "links": _page_links(page, pages) if pages > 1 else [],
        "has_prev": page > 1,
        "has_next": page < pages,
        "prev": page - 1,
        "next": page + 1,
        "first": first,
        "past_end": total > 0 and page > pages,
    }


def _product_card(product: Product, categories: CategoryIndex, back: dict[str, Any]) -> Card:
    return Card(
        title=product.title,
        brand=product.brand,
        price=product.price,
        url=_product_url(product.merchant.slug, product.sku, back),
        image_url=product.image_url,
        crumbs=categories.names(product.category_id),
        sku=product.sku,
    )


def _popular_products(merchant: Merchant, categories: CategoryIndex, limit: int) -> list[Card]:
    products = (
        Product.objects.filter(merchant=merchant, active=True)
        .select_related("merchant")
        .order_by("-popularity", "title")[:limit]
    )
    return [_product_card(p, categories, {}) for p in products]


def _in_category(path: str) -> Q:
    return Q(category__path=path) | Q(category__path__startswith=path + Category.SEPARATOR)


def _result_cards(
    response: SearchResponse, offset: int, merchant: Merchant, back: dict[str, Any]
) -> list[Card]:
    """Cards for a page of search results (all of ``merchant``), each linking through the
    click-through redirect with its 1-based position over the whole result list."""
    return [
        Card(
            title=r.title,
            brand=r.brand,
            price=r.price,
            url=click_url(response.request_id, position, merchant.slug, r.sku, back),
            image_url=r.image_url,
            crumbs=[c for c in r.category_name.split(BREADCRUMB_SEPARATOR) if c],
            sku=r.sku,
            tracked=True,
        )
        for position, r in enumerate(response.results, start=offset + 1)
    ]


@tracks_session
def search_page(request: HttpRequest) -> HttpResponse:
    merchants = list(Merchant.objects.order_by("name"))
    if not merchants:
        return render(request, "web/empty_store.html", {"merchants": []})
    merchant, unknown_merchant = _choose_merchant(request, merchants)

    query = request.GET.get("q", "").strip()
    category_path = request.GET.get("category", "").strip().strip("/")
    page = max(1, _int_or(request.GET.get("page"), 1))
    categories = CategoryIndex(merchant)

    context: dict[str, Any] = {
        "merchants": merchants,
        "merchant": merchant,
        "unknown_merchant": unknown_merchant,
        "query": query,
        "category_path": category_path,
        "category_name": categories.display_name(category_path) if category_path else "",
        "page_size": PAGE_SIZE,
        "max_query_chars": settings.SEARCH_MAX_QUERY_CHARS,
    }
    status = 200

    if query:
        context["mode"] = "search"
        back = {"q": query, "category": category_path, "page": page}
        offset = (page - 1) * PAGE_SIZE
        try:
            response = ranking.search(
                query,
                k=PAGE_SIZE,
                merchant=merchant.slug,
                category=category_path or None,
                offset=offset,
            )
        except ranking.SearchQueryError as exc:
            context["error"] = str(exc)
            context["top_categories"] = categories.top_categories()
            return render(request, "web/search.html", context, status=400)
        record_impressions(response, request.sid, offset, merchant.slug)
        cards = _result_cards(response, offset, merchant, back)
        facets = []
        for f in response.facets:
            # Facets are leaf categories named by their full breadcrumb: show the leaf name
            # and, smaller, where it sits in the tree (two leaves may share a name).
            *parents, leaf = f.name.split(BREADCRUMB_SEPARATOR)
            facets.append(
                CategoryLink(path=f.path, name=leaf, count=f.count, parent=" › ".join(parents))
            )
        context.update(
            cards=cards,
            total=response.total,
            took_ms=response.took_ms,
            corrected_query=response.corrected_query,
            request_id=response.request_id,
            facets=facets,
            pagination=_pagination(page, response.total),
        )
        context["last"] = context["pagination"]["first"] + len(cards) - 1
        if not cards:
            context["top_categories"] = categories.top_categories()
            context["popular"] = _popular_products(merchant, categories, 4)
    elif category_path:
        context["mode"] = "browse"
        products = (
            Product.objects.filter(merchant=merchant, active=True)
            .filter(_in_category(category_path))
            .select_related("merchant")
            .order_by("-popularity", "title")
        )
        total = products.count()
        offset = (page - 1) * PAGE_SIZE
        back = {"category": category_path, "page": page}
        cards = [_product_card(p, categories, back) for p in products[offset : offset + PAGE_SIZE]]
        current = categories.by_path.get(category_path)
        context.update(
            cards=cards,
            total=total,
            facets=categories.children_links(current) if current else [],
            pagination=_pagination(page, total),
            breadcrumb=categories.chain(current),
        )
        context["last"] = context["pagination"]["first"] + len(cards) - 1
        if not cards:
            context["top_categories"] = categories.top_categories()
    else:
        context["mode"] = "landing"
        context["top_categories"] = categories.top_categories()
        context["popular"] = _popular_products(merchant, categories, POPULAR_PRODUCTS)

    return render(request, "web/search.html", context, status=status)


def _attribute_rows(attributes: Any) -> list[tuple[str, str]]:
    if not isinstance(attributes, dict):
        return []
    rows = []
    for key, value in attributes.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, bool):
            text = "Yes" if value else "No"
        else:
            text = str(value)
        label = str(key).replace("_", " ")
        rows.append((label[:1].upper() + label[1:], text))
    return rows


@tracks_session
def product_detail(request: HttpRequest, merchant_slug: str, sku: str) -> HttpResponse:
    try:
        product = Product.objects.select_related("merchant", "category").get(
            merchant__slug=merchant_slug, sku=sku, active=True
        )
    except Product.DoesNotExist:
        merchants = list(Merchant.objects.order_by("name"))
        context = {
            "merchants": merchants,
            "merchant": next((m for m in merchants if m.slug == merchant_slug), None),
            "max_query_chars": settings.SEARCH_MAX_QUERY_CHARS,
        }
        return render(request, "web/product_missing.html", context, status=404)
    merchant = product.merchant
    categories = CategoryIndex(merchant)
    try:
        docid = product.docid.path
    except Docid.DoesNotExist:
        docid = ""

    query = request.GET.get("q", "").strip()[: settings.SEARCH_MAX_QUERY_CHARS]
    rid = request.GET.get("rid", "")
    back_params = {
        "merchant": merchant.slug,
        "q": query,
        "category": request.GET.get("category", "").strip(),
        "page": max(1, _int_or(request.GET.get("page"), 1)),
    }
    back_params = {k: v for k, v in back_params.items() if v not in ("", 1)}
    context = {
        "merchants": list(Merchant.objects.order_by("name")),
        "merchant": merchant,
        "query": query,
        "product": product,
        "docid": docid,
        "breadcrumb": categories.chain(product.category),
        "attributes": _attribute_rows(product.attributes),
        "back_url": reverse("storefront") + "?" + urlencode(back_params),
        "back_label": "Back to results" if query or "category" in back_params else "Back to store",
        "canonical_url": request.build_absolute_uri(request.path),
        "request_id": rid if is_identifier(rid) else "",
        "max_line_quantity": MAX_LINE_QUANTITY,
        "max_query_chars": settings.SEARCH_MAX_QUERY_CHARS,
    }
    return render(request, "web/product.html", context)
