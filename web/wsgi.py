"""WSGI entry point for production servers (gunicorn ``web.wsgi:application``).

Each worker imports this module once, so it also loads the serving models here
(:mod:`ranking.warmup`) instead of making its first shopper wait for them.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
application = get_wsgi_application()


def _warm_up() -> None:
    from ranking import warmup

    if warmup.enabled():
        warmup.warm_up()


_warm_up()
