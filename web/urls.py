"""URL map: the shopper-facing storefront, the JSON search API, health check and admin."""

from django.contrib import admin
from django.urls import include, path

from web.views import api, cart, events, health, storefront

urlpatterns = [
    path("", storefront.search_page, name="storefront"),
    path("product/<slug:merchant_slug>/<path:sku>/", storefront.product_detail, name="product"),
    path("api/search", api.search, name="api-search"),
    path("api/events", events.collect, name="api-events"),
    path(
        "r/<str:request_id>/<int:position>/<slug:merchant_slug>/<path:sku>/",
        events.click_through,
        name="click",
    ),
    path("cart/", cart.cart_page, name="cart"),
    path("cart/add", cart.add, name="cart-add"),
    path("cart/update", cart.update, name="cart-update"),
    path("cart/checkout", cart.checkout, name="checkout"),
    path("cart/confirmation/", cart.confirmation, name="order-confirmation"),
    path("healthz", health.healthz, name="healthz"),
    path("console/", include("web.console.urls")),
    path("admin/", admin.site.urls),
]
