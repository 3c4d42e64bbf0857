#!/usr/bin/env bash
# Streams a large table to psycopg (text and binary) from `tessera serve`
# and from PostgreSQL 15 (Debian's server, started here on loopback), in the
# same run on the same machine:
#   benches/wire/run.sh [ROWS] [--tessera target/release/tessera]
# Needs Debian's postgresql-15 (apt-get install postgresql-15); installs
# psycopg into ./.venv on first use.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
rows="${1:-10000000}"
tessera="$root/target/release/tessera"
if [ "${2:-}" = --tessera ]; then tessera="$3"; fi
venv="$root/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import psycopg" 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/python/requirements.txt"

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ -n "${tpid:-}" ] && kill "$tpid" 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# PostgreSQL on a loopback port, password auth.
mkdir "$work/pg" "$work/sock"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$work/pg" "$work/sock"; fi
echo bench > "$work/pgpass" && chmod 644 "$work/pgpass"
as_pg "$pgbin/initdb" -D "$work/pg" -U bench --pwfile="$work/pgpass" -A scram-sha-256 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p 55439 -k $work/sock -c listen_addresses=127.0.0.1 -c shared_buffers=1GB" -l "$work/pg/server.log" -w start >/dev/null

# Tessera on another.
TESSERA_PASSWORD=bench "$tessera" serve --db "$work/tessera" --listen 127.0.0.1:55438 > "$work/tessera.log" 2>&1 &
tpid=$!
for _ in $(seq 50); do grep -q listening "$work/tessera.log" && break; sleep 0.2; done

"$venv/bin/python" "$root/benches/wire/stream_compare.py" --rows "$rows" \
  --tessera "host=127.0.0.1 port=55438 user=tessera password=bench dbname=tessera" --tessera-pid "$tpid" \
  --postgres "host=127.0.0.1 port=55439 user=bench password=bench dbname=postgres" \
  --postgres-version "$("$pgbin/postgres" --version)"
