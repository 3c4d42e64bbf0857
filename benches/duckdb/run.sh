#!/usr/bin/env bash
# Runs the DuckDB side of the storage benchmarks on this machine.
# Installs DuckDB's Python package (and pyarrow) into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/benches/duckdb/requirements.txt"
exec "$venv/bin/python" "$root/benches/duckdb/storage_compare.py" "$@"
