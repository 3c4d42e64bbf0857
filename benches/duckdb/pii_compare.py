"""PII masking beside DuckDB: what masking costs a query.

    pii_compare.py DIR --tessera BIN [--runs 5] [--port 55433]

DIR holds the generator's Parquet files and load.sql (`tessera gen`).

Tessera: loads crm_contacts and orders, tags both `email` columns PII,
serves the database and runs each query through psql (`\\timing`, the
median of R runs after a warm-up) as the superuser (values read, each read
recorded in pii_reads) and as a role without pii_reader (masked):

  distinct  SELECT count(DISTINCT email) FROM crm_contacts
  join      SELECT count(*) FROM orders o JOIN crm_contacts c ON o.email = c.email
  baseline  SELECT count(DISTINCT phone) FROM crm_contacts   (not PII)

DuckDB, in a persistent file: the same queries on the values, and on
`sha256('key' || email)`, the closest it has to a keyed mask (it has no
masking of its own). Prints one JSON object.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

import duckdb

from common import median_time, tessera

QUERIES = {
    "distinct": "SELECT count(DISTINCT email) FROM crm_contacts",
    "join": "SELECT count(*) FROM orders o JOIN crm_contacts c ON o.email = c.email",
    "baseline": "SELECT count(DISTINCT phone) FROM crm_contacts",
}


def psql(port, user, password, sql_list, runs):
    """Median milliseconds of each statement over `runs` runs (after one)."""
    args = ["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "tessera",
            "-v", "ON_ERROR_STOP=1", "-c", "\\timing on"]
    for s in sql_list:
        args += ["-c", s] * (runs + 1)
    out = subprocess.run(args, capture_output=True, text=True,
                         env={**os.environ, "PGPASSWORD": password})
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    times = [float(t) for t in re.findall(r"Time: ([0-9.]+) ms", out.stdout)]
    answers = re.findall(r"^\s+(\d+)\s*$", out.stdout, re.M)
    res = {}
    for i, s in enumerate(sql_list):
        mine = times[i * (runs + 1) + 1:(i + 1) * (runs + 1)]
        answer = answers[i * (runs + 1)] if len(answers) > i * (runs + 1) else None
        res[s] = (statistics.median(mine) if mine else None, answer)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--port", type=int, default=55433)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pii-bench-")
    server = None
    try:
        tdb = os.path.join(work, "tessera")
        with open(os.path.join(args.dir, "load.sql")) as f:
            load = "\n".join(line for line in f if " crm_contacts " in line or " orders " in line)
        tessera(args.tessera, tdb, load)
        tessera(args.tessera, tdb, "ALTER TABLE crm_contacts ALTER COLUMN email SET PII;"
                                   "ALTER TABLE orders ALTER COLUMN email SET PII;")
        server = subprocess.Popen(
            [args.tessera, "serve", "--db", tdb, "--listen", f"127.0.0.1:{args.port}"],
            env={**os.environ, "TESSERA_PASSWORD": "bench-pw"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        psql(args.port, "tessera", "bench-pw",
             ["CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw'",
              "GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst"], 0)
        qs = list(QUERIES.values())
        owner = psql(args.port, "tessera", "bench-pw", qs, args.runs)
        analyst = psql(args.port, "analyst", "analyst-pw", qs, args.runs)
        audit = psql(args.port, "tessera", "bench-pw",
                     ["SELECT count(*) FROM pii_reads"], 0)

        con = duckdb.connect(os.path.join(work, "duck.duckdb"))
        for t in ("crm_contacts", "orders"):
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM '{os.path.join(args.dir, t + '.parquet')}'")
        con.execute("CHECKPOINT")
        masked = {
            "distinct": "SELECT count(DISTINCT sha256('k' || email)) FROM crm_contacts",
            "join": "SELECT count(*) FROM orders o JOIN crm_contacts c "
                    "ON sha256('k' || o.email) = sha256('k' || c.email)",
            "baseline": QUERIES["baseline"],
        }
        duck = {}
        for name, q in QUERIES.items():
            plain = median_time(lambda: con.execute(q).fetchall(), args.runs)
            hashed = median_time(lambda: con.execute(masked[name]).fetchall(), args.runs)
            duck[name] = {"values_ms": round(plain * 1000, 2), "sha256_ms": round(hashed * 1000, 2),
                          "answer": con.execute(q).fetchone()[0]}
        print(json.dumps({
            "duckdb": duckdb.__version__,
            "tessera": {name: {"superuser_ms": owner[q][0], "analyst_masked_ms": analyst[q][0],
                               "answer_superuser": owner[q][1], "answer_analyst": analyst[q][1]}
                        for name, q in QUERIES.items()},
            "pii_reads_rows": list(audit.values())[0][1],
            "duckdb_side": duck,
        }, indent=2))
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
