"""URL map: the shopper-facing storefront, the JSON search API, health check and admin."""

from django.contrib import admin
from django.urls import path

from web.views import api, storefront

urlpatterns = [
    path("", storefront.search_page, name="storefront"),
    path("product/<slug:merchant_slug>/<path:sku>/", storefront.product_detail, name="product"),
    path("api/search", api.search, name="api-search"),
    path("healthz", api.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
