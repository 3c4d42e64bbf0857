//! Quickstart: the storage engine on its own.
//!
//! Creates a database in `./tessera-demo` (or the folder given as first
//! argument), loads 2 million synthetic web events (or the count given as
//! second argument) durably, writes them to
//! memory-mapped segments, and answers a few questions with zone maps and
//! bitmap indexes, printing what each scan did. Then deletes a customer's
//! events, compacts, and verifies every file.
//!
//! `cargo run --release -p tessera-storage --example quickstart`

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tessera_storage::{CmpOp, Predicate, ScanOptions, Store, TableOptions, Value};

const CHANNELS: [&str; 4] = ["web", "app", "email", "store"];
const EVENTS: [&str; 5] = ["page_view", "add_to_cart", "purchase", "login", "search"];

fn batch(schema: &Arc<Schema>, start: i64, n: i64) -> RecordBatch {
    // A cheap deterministic mix, so the example needs no random-number crate.
    let h = |i: i64, k: i64| {
        ((i.wrapping_mul(2654435761) ^ k.wrapping_mul(40503)) >> 3).rem_euclid(1 << 30)
    };
    let ids: Vec<i64> = (start..start + n).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|i| h(*i, 1) % 200_000),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| EVENTS[(h(*i, 2) % 5) as usize]),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| CHANNELS[(h(*i, 3) % 4) as usize]),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|i| (h(*i, 4) % 50_000) as f64 / 100.0),
        )),
    ];
    RecordBatch::try_new(Arc::clone(schema), cols).expect("columns match the schema")
}

fn rows(store: &Store, pred: Predicate) -> tessera_storage::Result<(usize, String)> {
    let scan = store.table("events")?.scan(&ScanOptions {
        predicate: Some(pred),
        ..ScanOptions::default()
    })?;
    let r = &scan.report;
    let how = format!(
        "{} of {} segments pruned by zone maps, {} read through bitmap indexes",
        r.segments_pruned.len(),
        r.segments_total,
        r.index_lookups.len()
    );
    Ok((scan.collect()?.iter().map(RecordBatch::num_rows).sum(), how))
}

fn main() -> tessera_storage::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tessera-demo".into());
    let n: i64 = match std::env::args().nth(2) {
        Some(s) => s
            .parse()
            .map_err(|_| tessera_storage::Error::InvalidInput(format!("not a row count: {s}")))?,
        None => 2_000_000,
    };
    let store = Store::open(&dir)?;
    println!("database: {dir}");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("profile_id", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    if store.table("events").is_err() {
        let options = TableOptions {
            indexed_columns: vec!["profile_id".into()],
            auto_index: true,
        };
        store.create_table("events", Arc::clone(&schema), options)?;
    }
    let start = store.table("events")?.row_count() as i64;
    let t = Instant::now();
    let mut k = 0;
    while k < n {
        let len = (n - k).min(50_000);
        store.append("events", &batch(&schema, start + k, len))?;
        k += len;
    }
    store.checkpoint()?;
    println!(
        "loaded {n} events in {:.2?} (each 50k batch fsynced), {} rows in total",
        t.elapsed(),
        start + n
    );

    for (label, pred) in [
        (
            "purchases",
            Predicate::eq("event_type", Value::Str("purchase".into())),
        ),
        (
            "one customer's events",
            Predicate::eq("profile_id", Value::Int(4242)),
        ),
        (
            "ids in the first 100k",
            Predicate::cmp("id", CmpOp::Lt, Value::Int(100_000)),
        ),
    ] {
        let t = Instant::now();
        let (count, how) = rows(&store, pred)?;
        println!(
            "{label:>24}: {count:>8} rows in {:>10.2?}  ({how})",
            t.elapsed()
        );
    }

    let erased = store.delete_where("events", &Predicate::eq("profile_id", Value::Int(4242)))?;
    let report = store.compact()?;
    println!(
        "deleted {erased} events of profile 4242; compaction rewrote {} segments and purged {} rows",
        report.segments_removed, report.rows_purged
    );
    let check = store.verify()?;
    println!(
        "verify: {} files, {} segments, {} indexes checked: {}",
        check.files_checked,
        check.segments,
        check.indexes,
        if check.is_ok() {
            "no problems".to_string()
        } else {
            format!("{:?}", check.problems)
        }
    );
    Ok(())
}
