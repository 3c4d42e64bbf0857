"""Rows per second streamed to psycopg 3, text and binary, from Tessera and
from PostgreSQL serving the same table (see run.sh). Each figure is the
median of 3 runs after a warm-up; the client reads with fetchmany(100 000)."""

import argparse
import statistics
import time

import psycopg

LOAD = """
CREATE TABLE stream_rows (id BIGINT NOT NULL, email TEXT, amount DOUBLE PRECISION, channel TEXT);
INSERT INTO stream_rows
  SELECT g, 'person' || g || '@example.com', g * 0.5,
         CASE WHEN g % 3 = 0 THEN 'web' WHEN g % 3 = 1 THEN 'app' ELSE 'store' END
  FROM generate_series(1, {rows}) AS s(g)
"""

TESSERA_LOAD = """
CREATE TABLE stream_rows (id BIGINT NOT NULL, email TEXT, amount DOUBLE PRECISION, channel TEXT);
INSERT INTO stream_rows
  SELECT value, 'person' || value || '@example.com', value * 0.5,
         CASE WHEN value % 3 = 0 THEN 'web' WHEN value % 3 = 1 THEN 'app' ELSE 'store' END
  FROM generate_series(1, {rows})
"""


def rss_mib(pid):
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stream(dsn, binary, pid=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        peak = rss_mib(pid)
        started = time.perf_counter()
        cur.execute("SELECT id, email, amount, channel FROM stream_rows")
        n = 0
        while True:
            batch = cur.fetchmany(100_000)
            if not batch:
                break
            n += len(batch)
            peak = max(peak, rss_mib(pid))
        return n, time.perf_counter() - started, peak


def measure(name, dsn, rows, pid=None):
    out = {}
    for binary in (False, True):
        stream(dsn, binary, pid)  # warm-up
        runs = [stream(dsn, binary, pid) for _ in range(3)]
        for n, _, _ in runs:
            assert n == rows, (name, n, rows)
        secs = statistics.median(r[1] for r in runs)
        peak = max(r[2] for r in runs)
        fmt = "binary" if binary else "text"
        out[fmt] = rows / secs
        extra = f", server peak anonymous RSS {peak:.0f} MiB" if pid else ""
        print(f"{name:>10} {fmt:>6}: {rows / secs:>12,.0f} rows/s ({secs:.2f} s){extra}", flush=True)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--tessera", required=True)
    p.add_argument("--tessera-pid", type=int)
    p.add_argument("--postgres", required=True)
    p.add_argument("--postgres-version", default="PostgreSQL")
    a = p.parse_args()
    for dsn, sql, what in ((a.postgres, LOAD, "postgres"), (a.tessera, TESSERA_LOAD, "tessera")):
        t = time.perf_counter()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for stmt in sql.format(rows=a.rows).split(";"):
                if stmt.strip():
                    conn.execute(stmt)
        print(f"{what:>10} load: {a.rows:,} rows in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"streaming {a.rows:,} rows (4 columns) to psycopg {psycopg.__version__}; {a.postgres_version}")
    pg = measure("postgres", a.postgres, a.rows)
    ts = measure("tessera", a.tessera, a.rows, a.tessera_pid)
    for fmt in ("text", "binary"):
        print(f"tessera / postgres, {fmt}: {ts[fmt] / pg[fmt]:.2f}x")


if __name__ == "__main__":
    main()
