#!/usr/bin/env bash
# The run command: installs what is missing, prepares the store (schema, demo catalogs, search
# index, the first learned models) and starts the platform on http://127.0.0.1:8000 until Ctrl-C.
# Later starts skip every step that is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SETUP_FOR=run source "$ROOT/platform/setup.sh"

echo "[run] database schema"
python manage.py migrate --noinput -v 0
python manage.py collectstatic --noinput -v 0
echo "[run] demo catalogs (first start only)"
python manage.py load_demo_data
echo "[run] search index"
python manage.py build_index --quiet
echo "[run] learned models (first start only: generative base, dense encoder, fusion ranker)"
python manage.py train_base_model --if-missing --max-minutes "${GENERATIVE_TRAIN_MINUTES:-5}"
python manage.py train_dense --if-missing --minutes "${DENSE_TRAIN_MINUTES:-2}"
python manage.py train_ranker --if-missing
exec python platform/supervisor.py
