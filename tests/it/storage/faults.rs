//! Fault injection through the I/O trait: for every N, fail the Nth write,
//! fsync, rename, unlink or directory sync of a workload; the failure must
//! surface as an error, and after a simulated power cut the reopened store
//! must hold exactly the acknowledged data and pass `verify`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_storage::sim::{FaultMode, SimVfs};
use tessera_storage::{CmpOp, Key, Options, Predicate, Store, TableOptions, Value};
use tessera_tests::{BATCH_ROWS, batch_counts, log_batch, log_schema};

fn options(key: &Option<Key>) -> Options {
    Options {
        background: false,
        flush_threshold_batches: 3,
        compaction_min_small_segments: 2,
        encryption: key.clone(),
        ..Options::default()
    }
}

/// Each test runs on a plaintext database and on an encrypted one, where
/// every file goes through AES-GCM frames that a crash can tear.
fn keys() -> [Option<Key>; 2] {
    [None, Some(Key::from_bytes([0x5a; 32]))]
}

/// What the workload saw acknowledged.
#[derive(Debug, Default)]
struct Acked {
    table: bool,
    batches: BTreeSet<i64>,
    deleted: BTreeSet<i64>,
}

/// Creates a table, appends, deletes, checkpoints and compacts; stops at the
/// first error, as an application would after an I/O failure.
fn workload(store: &Store, acked: &mut Acked) -> tessera_storage::Result<()> {
    store.create_table("log", log_schema(), TableOptions::default())?;
    acked.table = true;
    for k in 0..9 {
        store.append("log", &log_batch(k))?;
        acked.batches.insert(k);
        if k == 5 {
            store.delete_where("log", &Predicate::cmp("batch", CmpOp::Eq, Value::Int(1)))?;
            acked.deleted.insert(1);
        }
        if k == 6 {
            store.checkpoint()?;
        }
    }
    store.compact()?;
    Ok(())
}

fn check(vfs: &Arc<SimVfs>, key: &Option<Key>, acked: &Acked, label: &str) {
    let store = Store::open_with("/db", options(key), Arc::clone(vfs) as _)
        .unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    let report = store.verify().unwrap();
    assert!(
        report.is_ok(),
        "{label}: verify found {:?}",
        report.problems
    );
    if !acked.table {
        // An unacknowledged CREATE TABLE may or may not have landed; it holds nothing.
        if let Ok(t) = store.table("log") {
            assert_eq!(t.row_count(), 0, "{label}");
        }
        return;
    }
    let counts = batch_counts(&store, "log");
    let expected: BTreeSet<i64> = acked.batches.difference(&acked.deleted).copied().collect();
    let present: BTreeSet<i64> = counts.keys().copied().collect();
    assert_eq!(
        present, expected,
        "{label}: the store holds other batches than were acknowledged"
    );
    assert!(
        counts.values().all(|n| *n == BATCH_ROWS),
        "{label}: partial batch {counts:?}"
    );
}

#[test]
fn every_failing_operation_leaves_exactly_the_acknowledged_data() {
    for key in keys() {
        every_failing_operation_with(&key);
    }
}

fn every_failing_operation_with(key: &Option<Key>) {
    // Count the operations of a clean run.
    let clean = Arc::new(SimVfs::new());
    let store = Store::open_with("/db", options(key), Arc::clone(&clean) as _).unwrap();
    let before = clean.op_count();
    let mut acked = Acked::default();
    workload(&store, &mut acked).unwrap();
    let total = clean.op_count() - before;
    drop(store);
    assert!(total > 40, "workload performs {total} mutating operations");

    let mut failures_seen = 0;
    for mode in [FaultMode::Once, FaultMode::Persistent] {
        for n in 1..=total {
            for torn in [None, Some(n * 7919)] {
                let vfs = Arc::new(SimVfs::new());
                let store = Store::open_with("/db", options(key), Arc::clone(&vfs) as _).unwrap();
                vfs.fail_at(n, mode);
                let mut acked = Acked::default();
                let result = workload(&store, &mut acked);
                let injected = vfs.injected_faults();
                if !injected.is_empty() {
                    failures_seen += 1;
                }
                // A failed write, fsync, rename or create must reach the caller
                // (now, or as the error of the flush it triggered). Only the
                // unlink of an obsolete file may fail quietly: the next open
                // removes it.
                if injected.iter().any(|op| *op != "unlink") {
                    let surfaced = result.is_err() || store.background_error().is_some();
                    assert!(
                        surfaced,
                        "op {n} ({mode:?}): injected {injected:?} was swallowed"
                    );
                }
                drop(store);
                vfs.crash(torn);
                let label = format!("op {n} {mode:?} torn={torn:?} encrypted={}", key.is_some());
                check(&vfs, key, &acked, &label);
            }
        }
    }
    assert!(
        failures_seen as u64 >= total,
        "faults were injected ({failures_seen})"
    );
}

#[test]
fn a_crash_during_recovery_is_recovered_from() {
    for key in keys() {
        a_crash_during_recovery_with(&key);
    }
}

fn a_crash_during_recovery_with(key: &Option<Key>) {
    let vfs = Arc::new(SimVfs::new());
    let store = Store::open_with("/db", options(key), Arc::clone(&vfs) as _).unwrap();
    let mut acked = Acked::default();
    store
        .create_table("log", log_schema(), TableOptions::default())
        .unwrap();
    acked.table = true;
    for k in 0..2 {
        store.append("log", &log_batch(k)).unwrap();
        acked.batches.insert(k);
    }
    drop(store);
    vfs.crash(Some(3));
    // Fail each operation of the recovery in turn, crash again, recover.
    for n in 1..40 {
        vfs.fail_at(n, FaultMode::Persistent);
        let r = Store::open_with("/db", options(key), Arc::clone(&vfs) as _);
        drop(r);
        vfs.crash(Some(n));
        check(&vfs, key, &acked, &format!("recovery op {n}"));
    }
}
