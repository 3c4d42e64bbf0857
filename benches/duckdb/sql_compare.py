"""The SQL benchmarks of benches/sql.rs, run on DuckDB over the same CSV file.

  copy     COPY orders FROM the CSV into a persistent database (fresh each run,
           committed and checkpointed like Tessera's COPY, which fsyncs its
           segments before it returns)
  agg      SELECT channel, count(*), sum(amount), avg(amount) GROUP BY channel
  lookup   SELECT order_id, email, amount WHERE store_id = 42 (0.1 %),
           fetched as Arrow, without and with an ART index

Prints one line per figure: name, median milliseconds, rows/s and MB/s.
Usage: sql_compare.py CSV [copy_runs]
"""

import os
import statistics
import sys
import tempfile
import time

import duckdb

from common import fetch_arrow, median_time

CSV = sys.argv[1]
COPY_RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
DDL = """CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT NOT NULL, email VARCHAR,
 channel VARCHAR NOT NULL, status VARCHAR NOT NULL, store_id BIGINT NOT NULL, amount DOUBLE,
 ordered_at TIMESTAMP NOT NULL)"""






def main():
    size = os.path.getsize(CSV)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(CSV)))
    print(f"duckdb {duckdb.__version__}, {CSV} ({size / 2**20:.0f} MiB), threads=default", flush=True)

    def copy_once(i):
        path = os.path.join(tmp, f"copy{i}.duckdb")
        con = duckdb.connect(path)
        con.execute(DDL)
        t = time.perf_counter()
        # An empty unquoted field is NULL on both sides (their defaults).
        n = con.execute(f"COPY orders FROM '{CSV}' (FORMAT csv, HEADER true)").fetchone()[0]
        con.execute("CHECKPOINT")
        d = time.perf_counter() - t
        con.close()
        os.remove(path)
        return d, n

    results = [copy_once(i) for i in range(COPY_RUNS)]
    d = statistics.median(r[0] for r in results)
    rows = results[0][1]
    print(f"{'copy/csv':40s} {d * 1000:12.1f} ms {rows / d:14,.0f} rows/s {size / 2**20 / d:8.1f} MiB/s", flush=True)

    path = os.path.join(tmp, "query.duckdb")
    con = duckdb.connect(path)
    con.execute(DDL)
    con.execute(f"COPY orders FROM '{CSV}' (FORMAT csv, HEADER true)")
    con.execute("CHECKPOINT")
    print(f"table: {rows:,} rows, {os.path.getsize(path) / 2**20:.1f} MiB on disk", flush=True)
    agg = "SELECT channel, count(*), sum(amount), avg(amount) FROM orders GROUP BY channel"
    lookup = "SELECT order_id, email, amount FROM orders WHERE store_id = 42"
    print(f"{'query/full_scan_aggregate':40s} {median_time(lambda: con.execute(agg).fetchall(), 20) * 1000:12.2f} ms", flush=True)
    print(f"{'query/selective_lookup_no_index':40s} {median_time(lambda: fetch_arrow(con, lookup), 20) * 1000:12.2f} ms", flush=True)
    con.execute("CREATE INDEX store_idx ON orders(store_id)")
    print(f"{'query/selective_lookup_art_index':40s} {median_time(lambda: fetch_arrow(con, lookup), 20) * 1000:12.2f} ms", flush=True)
    con.close()
    os.remove(path)
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
