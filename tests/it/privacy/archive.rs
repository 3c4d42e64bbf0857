//! `ARCHIVE`: rows past retention move to Parquet files, stay queryable as
//! `archive.<table>`, and are still covered by `ERASE PROFILE`.

use std::collections::BTreeSet;
use std::path::Path;

use tessera_engine::Database;
use tessera_engine::engine_arrow::array::AsArray;
use tessera_engine::engine_arrow::datatypes::Int64Type;

fn count(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn on_disk(dir: &Path, needle: &str) -> Vec<String> {
    let n: BTreeSet<String> = [needle.to_string()].into();
    super::erase::on_disk(dir, &n)
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

const SETUP: &str = "
    CREATE TABLE crm (customer_id TEXT, email TEXT);
    CREATE TABLE web (event_id BIGINT NOT NULL, email TEXT, url TEXT, ts TIMESTAMP);
    INSERT INTO crm VALUES ('C1', 'marie@example.com'), ('C2', 'paul@example.org');
    INSERT INTO web VALUES
        (1, 'marie@example.com', 'https://shop/marie-old-arch9', now() - INTERVAL '500 days'),
        (2, 'paul@example.org',  'https://shop/paul-old-arch9',  now() - INTERVAL '450 days'),
        (3, 'marie@example.com', 'https://shop/marie-new-arch9', now() - INTERVAL '5 days');
    UNIFY customers FROM crm (customer_id, email), web (email);
    ALTER TABLE web SET (retention = '13 months', retention_column = ts)";

#[test]
fn archived_rows_move_to_parquet_stay_queryable_and_are_erased_with_the_person() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(SETUP).unwrap();
        let out = db.execute("ARCHIVE").unwrap();
        assert_eq!(out[0].tag, "ARCHIVE 2");
        assert_eq!(count(&db, "SELECT count(*) FROM web"), 1);
        assert_eq!(count(&db, "SELECT count(*) FROM archive.web"), 2);
        // The archive's profile ids are the people's: it joins.
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM archive.web a JOIN crm c USING (profile_id) WHERE c.customer_id = 'C1'"
            ),
            1
        );
        // Nothing more is past retention.
        assert_eq!(db.execute("ARCHIVE web").unwrap()[0].tag, "ARCHIVE 0");
    }
    // The archived row is in the archive folder only.
    let files = on_disk(dir.path(), "marie-old-arch9");
    assert!(!files.is_empty(), "the archive file holds the row");
    assert!(files.iter().all(|f| f.contains("/archive/")), "{files:?}");

    // Reopened: still there, and in the person's export. Then the person
    // is erased, archive included.
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM archive.web"), 2);
    let b = db
        .sql("EXPORT PROFILE WHERE email = 'marie@example.com' TO STDOUT")
        .unwrap();
    let d: serde_json::Value =
        serde_json::from_str(b[0].column(0).as_string::<i32>().value(0)).unwrap();
    assert_eq!(d["sources"]["public.web"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["sources"]["archive.web"][0]["url"],
        "https://shop/marie-old-arch9"
    );
    db.execute("ERASE PROFILE WHERE email = 'marie@example.com' IMMEDIATELY")
        .unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM archive.web"), 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM erasure_requests WHERE rows_per_table LIKE '%archive.web%'"
        ),
        1
    );
    drop(db);
    assert!(on_disk(dir.path(), "marie-old-arch9").is_empty());
    assert!(on_disk(dir.path(), "marie@example.com").is_empty());
    assert!(!on_disk(dir.path(), "paul-old-arch9").is_empty());

    // A file no commit listed (a crash between writing it and the commit)
    // is removed at open.
    let stray = dir.path().join("archive/public.web/stray.parquet");
    std::fs::write(&stray, b"PAR1 half written").unwrap();
    let db = Database::open(dir.path()).unwrap();
    assert!(!stray.exists());
    assert_eq!(count(&db, "SELECT count(*) FROM archive.web"), 1);
    assert!(db.verify().unwrap().problems.is_empty());
}

#[test]
fn archive_refuses_what_it_cannot_do() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    for (sql, state) in [("ARCHIVE crm", "55000"), ("ARCHIVE nosuch", "42P01")] {
        let e = db.execute(sql).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
    db.execute("ARCHIVE").unwrap();
    let e = db
        .execute("INSERT INTO archive_files VALUES ('x', 'y', 1, now())")
        .unwrap_err();
    assert_eq!(e.sqlstate(), "42501", "{e}");
}
