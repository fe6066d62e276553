"""Per-client rate limiting: a token bucket per (scope, client) kept in Django's cache.

Why a token bucket: it allows short bursts (a page that fires a few beacons at once) while
bounding the sustained rate, and needs only two numbers per client. Why the cache: it is
shared by every worker process once ``CACHES`` points at Redis or Memcached; with the default
local-memory cache each process enforces its own bucket, which still stops a runaway client.

The read-modify-write of a bucket is not atomic, so concurrent requests of one client may each
take the same token: under contention the limit is approximate (a few requests over), never
stricter than configured. That is the right trade-off for abuse protection; billing-grade
quotas would need an atomic store operation.

Usage, for any view (the limit is read per request, so a test or an operator can change it)::

    @rate_limited("events", per_minute=lambda: settings.EVENTS_RATE_PER_MIN)
    def view(request): ...
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

View = Callable[..., HttpResponse]


@dataclass(frozen=True)
class TokenBucket:
    """``per_minute`` requests a minute sustained, bursts of up to ``burst`` (default: the
    per-minute amount) for one key within ``scope``. ``per_minute <= 0`` disables the limit."""

    scope: str
    per_minute: int
    burst: int | None = None

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.per_minute)

    @property
    def refill_per_second(self) -> float:
        return self.per_minute / 60.0

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of ``key``'s bucket; return 0 if allowed, else the seconds until a
        token is available again (nothing is spent then)."""
        if self.per_minute <= 0:
            return 0.0
        now = time.time() if now is None else now
        cache_key = f"ratelimit:{self.scope}:{key}"
        tokens, updated = cache.get(cache_key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - updated) * self.refill_per_second)
        if tokens < 1.0:
            return (1.0 - tokens) / self.refill_per_second
        # keep the entry until the bucket would be full again: then it is as good as absent
        ttl = math.ceil((self.capacity - tokens + 1) / self.refill_per_second) + 1
        cache.set(cache_key, (tokens - 1.0, now), timeout=ttl)
        return 0.0


def client_ip(request: HttpRequest) -> str:
    """The address the connection came from. Behind a reverse proxy, have the proxy (or the
    WSGI server) set ``REMOTE_ADDR`` to the real client: forwarded-for headers are
    client-controlled and would let anyone pick a fresh bucket per request."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def too_many_requests(retry_after: float, per_minute: int) -> HttpResponse:
    """The default answer of a limited view: a JSON 429 with ``Retry-After`` (whole seconds)."""
    seconds = max(1, math.ceil(retry_after))
    response = JsonResponse(
        {
            "error": f"rate limit exceeded: at most {per_minute} requests per minute; "
            f"retry in {seconds} s",
            "retry_after": seconds,
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def rate_limited(
    scope: str,
    per_minute: Callable[[], int],
    *,
    key: Callable[[HttpRequest], str] = client_ip,
    on_limited: Callable[[float, int], HttpResponse] = too_many_requests,
) -> Callable[[View], View]:
    """Decorate a view so that each ``key(request)`` gets ``per_minute()`` requests a minute;
    over the limit the view is not called and ``on_limited(retry_after, per_minute)`` answers
    (an HTML view, e.g. a login form, passes its own)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def limited(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            rate = per_minute()
            wait = TokenBucket(scope, rate).take(key(request))
            if wait > 0:
                return on_limited(wait, rate)
            return view(request, *args, **kwargs)

        return limited

    return decorator
