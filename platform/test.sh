#!/usr/bin/env bash
# The test command: installs what is missing, lints, and runs the whole test suite.
#   ./platform/test.sh [extra pytest arguments]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SETUP_FOR=test source "$ROOT/platform/setup.sh"

echo "[test] ruff"
ruff check .
echo "[test] pytest"
exec python -m pytest -p no:cacheprovider "$@"
