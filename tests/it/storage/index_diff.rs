//! Differential test: for random data and random predicates, a scan through
//! zone maps and bitmap indexes returns exactly the rows a brute-force
//! evaluation (a hand-written three-valued interpreter over every row) does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_storage::sim::SimVfs;
use tessera_storage::{CmpOp, Options, Predicate, ScanOptions, Store, TableOptions, Value};

const CHANNELS: [&str; 5] = ["web", "app", "store", "email", "phone"];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("amount", DataType::Int32, true),
        Field::new("score", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
    ]))
}

fn batch(rng: &mut StdRng, start: i64, n: usize, skew: i32) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let nul = |rng: &mut StdRng| rng.random_bool(0.1);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| CHANNELS[rng.random_range(0..5)]))
                .collect::<StringArray>(),
        ),
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| format!("C{:02}", rng.random_range(0..20))))
                .collect::<StringArray>(),
        ),
        // Segments cover shifted ranges so zone maps can prune.
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| skew + rng.random_range(0..1000)))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| rng.random_range(-50.0..50.0)))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| rng.random_bool(0.3)))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            ids.iter()
                .map(|_| (!nul(rng)).then(|| 20000 + rng.random_range(0..30)))
                .collect::<Date32Array>(),
        ),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

fn random_value(rng: &mut StdRng, column: &str) -> Value {
    if rng.random_bool(0.03) {
        return Value::Null;
    }
    match column {
        "id" => Value::Int(rng.random_range(-10..6000)),
        "channel" => Value::Str(if rng.random_bool(0.1) {
            "fax".into()
        } else {
            CHANNELS[rng.random_range(0..5)].into()
        }),
        "country" => Value::Str(format!("C{:02}", rng.random_range(0..22))),
        "amount" => Value::Int(rng.random_range(-100..4200)),
        "score" => Value::Float(rng.random_range(-60.0..60.0)),
        "flag" => Value::Bool(rng.random_bool(0.5)),
        _ => Value::Int(20000 + rng.random_range(-2..32)),
    }
}

fn random_predicate(rng: &mut StdRng, depth: u32) -> Predicate {
    let cols = ["id", "channel", "country", "amount", "score", "flag", "day"];
    let col = cols[rng.random_range(0..cols.len())];
    let ops = [
        CmpOp::Eq,
        CmpOp::NotEq,
        CmpOp::Lt,
        CmpOp::LtEq,
        CmpOp::Gt,
        CmpOp::GtEq,
    ];
    let leaf = rng.random_range(0..10);
    if depth == 0 || leaf < 4 {
        return match leaf % 4 {
            0 | 1 => Predicate::cmp(col, ops[rng.random_range(0..6)], random_value(rng, col)),
            2 => Predicate::InList {
                column: col.into(),
                values: (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, col))
                    .collect(),
            },
            // A set of ids over an integer column, dense or sparse, some
            // outside the column's values.
            _ if matches!(col, "id" | "amount") && rng.random_bool(0.5) => {
                let n = [3usize, 300, 3000][rng.random_range(0..3)];
                let ids: roaring::RoaringBitmap =
                    (0..n).map(|_| rng.random_range(0..6000u32)).collect();
                Predicate::InSet {
                    column: col.into(),
                    set: tessera_storage::IdSet::new(Arc::new(ids)),
                }
            }
            _ if rng.random_bool(0.5) => Predicate::IsNull(col.into()),
            _ => Predicate::IsNotNull(col.into()),
        };
    }
    match rng.random_range(0..3) {
        0 => Predicate::And(
            (0..rng.random_range(1..4))
                .map(|_| random_predicate(rng, depth - 1))
                .collect(),
        ),
        1 => Predicate::Or(
            (0..rng.random_range(1..4))
                .map(|_| random_predicate(rng, depth - 1))
                .collect(),
        ),
        _ => Predicate::Not(Box::new(random_predicate(rng, depth - 1))),
    }
}

