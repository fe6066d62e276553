"""Merchant scoping: which merchants a console user may see, and the view decorator that
enforces it.

Scoping lives here, in querysets, rather than in templates: a view receives a ``merchant``
that the user is a member of (or a 404), and every product/feed/event query it runs is
filtered by that merchant. Staff users see every merchant and are the only ones who may
change model versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from catalog.models import Merchant, MerchantMembership

M = TypeVar("M", bound=Model)


def merchants_for(user: Any) -> QuerySet[Merchant]:
    """The merchants ``user`` may see: all for staff, their memberships' for everyone else."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Merchant.objects.none()
    if user.is_staff:
        return Merchant.objects.all()
    return Merchant.objects.filter(memberships__user=user).distinct()


def scoped(queryset: QuerySet[M], user: Any, field: str = "merchant") -> QuerySet[M]:
    """``queryset`` limited to rows whose ``field`` (a Merchant FK) the user may see."""
    return queryset.filter(**{f"{field}__in": merchants_for(user)})


def can_edit(user: Any, merchant: Merchant) -> bool:
    """Staff and editors may change a merchant's catalog and upload feeds; viewers may not."""
    if user.is_staff:
        return True
    return MerchantMembership.objects.filter(
        user=user, merchant=merchant, role=MerchantMembership.EDITOR
    ).exists()


@dataclass(frozen=True)
class Console:
    """What every console page knows about the request: the merchant being worked on, the
    other merchants the user can switch to, and what the user may do."""

    merchant: Merchant
    merchants: list[Merchant]
    can_edit: bool
    is_staff: bool


View = Callable[..., HttpResponse]


def merchant_view(*, edit: bool = False, staff: bool = False) -> Callable[[View], View]:
    """Decorate a view taking ``(request, merchant_slug, ...)``.

    The slug is looked up among the user's merchants only (404 otherwise, so a merchant's
    existence is not even confirmed to outsiders); ``edit`` requires an editor or staff and
    ``staff`` requires staff (403). The view is called with ``request.console`` set and the
    resolved ``merchant`` in place of the slug.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        @login_required
        def wrapper(request: HttpRequest, merchant_slug: str, *args, **kwargs) -> HttpResponse:
            merchants = list(merchants_for(request.user))
            merchant = get_object_or_404(merchants_for(request.user), slug=merchant_slug)
            editable = can_edit(request.user, merchant)
            if (edit and not editable) or (staff and not request.user.is_staff):
                raise PermissionDenied("your role does not allow this")
            request.console = Console(merchant, merchants, editable, request.user.is_staff)
            return view(request, merchant, *args, **kwargs)

        return wrapper

    return decorate
