"""JSON endpoint ``GET /api/search`` (``/healthz`` is in :mod:`web.views.health`).

Every error is a JSON object ``{"error": "..."}`` with a 4xx status so that API clients (the
traffic simulator, the console) never have to parse an HTML error page.

A served search records an impression (see :mod:`web.tracking`) under the session the
client names with ``?session_id=`` (echoed in ``X-Session-ID``), so that its later clicks,
cart adds and purchases sent to ``POST /api/events`` can be tied to what it was shown.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse

import ranking
from catalog.models import Merchant
from ranking import catalog_cache
from web import tracking

logger = logging.getLogger(__name__)

DEFAULT_K = 10
TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off"}


class BadRequest(Exception):
    def __init__(self, message: str, **extra) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


def json_error(message: str, status: int = 400, **extra) -> JsonResponse:
    """The API's error answer: ``{"error": message, ...extra}``."""
    return JsonResponse({"error": message, **extra}, status=status)


def method_not_allowed(request: HttpRequest, allowed: str = "GET") -> JsonResponse:
    response = json_error(f"method {request.method} not allowed; use {allowed}", status=405)
    response["Allow"] = "GET, HEAD" if allowed == "GET" else allowed
    return response


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.GET.get(name, "").strip()
    if raw == "":
        return default
    bound = f"between {low} and {high}" if high is not None else f">= {low}"
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer {bound}, got {raw[:50]!r}") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"'{name}' must be an integer {bound}, got {value}")
    return value


def _query_param(request: HttpRequest) -> str:
    query = request.GET.get("q", "")
    max_chars = settings.SEARCH_MAX_QUERY_CHARS
    if not query.strip():
        raise BadRequest("query parameter 'q' is required and must not be empty")
    if len(query) > max_chars:
        raise BadRequest(
            f"query is too long: {len(query)} characters, the maximum is {max_chars}",
            max_query_chars=max_chars,
        )
    return query


def _merchant_param(request: HttpRequest) -> str | None:
    slug = request.GET.get("merchant", "").strip()
    if not slug:
        return None
    if not catalog_cache.catalog.merchant_exists(slug):
        valid = list(Merchant.objects.order_by("slug").values_list("slug", flat=True))
        raise BadRequest(
            f"unknown merchant {slug[:100]!r}; valid merchants: {', '.join(valid) or '(none)'}",
            valid_merchants=valid,
        )
    return slug


def _session_param(request: HttpRequest) -> str:
    raw = request.GET.get("session_id")
    if raw is not None and not tracking.is_identifier(raw):
        raise BadRequest(
            "'session_id' must be 1-128 characters of letters, digits and . _ : -, "
            f"got {raw[:50]!r}"
        )
    return tracking.api_session_id(request)


def search(request: HttpRequest) -> JsonResponse:
    """``GET /api/search?q=&k=&merchant=&category=&page=[&debug=1][&session_id=][&pipeline=]
    [&track=0]``.

    ``track=0`` skips the server-side impression, for clients that post their own to
    ``/api/events`` (the traffic simulator, a front end with its own analytics) and would
    otherwise count every page twice."""
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed(request)
    try:
        query = _query_param(request)
        k = _int_param(request, "k", DEFAULT_K, 1, settings.SEARCH_MAX_K)
        page = _int_param(request, "page", 1, 1, None)
        merchant = _merchant_param(request)
        session_id = _session_param(request)
    except BadRequest as exc:
        return json_error(exc.message, **exc.extra)
    category = request.GET.get("category", "").strip().strip("/") or None
    debug = request.GET.get("debug", "").strip().lower() in TRUE_VALUES
    pipeline = request.GET.get("pipeline", "").strip() or "default"  # bm25, hybrid, ...

    try:
        response = ranking.search(
            query,
            k=k,
            merchant=merchant,
            category=category,
            offset=(page - 1) * k,
            debug=debug,
            pipeline=pipeline,
        )
    except ranking.SearchQueryError as exc:
        return json_error(str(exc) or "invalid query")

    data = response.to_json()
    data["k"] = k
    data["page"] = page
    data["session_id"] = session_id
    result = JsonResponse(data)
    result["X-Request-ID"] = response.request_id
    result["X-Session-ID"] = session_id
    track = request.GET.get("track", "1").strip().lower() not in FALSE_VALUES
    if request.method == "GET" and track:  # HEAD shows the shopper nothing
        tracking.record_impressions(response, session_id, (page - 1) * k, merchant)
    return result
