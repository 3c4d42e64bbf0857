//! Retention: `ALTER TABLE t SET (retention = '…', retention_column = c)`;
//! the next `COMPACT` deletes the rows past it and purges them from the
//! files.

use std::collections::BTreeSet;

use tessera_engine::Database;
use tessera_engine::engine_arrow::array::AsArray;
use tessera_engine::engine_arrow::datatypes::{Int64Type, UInt64Type};

fn count(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

const SETUP: &str = "
    CREATE TABLE web (id BIGINT NOT NULL, url TEXT, ts TIMESTAMP, day DATE);
    INSERT INTO web VALUES
        (1, 'https://old.example/expired-marker-7q', now() - INTERVAL '400 days', current_date - 400),
        (2, 'https://new.example/kept-marker-7q',    now() - INTERVAL '10 days',  current_date - 10),
        (3, 'https://undated.example/kept-7q',       NULL,                        NULL)";

#[test]
fn compact_expires_rows_past_retention_and_purges_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(SETUP).unwrap();
        db.execute("ALTER TABLE web SET (retention = '13 months', retention_column = ts)")
            .unwrap();
        db.flush().unwrap();
        // Until a compaction, every row is there.
        assert_eq!(count(&db, "SELECT count(*) FROM web"), 3);
        let out = db.sql("COMPACT").unwrap();
        let expired = out[0]
            .column_by_name("rows_expired")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .value(0);
        assert_eq!(expired, 1);
        assert_eq!(count(&db, "SELECT count(*) FROM web"), 2);
        assert_eq!(count(&db, "SELECT count(*) FROM web WHERE id = 1"), 0);
    }
    let needle: BTreeSet<String> = ["expired-marker-7q".to_string()].into();
    assert!(super::erase::on_disk(dir.path(), &needle).is_empty());
    let kept: BTreeSet<String> = ["kept-marker-7q".to_string()].into();
    assert!(!super::erase::on_disk(dir.path(), &kept).is_empty());

    // The setting survives a reopen; a shorter one on the date column
    // expires the 10-day-old row through Database::compact (`tessera compact`).
    let db = Database::open(dir.path()).unwrap();
    db.execute("ALTER TABLE web SET (retention = '1 week', retention_column = day)")
        .unwrap();
    db.compact().unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 1);
    // Without a retention, nothing more goes.
    db.execute("INSERT INTO web VALUES (4, 'x', now() - INTERVAL '3 years', NULL)")
        .unwrap();
    db.execute("ALTER TABLE web SET (retention = 'none')")
        .unwrap();
    db.compact().unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 2);
    // COMPACT of another table leaves this one's expired rows alone.
    db.execute(
        "ALTER TABLE web SET (retention = '1 year', retention_column = ts);
         CREATE TABLE other (x BIGINT);
         COMPACT other",
    )
    .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 2);
    db.execute("COMPACT web").unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 1);
    // A dropped table takes its retention with it.
    db.execute("DROP TABLE web; CREATE TABLE web (id BIGINT NOT NULL, ts TIMESTAMP)")
        .unwrap();
    db.execute("INSERT INTO web VALUES (1, now() - INTERVAL '5 years')")
        .unwrap();
    db.compact().unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 1);
}

#[test]
fn bad_retentions_are_refused() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    db.execute(
        "CREATE TABLE crm (customer_id TEXT, email TEXT);
         INSERT INTO crm VALUES ('C1', 'a@x.fr');
         UNIFY customers FROM crm (customer_id, email)",
    )
    .unwrap();
    for (sql, state) in [
        ("ALTER TABLE web SET (retention = '13 months')", "22023"),
        (
            "ALTER TABLE web SET (retention = 'soon', retention_column = ts)",
            "22023",
        ),
        (
            "ALTER TABLE web SET (retention = '-3 days', retention_column = ts)",
            "22023",
        ),
        (
            "ALTER TABLE web SET (retention = '1 year', retention_column = nope)",
            "42703",
        ),
        (
            "ALTER TABLE web SET (retention = '1 year', retention_column = url)",
            "42804",
        ),
        ("ALTER TABLE web SET (fillfactor = 70)", "0A000"),
        (
            "ALTER TABLE nope SET (retention = '1 year', retention_column = ts)",
            "42P01",
        ),
        (
            "ALTER TABLE \"customers$graph\" SET (retention = '1 year', retention_column = at)",
            "42501",
        ),
    ] {
        let e = db.execute(sql).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
    // Nothing was half-applied: no retention is set.
    db.compact().unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM web"), 3);
}
