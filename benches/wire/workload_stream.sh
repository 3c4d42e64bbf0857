#!/usr/bin/env bash
# The streaming row of `tessera bench` on PostgreSQL: the web_events table
# a bench run left (exported from its Tessera database, so the same rows),
# loaded into PostgreSQL 15 (Debian's server, started here on loopback) and
# read whole by psql the way the bench reads it from Tessera: a SELECT paged
# with FETCH_COUNT=100000, and COPY … TO STDOUT, unaligned, into a pipe that
# counts the rows. Median of RUNS after a warm-up.
#   benches/wire/workload_stream.sh TESSERA_DB [RUNS] [--tessera target/release/tessera]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
db="$(cd "$1" && pwd)"
runs="${2:-5}"
tessera="$root/target/release/tessera"
if [ "${3:-}" = --tessera ]; then tessera="$4"; fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$tessera" sql --db "$db" --command="COPY web_events TO '$work/web_events.csv' WITH (FORMAT csv, HEADER true)" >/dev/null
chmod 644 "$work/web_events.csv"
mkdir "$work/pg" "$work/sock"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$work/pg" "$work/sock"; fi
echo bench > "$work/pgpass" && chmod 644 "$work/pgpass"
as_pg "$pgbin/initdb" -D "$work/pg" -U bench --pwfile="$work/pgpass" -A scram-sha-256 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -o "-p 55440 -k $work/sock -c listen_addresses=127.0.0.1 -c shared_buffers=1GB" -l "$work/pg/server.log" -w start >/dev/null
export PGPASSWORD=bench
pg=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 55440 -U bench -d postgres)
"${pg[@]}" -c "CREATE TABLE web_events (event_id BIGINT NOT NULL, anonymous_id TEXT NOT NULL, user_email TEXT, event_type TEXT NOT NULL, url TEXT NOT NULL, ts TIMESTAMP NOT NULL, profile_id BIGINT)"
"${pg[@]}" -c "\\copy web_events FROM '$work/web_events.csv' WITH (FORMAT csv, HEADER true)"
"${pg[@]}" -c "VACUUM ANALYZE web_events"

measure() {
  local label=$1; shift
  local times=() rows=0
  for i in $(seq 0 "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    rows=$("${pg[@]}" -A -t "$@" | wc -l)
    t1=$(date +%s.%N)
    [ "$i" -gt 0 ] && times+=("$(echo "$t1 - $t0" | bc)")
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
  echo "$label: $rows rows, median $median s of $runs ($("$pgbin/postgres" --version))"
}
measure stream_select_psql -v FETCH_COUNT=100000 -c "SELECT * FROM web_events"
measure stream_copy_psql -c "COPY (SELECT * FROM web_events) TO STDOUT"
