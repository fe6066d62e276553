"""Feeds panel: upload a feed, watch its import progress, download the validation report.

The upload view stores the file and queues ``catalog.tasks.import_feed_upload`` once the row
is committed (a worker must be able to read it); the page then polls ``feed_status`` (JSON)
until the worker marks the upload done or failed.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import uuid
from pathlib import PurePath

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from kombu.exceptions import OperationalError

from catalog.models import FeedUpload, Merchant
from web.console.access import merchant_view
from web.console.forms import FeedUploadForm
from web.console.views import render_panel

logger = logging.getLogger(__name__)

RECENT_UPLOADS = 20
PREVIEW_ROWS = 20


def queue_import(upload: FeedUpload) -> None:
    """Send the import to a worker once the upload row is committed.

    ``upload.task_id`` was chosen and saved with the row, so nothing writes the row after the
    message is sent: a write racing the worker's first transaction would make SQLite answer
    "database is locked" to one of them.
    """
    from catalog.tasks import import_feed_upload

    def send() -> None:
        try:
            import_feed_upload.apply_async(args=[upload.pk], task_id=upload.task_id)
        except OperationalError as error:  # broker down: say so instead of a 500
            logger.error("could not queue feed upload %s: %s", upload.pk, error)
            FeedUpload.objects.filter(pk=upload.pk).update(
                status=FeedUpload.FAILED,
                error="The import queue is unavailable right now; please upload again later.",
            )

    transaction.on_commit(send)


@merchant_view()
def feed_list(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    form = None
    if request.console.can_edit:
        form = FeedUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form is None:
            raise PermissionDenied("viewers cannot upload feeds")
        if form.is_valid():
            upload = form.save(commit=False)
            upload.merchant = merchant
            upload.user = request.user
            upload.original_name = PurePath(form.cleaned_data["file"].name).name[:255]
            upload.task_id = uuid.uuid4().hex
            upload.save()
            queue_import(upload)
            return redirect("console:feed", merchant_slug=merchant.slug, pk=upload.pk)
    uploads = FeedUpload.objects.filter(merchant=merchant).select_related("user")
    return render_panel(
        request,
        "feeds.html",
        "feeds",
        {"form": form, "uploads": uploads[:RECENT_UPLOADS]},
    )


def _upload(merchant: Merchant, pk: int) -> FeedUpload:
    return get_object_or_404(FeedUpload.objects.filter(merchant=merchant), pk=pk)


def rejected_preview(upload: FeedUpload, limit: int = PREVIEW_ROWS) -> list[list[str]]:
    """The first rejected rows of the report (row, sku, error), shown above the download."""
    if not upload.report:
        return []
    with upload.report.open("rb") as handle:
        reader = csv.reader(io.TextIOWrapper(handle, encoding="utf-8"))
        next(reader, None)  # header
        return list(itertools.islice(reader, limit))


@merchant_view()
def feed_detail(request: HttpRequest, merchant: Merchant, pk: int) -> HttpResponse:
    upload = _upload(merchant, pk)
    return render_panel(
        request,
        "feed_detail.html",
        "feeds",
        {"upload": upload, "status": status_json(upload), "rejected": rejected_preview(upload)},
    )


def status_json(upload: FeedUpload) -> dict:
    """What the progress poller needs; also rendered into the page for the first paint."""
    report_url = ""
    if upload.report:
        report_url = reverse(
            "console:feed-report", kwargs={"merchant_slug": upload.merchant.slug, "pk": upload.pk}
        )
    return {
        "id": upload.pk,
        "status": upload.status,
        "finished": upload.status in (FeedUpload.DONE, FeedUpload.FAILED),
        "processed": upload.processed_rows,
        "total": upload.total_rows,
        "percent": upload.percent,
        "counts": upload.counts,
        "error": upload.error,
        "report_url": report_url,
    }


@merchant_view()
def feed_status(request: HttpRequest, merchant: Merchant, pk: int) -> JsonResponse:
    upload = _upload(merchant, pk)
    response = JsonResponse(status_json(upload))
    response["Cache-Control"] = "no-store"
    return response


@merchant_view()
def feed_report(request: HttpRequest, merchant: Merchant, pk: int) -> FileResponse:
    """The rejected rows (row number, sku, error) as a CSV download."""
    upload = _upload(merchant, pk)
    if not upload.report:
        raise Http404("this upload has no report yet")
    stem = PurePath(upload.original_name).stem or "feed"
    return FileResponse(
        upload.report.open("rb"),
        as_attachment=True,
        filename=f"{stem}-errors.csv",
        content_type="text/csv",
    )
