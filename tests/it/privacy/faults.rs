//! `ERASE … IMMEDIATELY` under I/O faults: for every N, the Nth write,
//! fsync, rename or unlink of the statement fails (once, or from then on
//! as on a dying disk), then the power is cut. After a reopen the person is
//! either wholly there (rows, identifiers, no request) or wholly erased
//! (no row, no identifier, the request recorded, their data suppressed);
//! an acknowledged erasure is always the second; and a purge the crash
//! interrupted is completed by the reopened database, leaving no byte of
//! the person in any file. `ARCHIVE` under the same faults moves every
//! expired row or none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_engine::engine_arrow::array::AsArray;
use tessera_engine::engine_arrow::datatypes::Int64Type;
use tessera_engine::{Database, EngineOptions};
use tessera_storage::sim::{FaultMode, SimVfs};
use tessera_storage::{Options, Store};

const ERASE: &str = "ERASE PROFILE WHERE email = 'Marie.Curie@gmail.com' IMMEDIATELY";
const NEEDLES: &[&str] = &["mariecurie@gmail.com", "+33612345678", "laptop-marie-1"];

fn open(vfs: &Arc<SimVfs>) -> tessera_engine::Result<Database> {
    let options = Options {
        background: false,
        ..Options::default()
    };
    let store = Store::open_with("/db", options, Arc::clone(vfs) as _)?;
    Database::with_store(store, EngineOptions::default())
}

fn setup(db: &Database) {
    db.sql(
        "CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT, phone TEXT);
         CREATE TABLE events (id BIGINT NOT NULL, device TEXT, email TEXT);
         INSERT INTO contacts VALUES (1, 'mariecurie@gmail.com', '+33612345678'),
                                     (2, 'paul.langevin@example.org', '+33611111111');
         INSERT INTO events VALUES (10, 'laptop-marie-1', 'mariecurie@gmail.com'),
                                   (11, 'phone-paul-2', 'paul.langevin@example.org'),
                                   (12, 'laptop-marie-1', NULL);
         UNIFY people FROM contacts (email, phone), events (device_id = device, email)
           WITH (phone.region = 'FR');
         CREATE SEGMENT everyone ON people AS SELECT profile_id FROM contacts",
    )
    .unwrap();
    db.flush().unwrap();
    // Some of it only in the log.
    db.sql("INSERT INTO events VALUES (13, 'laptop-marie-1', 'mariecurie@gmail.com')")
        .unwrap();
}

