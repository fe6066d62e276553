"""``manage.py bench NAME``: run a benchmark, print a table, optionally write JSON, and keep
the result in the benchmark history (:mod:`ranking.benchmarks.history`) for the console."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ranking.benchmarks import BENCHMARKS, history

#: Django's own options, not the benchmark's: left out of the stored run record.
COMMON_OPTIONS = {"verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color"}


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
            result = module.run(options, self.stdout)
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(str(error)) from error
        if not isinstance(result, dict):
            return
        if options.get("json_out"):  # every benchmark's --json
            Path(options["json_out"]).write_text(json.dumps(result, indent=2, default=str))
            self.stdout.write(f"wrote {options['json_out']}\n")
        kept = {k: v for k, v in options.items() if k not in COMMON_OPTIONS}
        path = history.record(benchmark, kept, result)
        self.stdout.write(f"recorded in {path}\n")
