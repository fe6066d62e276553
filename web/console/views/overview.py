"""The store's home page: the numbers a merchant checks first, each linking to its panel."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from catalog.models import Docid, FeedUpload, Merchant, Product
from web.console.access import merchant_view
from web.console.serving import serving_model
from web.console.views import render_panel
from web.console.views.analytics import Window, activity_charts, summary

RECENT_FEEDS = 5


@merchant_view()
def overview(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    products = Product.objects.filter(merchant=merchant)
    paths = Docid.objects.filter(merchant=merchant).values_list("path", flat=True)
    model = serving_model(merchant)
    learned = sum(1 for p in paths.iterator(2000) if model.learned(p)) if model else 0
    window = Window.parse("24h")
    volume, _ = activity_charts(merchant, window)
    return render_panel(
        request,
        "overview.html",
        "overview",
        {
            "products": products.count(),
            "active_products": products.filter(active=True).count(),
            "docids": paths.count(),
            "model": model,
            "learned": learned,
            "summary": summary(merchant, window),
            "volume_chart": volume,
            "feeds": FeedUpload.objects.filter(merchant=merchant)[:RECENT_FEEDS],
        },
    )
