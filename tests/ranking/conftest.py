"""Fixtures of the ranking tests."""

from __future__ import annotations

import pytest

from ranking import generative


@pytest.fixture(autouse=True)
def fresh_serving(settings):
    """Serving re-reads the registry on every call and starts from an empty model cache, so a
    test sees exactly the versions it activated."""
    settings.GENERATIVE_RELOAD_SECONDS = 0.0
    generative.reset_cache()
    yield
    generative.reset_cache()
