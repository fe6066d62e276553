"""Shared helpers and fixtures of the merchant-console tests (``test_console*.py``).

Fixtures are imported by name into each test module (pytest finds them there), so no
conftest outside the console's files is needed.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from catalog.models import FeedUpload, Merchant, MerchantMembership
from tests.learners.conftest import child_env, redis_server, start_celery_worker, stop_child

__all__ = ["redis_server"]  # the session's real redis-server, for ``celery_worker``

PASSWORD = "correct horse battery staple"
SMALL_CSV = (
    "sku,title,brand,category,price,attr:color\n"
    "N1,Belkin USB-C Charger 30W,Belkin,Cell Phones > Accessories > Chargers,24.99,White\n"
    "N2,Anker Magnetic Phone Mount,Anker,Cell Phones > Accessories > Mounts,19.99,Black\n"
    ",Missing sku row,Acme,Cell Phones,1.00,\n"
    "N3,Bad price cable,Acme,Cell Phones > Accessories,abc,\n"
    "P1,OtterBox Defender Case for Apple iPhone 7 (2024 edition),OtterBox,"
    "Cell Phones > Accessories > Cases,34.99,Black\n"
)


def use_file_backed_test_db() -> None:
    """Give SQLite's test database a file, so a Celery worker subprocess shares it.

    Must run at import (collection) time, before pytest-django creates the test database;
    ``tests/learners/conftest.py`` does the same when its directory is collected (whichever
    runs first wins, the other sees a name and leaves it).
    """
    test = settings.DATABASES["default"].setdefault("TEST", {})
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and not test.get("NAME"):
        directory = Path(tempfile.mkdtemp(prefix="console-testdb-"))
        atexit.register(shutil.rmtree, directory, True)
        test["NAME"] = str(directory / "test.sqlite3")


@pytest.fixture(autouse=True)
def media_root(settings, isolated_data_dir):
    """Uploaded feeds and reports go under the test's own data directory."""
    settings.MEDIA_ROOT = isolated_data_dir / "media"
    return settings.MEDIA_ROOT


def make_user(username: str, merchant: Merchant | None = None, role: str = "editor", **extra):
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)
    if merchant is not None:
        MerchantMembership.objects.create(user=user, merchant=merchant, role=role)
    return user


@pytest.fixture
def people(small_catalog, settings):
    """An editor and a viewer of the phone shop, an editor of the grocer, a staff member and
    a user of no merchant."""
    # the production hasher takes ~1 s per password on a busy 2-core machine
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    phones, grocery = small_catalog["phones"], small_catalog["grocery"]
    return {
        "alice": make_user("alice", phones, MerchantMembership.EDITOR),
        "victor": make_user("victor", phones, MerchantMembership.VIEWER),
        "gina": make_user("gina", grocery, MerchantMembership.EDITOR),
        "staff": make_user("sam", None, is_staff=True),
        "nobody": make_user("nobody"),
    }


def client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def eager_tasks(monkeypatch):
    """Run the feed-import task in-process through Celery's own ``apply`` (unit tests only;
    the end-to-end tests use a worker). Unlike ``task_always_eager`` this never opens the
    app's broker connection pool, which would then keep pointing at the default broker."""
    from catalog.tasks import import_feed_upload

    def run_here(args=None, kwargs=None, **options):
        return import_feed_upload.apply(args=args, kwargs=kwargs, throw=True, **options)

    monkeypatch.setattr(import_feed_upload, "apply_async", run_here)


@pytest.fixture
def celery_worker(redis_server, monkeypatch, settings, isolated_data_dir):
    """A ``celery worker`` subprocess on a real Redis, sharing this test's database and data
    directory; the web side's Celery app is pointed at the same Redis."""
    from learners.celery import app

    for key in ("broker_url", "result_backend"):
        monkeypatch.setitem(app.conf, key, redis_server.url)
    # The app caches its broker connection pool on first use; drop it (as Celery itself does
    # after a fork) so sending uses this test's Redis, not one an earlier test started.
    app._pool = None
    app.amqp._producer_pool = None
    env = child_env(CELERY_BROKER_URL=redis_server.url, SEARCH_MEDIA_DIR=str(settings.MEDIA_ROOT))
    log = isolated_data_dir / "worker.log"
    worker = start_celery_worker(env, log)
    yield log
    stop_child(worker)


def wait_until_finished(upload_pk: int, timeout: float, log: Path) -> FeedUpload:
    """Poll the upload row until the worker marks it done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        upload = FeedUpload.objects.get(pk=upload_pk)
        if upload.status in (FeedUpload.DONE, FeedUpload.FAILED):
            return upload
        time.sleep(0.2)
    raise AssertionError(f"import did not finish in {timeout}s; worker log:\n{log.read_text()}")
