#!/usr/bin/env bash
# Runs the DuckDB side of the benchmarks on this machine:
#   run.sh [rows]            the storage benchmarks (storage_compare.py)
#   run.sh sql CSV [runs]    the SQL benchmarks over a CSV (sql_compare.py)
#   run.sh unify DIR [...]   UNIFY's comparison over generated data (unify_compare.py)
#   run.sh erase DIR [...]   ERASE PROFILE's comparison over generated data (erase_compare.py)
#   run.sh consent DIR [...] has_consent and segments for a purpose (consent_compare.py)
#   run.sh retention DIR [...] expiring rows past a retention (retention_compare.py)
#   run.sh pii DIR [...]     what masking PII columns costs a query (pii_compare.py)
#   run.sh encryption DIR [...] what encryption at rest costs each engine (encryption_compare.py)
#   run.sh segment DIR       SEGMENT's bench work over its exported data (segment_compare.py)
#   run.sh workload REPORT.json --tessera BIN   tessera bench's workload on DuckDB and chDB (../workload/compare.py)
#   run.sh plot OUT.png REPORT-compare.json...   time against scale from several such runs (../workload/plot.py)
# Installs DuckDB's Python package (with pyarrow, and chDB) into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/benches/duckdb/requirements.txt"
case "${1:-}" in
  encryption)
    # Its own environment: DuckDB 1.4.4 with httpfs (see requirements-encryption.txt).
    venv="$root/.venv-duckdb-encryption"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/benches/duckdb/requirements-encryption.txt"
    shift
    exec "$venv/bin/python" "$root/benches/duckdb/encryption_compare.py" "$@" ;;
  workload)
    shift
    exec "$venv/bin/python" "$root/benches/workload/compare.py" "$@" ;;
  plot)
    shift
    exec "$venv/bin/python" "$root/benches/workload/plot.py" "$@" ;;
  unify | erase | consent | retention | pii | sql | segment)
    script="$1_compare.py"
    shift
    exec "$venv/bin/python" "$root/benches/duckdb/$script" "$@" ;;
esac
exec "$venv/bin/python" "$root/benches/duckdb/storage_compare.py" "$@"
