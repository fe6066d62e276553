"""The JSON search API (its impressions are tested in test_events_api.py; /healthz in
test_health.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

API = "/api/search"


def test_urls_are_where_clients_expect_them():
    assert reverse("api-search") == API
    assert reverse("healthz") == "/healthz"
    assert reverse("storefront") == "/"


def test_search_json_shape(client, small_catalog):
    response = client.get(API, {"q": "iphone", "merchant": "phone-shop", "k": 5})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    data = response.json()
    for key in ("request_id", "query", "results", "took_ms", "total", "facets", "corrected_query"):
        assert key in data
    assert response["X-Session-ID"] == data["session_id"] and len(data["session_id"]) == 32
    assert data["query"] == "iphone"
    assert data["total"] == 2
    assert data["corrected_query"] is None
    assert isinstance(data["took_ms"], (int, float))
    assert response["X-Request-ID"] == data["request_id"]
    skus = {r["sku"] for r in data["results"]}
    assert skus == {"P1", "P3"}
    first = data["results"][0]
    for key in ("sku", "merchant", "title", "brand", "price", "category_path", "category_name"):
        assert key in first
    assert isinstance(first["price"], float)
    assert {f["path"] for f in data["facets"]} == {
        "cell-phones/accessories/cases",
        "cell-phones/unlocked-phones",
    }
    assert all(set(f) == {"path", "name", "count"} for f in data["facets"])


def test_merchant_filter(client, small_catalog):
    grocer = client.get(API, {"q": "apple", "merchant": "grocer"}).json()
    assert [r["sku"] for r in grocer["results"]] == ["G2"]
    assert all(r["merchant"] == "grocer" for r in grocer["results"])
    phones = client.get(API, {"q": "apple", "merchant": "phone-shop"}).json()
    assert phones["results"] and all(r["merchant"] == "phone-shop" for r in phones["results"])
    everywhere = client.get(API, {"q": "apple"}).json()
    assert {r["merchant"] for r in everywhere["results"]} == {"grocer", "phone-shop"}


def test_category_filter_and_paging(client, small_catalog):
    data = client.get(
        API, {"q": "galaxy", "merchant": "phone-shop", "category": "cell-phones/accessories"}
    ).json()
    assert [r["sku"] for r in data["results"]] == ["P2"]

    page1 = client.get(API, {"q": "galaxy", "merchant": "phone-shop", "k": 1}).json()
    page2 = client.get(API, {"q": "galaxy", "merchant": "phone-shop", "k": 1, "page": 2}).json()
    assert page1["total"] == page2["total"] == 2
    assert page1["page"] == 1 and page2["page"] == 2
    assert page1["results"][0]["sku"] != page2["results"][0]["sku"]


@pytest.mark.parametrize("q", ["", "   "])
def test_empty_query_is_400(client, small_catalog, q):
    response = client.get(API, {"q": q})
    assert response.status_code == 400
    assert "empty" in response.json()["error"]


def test_missing_query_is_400(client, small_catalog):
    response = client.get(API)
    assert response.status_code == 400
    assert "'q'" in response.json()["error"]


def test_too_long_query_is_400(client, small_catalog):
    response = client.get(API, {"q": "a" * 257})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "too long" in error and "256" in error
    assert client.get(API, {"q": "a" * 256}).status_code == 200


@pytest.mark.parametrize("k", ["abc", "0", "-1", "201", "1.5"])
def test_bad_k_is_400(client, small_catalog, k):
    response = client.get(API, {"q": "iphone", "k": k})
    assert response.status_code == 400
    assert "'k' must be an integer between 1 and 200" in response.json()["error"]


def test_k_bounds_are_accepted(client, small_catalog):
    assert client.get(API, {"q": "iphone", "k": "1"}).status_code == 200
    assert client.get(API, {"q": "iphone", "k": "200"}).status_code == 200


@pytest.mark.parametrize("page", ["0", "x"])
def test_bad_page_is_400(client, small_catalog, page):
    response = client.get(API, {"q": "iphone", "page": page})
    assert response.status_code == 400
    assert "'page'" in response.json()["error"]


def test_unknown_merchant_is_400_and_lists_valid_slugs(client, small_catalog):
    response = client.get(API, {"q": "iphone", "merchant": "nope"})
    assert response.status_code == 400
    data = response.json()
    assert "unknown merchant" in data["error"]
    assert "grocer" in data["error"] and "phone-shop" in data["error"]
    assert data["valid_merchants"] == ["grocer", "phone-shop"]


def test_post_is_405_json(client, small_catalog):
    response = client.post(API, {"q": "iphone"})
    assert response.status_code == 405
    assert "error" in response.json()
