"""Hourly event aggregates: what was searched, shown, clicked, carted and bought.

``aggregate_hour(hour)`` reads one hour of the event store and rewrites that hour's
:class:`~learners.models.HourlyAggregate` rows (all merchants, or one), so running it twice --
or again after late events arrived -- gives the same table as running it once.

Attribution: an impression names the query and the shown skus. A click carries the impression's
``request_id``; carts and purchases carry it when they happened from a result list, otherwise
they are attributed to the session's last click on the same sku within
``ATTRIBUTION_WINDOW``. Impressions and clicks of earlier hours are looked up, so a purchase at
10:02 after a search at 09:58 still counts for the query. Per-sku totals count every event,
attributable or not.

``ctr_features`` sums a window of hours into smoothed rates for the ranker.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from learners.models import Event, HourlyAggregate

HOUR = timedelta(hours=1)
#: How far back a cart/purchase without request_id looks for the session's click.
ATTRIBUTION_WINDOW = timedelta(hours=24)
LOOKUP_CHUNK = 500

QUERY_SKU, SKU, QUERY = "query_sku", "sku", "query"
#: Event columns the aggregation reads.
_FIELDS = (
    "type",
    "merchant",
    "session_id",
    "ts",
    "request_id",
    "query",
    "sku",
    "quantity",
    "price",
    "payload",
)


def normalize_query(query: str) -> str:
    """Case- and whitespace-insensitive key, so "iPhone  case" and "iphone case" aggregate."""
    return " ".join(query.lower().split())


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour containing ``moment`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def previous_hour(now: datetime | None = None) -> datetime:
    """The last complete hour: what the hourly job aggregates."""
    return hour_floor(now or datetime.now(UTC)) - HOUR


def position_weight(position: int) -> float:
    """Examination probability model of the DCG discount: 1 at the top, 0.5 at position 3."""
    return 1.0 / math.log2(position + 1)


@dataclass
class Counts:
    impressions: int = 0
    examination: float = 0.0
    clicks: int = 0
    add_to_carts: int = 0
    purchases: int = 0
    units: int = 0
    revenue: Decimal = Decimal("0")


@dataclass(frozen=True)
class AggregateReport:
    hour: datetime
    merchant: str | None
    events: int
    rows: int

    def as_dict(self) -> dict[str, object]:
        return {
            "hour": self.hour.isoformat(),
            "merchant": self.merchant,
            "events": self.events,
            "rows": self.rows,
        }


Key = tuple[str, str, str, str]  # (merchant, level, query, sku)


class _HourBuilder:
    """Accumulates one hour's counts; attribution lookups are batched per hour."""

    def __init__(self, hour: datetime, merchant: str | None) -> None:
        self.hour = hour
        self.merchant = merchant
        self.counts: dict[Key, Counts] = defaultdict(Counts)
        self.events = 0

    def _events(self) -> list[Event]:
        qs = Event.objects.filter(ts__gte=self.hour, ts__lt=self.hour + HOUR)
        if self.merchant:
            qs = qs.filter(merchant=self.merchant)
        return list(qs.only(*_FIELDS).order_by("ts"))

    def build(self) -> dict[Key, Counts]:
        events = self._events()
        self.events = len(events)
        actions = [e for e in events if e.type != "impression"]
        clicks_by_session = _session_clicks(actions, self.hour)
        request_ids = {e.request_id for e in actions if e.request_id}
        request_ids |= {rid for pairs in clicks_by_session.values() for _, rid in pairs}
        queries = _queries_for(request_ids, self.hour)
        for event in events:
            if event.type == "impression":
                self._impression(event)
            else:
                rid = event.request_id or _last_click(clicks_by_session, event)
                self._action(event, queries.get(rid) if rid else None)
        return self.counts

    def _impression(self, event: Event) -> None:
        query = normalize_query(event.query)
        self.counts[(event.merchant, QUERY, query, "")].impressions += 1
        for item in event.payload.get("items", []):
            weight = position_weight(item["position"])
            for key in (
                (event.merchant, QUERY_SKU, query, item["sku"]),
                (event.merchant, SKU, "", item["sku"]),
            ):
                self.counts[key].impressions += 1
                self.counts[key].examination += weight

    def _action(self, event: Event, query: str | None) -> None:
        keys = [(event.merchant, SKU, "", event.sku)]
        if query is not None:
            keys += [
                (event.merchant, QUERY_SKU, query, event.sku),
                (event.merchant, QUERY, query, ""),
            ]
        for key in keys:
            _add_action(self.counts[key], event)


def _add_action(counts: Counts, event: Event) -> None:
    if event.type == "click":
        counts.clicks += 1
    elif event.type == "add_to_cart":
        counts.add_to_carts += 1
    elif event.type == "purchase":
        counts.purchases += 1
        counts.units += event.quantity or 0
        counts.revenue += (event.price or Decimal("0")) * (event.quantity or 0)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), LOOKUP_CHUNK):
        yield items[start : start + LOOKUP_CHUNK]


