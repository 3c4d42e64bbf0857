"""UNIFY beside DuckDB: deterministic identity resolution by iterative label
propagation in DuckDB SQL, over the files `tessera gen` wrote, with pairwise
precision / recall / F1 against the generator's truth.

    unify_compare.py DIR [--runs N] [--tessera-ids FILE] [--tessera BIN] [--db FILE]

DIR holds the generator's Parquet files. The DuckDB side follows UNIFY's
documented example as far as SQL label propagation can:
  - the same normalisation (e-mail: trim, lower case, gmail dots and +tags;
    phone: E.164 with FR as the default region), the same built-in junk list;
  - junk detection: a strong value seen with more than 10 distinct strong
    values of other kinds identifies nobody (UNIFY's max_links);
  - connected components over records and their strong identifiers
    (customer id, e-mail, phone) by iterated min-label propagation until
    nothing changes;
  - devices are weak: a device links no two records that have strong
    identifiers; a record with only a device takes the smallest label of
    the identified records on that device.
It has no per-kind limits (customer_id.limit = 1, email.limit = 3): label
propagation cannot refuse a link, which is UNIFY's main precision guard.

--tessera-ids FILE (Parquet: source, row_id, profile_id) scores Tessera's
profile ids with the same SQL. --tessera BIN runs the tessera binary in the
same run: loads DIR/load.sql into a fresh database, runs the documented
UNIFY under /usr/bin/time (wall time, peak RSS of the whole process), and
scores the profile ids it wrote. Prints one JSON object.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

import duckdb

JUNK_ANY = ["null", "none", "nil", "n/a", "na", "-", "--", "0", "-1", "undefined",
            "unknown", "anonymous", "test", "abc123", "123", "x"]
JUNK_EMAILS = ["test@test.com", "test@example.com", "example@example.com", "email@email.com",
               "noemail@noemail.com", "no@email.com", "none@none.com", "a@a.com",
               "asdf@asdf.com", "noreply@example.com", "user@example.com", "mail@mail.com"]
JUNK_LOCALS = ["noemail", "noreply", "no-reply", "donotreply", "unknown", "none"]

# (table, row key, [(kind, column)])
SOURCES = [
    ("crm_contacts", "customer_id", [("customer_id", "customer_id"), ("email", "email"), ("phone", "phone")]),
    ("orders", "order_id", [("customer_id", "customer_id"), ("email", "email"), ("phone", "phone")]),
    ("web_events", "event_id", [("device_id", "anonymous_id"), ("email", "user_email")]),
    ("support_tickets", "ticket_id", [("email", "email"), ("phone", "phone")]),
]


def sql_list(values):
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


NORMALIZE = f"""
CREATE OR REPLACE MACRO norm_email(e) AS (
  CASE
    WHEN e IS NULL THEN NULL
    WHEN NOT regexp_full_match(lower(trim(e)), '[^@\\s]+@[^@\\s.][^@\\s]*\\.[^@\\s]*[^@\\s.]') THEN NULL
    WHEN split_part(lower(trim(e)), '@', 2) IN ('gmail.com', 'googlemail.com')
      THEN nullif(replace(split_part(split_part(lower(trim(e)), '@', 1), '+', 1), '.', ''), '') || '@gmail.com'
    ELSE lower(trim(e))
  END);
CREATE OR REPLACE MACRO digits(p) AS regexp_replace(p, '[^0-9]', '', 'g');
CREATE OR REPLACE MACRO e164(p) AS (
  CASE
    WHEN p IS NULL THEN NULL
    WHEN trim(p) LIKE '+%' OR trim(p) LIKE '00%' THEN
      '+' || regexp_replace(
        CASE WHEN trim(p) LIKE '+%' THEN digits(replace(p, '(0)', '')) ELSE substr(digits(p), 3) END,
        '^330', '33')
    WHEN digits(p) LIKE '0%' THEN '+33' || substr(digits(p), 2)
    ELSE NULL
  END);
CREATE OR REPLACE MACRO norm_phone(p) AS (
  CASE
    WHEN e164(p) IS NULL THEN NULL
    WHEN length(e164(p)) < 9 OR length(e164(p)) > 16 THEN NULL
    WHEN e164(p) LIKE '+33%' AND length(e164(p)) <> 12 THEN NULL
    WHEN replace(right(e164(p), 8), left(right(e164(p), 8), 1), '') = '' THEN NULL
    WHEN right(e164(p), 8) IN ('12345678', '23456789') THEN NULL
    ELSE e164(p)
  END);
CREATE OR REPLACE MACRO junk(v) AS v IS NULL OR lower(v) IN {sql_list(JUNK_ANY)}
  OR lower(v) IN {sql_list(JUNK_EMAILS)} OR split_part(lower(v), '@', 1) IN {sql_list(JUNK_LOCALS)};
