"""Django settings. Every deployment knob is an environment variable with an embedded default,
so a fresh clone runs on one machine (SQLite, files under ``var/``) and a scaled-out deployment
only changes the environment."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DATA_DIR = Path(os.environ.get("SEARCH_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
DATASETS_DIR = Path(
    os.environ.get("SEARCH_DATASETS_DIR", BASE_DIR.parent / "shared" / "datasets")
).resolve()

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "catalog",
    "ranking",
    "learners",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "web.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "web.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while an import or the event consumer writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 30,
            # take the write lock at BEGIN: a deferred read-then-write transaction cannot wait
            # for the lock and fails at once with "database is locked" when two writers meet
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # filled by collectstatic (run.sh); WhiteNoise serves it
# also serve app static files directly, so a checkout works before collectstatic has run
WHITENOISE_USE_FINDERS = True
# uploaded feeds and their import reports: private files, never served under a public URL
MEDIA_ROOT = Path(os.environ.get("SEARCH_MEDIA_DIR", DATA_DIR / "media"))

# the merchant console (web/console) has its own login page
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Milvus Lite lacks AllocTimestamp, which pymilvus's query iterator asks for first: its
        # in-process server logs a traceback, then carries on with a client-side timestamp
        # (every dense replica load; the client's warning is quietened in ranking/dense/store.py)
        "grpc._server": {"level": "CRITICAL"},
    },
}

# --- search platform -------------------------------------------------------------------------
SEARCH_INDEX_DIR = Path(os.environ.get("SEARCH_INDEX_DIR", DATA_DIR / "index"))
SEARCH_MAX_QUERY_CHARS = 256
SEARCH_MAX_K = 200
SEARCH_DEFAULT_MERCHANT = os.environ.get("SEARCH_DEFAULT_MERCHANT", "")
# POST /api/events requests per client IP and minute (token bucket, bursts up to the same
# amount); 0 disables the limit. Generous: one page view sends a handful of beacons.
EVENTS_RATE_PER_MIN = int(os.environ.get("EVENTS_RATE_PER_MIN", "600"))
# console sign-in attempts per client IP and username and minute (web/console/views/auth.py)
CONSOLE_LOGIN_ATTEMPTS_PER_MIN = int(os.environ.get("CONSOLE_LOGIN_ATTEMPTS_PER_MIN", "10"))
