"""Celery tasks of the catalog app: importing a feed uploaded in the merchant console.

The web request only stores the file and queues :func:`import_feed_upload`; the worker runs
the same importer as ``manage.py import_catalog`` and writes its progress to the
``FeedUpload`` row, which the console polls. Found by ``learners.celery``'s
``autodiscover_tasks()`` (every installed app's ``tasks`` module).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

from django.core.files.base import ContentFile
from django.utils import timezone

from catalog.importers import ImportReport, import_feed, read_feed
from catalog.importers.base import FeedError
from catalog.models import FeedUpload
from learners.celery import app

log = logging.getLogger(__name__)

#: Seconds between progress writes: often enough for a smooth bar, rare enough that a 100k-row
#: feed does not spend its time updating one row.
PROGRESS_INTERVAL = 0.5


@app.task(name="catalog.tasks.import_feed_upload", soft_time_limit=6 * 3600, ignore_result=True)
def import_feed_upload(upload_id: int) -> dict:
    """Import the uploaded feed ``upload_id``; returns its counts. Never raises for a bad feed:
    the failure is recorded on the upload for the merchant to read. The outcome lives on the
    ``FeedUpload`` row, so Celery stores no result (and the web process never needs the result
    backend)."""
    upload = FeedUpload.objects.select_related("merchant").get(pk=upload_id)
    if upload.status not in (FeedUpload.QUEUED, FeedUpload.RUNNING):
        return upload.counts  # a redelivered task for an upload that already finished
    path = Path(upload.file.path)
    try:
        _mark_running(upload, count_rows(upload.format, path))
        report = import_feed(
            upload.merchant,
            read_feed(upload.format, path),
            source=upload.original_name,
            on_error=upload.on_error,
            progress=_progress_writer(upload),
        )
    except FeedError as error:
        _finish(upload, FeedUpload.FAILED, error=str(error))
        return upload.counts
    except Exception as error:  # recorded for the merchant, re-raised for the worker log
        _finish(upload, FeedUpload.FAILED, error=f"import crashed: {error}")
        raise
    _save_report(upload, report)
    _finish(upload, FeedUpload.FAILED if report.aborted else FeedUpload.DONE, report=report)
    log.info("feed upload %s: %s", upload.pk, report.summary())
    return upload.counts


def count_rows(format_name: str, path: Path) -> int:
    """Rows in the feed, for the progress bar's 100%. A parse-only pass: an order of magnitude
    cheaper than validating and writing, and exact where a line count would not be (a CSV
    field can span lines, a JSON array has none)."""
    return sum(1 for _ in read_feed(format_name, path))


def _mark_running(upload: FeedUpload, total: int) -> None:
    upload.status = FeedUpload.RUNNING
    upload.total_rows = total
    upload.processed_rows = 0
    upload.save(update_fields=["status", "total_rows", "processed_rows"])


def _progress_writer(upload: FeedUpload) -> Callable[[int], None]:
    """A ``progress(n)`` callback for the importer that writes at most every interval."""
    state = {"done": 0, "written": 0.0}

    def progress(rows: int) -> None:
        state["done"] += rows
        now = time.monotonic()
        if now - state["written"] >= PROGRESS_INTERVAL:
            state["written"] = now
            FeedUpload.objects.filter(pk=upload.pk).update(processed_rows=state["done"])

    return progress


def _save_report(upload: FeedUpload, report: ImportReport) -> None:
    """The rejected rows as CSV (row number, sku, error) for the merchant to fix and re-send."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "sku", "error"])
    for error in report.rejected:
        writer.writerow([error.line, error.sku, error.reason])
    upload.report.save(
        f"feed-{upload.pk}-report.csv", ContentFile(buffer.getvalue().encode()), save=False
    )


def _finish(
    upload: FeedUpload, status: str, *, report: ImportReport | None = None, error: str = ""
) -> None:
    upload.status = status
    upload.error = error
    upload.finished = timezone.now()
    if report is not None:
        upload.processed_rows = report.total_rows
        upload.counts = {
            "created": report.created,
            "updated": report.updated,
            "rejected": len(report.rejected),
            "aborted": report.aborted,
        }
        if report.aborted:
            upload.error = (
                f"{len(report.rejected)} invalid row(s): the feed was rejected and nothing was "
                "imported. Download the report, fix the rows and upload again."
            )
    upload.save()
