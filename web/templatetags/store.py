"""Template filters and tags for the storefront: prices, image URLs and the cart count."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from web.views.cart import Cart

register = template.Library()


@register.filter
def money(value) -> str:
    """``Decimal('1299.5')`` → ``$1,299.50``; empty string when there is no price."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return ""
    return f"${amount:,.2f}"


@register.filter
def image_src(value) -> str:
    """Only http(s) and site-relative image URLs are rendered; anything else is dropped."""
    url = str(value or "").strip()
    if url.startswith(("https://", "http://", "/")) and not url.startswith("//"):
        return url
    return ""


@register.simple_tag(takes_context=True)
def cart_count(context) -> int:
    """Units in the shopper's cart, for the header link (0 on pages without a session)."""
    request = context.get("request")
    session = getattr(request, "session", None)
    return Cart(session).count() if session is not None else 0
