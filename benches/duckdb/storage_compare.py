"""The storage benchmarks of benches/storage.rs, run on DuckDB.

Same table shape and value distributions as tessera_benches::events_batch
(8 columns; campaign has 1000 uniform values so an equality selects 0.1 %,
bucket has 10 so it selects 10 %), same row counts, same operations:

  append   10k-row batches, each committed (DuckDB fsyncs its WAL on commit)
  flush    CHECKPOINT after inserting 200k rows
  scan     SUM(amount) over the whole table
  filter   SELECT id, amount WHERE campaign = 42 (0.1 %) / bucket = 7 (10 %),
           fetched as Arrow, with and without an ART index

Prints one line per figure: name, median seconds, rows per second.
Usage: storage_compare.py [rows]   (default 4_000_000)
"""

import statistics
import sys
import tempfile
import time
import os

import duckdb
import numpy as np
import pyarrow as pa

from common import fetch_arrow, median_time

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
BATCH = 10_000
EVENT_TYPES = ["page_view", "add_to_cart", "purchase", "login", "search", "signup"]
CHANNELS = ["web", "app", "email", "store"]


def events_batch(rng, start, n):
    ids = np.arange(start, start + n, dtype=np.int64)
    amount = rng.uniform(1.0, 500.0, n)
    mask = rng.random(n) >= 0.8
    return pa.table({
        "id": ids,
        "profile_id": rng.integers(0, 1_000_000, n, dtype=np.int64),
        "event_type": pa.array(np.array(EVENT_TYPES)[rng.integers(0, 6, n)]),
        "channel": pa.array(np.array(CHANNELS)[rng.integers(0, 4, n)]),
        "campaign": rng.integers(0, 1000, n, dtype=np.int64),
        "bucket": rng.integers(0, 10, n, dtype=np.int64),
        "amount": pa.array(amount, mask=mask),
        "ts": pa.array(1_700_000_000_000_000 + ids * 1_000_000, type=pa.timestamp("us", tz="UTC")),
    })


DDL = """CREATE TABLE events (id BIGINT NOT NULL, profile_id BIGINT NOT NULL, event_type VARCHAR NOT NULL,
 channel VARCHAR NOT NULL, campaign BIGINT NOT NULL, bucket BIGINT NOT NULL, amount DOUBLE, ts TIMESTAMPTZ NOT NULL)"""






def report(name, seconds, rows):
    print(f"{name:40s} {seconds * 1000:12.3f} ms {rows / seconds:16,.0f} rows/s", flush=True)


def main():
    rng = np.random.default_rng(3)
    tmp = tempfile.mkdtemp()
    print(f"duckdb {duckdb.__version__}, {ROWS:,} rows, threads=default", flush=True)

    # append: one committed INSERT of 10k rows per iteration
    con = duckdb.connect(os.path.join(tmp, "append.duckdb"))
    con.execute(DDL)
    batch = events_batch(rng, 0, BATCH)
    con.register("batch", batch)
    report("append/10k_rows_commit", median_time(lambda: con.execute("INSERT INTO events SELECT * FROM batch"), 30), BATCH)
    con.close()

    # flush: insert 200k rows (not timed), then CHECKPOINT (timed)
    def flush_once():
        path = os.path.join(tmp, f"flush{time.perf_counter_ns()}.duckdb")
        c = duckdb.connect(path)
        c.execute(DDL)
        c.execute("PRAGMA disable_checkpoint_on_shutdown")
        c.execute("SET checkpoint_threshold = '10GB'")
        for i in range(20):
            c.register("b", events_batch(rng, i * BATCH, BATCH))
            c.execute("INSERT INTO events SELECT * FROM b")
        t = time.perf_counter()
        c.execute("CHECKPOINT")
        d = time.perf_counter() - t
        c.close()
        return d
    flush_once()
    report("flush/200k_rows_checkpoint", statistics.median(flush_once() for _ in range(5)), 200_000)

    # scans on a persisted table of ROWS rows
    con = duckdb.connect(os.path.join(tmp, "scan.duckdb"))
    con.execute(DDL)
    for start in range(0, ROWS, 100_000):
        con.register("b", events_batch(rng, start, 100_000))
        con.execute("INSERT INTO events SELECT * FROM b")
    con.execute("CHECKPOINT")
    size = os.path.getsize(os.path.join(tmp, "scan.duckdb"))
    print(f"scan table: {ROWS:,} rows, {size / 2**20:.1f} MiB on disk", flush=True)
    report("scan/full_scan_sum_amount", median_time(lambda: con.execute("SELECT sum(amount) FROM events").fetchall(), 10), ROWS)
    for label, col, val in [("0.1pct", "campaign", 42), ("10pct", "bucket", 7)]:
        q = f"SELECT id, amount FROM events WHERE {col} = {val}"
        report(f"scan/filter_{label}_no_index", median_time(lambda: fetch_arrow(con, q), 10), ROWS)
    con.execute("CREATE INDEX campaign_idx ON events(campaign)")
    con.execute("CREATE INDEX bucket_idx ON events(bucket)")
    for label, col, val in [("0.1pct", "campaign", 42), ("10pct", "bucket", 7)]:
        q = f"SELECT id, amount FROM events WHERE {col} = {val}"
        report(f"scan/filter_{label}_art_index", median_time(lambda: fetch_arrow(con, q), 10), ROWS)
    con.close()


if __name__ == "__main__":
    main()
