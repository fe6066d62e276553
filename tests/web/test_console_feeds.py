"""Feed upload in the console: form validation, the import task (in-process for the unit
tests) and, end to end, a real Celery worker over a real Redis importing an upload."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalog.models import Docid, FeedUpload, Product
from catalog.tasks import count_rows, import_feed_upload
from tests.web import console_support
from tests.web.console_support import SMALL_CSV, client_for, make_user

console_support.use_file_backed_test_db()  # the worker subprocess shares the test database

media_root = console_support.media_root
people = console_support.people
eager_tasks = console_support.eager_tasks
redis_server = console_support.redis_server
celery_worker = console_support.celery_worker


def upload_url(slug: str = "phone-shop") -> str:
    return reverse("console:feeds", kwargs={"merchant_slug": slug})


def post_feed(client: Client, content: str, name: str = "feed.csv", fmt: str = "csv", **extra):
    data = {"file": SimpleUploadedFile(name, content.encode()), "format": fmt, "on_error": "skip"}
    return client.post(upload_url(), {**data, **extra})


def report_rows(client: Client, upload: FeedUpload) -> list[list[str]]:
    url = reverse(
        "console:feed-report", kwargs={"merchant_slug": upload.merchant.slug, "pk": upload.pk}
    )
    response = client.get(url)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.django_db
def test_upload_form_validates_file(people, eager_tasks):
    alice = client_for(people["alice"])
    wrong = post_feed(alice, SMALL_CSV, name="feed.xlsx")
    assert "should be a .csv, .txt file" in wrong.context["form"].errors["file"][0]
    empty = post_feed(alice, "", name="feed.csv")
    assert empty.context["form"].errors["file"]  # Django: "The submitted file is empty."
    missing = alice.post(upload_url(), {"format": "csv", "on_error": "skip"})
    assert "file" in missing.context["form"].errors
    bogus = post_feed(alice, SMALL_CSV, fmt="instacart")
    assert "format" in bogus.context["form"].errors
    assert not FeedUpload.objects.exists()


@pytest.mark.django_db
def test_upload_imports_and_reports_rejected_rows(
    people, eager_tasks, django_capture_on_commit_callbacks
):
    alice = client_for(people["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_feed(alice, SMALL_CSV)
    upload = FeedUpload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "console:feed", kwargs={"merchant_slug": "phone-shop", "pk": upload.pk}
    )
    assert upload.status == FeedUpload.DONE and upload.user == people["alice"]
    assert upload.counts == {"created": 2, "updated": 1, "rejected": 2, "aborted": False}
    assert (upload.total_rows, upload.processed_rows, upload.percent) == (5, 5, 100)
    n1 = Product.objects.get(merchant__slug="phone-shop", sku="N1")
    assert n1.category.full_name == "Cell Phones > Accessories > Chargers"
    assert n1.attributes == {"color": "White"} and Docid.objects.filter(product=n1).exists()
    assert Product.objects.get(sku="P1").title.endswith("(2024 edition)")
    rows = report_rows(alice, upload)
    assert rows[0] == ["row", "sku", "error"]
    assert [r[:2] for r in rows[1:]] == [["4", ""], ["5", "N3"]]
    assert "missing sku" in rows[1][2] and "bad price" in rows[2][2]

    status_url = reverse(
        "console:feed-status", kwargs={"merchant_slug": "phone-shop", "pk": upload.pk}
    )
    status = alice.get(status_url).json()
    assert status["finished"] and status["percent"] == 100 and status["counts"]["created"] == 2
    assert status["report_url"].endswith("report.csv")
    page = alice.get(response["Location"])
    assert b"Download validation report" in page.content
    assert page.context["rejected"] == rows[1:]  # the preview above the download
    # the grocer's editor can neither poll nor download it
    gina = client_for(people["gina"])
    assert gina.get(status_url).status_code == 404
    listing = alice.get(upload_url())
    assert b"feed.csv" in listing.content and b"done" in listing.content


@pytest.mark.django_db
def test_unreadable_feed_fails_with_a_reason(
    people, eager_tasks, django_capture_on_commit_callbacks
):
    alice = client_for(people["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        post_feed(alice, "name,price\nfoo,1\n")
    upload = FeedUpload.objects.get()
    assert upload.status == FeedUpload.FAILED
    assert "header lacks required column(s) ['sku', 'title']" in upload.error
    assert not Product.objects.filter(title="foo").exists()


@pytest.mark.django_db
def test_reject_mode_imports_nothing_when_a_row_is_bad(
    people, eager_tasks, django_capture_on_commit_callbacks
):
    alice = client_for(people["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        post_feed(alice, SMALL_CSV, on_error="reject")
    upload = FeedUpload.objects.get()
    assert upload.status == FeedUpload.FAILED and upload.counts["aborted"] is True
    assert "nothing was imported" in upload.error
    assert not Product.objects.filter(sku__in=["N1", "N2"]).exists()
    assert len(report_rows(alice, upload)) == 3  # header + the two bad rows


@pytest.mark.django_db
def test_jsonl_feed_and_redelivered_task(people, eager_tasks, django_capture_on_commit_callbacks):
    alice = client_for(people["alice"])
    feed = '{"sku": "J1", "title": "Jsonl phone", "category": "Cell Phones", "price": 5}\n{broken\n'
    with django_capture_on_commit_callbacks(execute=True):
        post_feed(alice, feed, name="feed.jsonl", fmt="jsonl")
    upload = FeedUpload.objects.get()
    assert upload.counts["created"] == 1 and upload.counts["rejected"] == 1
    assert count_rows("jsonl", upload.file.path) == 2
    # a redelivered message for a finished upload does not import again
    assert import_feed_upload(upload.pk) == upload.counts


@pytest.mark.django_db
def test_broker_down_marks_the_upload_failed(
    people, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(import_feed_upload, "apply_async", refuse)
    alice = client_for(people["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = post_feed(alice, SMALL_CSV)
    assert response.status_code == 302
    upload = FeedUpload.objects.get()
    assert upload.status == FeedUpload.FAILED and "queue is unavailable" in upload.error


# -- end to end: a real worker ----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_worker_imports_an_uploaded_feed(small_catalog, settings, celery_worker):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = make_user("alice", small_catalog["phones"])
    client = client_for(alice)
    response = post_feed(client, SMALL_CSV)
    assert response.status_code == 302
    upload = FeedUpload.objects.get()
    finished = console_support.wait_until_finished(upload.pk, 90, celery_worker)
    assert finished.status == FeedUpload.DONE, finished.error
    assert finished.task_id  # queued through the broker, not run in-process
    assert finished.counts == {"created": 2, "updated": 1, "rejected": 2, "aborted": False}
    assert Product.objects.filter(merchant=small_catalog["phones"], sku="N2").exists()
    assert len(report_rows(client, finished)) == 3
    assert "catalog.tasks.import_feed_upload" in celery_worker.read_text()


@pytest.mark.dataset
@pytest.mark.django_db
def test_bestbuy_catalog_through_the_console(
    people, eager_tasks, django_capture_on_commit_callbacks, settings
):
    """The real BestBuy feed (3,291 products) uploaded as a merchant would, then every panel
    rendered over it, each within a budget a person would accept."""
    path = Path(settings.DATASETS_DIR) / "bestbuy" / "products.json"
    if not path.exists():
        pytest.skip(f"shared datasets not found under {settings.DATASETS_DIR}")
    alice = client_for(people["alice"])
    with django_capture_on_commit_callbacks(execute=True):
        alice.post(
            upload_url(),
            {
                "file": SimpleUploadedFile(path.name, path.read_bytes()),
                "format": "bestbuy",
                "on_error": "skip",
            },
        )
    upload = FeedUpload.objects.get()
    assert upload.status == FeedUpload.DONE, upload.error
    assert upload.total_rows == upload.processed_rows == 3291
    assert upload.counts["created"] + upload.counts["updated"] >= 3200
    timings = {}
    for view in ("overview", "products", "docids", "analytics", "models", "quality"):
        start = time.perf_counter()
        page = alice.get(reverse(f"console:{view}", kwargs={"merchant_slug": "phone-shop"}))
        timings[view] = time.perf_counter() - start
        assert page.status_code == 200, view
    print({view: f"{seconds * 1000:.0f} ms" for view, seconds in timings.items()})
    assert max(timings.values()) < 5, timings
