"""SEGMENT's work done in DuckDB, over the data of the criterion bench.

    segment_compare.py DIR [--runs 7]

DIR holds crm.parquet, orders.parquet (with the profile id Tessera gave
each order) and people.parquet (the profile table), written by
`TESSERA_BENCH_EXPORT=DIR cargo bench -p tessera-benches --bench segment`.
They are loaded into a persistent DuckDB database; then, each the median of
R runs after a warm-up:

  refresh_high_value   CREATE OR REPLACE TABLE high_value AS (the aggregate
                       definition: lifetime value over 1 000)
  refresh_recent       CREATE OR REPLACE TABLE recent AS (the filter: an
                       order since October)
  count_3way           |(high_value EXCEPT recent) UNION vip| over the
                       materialised members
  semi_join            count(*), sum(amount) of orders of profiles IN the
                       defining query of vip (as Tessera's semi-join row)
  kept_members_join    the same over vip's materialised members (DuckDB's
                       nearest to in_segment over a kept segment)
  append_10k           INSERT of 10 000 orders
  append_10k_rerun     the INSERT, then recent re-run in full
  append_10k_by_hand   the INSERT, then recent's new members added from the
                       new rows only (incremental maintenance written by hand)
  export_people        COPY of the 1 000 000-row profile table to Parquet

Prints one JSON object, with the sizes (which must equal Tessera's).
"""

import argparse
import json
import os
import shutil
import tempfile

import duckdb

from common import median_time

# Orders whose customer id UNIFY refused as junk (0, 123) have no profile:
# a segment never holds NULL.
RECENT = ("SELECT DISTINCT profile_id FROM orders "
          "WHERE ordered_at > TIMESTAMP '2026-10-01 00:00:00' AND profile_id IS NOT NULL")
HIGH_VALUE = ("SELECT profile_id FROM orders WHERE profile_id IS NOT NULL "
              "GROUP BY profile_id HAVING sum(amount) > 1000")
VIP = "SELECT profile_id FROM crm WHERE customer_id % 10 = 0"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="segment-bench-")
    try:
        con = duckdb.connect(os.path.join(work, "duck.duckdb"))
        for name in ("crm", "orders", "people"):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM '{args.dir}/{name}.parquet'")
        con.execute(f"CREATE TABLE vip AS {VIP}")
        con.execute("CHECKPOINT")
        customers = con.execute("SELECT count(*) FROM crm").fetchone()[0]
        ms = {}

        def timed(label, fn):
            ms[label] = round(median_time(fn, args.runs) * 1000, 2)

        timed("refresh_high_value",
              lambda: con.execute(f"CREATE OR REPLACE TABLE high_value AS {HIGH_VALUE}"))
        timed("refresh_recent",
              lambda: con.execute(f"CREATE OR REPLACE TABLE recent AS {RECENT}"))
        count_q = ("SELECT count(*) FROM ((SELECT profile_id FROM high_value EXCEPT "
                   "SELECT profile_id FROM recent) UNION SELECT profile_id FROM vip)")
        timed("count_3way", lambda: con.execute(count_q).fetchall())
        semi = ("SELECT count(*), sum(amount) FROM orders WHERE profile_id IN "
                f"({VIP})")
        timed("semi_join", lambda: con.execute(semi).fetchall())
        kept = ("SELECT count(*), sum(amount) FROM orders WHERE profile_id IN "
                "(SELECT profile_id FROM vip)")
        timed("kept_members_join", lambda: con.execute(kept).fetchall())
        sizes = {
            "recent": con.execute("SELECT count(*) FROM recent").fetchone()[0],
            "high_value": con.execute("SELECT count(*) FROM high_value").fetchone()[0],
            "count_3way": con.execute(count_q).fetchone()[0],
            "semi_join_rows": con.execute(semi).fetchone()[0],
        }

        # 10 000 new orders of random customers, with their profile ids.
        state = {"next": 100 * customers}

        def new_orders():
            first = state["next"]
            state["next"] += 10_000
            con.execute(f"""CREATE OR REPLACE TEMP TABLE new_orders AS
                SELECT {first} + i AS order_id, c AS customer_id,
                       1 + (hash(i, {first}) % 299)::BIGINT AS amount,
                       TIMESTAMP '2026-01-01' + to_days((hash(i, {first}, 1) % 330)::INTEGER) AS ordered_at,
                       crm.profile_id
                FROM (SELECT range AS i, (hash(range, {first}, 2) % {customers})::BIGINT AS c
                      FROM range(10000)) JOIN crm ON crm.customer_id = c""")

        def append():
            con.execute("INSERT INTO orders SELECT * FROM new_orders")

        def run(work_fn):
            def step():
                new_orders()
                work_fn()
            return step

        ms["append_10k"] = round(median_time(run(append), args.runs) * 1000, 2)

        def rerun():
            append()
            con.execute(f"CREATE OR REPLACE TABLE recent AS {RECENT}")

        ms["append_10k_rerun"] = round(median_time(run(rerun), args.runs) * 1000, 2)

        def by_hand():
            append()
            con.execute("""INSERT INTO recent SELECT DISTINCT profile_id FROM new_orders
                WHERE ordered_at > TIMESTAMP '2026-10-01 00:00:00'
                  AND profile_id NOT IN (SELECT profile_id FROM recent)""")

        ms["append_10k_by_hand"] = round(median_time(run(by_hand), args.runs) * 1000, 2)
        out = os.path.join(work, "people_out.parquet")
        timed("export_people",
              lambda: con.execute(f"COPY (SELECT * FROM people) TO '{out}' (FORMAT parquet)"))

        print(json.dumps({
            "duckdb": duckdb.__version__,
            "customers": customers,
            "sizes": sizes,
            "ms": ms,
        }, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