/// SQL three-valued logic by hand: `None` is UNKNOWN.
fn eval(p: &Predicate, row: &HashMap<String, Value>) -> Option<bool> {
    let cmp = |a: &Value, op: CmpOp, b: &Value| -> Option<bool> {
        if a.is_null() || b.is_null() {
            return None;
        }
        let o = a.compare(b)?;
        Some(match op {
            CmpOp::Eq => o.is_eq(),
            CmpOp::NotEq => o.is_ne(),
            CmpOp::Lt => o.is_lt(),
            CmpOp::LtEq => o.is_le(),
            CmpOp::Gt => o.is_gt(),
            CmpOp::GtEq => o.is_ge(),
        })
    };
    match p {
        Predicate::Compare { column, op, value } => cmp(&row[column], *op, value),
        Predicate::InList { column, values } => {
            let x = &row[column];
            if values.is_empty() {
                return Some(false);
            }
            if x.is_null() {
                return None;
            }
            let mut unknown = false;
            for v in values {
                match cmp(x, CmpOp::Eq, v) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            if unknown { None } else { Some(false) }
        }
        Predicate::InSet { column, set } => match &row[column] {
            Value::Int(v) => Some(u32::try_from(*v).is_ok_and(|v| set.ids().contains(v))),
            _ => None,
        },
        Predicate::IsNull(c) => Some(row[c].is_null()),
        Predicate::IsNotNull(c) => Some(!row[c].is_null()),
        Predicate::And(ps) => {
            let mut acc = Some(true);
            for q in ps {
                acc = match (acc, eval(q, row)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
            }
            acc
        }
        Predicate::Or(ps) => {
            let mut acc = Some(false);
            for q in ps {
                acc = match (acc, eval(q, row)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                };
            }
            acc
        }
        Predicate::Not(q) => eval(q, row).map(|b| !b),
    }
}

fn ids(batches: &[RecordBatch]) -> BTreeSet<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn index_and_zone_map_scans_equal_brute_force() {
    let seeds: u64 = tessera_tests::env_or("TESSERA_DIFF_SEEDS", 24);
    let mut total_index_lookups = 0;
    let mut total_pruned = 0;
    for seed in 0..seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let vfs = Arc::new(SimVfs::new());
        let opts = Options {
            background: false,
            ..Options::default()
        };
        let store = Store::open_with("/db", opts, vfs).unwrap();
        let options = TableOptions {
            indexed_columns: vec!["amount".into(), "id".into()],
            auto_index: true,
        };
        store.create_table("t", schema(), options).unwrap();
        let mut next = 0;
        for seg in 0..4 {
            let n = rng.random_range(200..1200);
            store
                .append("t", &batch(&mut rng, next, n, seg * 1000))
                .unwrap();
            next += n as i64;
            if seg < 3 {
                store.checkpoint().unwrap(); // the last one stays in memory
            }
        }
        // Delete a few rows through a predicate so deletion vectors are in play.
        store
            .delete_where(
                "t",
                &Predicate::cmp("id", CmpOp::Lt, Value::Int(rng.random_range(0..50))),
            )
            .unwrap();

        let snap = store.table("t").unwrap();
        let all = snap
            .scan(&ScanOptions::default())
            .unwrap()
            .collect()
            .unwrap();
        let mut rows = Vec::new();
        for b in &all {
            for i in 0..b.num_rows() {
                let row: HashMap<String, Value> = b
                    .schema()
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| (f.name().clone(), Value::from_array(c.as_ref(), i).unwrap()))
                    .collect();
                rows.push(row);
            }
        }
        for case in 0..60 {
            let pred = random_predicate(&mut rng, 3);
            let expected: BTreeSet<i64> = rows
                .iter()
                .filter(|r| eval(&pred, r) == Some(true))
                .map(|r| match r["id"] {
                    Value::Int(i) => i,
                    _ => unreachable!(),
                })
                .collect();
            let with = |use_indexes, use_zone_maps| {
                let opts = ScanOptions {
                    predicate: Some(pred.clone()),
                    use_indexes,
                    use_zone_maps,
                    ..ScanOptions::default()
                };
                let scan = snap.scan(&opts).unwrap();
                let report = scan.report.clone();
                (ids(&scan.collect().unwrap()), report)
            };
            let diff = |got: &BTreeSet<i64>| -> Vec<i64> {
                got.symmetric_difference(&expected)
                    .take(10)
                    .copied()
                    .collect()
            };
            let (fast, report) = with(true, true);
            assert!(
                fast == expected,
                "seed {seed} case {case}: indexes + zone maps differ for {pred} on ids {:?}",
                diff(&fast)
            );
            let (plain, _) = with(false, false);
            assert!(
                plain == expected,
                "seed {seed} case {case}: plain scan differs for {pred} on ids {:?}",
                diff(&plain)
            );
            // Without the final filter the scan may return more, never less.
            let loose = snap
                .scan(&ScanOptions {
                    predicate: Some(pred.clone()),
                    filter: false,
                    ..ScanOptions::default()
                })
                .unwrap();
            let exact = loose.report.exact;
            let loose = ids(&loose.collect().unwrap());
            assert!(
                loose.is_superset(&expected),
                "seed {seed} case {case}: pruning lost rows for {pred}"
            );
            if exact {
                assert!(
                    loose == expected,
                    "seed {seed} case {case}: an exact index answer was not exact for {pred}: {:?}",
                    diff(&loose)
                );
            }
            total_index_lookups += report.index_lookups.len();
            total_pruned += report.segments_pruned.len();
        }
    }
    assert!(
        total_index_lookups > 100,
        "indexes were exercised ({total_index_lookups})"
    );
    assert!(
        total_pruned > 10,
        "zone maps pruned segments ({total_pruned})"
    );
}

