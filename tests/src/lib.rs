//! Helpers shared by Tessera's integration tests and the processes they drive.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

pub mod slt;

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use tessera_storage::{ScanOptions, Store};

/// Rows in each batch the crash and fault tests append.
pub const BATCH_ROWS: usize = 50;

/// Schema of the `log` table the crash and fault tests fill: each row says
/// which batch it belongs to and its position in the batch.
pub fn log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("batch", DataType::Int64, false),
        Field::new("pos", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

/// Batch number `k` of the `log` table.
pub fn log_batch(k: i64) -> RecordBatch {
    let n = BATCH_ROWS as i64;
    RecordBatch::try_new(
        log_schema(),
        vec![
            Arc::new(Int64Array::from(vec![k; BATCH_ROWS])),
            Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| format!("batch {k} row {i} {}", "x".repeat((k % 7) as usize)))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

/// For each batch number present in `table`, how many of its rows are there,
/// and whether those rows are exactly positions 0..n with the right payload.
pub fn batch_counts(store: &Store, table: &str) -> std::collections::BTreeMap<i64, usize> {
    let scan = store
        .table(table)
        .unwrap()
        .scan(&ScanOptions::default())
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for b in scan.collect().unwrap() {
        let batch = b.column(0).as_primitive::<Int64Type>();
        let pos = b.column(1).as_primitive::<Int64Type>();
        let payload = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            let k = batch.value(i);
            assert!(!payload.is_null(i));
            assert_eq!(
                payload.value(i),
                format!(
                    "batch {k} row {} {}",
                    pos.value(i),
                    "x".repeat((k % 7) as usize)
                ),
                "row content damaged"
            );
            *out.entry(k).or_insert(0) += 1;
        }
    }
    out
}

/// A number from environment variable `name` (a test's size knob), or
/// `default` when it is unset or not a number.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The generator's tables for `persons` people at `seed`, by table, and
/// the true person of every row: (table, row key) -> person.
pub type Generated = (
    std::collections::HashMap<&'static str, Vec<arrow::array::RecordBatch>>,
    std::collections::HashMap<(String, i64), i64>,
);

/// Generates the multi-channel test data with its ground truth.
pub fn generated(persons: u64, seed: u64) -> Generated {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use tessera_engine::datagen::{GenOptions, Generator};
    let mut batches: std::collections::HashMap<&str, Vec<arrow::array::RecordBatch>> =
        std::collections::HashMap::new();
    for chunk in Generator::new(GenOptions::new(persons, seed)) {
        for (t, b) in chunk.tables {
            batches.entry(t).or_default().push(b);
        }
    }
    let mut truth = std::collections::HashMap::new();
    for b in batches.get("truth").into_iter().flatten() {
        let (s, r, p) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_primitive::<Int64Type>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            truth.insert((s.value(i).to_string(), r.value(i)), p.value(i));
        }
    }
    (batches, truth)
}
