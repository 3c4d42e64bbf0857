#!/usr/bin/env bash
# Runs the DuckDB side of the benchmarks on this machine:
#   run.sh [rows]            the storage benchmarks (storage_compare.py)
#   run.sh sql CSV [runs]    the SQL benchmarks over a CSV (sql_compare.py)
#   run.sh unify DIR [...]   UNIFY's comparison over generated data (unify_compare.py)
#   run.sh erase DIR [...]   ERASE PROFILE's comparison over generated data (erase_compare.py)
#   run.sh consent DIR [...] has_consent and segments for a purpose (consent_compare.py)
#   run.sh retention DIR [...] expiring rows past a retention (retention_compare.py)
#   run.sh pii DIR [...]     what masking PII columns costs a query (pii_compare.py)
# Installs DuckDB's Python package (and pyarrow) into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/benches/duckdb/requirements.txt"
if [ "${1:-}" = unify ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/unify_compare.py" "$@"
fi
if [ "${1:-}" = erase ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/erase_compare.py" "$@"
fi
if [ "${1:-}" = consent ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/consent_compare.py" "$@"
fi
if [ "${1:-}" = retention ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/retention_compare.py" "$@"
fi
if [ "${1:-}" = pii ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/pii_compare.py" "$@"
fi
if [ "${1:-}" = sql ]; then
  shift
  exec "$venv/bin/python" "$root/benches/duckdb/sql_compare.py" "$@"
fi
exec "$venv/bin/python" "$root/benches/duckdb/storage_compare.py" "$@"