/// A set of ids keeps its answer per batch of a segment file; a later scan
/// answered from it still drops rows deleted since, and sees the rows of
/// files written since (a compaction's new files are new batches).
#[test]
fn kept_set_answers_follow_deletions_and_compaction() {
    let mut rng = StdRng::seed_from_u64(7);
    let vfs = Arc::new(SimVfs::new());
    let opts = Options {
        background: false,
        ..Options::default()
    };
    let store = Store::open_with("/db", opts, vfs).unwrap();
    store
        .create_table("t", schema(), TableOptions::default())
        .unwrap();
    for seg in 0..3 {
        store
            .append("t", &batch(&mut rng, seg * 1000, 1000, 0))
            .unwrap();
        store.checkpoint().unwrap();
    }
    let members: roaring::RoaringBitmap = (0..3000u32).filter(|i| i % 7 == 0).collect();
    let set = tessera_storage::IdSet::new(Arc::new(members.clone()));
    let pred = Predicate::InSet {
        column: "id".into(),
        set: set.clone(),
    };
    let scan = |store: &Store| {
        let opts = ScanOptions {
            predicate: Some(pred.clone()),
            use_indexes: false,
            ..ScanOptions::default()
        };
        ids(&store
            .table("t")
            .unwrap()
            .scan(&opts)
            .unwrap()
            .collect()
            .unwrap())
    };
    let live = |store: &Store| {
        ids(&store
            .table("t")
            .unwrap()
            .scan(&ScanOptions::default())
            .unwrap()
            .collect()
            .unwrap())
    };
    let expected = |store: &Store| -> BTreeSet<i64> {
        live(store)
            .into_iter()
            .filter(|i| members.contains(*i as u32))
            .collect()
    };
    let first = scan(&store);
    assert_eq!(first, expected(&store));
    let kept = set.kept_batches();
    assert!(kept >= 3, "one answer kept per batch of each file: {kept}");
    assert_eq!(scan(&store), first, "answered from what was kept");
    assert_eq!(set.kept_batches(), kept);

    store
        .delete_where("t", &Predicate::cmp("id", CmpOp::Lt, Value::Int(1500)))
        .unwrap();
    let after_delete = scan(&store);
    assert_eq!(after_delete, expected(&store));
    assert!(after_delete.iter().all(|i| *i >= 1500));

    store.compact().unwrap();
    assert_eq!(scan(&store), expected(&store));
    assert!(
        set.kept_batches() > kept,
        "the compacted file is new to the set"
    );
}
