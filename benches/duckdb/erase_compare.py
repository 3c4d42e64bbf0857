"""ERASE PROFILE beside DuckDB: erasing people from the four unified
sources of the generator's data, then making the deletion physical, and
checking the files for what is left.

    erase_compare.py DIR --tessera BIN [--people N]

DIR holds the generator's Parquet files and load.sql (`tessera gen`).

Tessera: loads DIR/load.sql into a fresh database, runs the documented
UNIFY, then in one `tessera sql` process erases N people one statement at a
time (ERASE PROFILE id: rows of four tables, identifiers, segments,
suppression, audit; one fsynced commit each), then purges (COMPACT) in
another. Process times are reported minus the time of opening the same
database and running `SELECT 1` (measured in the same run).

DuckDB: the same four tables, each row carrying the profile id Tessera gave
it (so both erase the same rows), in a persistent database file. The N
people are deleted one transaction each (DELETE from four tables by profile
id), then CHECKPOINT. Afterwards both database directories are searched,
byte by byte, for the erased people's e-mail addresses as stored.

Prints one JSON object.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import duckdb

from common import tessera

SOURCES = [
    ("crm_contacts", "customer_id", ["email", "phone"]),
    ("orders", "order_id", ["email", "phone"]),
    ("web_events", "event_id", ["user_email", "anonymous_id"]),
    ("support_tickets", "ticket_id", ["email", "phone"]),
]

UNIFY = """UNIFY customers
  FROM crm_contacts (customer_id, email, phone),
       orders (customer_id, email, phone),
       web_events (device_id = anonymous_id, email = user_email),
       support_tickets (email, phone)
  WITH (phone.region = 'FR', customer_id.limit = 1, email.limit = 3);"""


def found_in(directory, needles):
    """The needles (bytes, lower case) found in some file under directory,
    each with the first file holding it."""
    blobs = []
    for root, _, files in os.walk(directory):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                blobs.append((f, fh.read().lower()))
    found = {}
    for n in needles:
        for name, b in blobs:
            if n in b:
                found[n.decode()] = name
                break
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--people", type=int, default=20)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="erase-bench-")
    try:
        tdb = os.path.join(work, "tessera")
        # The four unified sources only (as in DuckDB): the generator's
        # consents table is not a source, so erasure does not cover it yet.
        with open(os.path.join(args.dir, "load.sql")) as f:
            load = "\n".join(line for line in f
                             if any(f" {t} " in line or f" {t}(" in line for t, _, _ in SOURCES))
        tessera(args.tessera, tdb, load)
        tessera(args.tessera, tdb, UNIFY)
        # Profile ids of every row, for DuckDB, and the people to erase:
        # profiles with rows in three sources or more, every 997th.
        ids = {}
        for table, key, _ in SOURCES:
            path = os.path.join(work, f"{table}_ids.parquet")
            tessera(args.tessera, tdb,
                    f"COPY (SELECT {key}, profile_id FROM {table}) TO '{path}' WITH (FORMAT parquet)")
            ids[table] = path
        con = duckdb.connect(os.path.join(work, "duck.duckdb"))
        for table, key, _ in SOURCES:
            src = os.path.join(args.dir, f"{table}.parquet")
            con.execute(f"CREATE TABLE {table} AS SELECT s.*, i.profile_id FROM '{src}' s "
                        f"JOIN '{ids[table]}' i USING ({key})")
        con.execute("CHECKPOINT")
        union = " UNION ALL ".join(f"SELECT profile_id, '{t}' AS t FROM {t}" for t, _, _ in SOURCES)
        people = [r[0] for r in con.execute(
            f"SELECT profile_id FROM ({union}) WHERE profile_id IS NOT NULL GROUP BY 1 "
            f"HAVING count(DISTINCT t) >= 3 ORDER BY 1").fetchall()][::997][:args.people]
        in_people = f"profile_id IN ({','.join(map(str, people))})"

        def first_values(where):
            """Lower-cased values of each source's first text identifier."""
            out = set()
            for table, _, cols in SOURCES:
                for (e,) in con.execute(f"SELECT DISTINCT lower(trim({cols[0]})) FROM {table} "
                                        f"WHERE ({where}) AND {cols[0]} IS NOT NULL").fetchall():
                    out.add(e.encode())
            return out

        emails = {e for e in first_values(in_people) if len(e) >= 5}
        # Values someone else also holds would be found legitimately.
        shared = first_values(f"NOT ({in_people}) OR profile_id IS NULL")
        emails -= shared

        # Tessera: the people in one process, then the purge.
        base, _ = tessera(args.tessera, tdb, "SELECT 1")
        erase_sql = "\n".join(f"ERASE PROFILE {p};" for p in people)
        t_erase, _ = tessera(args.tessera, tdb, erase_sql)
        before_t = found_in(tdb, emails)
        t_purge, _ = tessera(args.tessera, tdb, "COMPACT")
        after_t = found_in(tdb, emails)

        # DuckDB: one transaction per person, then CHECKPOINT.
        t = time.perf_counter()
        for p in people:
            con.execute("BEGIN")
            for table, _, _ in SOURCES:
                con.execute(f"DELETE FROM {table} WHERE profile_id = {p}")
            con.execute("COMMIT")
        d_erase = time.perf_counter() - t
        t = time.perf_counter()
        con.execute("CHECKPOINT")
        d_checkpoint = time.perf_counter() - t
        con.close()
        duck_files = os.path.join(work, "duckonly")
        os.makedirs(duck_files)
        for f in os.listdir(work):
            if f.startswith("duck.duckdb"):
                shutil.copy(os.path.join(work, f), duck_files)
        after_d = found_in(duck_files, emails)

        print(json.dumps({
            "people": len(people),
            "emails_checked": len(emails),
            "tessera_open_select1_s": round(base, 3),
            "tessera_erase_s": round(t_erase - base, 3),
            "tessera_erase_per_person_ms": round((t_erase - base) / len(people) * 1000, 1),
            "tessera_purge_compact_s": round(t_purge - base, 3),
            "tessera_emails_on_disk_before_purge": len(before_t),
            "tessera_emails_on_disk_after_purge": len(after_t),
            "tessera_left": after_t,
            "duckdb_version": duckdb.__version__,
            "duckdb_delete_s": round(d_erase, 3),
            "duckdb_delete_per_person_ms": round(d_erase / len(people) * 1000, 1),
            "duckdb_checkpoint_s": round(d_checkpoint, 3),
            "duckdb_emails_on_disk_after_checkpoint": len(after_d),
            "duckdb_left": after_d,
        }, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
