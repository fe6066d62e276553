"""``POST /api/events``, the impressions and clicks the storefront and the search API emit, and
the same events arriving in the event store through a real tansu broker."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import Product
from learners.events import flush
from learners.events.consumer import EventConsumer
from learners.events.schema import MAX_BATCH_EVENTS
from learners.events.topics import partition_count
from learners.models import Event
from tests.conftest import make_category
from tests.learners import factories as f
from tests.web.conftest import dead_letters, spooled_events
from web.ratelimit import TokenBucket
from web.views.events import MAX_BODY_BYTES

pytestmark = pytest.mark.django_db

EVENTS = "/api/events"


def post(client: Client, body: object, **extra) -> object:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(EVENTS, data, content_type="application/json", **extra)


# -- the collector ---------------------------------------------------------------------------


def test_url():
    assert reverse("api-events") == EVENTS


def test_mixed_batch_is_202_with_per_event_errors(client):
    good_click, good_purchase = f.click(), f.purchase()
    bad_position = {**f.click(), "position": -1}
    events = [good_click, bad_position, 42, good_purchase, {"type": "teleport"}]
    response = post(client, {"events": events})
    assert response.status_code == 202
    data = response.json()
    assert (data["accepted"], data["rejected"], data["spooled"], data["failed"]) == (2, 3, 2, 0)
    assert [e["index"] for e in data["errors"]] == [1, 2, 4]
    assert data["errors"][0] == {
        "index": 1,
        "event_id": bad_position["event_id"],
        "errors": ["position: Input should be greater than or equal to 1"],
    }
    assert data["errors"][1]["errors"] == ["event: expected an object, got int"]
    assert data["errors"][2]["errors"][0].startswith("type:")
    # the valid ones were handed on (to the spool: no broker here), the invalid dead-lettered
    assert [e["event_id"] for e in spooled_events()] == [
        good_click["event_id"],
        good_purchase["event_id"],
    ]
    assert len(dead_letters()) == 3


def test_envelope_defaults_are_filled(client):
    bare = {k: v for k, v in f.click().items() if k not in ("event_id", "ts", "schema_version")}
    assert post(client, {"events": [bare]}).json()["accepted"] == 1
    (stored,) = spooled_events()
    assert stored["event_id"] and stored["ts"] and stored["schema_version"] == 1


def test_empty_batch_is_accepted(client):
    response = post(client, {"events": []})
    assert response.status_code == 202 and response.json()["accepted"] == 0


def test_too_many_events_is_413(client):
    response = post(client, {"events": [f.click() for _ in range(MAX_BATCH_EVENTS + 1)]})
    assert response.status_code == 413
    assert f"at most {MAX_BATCH_EVENTS}" in response.json()["error"]
    assert spooled_events() == []
    assert post(client, {"events": [f.click() for _ in range(MAX_BATCH_EVENTS)]}).status_code == 202


def test_too_large_body_is_413_before_parsing(client):
    # not even JSON: the size alone decides, so a huge body is never parsed
    response = post(client, b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.json()["error"]
    # a lying Content-Length is refused without reading the body
    response = client.generic("POST", EVENTS, b"{}", CONTENT_LENGTH=str(MAX_BODY_BYTES + 1))
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"[]", 'expected a JSON object {"events": [...]}, got list'),
        (b'{"event": []}', "got ['event']"),
        (b'{"events": [], "extra": 1}', "got ['events', 'extra']"),
        (b'{"events": {"type": "click"}}', "'events' must be a list of event objects, not dict"),
        (b'{"events": null}', "not NoneType"),
    ],
)
def test_wrong_shape_is_400(client, body, message):
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_only_post(client):
    response = client.get(EVENTS)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "use POST" in response.json()["error"]


def test_no_csrf_token_needed():
    strict = Client(enforce_csrf_checks=True)
    assert post(strict, {"events": [f.click()]}).status_code == 202


def test_sendbeacon_text_plain_is_accepted(client):
    body = json.dumps({"events": [f.click()]})
    response = client.post(EVENTS, body, content_type="text/plain;charset=UTF-8")
    assert response.status_code == 202


def test_rate_limit_is_per_client_and_answers_429(client, settings):
    settings.EVENTS_RATE_PER_MIN = 3
    for _ in range(3):
        assert post(client, {"events": []}).status_code == 202
    limited = post(client, {"events": [f.click()]})
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 20  # one token refills in 60/3 s
    assert "at most 3 requests per minute" in limited.json()["error"]
    assert spooled_events() == []  # a limited request publishes nothing
    # another client has its own bucket
    assert post(client, {"events": []}, REMOTE_ADDR="10.0.0.9").status_code == 202


def test_rate_limit_zero_disables_it(client, settings):
    settings.EVENTS_RATE_PER_MIN = 0
    assert all(post(client, {"events": []}).status_code == 202 for _ in range(20))


def test_token_bucket_refills_over_time():
    bucket = TokenBucket("test-refill", per_minute=2)
    assert bucket.take("a", now=1000.0) == 0 and bucket.take("a", now=1000.0) == 0
    assert bucket.take("a", now=1000.0) == pytest.approx(30.0)  # 2/min: a token per 30 s
    assert bucket.take("a", now=1015.0) == pytest.approx(15.0)
    assert bucket.take("a", now=1030.0) == 0
    assert bucket.take("b", now=1030.0) == 0  # keys are independent


def test_full_spool_is_503(client, settings):
    settings.EVENT_SPOOL_MAX_BYTES = 2000
    response = post(client, {"events": [f.click() for _ in range(20)]})
    assert response.status_code == 503
    assert response["Retry-After"]
    data = response.json()
    assert "spool is full" in data["error"]
    assert data["failed"] > 0 and data["accepted"] == 20 - data["failed"]
    assert all(e["errors"] == ["event spool full: not accepted, retry"] for e in data["errors"])


# -- impressions and clicks ------------------------------------------------------------------


def add_chargers(merchant, count: int) -> None:
    from ranking import inverted

    chargers = make_category(merchant, ["Cell Phones", "Accessories", "Chargers"])
    for i in range(count):
        Product.objects.create(
            merchant=merchant,
            sku=f"W{i:03d}",
            title=f"Wall charger model {i}",
            category=chargers,
            price=Decimal("9.99"),
        )
    inverted.rebuild_index()


def result_links(html: str) -> list[str]:
    return re.findall(r'<h3 class="card-title"><a href="([^"]+)"', html)


def test_search_page_records_one_impression_per_page_with_global_positions(client, small_catalog):
    add_chargers(small_catalog["phones"], 25)
    first = client.get("/", {"q": "charger", "merchant": "phone-shop"})
    second = client.get("/", {"q": "charger", "merchant": "phone-shop", "page": 2})
    sid = first.cookies["sid"]
    assert sid["httponly"] and len(sid.value) == 32
    assert "sid" not in second.cookies  # set once, then reused

    one, two = spooled_events("impression")
    assert [i["position"] for i in one["items"]] == list(range(1, 21))
    assert [i["position"] for i in two["items"]] == list(range(21, 26))
    assert {i["sku"] for i in one["items"] + two["items"]} == {f"W{i:03d}" for i in range(25)}
    for impression in (one, two):
        assert impression["session_id"] == sid.value
        assert impression["merchant"] == "phone-shop"
        assert impression["query"] == "charger"
        assert impression["model_version"] == "none"
    assert one["request_id"] != two["request_id"]
    # the result links click through with the request id and the same positions
    html = second.content.decode()
    links = result_links(html)
    assert html.count('rel="nofollow"') == 2 * len(links)  # crawlers make no clicks
    assert links[0].startswith(f"/r/{two['request_id']}/21/phone-shop/")
    assert len(links) == 5 and f"/r/{two['request_id']}/25/" in links[-1]


def test_browse_and_landing_pages_record_no_impressions(client, small_catalog):
    landing = client.get("/", {"merchant": "phone-shop"}).content.decode()
    client.get("/", {"merchant": "phone-shop", "category": "cell-phones"})
    assert spooled_events() == []
    assert "/r/" not in landing and 'href="/product/phone-shop/P3/"' in landing


def test_a_search_that_finds_nothing_is_still_an_impression(client, small_catalog):
    client.get("/", {"q": "zzzqqqxxx", "merchant": "phone-shop"})
    (impression,) = spooled_events("impression")
    assert impression["items"] == [] and impression["query"] == "zzzqqqxxx"


def test_api_search_records_an_impression_for_the_named_session(client, small_catalog):
    params = {"q": "galaxy", "merchant": "phone-shop", "k": 1, "page": 2, "session_id": "sim-7"}
    response = client.get("/api/search", params)
    assert response.status_code == 200
    assert response["X-Session-ID"] == "sim-7" == response.json()["session_id"]
    (impression,) = spooled_events("impression")
    assert impression["session_id"] == "sim-7"
    assert impression["request_id"] == response.json()["request_id"]
    assert impression["items"] == [{"sku": response.json()["results"][0]["sku"], "position": 2}]


def test_api_search_across_stores_records_one_impression_per_store(client, small_catalog):
    data = client.get("/api/search", {"q": "apple", "k": 10}).json()
    impressions = {i["merchant"]: i for i in spooled_events("impression")}
    assert set(impressions) == {"grocer", "phone-shop"}
    positions = sorted(i["position"] for x in impressions.values() for i in x["items"])
    assert positions == list(range(1, len(data["results"]) + 1))
    assert len({x["session_id"] for x in impressions.values()}) == 1  # a fresh id, shared


def test_api_search_with_track_0_records_no_impression(client, small_catalog):
    # clients that post their own impressions (the traffic simulator) must not count twice
    quiet = client.get("/api/search", {"q": "galaxy", "merchant": "phone-shop", "track": "0"})
    assert quiet.status_code == 200 and quiet.json()["results"]
    assert spooled_events() == []
    client.get("/api/search", {"q": "galaxy", "merchant": "phone-shop", "track": "1"})
    assert len(spooled_events("impression")) == 1


def test_api_search_session_id_is_validated_and_head_records_nothing(client, small_catalog):
    bad = client.get("/api/search", {"q": "iphone", "session_id": "has spaces"})
    assert bad.status_code == 400 and "'session_id'" in bad.json()["error"]
    assert client.head("/api/search", {"q": "iphone"}).status_code == 200
    assert spooled_events() == []


def test_click_through_records_the_click_and_lands_on_the_product(client, small_catalog):
    url = "/r/req-42/3/phone-shop/P1/?q=iphone&page=2&evil=https://example.com"
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == "/product/phone-shop/P1/?q=iphone&page=2&rid=req-42"
    (click,) = spooled_events("click")
    assert (click["request_id"], click["sku"], click["position"]) == ("req-42", "P1", 3)
    assert click["merchant"] == "phone-shop"
    assert click["session_id"] == response.cookies["sid"].value

    product = client.get(response["Location"])
    html = product.content.decode()
    assert product.status_code == 200
    assert '<input type="hidden" name="rid" value="req-42">' in html
    assert '<link rel="canonical" href="http://testserver/product/phone-shop/P1/">' in html


def test_click_with_a_malformed_request_id_still_lands_but_records_nothing(client, small_catalog):
    response = client.get("/r/bad!id/1/phone-shop/P1/")
    assert response["Location"] == "/product/phone-shop/P1/"
    assert spooled_events() == []


def test_search_keeps_working_when_events_cannot_be_published(client, small_catalog, settings):
    settings.KAFKA_API_VERSION = "not-a-version"  # publish() itself raises
    page = client.get("/", {"q": "iphone", "merchant": "phone-shop"})
    assert page.status_code == 200 and "OtterBox Defender" in page.content.decode()
    api = client.get("/api/search", {"q": "iphone"})
    assert api.status_code == 200 and api.json()["total"] == 2
    assert client.get("/r/req-1/1/phone-shop/P1/").status_code == 302


def test_search_keeps_working_when_the_spool_is_full(client, small_catalog, settings):
    settings.EVENT_SPOOL_MAX_BYTES = 10
    page = client.get("/", {"q": "iphone", "merchant": "phone-shop"})
    assert page.status_code == 200 and "OtterBox Defender" in page.content.decode()
    assert spooled_events() == []


# -- end to end through the real broker ------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_storefront_events_reach_the_broker_and_the_event_store(
    client, small_catalog, kafka_topics
):
    page = client.get("/", {"q": "iphone", "merchant": "phone-shop"})
    sid = page.cookies["sid"].value
    link = result_links(page.content.decode())[0]
    product_url = client.get(link)["Location"]
    rid = re.search(r"rid=([\w.:-]+)", product_url).group(1)
    sku = product_url.split("/")[3]
    client.post("/cart/add", {"merchant": "phone-shop", "sku": sku, "quantity": 2, "rid": rid})
    client.post("/cart/checkout")
    beacon = f.click(session_id="beacon-1", request_id=rid)
    assert post(client, {"events": [beacon]}).json()["spooled"] == 0  # straight to Kafka
    flush(10)

    topic = kafka_topics.events
    consumer = EventConsumer(partitions=list(range(partition_count(topic))))
    with consumer:
        consumer.run(max_events=5, idle_timeout_s=10)
    assert consumer.stats.stored == 5
    stored = {e.type: e for e in Event.objects.filter(session_id=sid)}
    assert set(stored) == {"impression", "click", "add_to_cart", "purchase"}
    assert all(e.request_id == rid for e in stored.values())
    assert stored["click"].sku == sku and stored["click"].payload["position"] == 1
    assert (
        stored["purchase"].quantity == 2
        and stored["purchase"].price
        == Product.objects.get(merchant__slug="phone-shop", sku=sku).price
    )
    assert Event.objects.filter(event_id=beacon["event_id"], session_id="beacon-1").exists()
