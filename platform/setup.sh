#!/usr/bin/env bash
# Installs everything the platform needs on a fresh Debian machine; safe to re-run (each step
# is skipped when already done). Sourced by platform/run.sh and platform/test.sh.
#   SETUP_FOR=run|test   what to install for (test adds the browser and dev tools)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
SETUP_FOR="${SETUP_FOR:-run}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

system_packages() {
  local packages=(redis-server)
  if [ "$SETUP_FOR" = test ]; then packages+=(chromium); fi
  apt_install "${packages[@]}"
}

python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in .venv ($("$PYTHON" --version))"
    "$PYTHON" -m venv "$VENV"
  fi
  local extras="" stamp
  [ "$SETUP_FOR" = test ] && extras="[dev]"
  stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${SETUP_FOR}"
  if [ ! -f "$stamp" ]; then
    log "installing Python dependencies (pinned in pyproject.toml)"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT$extras" 2>&1 \
      | grep -v "is ignored: it is neither a file nor a directory" || true
    "$VENV/bin/python" -c "import django, tantivy" # fail here, not later, if install broke
    touch "$stamp"
  fi
}

system_packages
python_env
export PATH="$VENV/bin:$PATH"
