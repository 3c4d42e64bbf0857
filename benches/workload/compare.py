"""The workload of `tessera bench` on DuckDB, beside Tessera's report.

    compare.py REPORT.json --tessera BIN [--db DIR] [--runs 3]

REPORT.json is what `tessera bench --out` wrote; --db the database that run
left (the report's `database` by default). DuckDB gets the same data twice:

  load    the generated CSV and Parquet files (CREATE TABLE AS SELECT, then
          CHECKPOINT), timed as Tessera's load_csv and load_parquet were;
  query   the tables as the Tessera database holds them after the run
          (UNIFY's profile_id on every row, the 10 000 appended rows of each
          source, the identifiers), exported with COPY … TO Parquet, so
          both engines answer over the same rows and the answers can be
          compared. Segments are views over their definitions
          (duckdb/segments.sql). UNIFY itself is compared by
          benches/duckdb/unify_compare.py.

Each query: one warm-up, then the median of R runs, in one persistent
database file. Prints a table (Tessera, DuckDB, ratio, same answer) and
writes REPORT-duckdb.json beside the report.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["crm_contacts", "orders", "web_events", "support_tickets", "consents"]
QUERIES = [
    ("rfm", "01_rfm.sql"),
    ("recent_buyers", "02_recent_buyers.sql"),
    ("abandoned_carts", "03_abandoned_carts.sql"),
    ("top_decile_ltv", "04_top_decile_ltv.sql"),
    ("segment_overlap", "05_segment_overlap.sql"),
    ("events_per_channel_day", "06_events_per_channel_day.sql"),
    ("daily_active_profiles", "07_daily_active_profiles.sql"),
    ("profile_360", "08_profile_360.sql"),
    ("consented_members", "09_consented_members.sql"),
    ("revenue_per_segment", "10_revenue_per_segment.sql"),
]


def read(name):
    with open(os.path.join(HERE, "duckdb", name)) as f:
        return f.read()


def tessera(binary, db, sql):
    out = subprocess.run([binary, "sql", "--db", db, "--command=" + sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"tessera failed: {out.stderr}")
    return out.stdout


def load(data, fmt, path):
    """Loads the generated files of one format; seconds."""
    if os.path.exists(path):
        os.remove(path)
    con = duckdb.connect(path)
    t = time.perf_counter()
    for s in SOURCES:
        f = os.path.join(data, f"{s}.{fmt}")
        src = f"read_csv('{f}', header = true)" if fmt == "csv" else f"'{f}'"
        con.execute(f"CREATE TABLE {s} AS SELECT * FROM {src}")
    con.execute("CHECKPOINT")
    secs = time.perf_counter() - t
    con.close()
    return secs


def answer(rows, cols):
    """Tessera's way of writing an answer: a one-row result's values, else its row count."""
    if len(rows) != 1:
        return f"{len(rows)} rows"
    return ", ".join(f"{c}={'' if v is None else v}" for c, v in zip(cols, rows[0]))


def numbers(text):
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


def same(a, b):
    """Answers agree: the same numbers (to a cent) in the same order."""
    x, y = numbers(a), numbers(b)
    return len(x) == len(y) and all(abs(p - q) <= 0.01 + 1e-9 * abs(p) for p, q in zip(x, y))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--db")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    db = args.db or report["database"]
    tmeasure = {m["name"]: m for m in report["measures"]}
    work = tempfile.mkdtemp(prefix="workload-duckdb-")
    try:
        rows = []
        for fmt in ("csv", "parquet"):
            secs = load(report["data"], fmt, os.path.join(work, f"load-{fmt}.duckdb"))
            rows.append((f"load_{fmt}", tmeasure[f"load_{fmt}"]["seconds"], secs, None))
        # The data as the Tessera database holds it.
        export = os.path.join(work, "export")
        os.makedirs(export)
        for t in SOURCES + ["customers_identifiers"]:
            tessera(args.tessera, db,
                    f"COPY {t} TO '{os.path.join(export, t + '.parquet')}' WITH (FORMAT parquet)")
        con = duckdb.connect(os.path.join(work, "queries.duckdb"))
        for t in SOURCES + ["customers_identifiers"]:
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM '{os.path.join(export, t + '.parquet')}'")
        con.execute(read("segments.sql"))
        con.execute("CHECKPOINT")
        email = con.execute("SELECT value FROM customers_identifiers WHERE kind = 'email' "
                            "ORDER BY records DESC, value LIMIT 1").fetchone()[0]
        for name, file in QUERIES:
            sql = read(file).replace("{email}", email.replace("'", "''"))
            cur = con.execute(sql)
            res = cur.fetchall()
            cols = [d[0] for d in cur.description]
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                con.execute(sql).fetchall()
                times.append(time.perf_counter() - t)
            mine = answer(res, cols)
            if "{email}" in read(file):
                mine = f"{email}: {mine}"
            theirs = tmeasure[f"query:{name}"]["answer"]
            rows.append((f"query:{name}", tmeasure[f"query:{name}"]["seconds"],
                         statistics.median(times), same(mine, theirs) if theirs else None, mine, theirs))
        con.close()
        out = {"duckdb_version": duckdb.__version__, "persons": report["persons"], "rows": []}
        print(f"{'step':<32} {'Tessera':>10} {'DuckDB':>10}  {'Tessera vs DuckDB':<20} same answer")
        for r in rows:
            name, t, d, ok = r[:4]
            ratio = f"{t / d:.2f}× slower" if t >= d else f"{d / t:.2f}× faster"
            print(f"{name:<32} {t:>9.3f}s {d:>9.3f}s  {ratio:<20} {'' if ok is None else ('yes' if ok else 'NO')}")
            if ok is False:
                print(f"    tessera: {r[5]}\n    duckdb:  {r[4]}")
            out["rows"].append({"step": name, "tessera_s": t, "duckdb_s": d,
                                "ratio": t / d, "same_answer": ok})
        dest = os.path.splitext(args.report)[0] + "-duckdb.json"
        with open(dest, "w") as f:
            json.dump(out, f, indent=1)
        print(f"written to {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
