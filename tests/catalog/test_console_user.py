"""``manage.py console_user``: a console login tied to the right stores, with clear errors."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from catalog.models import MerchantMembership


def test_creates_a_user_who_can_sign_in_for_one_store(small_catalog, monkeypatch):
    monkeypatch.setenv("SHOP_PW", "s3cret-pass")
    out = StringIO()
    call_command(
        "console_user", "alice", "--merchant", "phone-shop", "--password-env", "SHOP_PW",
        stdout=out,
    )  # fmt: skip

    user = authenticate(username="alice", password="s3cret-pass")
    assert user is not None and not user.is_staff
    memberships = MerchantMembership.objects.filter(user=user)
    assert [(m.merchant.slug, m.role) for m in memberships] == [("phone-shop", "editor")]
    assert "created alice" in out.getvalue()


def test_rerun_updates_role_and_password(small_catalog, monkeypatch):
    monkeypatch.setenv("PW", "first-pass")
    call_command("console_user", "bob", "--merchant", "grocer", "--password-env", "PW")
    monkeypatch.setenv("PW", "second-pass")
    call_command(
        "console_user", "bob", "--merchant", "grocer", "--role", "viewer", "--password-env", "PW",
        stdout=StringIO(),
    )  # fmt: skip

    assert authenticate(username="bob", password="first-pass") is None
    bob = authenticate(username="bob", password="second-pass")
    assert MerchantMembership.objects.get(user=bob).role == "viewer"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--merchant", "nope"], "unknown merchant(s): nope"),
        ([], "give --merchant SLUG"),
        (["--merchant", "grocer", "--password-env", "UNSET_VAR_FOR_TEST"], "is empty or unset"),
    ],
)
def test_clear_errors(small_catalog, arguments, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_command("console_user", "carol", *arguments)
