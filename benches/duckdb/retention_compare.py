"""Retention beside DuckDB: expiring old web events and reclaiming their space.

    retention_compare.py DIR --tessera BIN [--retention '18 months']

DIR holds the generator's Parquet files and load.sql (`tessera gen`).

Tessera: loads web_events, sets `retention` on its `ts` column and runs
`COMPACT web_events` (deletes the expired rows, rewrites the files without
them); the process time minus opening the database and running `SELECT 1`.
DuckDB: the same table in a persistent file; `DELETE … WHERE ts < now() -
INTERVAL …` then `CHECKPOINT`. Both directories' sizes are given before and
after. Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import duckdb

from common import last_number, size, tessera


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--retention", default="18 months")
    ap.add_argument("--archive", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="retention-bench-")
    try:
        tdb = os.path.join(work, "tessera")
        with open(os.path.join(args.dir, "load.sql")) as f:
            load = "\n".join(line for line in f if " web_events " in line)
        tessera(args.tessera, tdb, load)
        tessera(args.tessera, tdb, f"ALTER TABLE web_events SET (retention = '{args.retention}', retention_column = ts)")
        t_before = size(tdb)
        base = min(tessera(args.tessera, tdb, "SELECT 1")[0] for _ in range(3))
        t_compact, out = tessera(args.tessera, tdb,
                                 "ARCHIVE web_events" if args.archive else "COMPACT web_events")
        t_after = size(tdb)
        t_left = tessera(args.tessera, tdb, "SELECT count(*) FROM web_events")[1]

        path = os.path.join(work, "duck.duckdb")
        con = duckdb.connect(path)
        con.execute(f"CREATE TABLE web_events AS SELECT * FROM '{os.path.join(args.dir, 'web_events.parquet')}'")
        con.execute("CHECKPOINT")
        d_before = size(path)
        t = time.perf_counter()
        if args.archive:
            con.execute(f"COPY (SELECT * FROM web_events WHERE ts < now()::TIMESTAMP - INTERVAL '{args.retention}') "
                        f"TO '{os.path.join(work, 'archive.parquet')}' (FORMAT parquet)")
        expired = con.execute(f"DELETE FROM web_events WHERE ts < now()::TIMESTAMP - INTERVAL '{args.retention}'").fetchone()[0]
        con.execute("CHECKPOINT")
        d_time = time.perf_counter() - t
        d_after = size(path)
        left = con.execute("SELECT count(*) FROM web_events").fetchone()[0]
        print(json.dumps({
            "duckdb": duckdb.__version__,
            "retention": args.retention,
            "archive": args.archive,
            "tessera": {"compact_s": round(t_compact - base, 3), "rows_expired": [c.strip() for l in out.splitlines() for c in l.split("|")
                                         if c.strip().isdigit()][-1:],
                        "rows_left": last_number(t_left), "bytes_before": t_before, "bytes_after": t_after},
            "duckdb_side": {"delete_checkpoint_s": round(d_time, 3), "expired": expired, "rows_left": left,
                            "bytes_before": d_before, "bytes_after": d_after},
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
