"""Shopper events over HTTP: the ``POST /api/events`` collector for clients (beacons, the
traffic simulator, other services) and the result click-through redirect of the storefront.

Clients of the collector are told exactly what became of each event, so they can retry; the
server-side emitters (impressions, cart events) live in :mod:`web.tracking`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from learners.events import PublishReport, publish
from learners.events.schema import MAX_BATCH_EVENTS
from web.ratelimit import rate_limited
from web.tracking import emit, event, is_identifier, tracks_session
from web.views.api import json_error, method_not_allowed

#: Largest accepted ``POST /api/events`` body; checked before the body is read or parsed.
MAX_BODY_BYTES = 1024 * 1024
#: Query parameters a result click carries over to the product page (the "back" link's state).
BACK_PARAMS = ("q", "category", "page")


# -- result clicks -------------------------------------------------------------------------


def click_url(request_id: str, position: int, merchant: str, sku: str, back: Mapping) -> str:
    """Where a search result links to: :func:`click_through`, carrying the back-link state."""
    url = reverse(
        "click",
        kwargs={
            "request_id": request_id,
            "position": position,
            "merchant_slug": merchant,
            "sku": sku,
        },
    )
    query = {k: v for k, v in back.items() if k in BACK_PARAMS and v not in (None, "", 1)}
    return f"{url}?{urlencode(query)}" if query else url


@tracks_session
def click_through(
    request: HttpRequest, request_id: str, position: int, merchant_slug: str, sku: str
) -> HttpResponse:
    """``GET /r/<request_id>/<position>/<merchant>/<sku>/``: record the click, then redirect to
    the product page with ``?rid=`` so a later add-to-cart or purchase names the search too.

    The redirect target is always this site's product page (built with ``reverse``), so the
    endpoint cannot be used as an open redirect."""
    carried = {k: request.GET[k] for k in BACK_PARAMS if request.GET.get(k)}
    if position >= 1 and is_identifier(request_id):
        click = event(
            "click", request.sid, merchant_slug, request_id=request_id, sku=sku, position=position
        )
        emit([click])
        carried["rid"] = request_id
    target = reverse("product", kwargs={"merchant_slug": merchant_slug, "sku": sku})
    return HttpResponseRedirect(f"{target}?{urlencode(carried)}" if carried else target)


# -- the collector -------------------------------------------------------------------------


class PayloadError(Exception):
    """The request body cannot be taken; ``status`` is 400 (shape) or 413 (size)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise PayloadError("Content-Length is not a number") from None


def read_events(request: HttpRequest) -> list[Any]:
    """The ``events`` list of a ``{"events": [...]}`` body; sizes are checked before parsing.

    The Content-Type is not checked: ``navigator.sendBeacon`` sends ``text/plain`` to avoid a
    CORS preflight, and JSON is JSON whatever the header says."""
    too_big = f"request body larger than {MAX_BODY_BYTES} bytes; send smaller batches"
    if _declared_length(request) > MAX_BODY_BYTES:
        raise PayloadError(too_big, 413)
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(too_big, 413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"events"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise PayloadError(f'expected a JSON object {{"events": [...]}}, got {got}')
    events = data["events"]
    if not isinstance(events, list):
        raise PayloadError(f"'events' must be a list of event objects, not {type(events).__name__}")
    if len(events) > MAX_BATCH_EVENTS:
        raise PayloadError(f"{len(events)} events in one request; at most {MAX_BATCH_EVENTS}", 413)
    return events


def report_json(report: PublishReport) -> dict[str, Any]:
    return {
        "accepted": report.accepted,
        "rejected": report.rejected,
        "spooled": report.spooled,
        "failed": report.failed,
        "errors": [
            {"index": e.index, "event_id": e.event_id, "errors": list(e.errors)}
            for e in report.errors
        ],
    }


@csrf_exempt  # a JSON API for beacons and other services; it reads no cookie-based identity
@rate_limited("events", per_minute=lambda: settings.EVENTS_RATE_PER_MIN)
def collect(request: HttpRequest) -> JsonResponse:
    """``POST /api/events`` with ``{"events": [...]}``: 202 and what became of each event.

    Invalid events are reported (and dead-lettered) without costing the valid ones; only
    events refused because the local spool is full make the answer a 503 (retry later).
    Missing ``event_id``/``ts``/``schema_version`` are filled in; a client that retries
    should send its own ``event_id`` so the event store can drop the duplicates."""
    if request.method != "POST":
        return method_not_allowed(request, "POST")
    try:
        events = read_events(request)
    except PayloadError as exc:
        return json_error(exc.message, status=exc.status)
    report = publish(events)
    data = report_json(report)
    if report.failed:
        response = json_error(
            f"{report.failed} event(s) not accepted: the event spool is full; retry later",
            status=503,
            **data,
        )
        response["Retry-After"] = "30"
        return response
    return JsonResponse(data, status=202)
