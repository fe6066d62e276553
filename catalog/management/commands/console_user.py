"""``manage.py console_user USERNAME --merchant SLUG [--role viewer] [--staff]``: create or
update a merchant-console login, so a shop owner can sign in without going through /admin/.

The password comes from ``--password-env VAR`` (an environment variable, never a command-line
argument that would end up in shell history and ``ps``) or an interactive prompt.
"""

from __future__ import annotations

import getpass
import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from catalog.models import Merchant, MerchantMembership


class Command(BaseCommand):
    help = "Create or update a merchant-console user and their store membership."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--merchant", action="append", default=[], metavar="SLUG",
            help="store the user works for (repeat for several); see `import_catalog`",
        )  # fmt: skip
        parser.add_argument(
            "--role", choices=[MerchantMembership.EDITOR, MerchantMembership.VIEWER],
            default=MerchantMembership.EDITOR, help="editor (default) or read-only viewer",
        )  # fmt: skip
        parser.add_argument(
            "--staff", action="store_true", help="sees every store and manages models"
        )
        parser.add_argument(
            "--password-env", metavar="VAR", help="read the password from this env variable"
        )

    def handle(self, *args, username: str, merchant: list[str], role: str, staff: bool,
               password_env: str | None, **options) -> None:  # fmt: skip
        merchants = list(Merchant.objects.filter(slug__in=merchant))
        missing = sorted(set(merchant) - {m.slug for m in merchants})
        if missing:
            raise CommandError(f"unknown merchant(s): {', '.join(missing)}")
        if not merchants and not staff:
            raise CommandError("give --merchant SLUG (or --staff for a user who sees all stores)")
        password = self._password(password_env)
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_staff or staff
            user.save()
            for shop in merchants:
                MerchantMembership.objects.update_or_create(
                    user=user, merchant=shop, defaults={"role": role}
                )
        stores = ", ".join(m.slug for m in merchants) or "all stores (staff)"
        verb = "created" if created else "updated"
        self.stdout.write(f"{verb} {username}: {role} of {stores}; sign in at /console/")

    def _password(self, variable: str | None) -> str:
        if variable:
            value = os.environ.get(variable, "")
            if not value:
                raise CommandError(f"environment variable {variable} is empty or unset")
            return value
        first = getpass.getpass("Password: ")
        if not first or first != getpass.getpass("Password (again): "):
            raise CommandError("passwords were empty or did not match")
        return first
