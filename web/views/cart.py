"""The shopper's cart (in the Django session) and checkout.

Adding to the cart publishes ``add_to_cart`` and checking out publishes one ``purchase`` per
line: the signals online learning weighs highest. Each line remembers the search request the
shopper came from (``rid`` on the product page), so a purchase is credited to that search even
when other searches happened in between. There is no payment or order table: the demo store's
order is the events it emits and a confirmation page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from catalog.models import Merchant, Product
from web.tracking import emit, event, is_identifier, tracks_session

#: Most units of one product per cart line (the event schema allows far more; a shop would not).
MAX_LINE_QUANTITY = 99
CART_KEY = "cart"
ORDER_KEY = "last_order"


@dataclass
class CartLine:
    """A cart line joined with its product (price and title are always the current ones)."""

    product: Product
    quantity: int
    request_id: str | None

    @property
    def subtotal(self) -> Decimal:
        return (self.product.price or Decimal(0)) * self.quantity


class Cart:
    """Lines ``{"merchant", "sku", "quantity", "request_id"}`` stored in the session as plain
    JSON-serialisable dicts (any session backend can hold them)."""

    def __init__(self, session: SessionBase) -> None:
        self.session = session
        self.lines: list[dict[str, Any]] = list(session.get(CART_KEY, []))

    def _find(self, merchant: str, sku: str) -> dict[str, Any] | None:
        return next((x for x in self.lines if (x["merchant"], x["sku"]) == (merchant, sku)), None)

    def add(self, product: Product, quantity: int, request_id: str | None) -> int:
        """Add ``quantity`` units (capped per line); return how many were actually added."""
        line = self._find(product.merchant.slug, product.sku)
        if line is None:
            line = {"merchant": product.merchant.slug, "sku": product.sku, "quantity": 0}
            self.lines.append(line)
        added = min(quantity, MAX_LINE_QUANTITY - line["quantity"])
        line["quantity"] += added
        if request_id:  # the latest search that led here gets the credit
            line["request_id"] = request_id
        self._save()
        return added

    def set_quantity(self, merchant: str, sku: str, quantity: int) -> None:
        """Change a line's quantity; 0 removes it."""
        line = self._find(merchant, sku)
        if line is None:
            return
        if quantity <= 0:
            self.lines.remove(line)
        else:
            line["quantity"] = min(quantity, MAX_LINE_QUANTITY)
        self._save()

    def count(self) -> int:
        return sum(line["quantity"] for line in self.lines)

    def items(self) -> list[CartLine]:
        """The lines whose product can still be bought, with products loaded in one query."""
        if not self.lines:
            return []
        skus = {line["sku"] for line in self.lines}
        products = {
            (p.merchant.slug, p.sku): p
            for p in Product.objects.filter(sku__in=skus, active=True).select_related("merchant")
        }
        out = []
        for line in self.lines:
            product = products.get((line["merchant"], line["sku"]))
            if product is not None and product.price is not None:
                out.append(CartLine(product, line["quantity"], line.get("request_id")))
        return out

    def clear(self) -> None:
        self.lines = []
        self._save()

    def _save(self) -> None:
        self.session[CART_KEY] = self.lines
        self.session.modified = True


def _quantity(raw: str | None, default: int) -> int:
    try:
        return max(0, min(int(raw or default), MAX_LINE_QUANTITY))
    except ValueError:
        return default


def _page_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """What ``base.html`` needs: the store list and the store the shopper is in."""
    merchants = list(Merchant.objects.order_by("name"))
    wanted = request.GET.get("merchant") or request.session.get("merchant")
    by_slug = {m.slug: m for m in merchants}
    merchant = by_slug.get(wanted or "") or by_slug.get(settings.SEARCH_DEFAULT_MERCHANT)
    return {
        "merchants": merchants,
        "merchant": merchant or (merchants[0] if merchants else None),
        "max_query_chars": settings.SEARCH_MAX_QUERY_CHARS,
        **extra,
    }


