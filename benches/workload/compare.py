"""The workload of `tessera bench` on DuckDB and chDB, beside Tessera's report.

    compare.py REPORT.json --tessera BIN [--db DIR] [--runs 3] [--engines duckdb,chdb]
    compare.py REPORT.json --export DIR [--engines duckdb] [--runs 1] --no-unify --check
    compare.py REPORT.json --tessera BIN --postgres [--engines duckdb,chdb]
    compare.py REPORT.json --tessera BIN --no-queries --no-unify   (then --no-loads)

REPORT.json is what `tessera bench --out` wrote; --db the database that run
left (the report's `database` by default). Each engine gets the same data
twice:

  load    the generated CSV and Parquet files (DuckDB: CREATE TABLE AS
          SELECT, then CHECKPOINT; chDB: CREATE TABLE … ENGINE = MergeTree
          AS SELECT), timed as Tessera's load_csv and load_parquet were;
  query   the tables as the Tessera database holds them after the run
          (UNIFY's profile_id on every row, the 10 000 appended rows of each
          source, the identifiers), exported with COPY … TO Parquet, so
          the engines answer over the same rows and the answers can be
          compared. Segments are views over their definitions
          (ENGINE/segments.sql);
  unify   with DuckDB, benches/duckdb/unify_compare.py on the same files:
          Tessera's documented UNIFY beside label propagation in DuckDB
          SQL, with precision/recall against the truth (--no-unify skips).

--postgres adds the streaming rows: benches/wire/workload_stream.sh loads
the same web events (exported from the Tessera database) into PostgreSQL,
started on loopback, and psql reads them whole as the bench read them from
Tessera (a cursor-paged SELECT, and COPY … TO STDOUT). --engines may then
be empty.

The loads are of the formats the report has (`tessera bench --format
parquet` loads no CSV); each engine's database is measured, then removed.
--no-loads and --no-queries run one part alone and keep the other part's
rows in REPORT-compare.json (at 10 M persons the generated files and the
export do not fit on the disk together: load, delete the files, query).

--export DIR names a folder where those tables already are (as
`TABLE.parquet`; the test suite writes them through the Database API), so
no Tessera binary is needed. --check exits with status 1 when an engine's
answer differs from Tessera's (the smoke test's check).

Queries are duckdb/*.sql and clickhouse/*.sql. Each: one warm-up, then the
median of R runs, in a persistent database. Peak RSS is this process's
high-water mark during the step (reset before it, as `tessera bench`
does; the engines run in this process one after the other). Prints a
table (Tessera, each engine, ratios, same answer, peaks) and writes
REPORT-compare.json beside the report.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "duckdb"))
from common import peak_rss_mib, reset_peak_rss, size, tessera  # noqa: E402  (shared helpers)
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


def read(engine_dir, name):
    with open(os.path.join(HERE, engine_dir, name)) as f:
        return f.read()


def statements(text):
    """The statements of a script (split at semicolons ending a line)."""
    parts = re.split(r";\s*\n", text)
    out = []
    for p in parts:
        body = "\n".join(l for l in p.splitlines() if not l.strip().startswith("--")).strip()
        if body:
            out.append(body.rstrip(";"))
    return out


class DuckDB:
    name = "duckdb"
    dir = "duckdb"

    def __init__(self, path):
        import duckdb
        if os.path.exists(path):
            os.remove(path)
        self.con = duckdb.connect(path)

    def run(self, sql):
        cur = self.con.execute(sql)
        if cur.description is None:
            return [], []
        return cur.fetchall(), [d[0] for d in cur.description]

    def create(self, table, source, fmt):
        src = f"read_csv('{source}', header = true)" if fmt == "csv" else f"'{source}'"
        self.con.execute(f"CREATE TABLE {table} AS SELECT * FROM {src}")

    def finish_load(self):
        self.con.execute("CHECKPOINT")

    def close(self):
        self.con.close()


class ChDB:
    name = "chdb"
    dir = "clickhouse"

    def __init__(self, path):
        from chdb import session
        shutil.rmtree(path, ignore_errors=True)
        self.s = session.Session(path)

    def run(self, sql):
        res = self.s.query(sql, "JSONCompact")
        text = res.data() if hasattr(res, "data") else str(res)
        if not text.strip():
            return [], []
        doc = json.loads(text)
        return [tuple(r) for r in doc["data"]], [m["name"] for m in doc["meta"]]

    def create(self, table, source, fmt):
        f = "CSVWithNames" if fmt == "csv" else "Parquet"
        self.s.query(f"CREATE TABLE {table} ENGINE = MergeTree ORDER BY tuple() "
                     f"AS SELECT * FROM file('{source}', {f})")

    def finish_load(self):
        pass

    def close(self):
        self.s.close()


ENGINES = {"duckdb": DuckDB, "chdb": ChDB}


def load(engine_cls, data, fmt, path):
    """Loads the generated files of one format: (seconds, bytes on disk,
    peak RSS in MiB)."""
    reset_peak_rss()
    e = engine_cls(path)
    t = time.perf_counter()
    for s in SOURCES:
        e.create(s, os.path.join(data, f"{s}.{fmt}"), fmt)
    e.finish_load()
    secs = time.perf_counter() - t
    peak = peak_rss_mib()
    e.close()
    on_disk = size(path)
    remove(path)
    return secs, on_disk, peak


def remove(path):
    """Removes an engine's database (a file, its WAL, or a folder): a 10 M
    run has no room for one it measured."""
    for p in (path, path + ".wal"):
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.exists(p):
            os.remove(p)


def queries(engine_cls, work, export, runs, tmeasure):
    """Runs the ten queries on the exported tables:
    {step: (seconds, answer, same, peak RSS in MiB)}."""
    path = os.path.join(work, f"queries-{engine_cls.name}")
    e = engine_cls(path)
    for t in SOURCES + ["customers_identifiers"]:
        e.create(t, os.path.join(export, t + ".parquet"), "parquet")
    e.finish_load()
    for st in statements(read(e.dir, "segments.sql")):
        e.run(st)
    email = e.run("SELECT value FROM customers_identifiers WHERE kind = 'email' "
                  "ORDER BY records DESC, value LIMIT 1")[0][0][0]
    out = {}
    for name, file in QUERIES:
        template = read(e.dir, file)
        sql = template.replace("{email}", email.replace("'", "''"))
        reset_peak_rss()
        res, cols = e.run(sql)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            e.run(sql)
            times.append(time.perf_counter() - t)
        mine = answer(res, cols)
        if "{email}" in template:
            mine = f"{email}: {mine}"
        theirs = tmeasure[f"query:{name}"]["answer"]
        out[f"query:{name}"] = (statistics.median(times), mine, same(mine, theirs), peak_rss_mib())
    e.close()
    remove(path)
    return out


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


def unify(data, binary):
    """UNIFY beside deterministic resolution in DuckDB SQL (iterative label
    propagation), both on the documented 4-source example over the same
    files, with pairwise quality against the generator's truth
    (benches/duckdb/unify_compare.py, one run each)."""
    script = os.path.join(HERE, "..", "duckdb", "unify_compare.py")
    out = subprocess.run([sys.executable, script, data, "--tessera", binary, "--runs", "1"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"UNIFY comparison failed: {out.stderr[-2000:]}")
        return None
    r = json.loads(out.stdout)
    t, d = r["tessera"]["unify_seconds_first"], r["seconds_median"]
    tq, dq = r.get("tessera_quality", {}), r["duckdb_quality"]
    print(f"{'UNIFY (documented example, 4 sources)':<40} Tessera {t:.2f}s (F1 {tq.get('f1', 0):.4f}, "
          f"{r['tessera']['unify_peak_rss_mib_first']:.0f} MiB)   DuckDB label propagation {d:.2f}s "
          f"(F1 {dq['f1']:.4f})   " + (f"{t / d:.2f}x slower" if t >= d else f"{d / t:.2f}x faster"))
    return {"tessera_s": t, "duckdb_s": d, "tessera_f1": tq.get("f1"), "duckdb_f1": dq["f1"],
            "tessera_peak_rss_mib": r["tessera"]["unify_peak_rss_mib_first"]}


def postgres_stream(db, runs, binary, tmeasure):
    """The streaming rows on PostgreSQL (benches/wire/workload_stream.sh):
    {step: {tessera_s, postgres_s, rows}}, printed beside Tessera's."""
    if "stream_select_psql" not in tmeasure:
        print("PostgreSQL: the report has no streaming rows (the bench ran without its wire step)")
        return None
    script = os.path.join(HERE, "..", "wire", "workload_stream.sh")
    out = subprocess.run(["bash", script, db, str(runs), "--tessera", binary],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"PostgreSQL streaming failed: {out.stderr[-2000:]}")
        return None
    rows = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(stream_\w+): (\d+) rows, median ([\d.]+) s of \d+ \((.*)\)", line)
        if not m:
            continue
        step, n, secs, version = m.group(1), int(m.group(2)), float(m.group(3)), m.group(4)
        t = tmeasure.get(step, {}).get("seconds")
        rows[step] = {"tessera_s": t, "postgres_s": secs, "rows": n, "postgres": version}
        if t:
            ratio = f"{t / secs:.2f}x slower" if t >= secs else f"{secs / t:.2f}x faster"
            print(f"{step:<30} {t:>8.3f}s   PostgreSQL {secs:>8.3f}s {ratio:>14}  ({n} rows; {version})")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--tessera")
    ap.add_argument("--export", help="a folder holding the tables as Parquet already")
    ap.add_argument("--postgres", action="store_true",
                    help="also stream the web events from PostgreSQL, as the bench did from Tessera")
    ap.add_argument("--check", action="store_true",
                    help="exit with status 1 when an answer differs from Tessera's")
    ap.add_argument("--db")
    ap.add_argument("--no-loads", action="store_true",
                    help="skip loading the generated files (keep the rows of an earlier run)")
    ap.add_argument("--no-queries", action="store_true",
                    help="skip the queries over the exported tables (likewise)")
    ap.add_argument("--work", help="the folder for the engines' databases and the export "
                    "(a temporary folder by default)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="duckdb,chdb")
    ap.add_argument("--no-unify", action="store_true",
                    help="skip UNIFY beside DuckDB's label propagation")
    args = ap.parse_args()
    with open(args.report) as f:
        report = json.load(f)
    db = args.db or report["database"]
    engines = [ENGINES[n] for n in args.engines.split(",") if n]
    tmeasure = {m["name"]: m for m in report["measures"]}
    work = tempfile.mkdtemp(prefix="workload-compare-", dir=args.work)
    try:
        export = args.export
        if export is None and not args.no_queries:
            if args.tessera is None:
                ap.error("give --tessera BIN, or --export DIR")
            export = os.path.join(work, "export")
            os.makedirs(export)
            for t in SOURCES + ["customers_identifiers"]:
                tessera(args.tessera, db,
                        f"COPY {t} TO '{os.path.join(export, t + '.parquet')}' WITH (FORMAT parquet)")
        # The formats Tessera's run loaded (`tessera bench --format parquet`
        # skips CSV, as a 10 M run must for room on disk).
        formats = [f for f in ("csv", "parquet") if f"load_{f}" in tmeasure and not args.no_loads]
        results = {}
        for cls in engines:
            r = {}
            for fmt in formats:
                secs, disk, peak = load(cls, report["data"], fmt,
                                        os.path.join(work, f"load-{cls.name}-{fmt}"))
                r[f"load_{fmt}"] = (secs, f"{disk / 1e6:.1f} MB on disk", None, peak)
            if not args.no_queries:
                r.update(queries(cls, work, export, args.runs, tmeasure))
            results[cls.name] = r
        steps = [f"load_{f}" for f in formats]
        if not args.no_queries:
            steps += [f"query:{n}" for n, _ in QUERIES]
        head = f"{'step':<30} {'Tessera':>9} {'peak':>7}"
        for cls in engines:
            head += f" {cls.name:>9} {'ratio':>14} same {'peak':>7}"
        print(head)
        out = {"persons": report["persons"], "versions": {}, "rows": []}
        for cls in engines:
            out["versions"][cls.name] = __import__(cls.name).__version__
        for step in steps:
            t = tmeasure[step]["seconds"]
            tpeak = (tmeasure[step].get("peak_rss_bytes") or 0) / 2**20
            line = f"{step:<30} {t:>8.3f}s {tpeak:>6.0f}M"
            row = {"step": step, "tessera_s": t, "tessera_peak_rss_mib": tpeak or None}
            for cls in engines:
                d, mine, ok, peak = results[cls.name][step]
                ratio = f"{t / d:.2f}x slower" if t >= d else f"{d / t:.2f}x faster"
                line += (f" {d:>8.3f}s {ratio:>14} {'    ' if ok is None else ('yes ' if ok else 'NO  ')}"
                         f" {peak or 0:>6.0f}M")
                row[cls.name] = {"seconds": d, "tessera_ratio": t / d, "same_answer": ok, "answer": mine,
                                 "peak_rss_mib": peak}
            print(line)
            for cls in engines:
                d, mine, ok, _ = results[cls.name][step]
                if ok is False:
                    print(f"    {cls.name}: {mine}\n    tessera: {tmeasure[step]['answer']}")
            out["rows"].append(row)
        if args.check and any(row[c.name]["same_answer"] is False
                              for row in out["rows"] for c in engines):
            print("answers differ")
            sys.exit(1)
        if args.postgres:
            if args.tessera is None:
                ap.error("--postgres needs --tessera BIN (to export the web events)")
            out["stream"] = postgres_stream(db, args.runs, args.tessera, tmeasure)
        if "duckdb" in [c.name for c in engines] and not args.no_unify:
            out["unify"] = unify(report["data"], args.tessera)
        dest = os.path.splitext(args.report)[0] + "-compare.json"
        if (args.no_loads or args.no_queries) and os.path.exists(dest):
            # A part of the comparison run on its own (a 10 M run has no
            # room for the generated files and the export at once): the
            # rows measured before are kept.
            with open(dest) as f:
                before = json.load(f)
            mine = {r["step"] for r in out["rows"]}
            kept = [r for r in before.get("rows", []) if r["step"] not in mine]
            out["rows"] = kept + out["rows"]
            for k in ("unify", "stream"):
                if k not in out and k in before:
                    out[k] = before[k]
        with open(dest, "w") as f:
            json.dump(out, f, indent=1)
        if "parquet" in formats:
            sizes = ", ".join(f"{c.name} {results[c.name]['load_parquet'][1]}" for c in engines)
            print(f"database size after loading: tessera {report['database_bytes'] / 1e6:.1f} MB "
                  f"(after the whole run), {sizes}")
        print(f"versions: {out['versions']}; written to {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
