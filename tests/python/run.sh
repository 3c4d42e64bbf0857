#!/usr/bin/env bash
# Runs the Python clients' checks against a running `tessera serve`
# (TESSERA_PORT, TESSERA_PASSWORD). Installs psycopg, SQLAlchemy, pandas,
# pgcli and DuckDB into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import psycopg, sqlalchemy, pandas, duckdb, pyarrow, pgcli" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/python/requirements.txt"
fi
# `run.sh install`: only make sure the environment is there (the bench's
# smoke test runs benches/workload/compare.py with it).
[ "${1:-}" = install ] && exit 0
exec "$venv/bin/python" "$root/tests/python/wire_clients.py"
