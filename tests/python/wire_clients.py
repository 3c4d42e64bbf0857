"""Python clients against `tessera serve`: psycopg 3 (parameters, types,
COPY, errors), SQLAlchemy (connect, reflection with inspect()), pandas, and
pgcli (the catalog queries it sends at start-up for its completions, and
its backslash commands).

Run by the Rust test `wire::python` with the server's address in
TESSERA_PORT and the superuser's password in TESSERA_PASSWORD; exits
non-zero (with the failing check) on any difference.
"""

import datetime
import os
import sys

import pandas
import psycopg
import sqlalchemy
from sqlalchemy import inspect, text

PORT = int(os.environ["TESSERA_PORT"])
PASSWORD = os.environ["TESSERA_PASSWORD"]
DSN = f"host=127.0.0.1 port={PORT} user=tessera password={PASSWORD} dbname=tessera"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def psycopg_checks():
    with psycopg.connect(DSN, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE orders (id BIGINT NOT NULL, email TEXT, amount DOUBLE,"
            " paid BOOLEAN, ordered_at TIMESTAMP)"
        )
        rows = [
            (1, "marie@example.com", 19.5, True, datetime.datetime(2024, 3, 1, 10, 0)),
            (2, "paul@example.com", 5.25, False, datetime.datetime(2024, 3, 2, 11, 30)),
            (3, None, None, None, None),
        ]
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", rows)
        # Parameters of several types, text and binary results.
        cur.execute("SELECT * FROM orders WHERE id = %s", (2,))
        check(cur.fetchone() == rows[1], "row 2 by parameter")
        cur.execute("SELECT email FROM orders WHERE amount > %s ORDER BY id", (1.0,))
        check(cur.fetchall() == [("marie@example.com",), ("paul@example.com",)], "amount filter")
        bcur = conn.cursor(binary=True)
        bcur.execute("SELECT id, amount, paid, ordered_at FROM orders ORDER BY id")
        got = bcur.fetchall()
        check(got[0] == (1, 19.5, True, datetime.datetime(2024, 3, 1, 10, 0)), f"binary {got}")
        check(got[2] == (3, None, None, None), "binary NULLs")
        # A prepared statement reused.
        for i in range(1, 4):
            cur.execute("SELECT count(*) FROM orders WHERE id <= %s", (i,), prepare=True)
            check(cur.fetchone()[0] == i, f"prepared {i}")
        # COPY both ways.
        with cur.copy("COPY orders (id, email) FROM STDIN") as copy:
            copy.write_row((4, "anna@example.com"))
            copy.write_row((5, None))
        cur.execute("SELECT count(*) FROM orders")
        check(cur.fetchone()[0] == 5, "after COPY FROM STDIN")
        out = []
        with cur.copy("COPY (SELECT id, email FROM orders ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                out.append(row)
        check(out[3] == ("4", "anna@example.com") and out[4] == ("5", None), f"COPY TO {out}")
        # Errors carry their SQLSTATE; the connection goes on.
        try:
            cur.execute("SELECT * FROM nowhere")
            check(False, "an undefined table raises")
        except psycopg.errors.UndefinedTable:
            pass
        try:
            cur.execute("INSERT INTO orders (id) VALUES (%s)", (None,))
            check(False, "NOT NULL raises")
        except psycopg.errors.NotNullViolation:
            pass
        cur.execute("SELECT 1")
        check(cur.fetchone() == (1,), "usable after errors")
        # Server information.
        check(conn.info.server_version >= 160000, f"server_version {conn.info.server_version}")
        cur.execute("SHOW TimeZone")
        check(cur.fetchone()[0] == "UTC", "TimeZone")


def sqlalchemy_checks():
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://tessera:{PASSWORD}@127.0.0.1:{PORT}/tessera"
    )
    with engine.connect() as conn:
        v = conn.execute(text("select pg_catalog.version()")).scalar()
        check(v.startswith("PostgreSQL 16"), v)
        n = conn.execute(text("SELECT count(*) FROM orders WHERE id > :id"), {"id": 1}).scalar()
        check(n == 4, f"bound parameter count {n}")
    insp = inspect(engine)
    check("orders" in insp.get_table_names(), f"tables {insp.get_table_names()}")
    cols = {c["name"]: c for c in insp.get_columns("orders")}
    check(set(cols) == {"id", "email", "amount", "paid", "ordered_at"}, f"columns {list(cols)}")
    check(isinstance(cols["id"]["type"], sqlalchemy.BigInteger), f"id type {cols['id']['type']}")
    check(cols["id"]["nullable"] is False and cols["email"]["nullable"] is True, "nullability")
    check("public" in insp.get_schema_names(), f"schemas {insp.get_schema_names()}")
    df = pandas.read_sql("SELECT id, amount FROM orders ORDER BY id", engine)
    check(list(df["id"]) == [1, 2, 3, 4, 5], f"pandas ids {list(df['id'])}")
    check(df["amount"].iloc[0] == 19.5, "pandas amount")
    df2 = pandas.read_sql(
        text("SELECT email FROM orders WHERE id = :id"), engine, params={"id": 4}
    )
    check(df2["email"].iloc[0] == "anna@example.com", "pandas with parameters")


def pgcli_checks():
    from pgcli.pgexecute import PGExecute
    from pgspecial.main import PGSpecial

    e = PGExecute(
        database="tessera", user="tessera", password=PASSWORD, host="127.0.0.1", port=PORT, dsn=""
    )
    # What pgcli's completion refresher runs at start-up (casing only with
    # generate_casing_file, off by default).
    check("public" in e.search_path(), f"search_path {e.search_path()}")
    check("public" in list(e.schemata()), "schemata")
    check(("public", "orders") in list(e.tables()), "tables")
    columns = [c[:4] for c in e.table_columns() if c[1] == "orders"]
    check(("public", "orders", "id", "bigint") in columns, f"columns {columns}")
    check(("public", "orders", "amount", "double precision") in columns, f"columns {columns}")
    list(e.views())
    list(e.view_columns())
    check("tessera" in list(e.databases()), "databases")
    list(e.foreignkeys())
    list(e.datatypes())
    functions = {(f.func_name, f.arg_names, f.arg_types, f.return_type) for f in e.functions()}
    check(("unify", ("kind", "value"), ("text", "text"), "bigint") in functions, "unify listed")
    check(
        ("most_recent", ("value", "ts"), ("anyelement", "timestamp with time zone"), "anyelement")
        in functions,
        "most_recent listed",
    )
    check(any(f[0] == "lower" for f in functions), "built-in functions listed")
    # Backslash commands, through pgspecial as pgcli runs them.
    special = PGSpecial()
    for command, want in [("\\dt", "orders"), ("\\d orders", "amount"), ("\\df unify", "kind text")]:
        out = []
        for _title, cur, _headers, _status, _sql, success, _special in e.run(command, pgspecial=special):
            check(success, command)
            out.extend(str(row) for row in (cur or []))
        check(any(want in row for row in out), f"{command}: {out}")


if __name__ == "__main__":
    psycopg_checks()
    sqlalchemy_checks()
    pgcli_checks()
    print("ok")
