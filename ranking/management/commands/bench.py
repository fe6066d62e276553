"""``manage.py bench NAME``: run a benchmark, print a table and optionally write JSON."""

from __future__ import annotations

import importlib

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ranking.benchmarks import BENCHMARKS


class Command(BaseCommand):
    help = "Run a benchmark: " + ", ".join(sorted(BENCHMARKS)) + ". See `bench NAME --help`."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="NAME")
        for name, module_path in sorted(BENCHMARKS.items()):
            module = importlib.import_module(module_path)
            sub = subparsers.add_parser(
                name, help=module.__doc__.splitlines()[0], description=module.__doc__
            )
            module.add_arguments(sub)

    def handle(self, *args, benchmark: str, **options) -> None:
        module = importlib.import_module(BENCHMARKS[benchmark])
        try:
            module.run(options, self.stdout)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(str(error)) from error
