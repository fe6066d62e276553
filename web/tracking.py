"""What the site records about shoppers: their event session id and the server-side emitters
that the storefront, the search API and the cart call.

Server-side emitters never break shopping: :func:`emit` logs a failed publish and returns, so a
broker outage costs (spooled, later delivered) events, not pages.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from learners.events import PublishReport, publish
from ranking.types import SearchResponse

logger = logging.getLogger(__name__)

#: Cookie holding the shopper's event session id (the Kafka partition key of their events).
SID_COOKIE = "sid"
SID_MAX_AGE = 60 * 60 * 24 * 365
#: ``model_version`` of an impression served without a learned model (the schema needs one).
NO_MODEL = "none"
#: Same rule as the event schema's ``Identifier``: checked here so that a bad cookie or link
#: falls back to a fresh id instead of dead-lettering every event of the session.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

View = Callable[..., HttpResponse]


def is_identifier(value: object) -> bool:
    """Whether ``value`` is acceptable as a session or request id in an event."""
    return isinstance(value, str) and bool(_IDENTIFIER.fullmatch(value))


# -- session id ----------------------------------------------------------------------------


def tracks_session(view: View) -> View:
    """Give the view ``request.sid`` (the ``sid`` cookie, or a fresh id set on the response).

    A separate cookie rather than Django's session key: the session key changes on login and
    exists only once something is stored, while events need one stable id from the first page.
    """

    @wraps(view)
    def tracked(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        cookie = request.COOKIES.get(SID_COOKIE)
        fresh = not is_identifier(cookie)
        request.sid = uuid.uuid4().hex if fresh else cookie  # type: ignore[attr-defined]
        response = view(request, *args, **kwargs)
        if fresh:
            response.set_cookie(
                SID_COOKIE,
                request.sid,  # type: ignore[attr-defined]
                max_age=SID_MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response

    return tracked


def api_session_id(request: HttpRequest) -> str:
    """An API client's session: ``?session_id=`` (validated by the caller), else the ``sid``
    cookie, else a fresh id (the client can read it back from ``X-Session-ID``)."""
    for candidate in (request.GET.get("session_id"), request.COOKIES.get(SID_COOKIE)):
        if is_identifier(candidate):
            return str(candidate)
    return uuid.uuid4().hex


# -- emitters ------------------------------------------------------------------------------


def emit(events: Sequence[Mapping[str, Any]]) -> PublishReport | None:
    """Publish server-side events; log, never raise, when that fails (see module docstring)."""
    if not events:
        return None
    try:
        report = publish(events)
    except Exception:
        logger.exception("could not publish %d server-side event(s)", len(events))
        return None
    if not report.ok:
        logger.warning(
            "server-side events not accepted: %d rejected, %d failed; first error: %s",
            report.rejected,
            report.failed,
            report.errors[0] if report.errors else "-",
        )
    return report


def event(kind: str, session_id: str, merchant: str, **fields: Any) -> dict[str, Any]:
    """An event dict; ``publish`` fills ``event_id``, ``ts`` and ``schema_version``."""
    return {"type": kind, "session_id": session_id, "merchant": merchant, **fields}


def impressions(
    response: SearchResponse, session_id: str, offset: int, merchant: str | None
) -> list[dict[str, Any]]:
    """One impression per merchant among the results (a search across stores shows several),
    positions 1-based over the whole result list (``offset + i``), all under the response's
    request id. An empty page is still an impression when the merchant is known: a query that
    found nothing is a signal too."""
    shown: dict[str, list[dict[str, Any]]] = {merchant: []} if merchant else {}
    for position, result in enumerate(response.results, start=offset + 1):
        shown.setdefault(result.merchant, []).append({"sku": result.sku, "position": position})
    return [
        event(
            "impression",
            session_id,
            slug,
            request_id=response.request_id,
            query=response.query,
            items=items,
            model_version=response.model_version or NO_MODEL,
        )
        for slug, items in shown.items()
    ]


def record_impressions(
    response: SearchResponse, session_id: str, offset: int, merchant: str | None
) -> None:
    """Publish what ``response`` showed (after it was computed; never fails the search)."""
    emit(impressions(response, session_id, offset, merchant))
