#!/usr/bin/env bash
# Runs the Python clients' checks against a running `tessera serve`
# (TESSERA_PORT, TESSERA_PASSWORD). Installs psycopg, SQLAlchemy and pandas
# into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import psycopg, sqlalchemy, pandas" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/python/requirements.txt"
fi
exec "$venv/bin/python" "$root/tests/python/wire_clients.py"