@require_POST
@tracks_session
def add(request: HttpRequest) -> HttpResponse:
    """``POST /cart/add`` (merchant, sku, quantity, rid) from the product page's form."""
    product = (
        Product.objects.select_related("merchant")
        .filter(
            merchant__slug=request.POST.get("merchant", ""),
            sku=request.POST.get("sku", ""),
            active=True,
        )
        .exclude(price=None)
        .first()
    )
    if product is None:
        messages.error(request, "Sorry, that product can't be bought right now.")
        return redirect("cart")
    rid = request.POST.get("rid")
    request_id = rid if is_identifier(rid) else None
    added = Cart(request.session).add(
        product, _quantity(request.POST.get("quantity"), 1), request_id
    )
    if added:
        emit(
            [
                event(
                    "add_to_cart",
                    request.sid,
                    product.merchant.slug,
                    sku=product.sku,
                    quantity=added,
                    request_id=request_id,
                )
            ]
        )
        messages.success(request, f"Added {added} × “{product.title}” to your cart.")
    else:
        messages.warning(request, f"You already have the most we sell of “{product.title}”.")
    request.session["merchant"] = product.merchant.slug
    return redirect("cart")


@require_GET
@tracks_session
def cart_page(request: HttpRequest) -> HttpResponse:
    """``GET /cart/``: the lines, their quantities and the total."""
    items = Cart(request.session).items()
    context = _page_context(
        request,
        items=items,
        count=sum(line.quantity for line in items),
        total=sum((line.subtotal for line in items), Decimal(0)),
        several_stores=len({line.product.merchant_id for line in items}) > 1,
        max_quantity=MAX_LINE_QUANTITY,
    )
    return render(request, "web/cart.html", context)


@require_POST
def update(request: HttpRequest) -> HttpResponse:
    """``POST /cart/update`` (merchant, sku, quantity): change a line; quantity 0 removes it."""
    Cart(request.session).set_quantity(
        request.POST.get("merchant", ""),
        request.POST.get("sku", ""),
        _quantity(request.POST.get("quantity"), 0),
    )
    return redirect("cart")


def _purchases(sid: str, items: list[CartLine]) -> list[dict[str, Any]]:
    return [
        event(
            "purchase",
            sid,
            line.product.merchant.slug,
            sku=line.product.sku,
            quantity=line.quantity,
            price=str(line.product.price),
            request_id=line.request_id,
        )
        for line in items
    ]


@require_POST
@tracks_session
def checkout(request: HttpRequest) -> HttpResponse:
    """``POST /cart/checkout``: one ``purchase`` per line, empty the cart, confirm the order
    (post/redirect/get, so reloading the confirmation does not buy twice)."""
    cart = Cart(request.session)
    items = cart.items()
    if not items:
        messages.info(request, "Your cart is empty.")
        return redirect("cart")
    emit(_purchases(request.sid, items))
    request.session[ORDER_KEY] = {
        "number": uuid.uuid4().hex[:10].upper(),
        "placed_at": timezone.now().isoformat(),
        "lines": [
            {
                "title": line.product.title,
                "sku": line.product.sku,
                "merchant": line.product.merchant.name,
                "quantity": line.quantity,
                "price": str(line.product.price),
                "subtotal": str(line.subtotal),
            }
            for line in items
        ],
        "total": str(sum((line.subtotal for line in items), Decimal(0))),
    }
    cart.clear()
    return redirect("order-confirmation")


@require_GET
def confirmation(request: HttpRequest) -> HttpResponse:
    """``GET /cart/confirmation/``: the order just placed (from the session)."""
    order = request.session.get(ORDER_KEY)
    if not order:
        return redirect("cart")
    placed_at = parse_datetime(order["placed_at"])
    context = _page_context(request, order=order, placed_at=placed_at)
    return render(request, "web/order_confirmation.html", context)
