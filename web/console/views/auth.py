"""Sign-in, sign-out and the console's front door.

Login attempts are rate limited per (client IP, username) with the shared token bucket of
:mod:`web.ratelimit`: password guessing against one account is slowed down without one
shopper behind a shared IP locking everyone else out.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from web.console.access import merchants_for
from web.console.forms import ConsoleLoginForm
from web.ratelimit import TokenBucket, client_ip

#: Login attempts a minute per (IP, username); a burst of this many, then one every 60/N s.
DEFAULT_LOGIN_ATTEMPTS_PER_MIN = 10


def login_attempts_per_minute() -> int:
    return int(getattr(settings, "CONSOLE_LOGIN_ATTEMPTS_PER_MIN", DEFAULT_LOGIN_ATTEMPTS_PER_MIN))


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = ConsoleLoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        rate = login_attempts_per_minute()
        username = request.POST.get("username", "").strip().lower()[:150]
        wait = TokenBucket("console-login", rate).take(f"{client_ip(request)}|{username}")
        if wait > 0:
            return self.rate_limited(request, wait)
        return super().post(request, *args, **kwargs)

    def rate_limited(self, request: HttpRequest, wait: float) -> HttpResponse:
        seconds = max(1, math.ceil(wait))
        form = self.get_form_class()(request)
        response = render(
            request,
            self.template_name,
            {
                "form": form,
                "throttled": f"Too many sign-in attempts. Try again in {seconds} seconds.",
            },
            status=429,
        )
        response["Retry-After"] = str(seconds)
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django's default): a link or image cannot sign a user out."""


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the store picked in the switcher (``?store=slug``, the no-JavaScript
    path) or else their first store; explain when they have none."""
    merchants = merchants_for(request.user).order_by("name")
    merchant = merchants.filter(slug=request.GET.get("store", "")).first() or merchants.first()
    if merchant is None:
        return render(request, "console/no_store.html", status=403)
    return redirect("console:overview", merchant_slug=merchant.slug)
