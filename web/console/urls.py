"""URLs of the merchant console, mounted at ``/console/``. Store pages are all under
``<merchant_slug>/`` so the merchant being worked on is explicit and checked on every request."""

from django.urls import include, path

from web.console.views import analytics, auth, catalog, docids, feeds, models, overview, quality

app_name = "console"

store_patterns = [
    path("", overview.overview, name="overview"),
    path("products/", catalog.product_list, name="products"),
    path("products/new/", catalog.product_create, name="product-new"),
    path("products/<int:pk>/", catalog.product_detail, name="product"),
    path("products/<int:pk>/edit/", catalog.product_edit, name="product-edit"),
    path("products/<int:pk>/active/", catalog.product_toggle_active, name="product-active"),
    path("feeds/", feeds.feed_list, name="feeds"),
    path("feeds/<int:pk>/", feeds.feed_detail, name="feed"),
    path("feeds/<int:pk>/status.json", feeds.feed_status, name="feed-status"),
    path("feeds/<int:pk>/report.csv", feeds.feed_report, name="feed-report"),
    path("docids/", docids.docid_tree, name="docids"),
    path("models/", models.model_list, name="models"),
    path("models/<int:pk>/activate/", models.model_activate, name="model-activate"),
    path("models/<int:pk>/rollback/", models.model_rollback, name="model-rollback"),
    path("analytics/", analytics.analytics, name="analytics"),
    path("quality/", quality.quality, name="quality"),
    path("quality/plots/<str:name>", quality.plot, name="quality-plot"),
]

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("<slug:merchant_slug>/", include(store_patterns)),
]
