"""JSON endpoints: ``GET /api/search`` and ``GET /healthz``.

Every error is a JSON object ``{"error": "..."}`` with a 4xx status so that API clients (the
traffic simulator, the console) never have to parse an HTML error page.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse

import ranking
from catalog.models import Merchant

logger = logging.getLogger(__name__)

DEFAULT_K = 10
TRUE_VALUES = {"1", "true", "yes", "on"}


class BadRequest(Exception):
    def __init__(self, message: str, **extra) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


def _error(message: str, status: int = 400, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _method_not_allowed(request: HttpRequest) -> JsonResponse:
    response = _error(f"method {request.method} not allowed; use GET", status=405)
    response["Allow"] = "GET, HEAD"
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
    if not Merchant.objects.filter(slug=slug).exists():
        valid = list(Merchant.objects.order_by("slug").values_list("slug", flat=True))
        raise BadRequest(
            f"unknown merchant {slug[:100]!r}; valid merchants: {', '.join(valid) or '(none)'}",
            valid_merchants=valid,
        )
    return slug


def search(request: HttpRequest) -> JsonResponse:
    """``GET /api/search?q=&k=&merchant=&category=&page=[&debug=1]``."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed(request)
    try:
        query = _query_param(request)
        k = _int_param(request, "k", DEFAULT_K, 1, settings.SEARCH_MAX_K)
        page = _int_param(request, "page", 1, 1, None)
        merchant = _merchant_param(request)
    except BadRequest as exc:
        return _error(exc.message, **exc.extra)
    category = request.GET.get("category", "").strip().strip("/") or None
    debug = request.GET.get("debug", "").strip().lower() in TRUE_VALUES

    try:
        response = ranking.search(
            query,
            k=k,
            merchant=merchant,
            category=category,
            offset=(page - 1) * k,
            debug=debug,
        )
    except ranking.SearchQueryError as exc:
        return _error(str(exc) or "invalid query")

    data = response.to_json()
    data["k"] = k
    data["page"] = page
    result = JsonResponse(data)
    result["X-Request-ID"] = response.request_id
    return result


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