def _queries_for(request_ids: set[str], hour: datetime) -> dict[str, str]:
    """request_id -> normalised query of its impression (this hour or the window before)."""
    found: dict[str, str] = {}
    since = hour - ATTRIBUTION_WINDOW
    for chunk in _chunks(sorted(request_ids)):
        rows = Event.objects.filter(
            type="impression", request_id__in=chunk, ts__gte=since, ts__lt=hour + HOUR
        ).values_list("request_id", "query")
        found.update((rid, normalize_query(q)) for rid, q in rows)
    return found


def _session_clicks(
    actions: list[Event], hour: datetime
) -> dict[tuple[str, str], list[tuple[datetime, str]]]:
    """(session, sku) -> [(ts, request_id)] of clicks, for carts/purchases without request_id."""
    needed = {(e.session_id, e.sku) for e in actions if e.type != "click" and not e.request_id}
    clicks: dict[tuple[str, str], list[tuple[datetime, str]]] = defaultdict(list)
    sessions = sorted({session for session, _ in needed})
    for chunk in _chunks(sessions):
        rows = Event.objects.filter(
            type="click",
            session_id__in=chunk,
            ts__gte=hour - ATTRIBUTION_WINDOW,
            ts__lt=hour + HOUR,
        ).values_list("session_id", "sku", "ts", "request_id")
        for session, sku, ts, rid in rows:
            if (session, sku) in needed:
                clicks[(session, sku)].append((ts, rid))
    for pairs in clicks.values():
        pairs.sort()
    return clicks


def _last_click(
    clicks: dict[tuple[str, str], list[tuple[datetime, str]]], event: Event
) -> str | None:
    before = [rid for ts, rid in clicks.get((event.session_id, event.sku), []) if ts <= event.ts]
    return before[-1] if before else None


def _compute(hour: datetime, merchant: str | None) -> tuple[list[HourlyAggregate], int]:
    builder = _HourBuilder(hour, merchant)
    counts = builder.build()
    rows = [
        HourlyAggregate(hour=hour, merchant=m, level=level, query=query, sku=sku, **vars(c))
        for (m, level, query, sku), c in counts.items()
    ]
    return rows, builder.events


def compute_hour(hour: datetime, merchant: str | None = None) -> list[HourlyAggregate]:
    """The (unsaved) aggregate rows of ``hour``; see the module docstring."""
    return _compute(hour_floor(hour), merchant)[0]


def aggregate_hour(hour: datetime, merchant: str | None = None) -> AggregateReport:
    """Recompute and store ``hour``'s aggregates, replacing earlier ones (idempotent)."""
    hour = hour_floor(hour)
    rows, events = _compute(hour, merchant)
    with transaction.atomic():
        stale = HourlyAggregate.objects.filter(hour=hour)
        if merchant:
            stale = stale.filter(merchant=merchant)
        stale.delete()
        HourlyAggregate.objects.bulk_create(rows, batch_size=LOOKUP_CHUNK)
    return AggregateReport(hour=hour, merchant=merchant, events=events, rows=len(rows))


# -- features ----------------------------------------------------------------------------------


def smoothed_rate(successes: float, trials: float, prior_rate: float, strength: float) -> float:
    """Beta-prior (additive) smoothing: a sku shown 3 times and clicked once is not a 33% CTR;
    with no data the rate is the prior, with a lot of data it is the observed rate."""
    return (successes + prior_rate * strength) / (trials + strength)


@dataclass(frozen=True)
class CtrFeature:
    impressions: int
    clicks: int
    purchases: int
    ctr: float  #: smoothed clicks / impressions
    coec: float  #: smoothed clicks / position-weighted impressions (position-debiased)
    purchase_rate: float  #: smoothed purchases / impressions


def ctr_features(
    merchant: str,
    since: datetime,
    until: datetime | None = None,
    *,
    level: str = QUERY_SKU,
    strength: float = 20.0,
) -> dict[tuple[str, str], CtrFeature]:
    """``{(query, sku): CtrFeature}`` over the hours in ``[since, until)``.

    The prior is the level's own average over the window, so features of a quiet store and a
    busy one are on comparable scales. For ``level="sku"`` the query is ``""``.
    """
    qs = HourlyAggregate.objects.filter(merchant=merchant, level=level, hour__gte=since)
    if until is not None:
        qs = qs.filter(hour__lt=until)
    sums = list(
        qs.values("query", "sku").annotate(
            i=Sum("impressions"), e=Sum("examination"), c=Sum("clicks"), p=Sum("purchases")
        )
    )
    total_i = sum(r["i"] for r in sums) or 1
    total_e = sum(r["e"] for r in sums) or 1.0
    prior_ctr = sum(r["c"] for r in sums) / total_i
    prior_coec = sum(r["c"] for r in sums) / total_e
    prior_pr = sum(r["p"] for r in sums) / total_i
    return {
        (r["query"], r["sku"]): CtrFeature(
            impressions=r["i"],
            clicks=r["c"],
            purchases=r["p"],
            ctr=smoothed_rate(r["c"], r["i"], prior_ctr, strength),
            coec=smoothed_rate(r["c"], r["e"], prior_coec, strength),
            purchase_rate=smoothed_rate(r["p"], r["i"], prior_pr, strength),
        )
        for r in sums
    }