"""


def resolve(con):
    """Label propagation; leaves table `labels(rec, label)` and returns rounds."""
    parts = []
    for i, (table, key, cols) in enumerate(SOURCES):
        for kind, col in cols:
            if kind == "email":
                v = f"norm_email({col})"
            elif kind == "phone":
                v = f"norm_phone({col})"
            else:
                v = f"nullif(trim(CAST({col} AS VARCHAR)), '')"
            parts.append(
                f"SELECT ({i}::BIGINT << 40) | {key} AS rec, '{kind}' AS kind, {v} AS val FROM {table}")
    con.execute("CREATE OR REPLACE TABLE ids AS SELECT rec, kind, val FROM ("
                + " UNION ALL ".join(parts) + ") WHERE NOT junk(val)")
    # Junk detection: strong values linked to > 10 distinct strong values of other kinds.
    con.execute("""
        CREATE OR REPLACE TABLE strong AS SELECT * FROM ids WHERE kind <> 'device_id';
        CREATE OR REPLACE TABLE junk_values AS
          SELECT a.kind, a.val FROM strong a JOIN strong b ON a.rec = b.rec AND a.kind <> b.kind
          GROUP BY a.kind, a.val HAVING count(DISTINCT b.kind || ':' || b.val) > 10;
        CREATE OR REPLACE TABLE edges AS
          SELECT rec, kind || ':' || val AS v FROM strong
          WHERE (kind, val) NOT IN (SELECT (kind, val) FROM junk_values);
        CREATE OR REPLACE TABLE labels AS SELECT DISTINCT rec, rec AS label FROM edges;
    """)
    rounds = 0
    while True:
        rounds += 1
        con.execute("""
            CREATE OR REPLACE TABLE vlabel AS
              SELECT e.v, min(l.label) AS label FROM edges e JOIN labels l USING (rec) GROUP BY e.v;
            CREATE OR REPLACE TABLE next_labels AS
              SELECT e.rec, min(vl.label) AS label FROM edges e JOIN vlabel vl USING (v) GROUP BY e.rec;
        """)
        changed = con.execute("""
            SELECT count(*) FROM next_labels n JOIN labels l USING (rec) WHERE n.label <> l.label
        """).fetchone()[0]
        con.execute("CREATE OR REPLACE TABLE labels AS SELECT * FROM next_labels")
        if changed == 0:
            break
    # Weak devices: records with only a device take the smallest label seen
    # on that device; devices never link identified records.
    con.execute("""
        CREATE OR REPLACE TABLE device_label AS
          SELECT d.val, min(l.label) AS label
          FROM ids d JOIN labels l USING (rec) WHERE d.kind = 'device_id' GROUP BY d.val;
        CREATE OR REPLACE TABLE anonymous AS
          SELECT d.rec, min(coalesce(dl.label, -1 - (hash(d.val) >> 2)::BIGINT)) AS label
          FROM ids d LEFT JOIN device_label dl USING (val)
          WHERE d.kind = 'device_id' AND d.rec NOT IN (SELECT rec FROM labels)
          GROUP BY d.rec;
        INSERT INTO labels SELECT rec, label FROM anonymous;
    """)
    return rounds


def score(con, predicted):
    """Pairwise precision/recall/F1 of `predicted(rec, label)` against the truth,
    from contingency counts; records without a label are singletons."""
    cases = " ".join(f"WHEN '{t}' THEN {i}" for i, (t, _, _) in enumerate(SOURCES))
    con.execute(f"""
        CREATE OR REPLACE TABLE scored AS
        SELECT (CASE t.source {cases} END::BIGINT << 40) | t.row_id AS rec, t.person_id,
               coalesce(p.label, -1 - ((CASE t.source {cases} END::BIGINT << 40) | t.row_id)) AS label
        FROM truth t LEFT JOIN {predicted} p
          ON p.rec = (CASE t.source {cases} END::BIGINT << 40) | t.row_id
        WHERE t.source IN {sql_list([s[0] for s in SOURCES])}
    """)
    tp, pp, tt, n = con.execute("""
        SELECT
          (SELECT sum(c * (c - 1) / 2) FROM (SELECT count(*)::HUGEINT AS c FROM scored GROUP BY label, person_id)),
          (SELECT sum(c * (c - 1) / 2) FROM (SELECT count(*)::HUGEINT AS c FROM scored GROUP BY label)),
          (SELECT sum(c * (c - 1) / 2) FROM (SELECT count(*)::HUGEINT AS c FROM scored GROUP BY person_id)),
          (SELECT count(*) FROM scored)
    """).fetchone()
    tp, pp, tt = float(tp or 0), float(pp or 0), float(tt or 0)
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    profiles = con.execute(f"SELECT count(DISTINCT label) FROM {predicted}").fetchone()[0]
    return {"records": n, "profiles": profiles, "precision": precision, "recall": recall, "f1": f1}


UNIFY_SQL = """UNIFY customers
  FROM crm_contacts (customer_id, email, phone),
       orders (customer_id, email, phone),
       web_events (device_id = anonymous_id, email = user_email),
       support_tickets (email, phone)
  WITH (phone.region = 'FR', customer_id.limit = 1, email.limit = 3)"""

EXPORT_SQL = """COPY (SELECT 'crm_contacts' AS source, customer_id AS row_id, profile_id FROM crm_contacts
  UNION ALL SELECT 'orders', order_id, profile_id FROM orders
  UNION ALL SELECT 'web_events', event_id, profile_id FROM web_events
  UNION ALL SELECT 'support_tickets', ticket_id, profile_id FROM support_tickets) TO '{out}' WITH (FORMAT parquet)"""


def timed(cmd):
    """Runs cmd under /usr/bin/time; returns (wall seconds, peak RSS MiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", f.name] + cmd, check=True,
                       stdout=subprocess.DEVNULL)
        wall, kb = f.read().split()[-2:]
    return float(wall), int(kb) / 1024