fn int(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// Checks the reopened database; returns whether Marie is erased.
fn check(vfs: &Arc<SimVfs>, acked: bool, label: &str) -> bool {
    let db = open(vfs).unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
    let rows = int(&db, "SELECT count(*) FROM contacts WHERE id = 1")
        + int(&db, "SELECT count(*) FROM events WHERE id IN (10, 12, 13)");
    let values = int(
        &db,
        "SELECT count(*) FROM people_identifiers WHERE value IN ('mariecurie@gmail.com', '+33612345678', 'laptop-marie-1')",
    );
    // The view exists once the database has begun an erasure.
    let requests = match db.sql("SELECT count(*) FROM erasure_requests") {
        Ok(b) => b[0].column(0).as_primitive::<Int64Type>().value(0),
        Err(e) if e.sqlstate() == "42P01" => 0,
        Err(e) => panic!("{label}: {e}"),
    };
    let members = int(&db, "SELECT count(*) FROM segment('everyone')");
    let erased = rows == 0;
    if erased {
        assert_eq!(
            (values, requests, members),
            (0, 1, 1),
            "{label}: erased in part"
        );
        // Suppressed after the crash too.
        db.sql("INSERT INTO contacts VALUES (3, 'MarieCurie@gmail.com', NULL)")
            .unwrap();
        assert_eq!(int(&db, "SELECT count(*) FROM contacts"), 1, "{label}");
        // The interrupted purge is completed by the reopened database.
        let started = Instant::now();
        while !db.pending_erasures().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{label}: the purge never completed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for (path, bytes) in vfs.files() {
            let lower = bytes.to_ascii_lowercase();
            for n in NEEDLES {
                assert!(
                    !lower.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{label}: {n} in {}",
                    path.display()
                );
            }
        }
    } else {
        assert!(!acked, "{label}: an acknowledged erasure is gone");
        assert_eq!(
            (rows, values, requests, members),
            (4, 3, 0, 2),
            "{label}: half-erased"
        );
    }
    erased
}

#[test]
fn a_crash_anywhere_in_an_erasure_leaves_all_or_nothing() {
    let clean = Arc::new(SimVfs::new());
    let db = open(&clean).unwrap();
    setup(&db);
    let before = clean.op_count();
    db.sql(ERASE).unwrap();
    let total = clean.op_count() - before;
    drop(db);
    assert!(total > 10, "ERASE performs {total} mutating operations");
    let (mut kept, mut erased) = (0, 0);
    for mode in [FaultMode::Once, FaultMode::Persistent] {
        for n in 1..=total {
            let vfs = Arc::new(SimVfs::new());
            let db = open(&vfs).unwrap();
            setup(&db);
            vfs.fail_at(n, mode);
            let acked = db.sql(ERASE).is_ok();
            drop(db);
            vfs.crash(Some(n * 7919));
            vfs.clear_faults();
            if check(&vfs, acked, &format!("op {n} {mode:?}")) {
                erased += 1;
            } else {
                kept += 1;
            }
        }
    }
    assert!(
        kept > 0 && erased > 0,
        "both outcomes occur: {kept} kept, {erased} erased"
    );
}

const ARCHIVE_SETUP: &str = "
    CREATE TABLE web (id BIGINT NOT NULL, url TEXT, ts TIMESTAMP);
    INSERT INTO web VALUES (1, 'old-1', now() - INTERVAL '400 days'),
                           (2, 'old-2', now() - INTERVAL '500 days'),
                           (3, 'old-3', now() - INTERVAL '600 days'),
                           (4, 'new-4', now() - INTERVAL '1 day');
    ALTER TABLE web SET (retention = '13 months', retention_column = ts)";

/// Rows of `archive.web` (none before a first archive exists).
fn archived(db: &Database, label: &str) -> i64 {
    match db.sql("SELECT count(*) FROM archive.web") {
        Ok(b) => b[0].column(0).as_primitive::<Int64Type>().value(0),
        Err(e) if matches!(e.sqlstate(), "42P01" | "3F000") => 0,
        Err(e) => panic!("{label}: {e}"),
    }
}

/// `ARCHIVE` under I/O faults at every operation: after a crash and a
/// reopen every row is in the table or in the archive, never both and
/// never neither; an acknowledged archive is wholly in the archive.
#[test]
fn a_crash_anywhere_in_an_archive_loses_or_doubles_no_row() {
    let clean = Arc::new(SimVfs::new());
    let db = open(&clean).unwrap();
    db.execute(ARCHIVE_SETUP).unwrap();
    let before = clean.op_count();
    db.execute("ARCHIVE web").unwrap();
    let total = clean.op_count() - before;
    assert_eq!(archived(&db, "clean"), 3);
    drop(db);
    let (mut moved, mut stayed) = (0, 0);
    for mode in [FaultMode::Once, FaultMode::Persistent] {
        for n in 1..=total {
            let label = format!("op {n} {mode:?}");
            let vfs = Arc::new(SimVfs::new());
            let db = open(&vfs).unwrap();
            db.execute(ARCHIVE_SETUP).unwrap();
            vfs.fail_at(n, mode);
            let acked = db.execute("ARCHIVE web").is_ok();
            drop(db);
            vfs.crash(Some(n * 7919));
            vfs.clear_faults();
            let db = open(&vfs).unwrap_or_else(|e| panic!("{label}: reopen: {e}"));
            let (table, archive) = (int(&db, "SELECT count(*) FROM web"), archived(&db, &label));
            match (table, archive) {
                (1, 3) => moved += 1,
                (4, 0) => {
                    assert!(!acked, "{label}: an acknowledged archive is gone");
                    stayed += 1;
                }
                other => panic!("{label}: table and archive hold {other:?} rows"),
            }
            assert!(db.verify().unwrap().problems.is_empty(), "{label}");
        }
    }
    assert!(moved > 0 && stayed > 0, "{moved} moved, {stayed} stayed");
}
