"""Events & analytics panel: searches and engagement over time, CTR and conversion, top and
zero-result queries, top clicked and purchased products.

Time series and zero-result queries read the event store directly (live, indexed on
``(merchant, ts)``); per-query and per-product rankings read the hourly aggregates
(``learners.aggregates``), which carry query attribution for clicks and purchases and are
cheap to sum over a month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Count, F, Max, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from catalog.models import Merchant, Product
from learners.models import Event, HourlyAggregate
from web.console import charts
from web.console.access import merchant_view
from web.console.views import render_panel

#: window name -> (length, bucket); a month per hour would be 720 bars
WINDOWS = {
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
}
LABEL_FORMAT = {"24h": "%H:00", "7d": "%a %H:00", "30d": "%b %d"}
DEFAULT_WINDOW = "24h"
TOP = 10
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class Window:
    name: str
    start: datetime
    end: datetime
    bucket: str

    @classmethod
    def parse(cls, name: str | None, now: datetime | None = None) -> Window:
        name = name if name in WINDOWS else DEFAULT_WINDOW
        length, bucket = WINDOWS[name]
        now = now or timezone.now()
        if bucket == "hour":
            end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        else:
            end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        return cls(name, end - length, end, bucket)

    def buckets(self) -> list[datetime]:
        step = STEP[self.bucket]
        count = int((self.end - self.start) / step)
        return [self.start + step * i for i in range(count)]

    def label(self, moment: datetime) -> str:
        return moment.strftime(LABEL_FORMAT[self.name])


@dataclass(frozen=True)
class Summary:
    searches: int
    clicks: int
    add_to_carts: int
    purchases: int
    revenue: Decimal
    ctr: float  #: share of searches with at least one click
    conversion: float  #: share of searching sessions that purchased
    zero_result_rate: float


def events_in(merchant: Merchant, window: Window):  # -> QuerySet[Event]
    return Event.objects.filter(merchant=merchant.slug, ts__gte=window.start, ts__lt=window.end)


def summary(merchant: Merchant, window: Window) -> Summary:
    events = events_in(merchant, window)
    by_type = dict(events.values_list("type").annotate(n=Count("pk")).order_by())
    impressions = events.filter(type="impression")
    searches = by_type.get("impression", 0)
    clicked = events.filter(type="click").values("request_id").distinct().count()
    searching = impressions.values("session_id").distinct().count()
    buying = events.filter(type="purchase").values("session_id").distinct().count()
    revenue = events.filter(type="purchase").aggregate(r=Sum(F("price") * F("quantity")))["r"]
    zero = impressions.filter(payload__items=[]).count()
    return Summary(
        searches=searches,
        clicks=by_type.get("click", 0),
        add_to_carts=by_type.get("add_to_cart", 0),
        purchases=by_type.get("purchase", 0),
        revenue=revenue or Decimal("0"),
        ctr=min(1.0, clicked / searches) if searches else 0.0,
        conversion=min(1.0, buying / searching) if searching else 0.0,
        zero_result_rate=zero / searches if searches else 0.0,
    )


def series(merchant: Merchant, window: Window) -> dict[str, list[int]]:
    """Event counts per bucket and type, zero-filled so the x axis has no gaps."""
    trunc = TruncHour("ts") if window.bucket == "hour" else TruncDay("ts")
    rows = (
        events_in(merchant, window)
        .annotate(bucket=trunc)
        .values_list("bucket", "type")
        .annotate(n=Count("pk"))
        .order_by()
    )
    index = {moment: i for i, moment in enumerate(window.buckets())}
    counts = {t: [0] * len(index) for t in ("impression", "click", "add_to_cart", "purchase")}
    for bucket, kind, n in rows:
        position = index.get(bucket)
        if position is not None:
            counts[kind][position] += n
    return counts


def activity_charts(merchant: Merchant, window: Window) -> tuple[str, str]:
    """(volume chart, rate chart) for the window."""
    counts = series(merchant, window)
    labels = [window.label(b) for b in window.buckets()]
    volume = charts.chart(
        labels,
        [
            charts.Series("Searches", counts["impression"], "bar"),
            charts.Series("Clicks", counts["click"], "bar"),
            charts.Series("Add to cart", counts["add_to_cart"], "line"),
            charts.Series("Purchases", counts["purchase"], "line"),
        ],
        title="Events per " + window.bucket,
    )
    ctr = [c / s if s else None for c, s in zip(counts["click"], counts["impression"], strict=True)]
    cvr = [
        p / s if s else None for p, s in zip(counts["purchase"], counts["impression"], strict=True)
    ]
    rates = charts.chart(
        labels,
        [charts.Series("Clicks per search", ctr), charts.Series("Purchases per search", cvr)],
        fmt=lambda v: f"{v:.0%}",
        title="Click and purchase rate",
    )
    return volume, rates


def top_queries(merchant: Merchant, window: Window) -> list[dict]:
    rows = (
        HourlyAggregate.objects.filter(
            merchant=merchant.slug, level="query", hour__gte=window.start, hour__lt=window.end
        )
        .values("query")
        .annotate(searches=Sum("impressions"), clicks=Sum("clicks"), purchases=Sum("purchases"))
        .order_by("-searches", "query")[:TOP]
    )
    return [
        {**row, "ctr": row["clicks"] / row["searches"] if row["searches"] else 0.0} for row in rows
    ]


def zero_result_queries(merchant: Merchant, window: Window) -> list[dict]:
    """Searches that showed nothing, most frequent first, with a storefront link to retry."""
    rows = (
        events_in(merchant, window)
        .filter(type="impression", payload__items=[])
        .values("query")
        .annotate(searches=Count("pk"), last=Max("ts"))
        .order_by("-searches", "query")[:TOP]
    )
    storefront = reverse("storefront")
    return [
        {**row, "url": f"{storefront}?{urlencode({'merchant': merchant.slug, 'q': row['query']})}"}
        for row in rows
    ]


def top_products(merchant: Merchant, window: Window, order: str) -> list[dict]:
    """Products by ``order`` ("clicks" or "purchases") with their titles and console links."""
    rows = list(
        HourlyAggregate.objects.filter(
            merchant=merchant.slug, level="sku", hour__gte=window.start, hour__lt=window.end
        )
        .values("sku")
        .annotate(
            impressions=Sum("impressions"),
            clicks=Sum("clicks"),
            purchases=Sum("purchases"),
            revenue=Sum("revenue"),
        )
        .filter(**{f"{order}__gt": 0})
        .order_by(f"-{order}", "sku")[:TOP]
    )
    products = Product.objects.filter(merchant=merchant, sku__in=[r["sku"] for r in rows])
    by_sku = {p.sku: p for p in products.only("pk", "sku", "title")}
    peak = max((r[order] for r in rows), default=0) or 1
    return [{**r, "product": by_sku.get(r["sku"]), "share": 100 * r[order] / peak} for r in rows]


@merchant_view()
def analytics(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    window = Window.parse(request.GET.get("window"))
    volume, rates = activity_charts(merchant, window)
    return render_panel(
        request,
        "analytics.html",
        "analytics",
        {
            "window": window,
            "windows": list(WINDOWS),
            "summary": summary(merchant, window),
            "volume_chart": volume,
            "rate_chart": rates,
            "top_queries": top_queries(merchant, window),
            "zero_queries": zero_result_queries(merchant, window),
            "top_clicked": top_products(merchant, window, "clicks"),
            "top_purchased": top_products(merchant, window, "purchases"),
        },
    )
