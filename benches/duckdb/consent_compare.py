"""Consent beside DuckDB: who may be e-mailed, over the generator's data.

    consent_compare.py DIR --tessera BIN [--reps 20]

DIR holds the generator's Parquet files and load.sql (`tessera gen`).

Tessera: loads DIR/load.sql (all five sources), runs UNIFY with the
consents table as a source, declares it the space's consent record, and
defines a segment (profiles whose orders sum over 500). Then, each in one
`tessera sql` process repeated R times, timed as (t(R) - t(1)) / (R - 1) so
that opening the database is not counted:

  count        SELECT count(*) FROM customers WHERE has_consent(profile_id, 'email_marketing')
  segment      SELECT count(*) FROM segment('big', purpose => 'email_marketing')
  segment_count  SELECT segment_count('big', 'email_marketing') (bitmaps only)
  after_write  one consent row inserted, then `count` (the decisions are
               read again from the table), minus the insert alone

DuckDB: the same consents rows with the profile id Tessera gave each, the
profile ids and the segment's members, in a persistent database; the
latest decision per profile is `arg_max(granted, ts)`:

  count        SELECT count(*) FROM customers JOIN (latest grants) USING (profile_id)
  segment      the same, joined with the segment's members

Both answers are printed (they must agree). Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import duckdb

from common import last_number, median_time, tessera

# UNIFY over the five sources with `consents` as the consent record, as the
# workload of `tessera bench` sets it up, then the segment.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workload", "tessera",
                       "setup_unify.sql")) as _f:
    UNIFY = _f.read() + """
CREATE SEGMENT big ON customers AS
  SELECT profile_id FROM orders GROUP BY 1 HAVING sum(amount) > 500;"""

COUNT = "SELECT count(*) FROM customers WHERE has_consent(profile_id, 'email_marketing');"
SEGMENT = "SELECT count(*) FROM segment('big', purpose => 'email_marketing');"
SEGMENT_COUNT = "SELECT segment_count('big', 'email_marketing');"


def per_statement(binary, db, sql, reps):
    """Seconds per run of `sql`, opening the database not counted."""
    one = min(tessera(binary, db, sql)[0] for _ in range(3))
    many = min(tessera(binary, db, sql * reps)[0] for _ in range(3))
    return (many - one) / (reps - 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="consent-bench-")
    try:
        tdb = os.path.join(work, "tessera")
        with open(os.path.join(args.dir, "load.sql")) as f:
            load = "\n".join(line for line in f if "truth" not in line)
        tessera(args.tessera, tdb, load)
        t = time.perf_counter()
        tessera(args.tessera, tdb, UNIFY)
        unify_s = time.perf_counter() - t
        paths = {}
        for name, q in [("consents", "SELECT profile_id, purpose, granted, ts FROM consents"),
                        ("customers", "SELECT profile_id FROM customers"),
                        ("members", "SELECT profile_id FROM segment('big')")]:
            paths[name] = os.path.join(work, f"{name}.parquet")
            tessera(args.tessera, tdb, f"COPY ({q}) TO '{paths[name]}' WITH (FORMAT parquet)")

        t_count = per_statement(args.tessera, tdb, COUNT, args.reps)
        t_segment = per_statement(args.tessera, tdb, SEGMENT, args.reps)
        t_segment_count = per_statement(args.tessera, tdb, SEGMENT_COUNT, args.reps)
        insert = ("INSERT INTO consents VALUES (0, 'bench@example.com', 'sms_marketing', true, "
                  "TIMESTAMP '2026-01-01 00:00:00');")
        t_insert = per_statement(args.tessera, tdb, insert, args.reps)
        t_both = per_statement(args.tessera, tdb, insert + COUNT, args.reps)
        t_after_write = t_both - t_insert
        tessera_count = last_number(tessera(args.tessera, tdb, COUNT)[1])
        tessera_segment = last_number(tessera(args.tessera, tdb, SEGMENT)[1])
        tessera_segment_count = last_number(tessera(args.tessera, tdb, SEGMENT_COUNT)[1])

        con = duckdb.connect(os.path.join(work, "duck.duckdb"))
        for name, path in paths.items():
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM '{path}'")
        con.execute("CHECKPOINT")
        latest = ("SELECT profile_id FROM consents WHERE purpose = 'email_marketing' "
                  "AND profile_id IS NOT NULL GROUP BY 1 HAVING arg_max(granted, ts)")
        d_count_q = f"SELECT count(*) FROM customers JOIN ({latest}) USING (profile_id)"
        d_segment_q = f"SELECT count(*) FROM members JOIN ({latest}) USING (profile_id)"
        d_count = median_time(lambda: con.execute(d_count_q).fetchall(), 7)
        d_segment = median_time(lambda: con.execute(d_segment_q).fetchall(), 7)
        duck_count = con.execute(d_count_q).fetchone()[0]
        duck_segment = con.execute(d_segment_q).fetchone()[0]
        rows = con.execute("SELECT count(*) FROM consents").fetchone()[0]
        profiles = con.execute("SELECT count(*) FROM customers").fetchone()[0]

        print(json.dumps({
            "duckdb": duckdb.__version__,
            "consent_rows": rows,
            "profiles": profiles,
            "unify_with_consents_s": round(unify_s, 2),
            "answers": {"tessera_count": tessera_count, "duckdb_count": duck_count,
                        "tessera_segment": tessera_segment, "tessera_segment_count": tessera_segment_count,
                        "duckdb_segment": duck_segment},
            "ms": {
                "tessera_count": round(t_count * 1000, 2),
                "tessera_segment": round(t_segment * 1000, 2),
                "tessera_segment_count": round(t_segment_count * 1000, 2),
                "tessera_count_after_write": round(t_after_write * 1000, 2),
                "tessera_insert_one_row": round(t_insert * 1000, 2),
                "duckdb_count": round(d_count * 1000, 2),
                "duckdb_segment": round(d_segment * 1000, 2),
            },
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