def run_tessera(binary, data_dir, runs):
    """Loads and unifies with the tessera binary; returns its figures and
    the path of the exported profile ids."""
    db = tempfile.mkdtemp(prefix="tessera-unify-", dir=data_dir)
    try:
        load_s, load_mib = timed([binary, "sql", "--db", db, "-f", os.path.join(data_dir, "load.sql")])
        first_s, first_mib = timed([binary, "sql", "--db", db, "-c", UNIFY_SQL])
        again = [timed([binary, "sql", "--db", db, "-c", UNIFY_SQL]) for _ in range(max(runs - 1, 0))]
        reopen_s, reopen_mib = timed([binary, "sql", "--db", db, "-c", "SELECT count(*) FROM customers"])
        ids = os.path.join(data_dir, "tessera_ids.parquet")
        subprocess.run([binary, "sql", "--db", db, "-c", EXPORT_SQL.format(out=ids)], check=True,
                       stdout=subprocess.DEVNULL)
        disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(db) for f in fs)
        return {
            "load_seconds": load_s,
            "unify_seconds_first": first_s,
            "unify_peak_rss_mib_first": first_mib,
            "unify_seconds_reruns": [a[0] for a in again],
            "unify_peak_rss_mib_reruns": [a[1] for a in again],
            "open_and_count_seconds": reopen_s,
            "open_and_count_peak_rss_mib": reopen_mib,
            "database_mib": disk / 2**20,
            "note": "times are whole processes: start, open (replaying the graph log), statement, close",
        }, ids
    finally:
        shutil.rmtree(db, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tessera-ids")
    ap.add_argument("--tessera")
    ap.add_argument("--db", help="a DuckDB file to work in instead of memory (at 10 M persons "
                    "the tables and the propagation's do not fit in memory)")
    args = ap.parse_args()
    tessera = None
    if args.tessera:
        tessera, args.tessera_ids = run_tessera(args.tessera, args.dir, args.runs)
    if args.db:
        for p in (args.db, args.db + ".wal"):
            if os.path.exists(p):
                os.remove(p)
    con = duckdb.connect(args.db or ":memory:")
    for table in [s[0] for s in SOURCES] + ["truth"]:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{os.path.join(args.dir, table + '.parquet')}')")
    con.execute(NORMALIZE)
    source_rows = sum(con.execute(f"SELECT count(*) FROM {s[0]}").fetchone()[0] for s in SOURCES)
    times = []
    rounds = 0
    for _ in range(args.runs):
        t = time.perf_counter()
        rounds = resolve(con)
        times.append(time.perf_counter() - t)
    out = {
        "engine": "duckdb " + duckdb.__version__,
        "source_rows": source_rows,
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "rows_per_second": source_rows / statistics.median(times),
        "rounds": rounds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "duckdb_quality": score(con, "labels"),
    }
    if tessera:
        out["tessera"] = tessera
    if args.tessera_ids:
        cases = " ".join(f"WHEN '{t}' THEN {i}" for i, (t, _, _) in enumerate(SOURCES))
        con.execute(f"""
            CREATE TABLE tessera AS
            SELECT (CASE source {cases} END::BIGINT << 40) | row_id AS rec, profile_id AS label
            FROM read_parquet('{args.tessera_ids}') WHERE profile_id IS NOT NULL
            -- A key seen twice is not the generator's row (the rows `tessera
            -- bench` appends reuse its keys): neither is scored.
            QUALIFY count(*) OVER (PARTITION BY rec) = 1
        """)
        out["tessera_quality"] = score(con, "tessera")
    print(json.dumps(out, indent=2))
    if args.db:
        con.close()
        for p in (args.db, args.db + ".wal"):
            if os.path.exists(p):
                os.remove(p)


if __name__ == "__main__":
    main()
