//! UNIFY under I/O faults: for every N, the Nth write, fsync, rename or
//! unlink of a workload of writes to unified sources fails; after a
//! simulated power cut the database reopens (the graph replays from its
//! log), holds exactly the acknowledged statements (each one whole or not at
//! all), and its graph agrees with its rows: every row's profile is the one
//! its identifier resolves to, and the graph holds exactly the identifiers
//! of the rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_engine::engine_arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Int64Type, Schema};
use tessera_engine::{Database, EngineOptions};
use tessera_storage::sim::{FaultMode, SimVfs};
use tessera_storage::{Options, Store};

fn open(vfs: &Arc<SimVfs>) -> tessera_engine::Result<Database> {
    let options = Options {
        background: false,
        flush_threshold_batches: 4,
        ..Options::default()
    };
    let store = Store::open_with("/db", options, Arc::clone(vfs) as _)?;
    Database::with_store(store, EngineOptions::default())
}

/// Rows of statement `k`: keys k*10.., values already normalised, linking
/// to earlier statements' people.
fn rows(k: i64) -> Vec<(i64, Option<String>, Option<String>)> {
    (0..4)
        .map(|i| {
            let key = k * 10 + i;
            let person = (k * 3 + i) % 11;
            let email = (i != 3).then(|| format!("p{person}@x.fr"));
            let phone = (i % 2 == 0).then(|| format!("+3361234{:04}", 1000 + (person + k) % 13));
            (key, email, phone)
        })
        .collect()
}

fn batch(k: i64) -> RecordBatch {
    let r = rows(k);
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
            Field::new("phone", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.0))),
            Arc::new(StringArray::from(
                r.iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                r.iter().map(|x| x.2.clone()).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn insert_sql(table: &str, k: i64) -> String {
    let lit = |v: &Option<String>| v.as_ref().map_or("NULL".into(), |s| format!("'{s}'"));
    let values: Vec<String> = rows(k)
        .iter()
        .map(|(key, e, p)| format!("({key}, {}, {})", lit(e), lit(p)))
        .collect();
    format!("INSERT INTO {table} VALUES {}", values.join(", "))
}

/// What the workload saw acknowledged, and the statement that failed.
#[derive(Debug, Default)]
struct Acked {
    unified: bool,
    statements: BTreeSet<i64>,
    failed: Option<i64>,
}

fn workload(db: &Database, acked: &mut Acked) -> tessera_engine::Result<()> {
    db.sql("CREATE TABLE a (key BIGINT NOT NULL, email TEXT, phone TEXT)")?;
    db.sql("CREATE TABLE b (key BIGINT NOT NULL, email TEXT, phone TEXT)")?;
    acked.failed = Some(0);
    db.sql(&insert_sql("a", 0))?;
    acked.statements.insert(0);
    acked.failed = None;
    db.sql(
        "UNIFY s FROM a (email, phone), b (email, phone) WITH (phone.region = 'FR', max_links = 0)",
    )?;
    acked.unified = true;
    for k in 1..9 {
        acked.failed = Some(k);
        let table = if k % 2 == 0 { "a" } else { "b" };
        if k % 3 == 0 {
            db.append(table, &batch(k))?;
        } else {
            db.sql(&insert_sql(table, k))?;
        }
        acked.statements.insert(k);
        acked.failed = None;
        if k == 5 {
            db.flush()?;
        }
    }
    Ok(())
}

fn count(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn check(vfs: &Arc<SimVfs>, acked: &Acked, label: &str) {
    let db = open(vfs).unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    assert!(db.verify().unwrap().is_ok(), "{label}: verify");
    if !acked.unified {
        return;
    }
    if db.space("s").is_none() {
        panic!("{label}: the acknowledged UNIFY is gone");
    }
    // Each statement whole or not at all; acknowledged ones all there.
    let mut present = BTreeSet::new();
    for t in ["a", "b"] {
        for b in db.sql(&format!("SELECT key FROM {t}")).unwrap() {
            let keys = b.column(0).as_primitive::<Int64Type>();
            for i in 0..keys.len() {
                present.insert(keys.value(i));
            }
        }
    }
    let statements: BTreeSet<i64> = present.iter().map(|k| k / 10).collect();
    for k in &statements {
        let whole = (0..4).all(|i| present.contains(&(k * 10 + i)));
        assert!(whole, "{label}: statement {k} partly there: {present:?}");
    }
    let allowed: BTreeSet<i64> = acked
        .statements
        .iter()
        .copied()
        .chain(acked.failed)
        .collect();
    assert!(
        acked.statements.is_subset(&statements),
        "{label}: lost {:?}",
        acked.statements.difference(&statements).collect::<Vec<_>>()
    );
    assert!(
        statements.is_subset(&allowed),
        "{label}: unacknowledged {statements:?}"
    );
    // The graph agrees with the rows.
    for t in ["a", "b"] {
        let wrong = count(
            &db,
            &format!(
                "SELECT count(*) FROM {t} WHERE profile_id IS DISTINCT FROM coalesce(unify('email', email), unify('phone', phone))"
            ),
        );
        assert_eq!(
            wrong, 0,
            "{label}: rows of {t} whose profile disagrees with the graph"
        );
    }
    let values = "SELECT DISTINCT v FROM (SELECT email AS v FROM a UNION ALL SELECT phone FROM a \
                  UNION ALL SELECT email FROM b UNION ALL SELECT phone FROM b) WHERE v IS NOT NULL";
    let in_rows = count(&db, &format!("SELECT count(*) FROM ({values})"));
    let in_graph = count(&db, "SELECT count(*) FROM s_identifiers");
    let both = count(
        &db,
        &format!("SELECT count(*) FROM s_identifiers WHERE value IN ({values})"),
    );
    assert_eq!(
        (in_graph, both),
        (in_rows, in_rows),
        "{label}: graph and rows hold other identifiers"
    );
    let records = count(&db, "SELECT records FROM unify_stats('s')");
    assert_eq!(records, present.len() as i64, "{label}: records resolved");
    // And it goes on working.
    db.sql(&insert_sql("a", 50))
        .unwrap_or_else(|e| panic!("{label}: write after recovery: {e}"));
}

#[test]
fn every_failing_operation_leaves_rows_and_graph_in_agreement() {
    let clean = Arc::new(SimVfs::new());
    let db = open(&clean).unwrap();
    let before = clean.op_count();
    workload(&db, &mut Acked::default()).unwrap();
    let total = clean.op_count() - before;
    drop(db);
    assert!(total > 30, "workload performs {total} mutating operations");
    let mut injected_any = 0;
    for mode in [FaultMode::Once, FaultMode::Persistent] {
        for n in 1..=total {
            let vfs = Arc::new(SimVfs::new());
            let db = open(&vfs).unwrap();
            vfs.fail_at(n, mode);
            let mut acked = Acked::default();
            let _ = workload(&db, &mut acked);
            injected_any += usize::from(!vfs.injected_faults().is_empty());
            drop(db);
            vfs.crash(Some(n * 7919));
            check(&vfs, &acked, &format!("op {n} {mode:?}"));
        }
    }
    assert!(
        injected_any as u64 >= total,
        "faults were injected ({injected_any})"
    );
}
