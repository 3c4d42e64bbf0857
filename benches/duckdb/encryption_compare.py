"""Encryption at rest beside DuckDB: what AES-256-GCM costs each engine.

    encryption_compare.py DIR --tessera BIN [--runs 5]

DIR holds the generator's Parquet files and load.sql (`tessera gen`).

Each engine builds the same database twice, without and with a key, and
the ratio encrypted / plain is what encryption costs it:

  load   every table of load.sql (Tessera: load.sql in `tessera sql`, COPY
         FROM the Parquet files; DuckDB: CREATE TABLE AS SELECT from the
         same files, and CHECKPOINT)
  cold   a new process (Tessera) or connection (DuckDB) runs the scan query
         once: opening, reading and decrypting the files it needs
  warm   the same query again in that process, as the median of R runs
  size   the database directory or file

Scan query: SELECT count(*), count(DISTINCT user_email), max(ts) FROM web_events.
Tessera's times are process times minus the same process running
`SELECT 1` (start-up, opening), its warm time the difference between a
process running the query R+1 times and one running it once, over R.
DuckDB: `ATTACH … (ENCRYPTION_KEY …)` (AES-GCM), release 1.4.4 with its
httpfs extension loaded (the only one PyPI packages httpfs for; without
it DuckDB reads encrypted files but cannot write them). Prints one JSON
object.
"""

import argparse
import json
import os
import re
import shutil
import tempfile
import time

import duckdb

from common import size, tessera

QUERY = "SELECT count(*), count(DISTINCT user_email), max(ts) FROM web_events"
KEY_HEX = "6a" * 32


def tessera_side(args, work, encrypted):
    env = dict(os.environ)
    env.pop("TESSERA_KEY", None)
    env.pop("TESSERA_KEY_FILE", None)
    if encrypted:
        env["TESSERA_KEY"] = KEY_HEX
    db = os.path.join(work, "tessera-" + ("enc" if encrypted else "plain"))
    with open(os.path.join(args.dir, "load.sql")) as f:
        load = f.read()
    t_load, _ = tessera(args.tessera, db, load, env)
    t_load -= min(tessera(args.tessera, db, "SELECT 1", env)[0] for _ in range(3))
    base = min(tessera(args.tessera, db, "SELECT 1", env)[0] for _ in range(args.runs))
    colds = sorted(tessera(args.tessera, db, QUERY, env)[0] - base for _ in range(args.runs))
    repeated = tessera(args.tessera, db, ";".join([QUERY] * (args.runs + 1)), env)[0]
    once = colds[len(colds) // 2] + base
    return {
        "load_s": round(t_load, 3),
        "cold_s": round(colds[len(colds) // 2], 3),
        "warm_s": round(max(repeated - once, 0) / args.runs, 4),
        "size_mb": round(size(db) / 1e6, 1),
    }


def httpfs():
    """The httpfs extension file of the duckdb-ext-httpfs package."""
    import duckdb_ext
    root = list(duckdb_ext.__path__)[0]
    for r, _, files in os.walk(root):
        if "httpfs.duckdb_extension" in files:
            return os.path.join(r, "httpfs.duckdb_extension")
    raise RuntimeError("duckdb-ext-httpfs is not installed (run through run.sh)")


def duckdb_side(args, work, encrypted):
    path = os.path.join(work, "duck-" + ("enc" if encrypted else "plain") + ".duckdb")
    # Encryption needs storage version v1.4.0 (newer compression): the
    # plaintext database is written in it too, so only encryption differs.
    opts = f" (STORAGE_VERSION 'v1.4.0'" + (f", ENCRYPTION_KEY '{KEY_HEX}')" if encrypted else ")")
    ext = httpfs()

    def connect():
        # OpenSSL's AES-GCM: the same crypto module for both databases.
        con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        con.execute(f"LOAD '{ext}'")
        con.execute(f"ATTACH '{path}' AS d{opts}")
        con.execute("USE d")
        return con

    with open(os.path.join(args.dir, "load.sql")) as f:
        copies = re.findall(r"^COPY (\w+) FROM '([^']+)'", f.read(), re.M)
    t = time.perf_counter()
    con = connect()
    for table, file in copies:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM '{file}'")
    con.execute("CHECKPOINT")
    con.close()
    t_load = time.perf_counter() - t
    colds, warms = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        con = connect()
        con.execute(QUERY).fetchall()
        colds.append(time.perf_counter() - t)
        for _ in range(args.runs):
            t = time.perf_counter()
            con.execute(QUERY).fetchall()
            warms.append(time.perf_counter() - t)
        con.close()
    colds.sort()
    warms.sort()
    return {
        "load_s": round(t_load, 3),
        "cold_s": round(colds[len(colds) // 2], 3),
        "warm_s": round(warms[len(warms) // 2], 4),
        "size_mb": round(size(path) / 1e6, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="encryption-bench-")
    try:
        out = {"duckdb_version": duckdb.__version__}
        for engine, side in (("tessera", tessera_side), ("duckdb", duckdb_side)):
            plain = side(args, work, False)
            enc = side(args, work, True)
            out[engine] = {
                "plain": plain,
                "encrypted": enc,
                "cost": {k: round(enc[k] / plain[k], 2) if plain[k] else None for k in plain},
            }
        for k in ("load_s", "cold_s", "warm_s"):
            out.setdefault("tessera_vs_duckdb_encrypted", {})[k] = round(
                out["tessera"]["encrypted"][k] / out["duckdb"]["encrypted"][k], 2)
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
