"""Console views, one module per panel; each view is wrapped in ``access.merchant_view``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def render_panel(
    request: HttpRequest, template: str, panel: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render a console page with the shell's context: the merchant, the store switcher and
    which navigation entry is current."""
    console = request.console  # set by access.merchant_view
    return render(
        request,
        f"console/{template}",
        {"console": console, "merchant": console.merchant, "panel": panel, **context},
        status=status,
    )
