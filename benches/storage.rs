//! Storage-engine benchmarks: append throughput with an fsync per 10k-row
//! batch, segment flush, a full scan of one column, filtered scans at
//! 0.1 % and 10 % selectivity with and without the bitmap index, and what
//! encryption at rest costs a flush and a cold scan.
//!
//! Run with `cargo bench -p tessera-benches --bench storage`. Set
//! `TESSERA_BENCH_ROWS` to change the scanned table's size (default 4M rows).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::sum;
use arrow::datatypes::Float64Type;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tessera_benches::{events_batch, events_schema};
use tessera_storage::{
    CmpOp, Key, Options, OsVfs, Predicate, ScanOptions, Store, TableOptions, Value,
};

const BATCH: usize = 10_000;

fn quiet() -> Options {
    Options {
        background: false,
        flush_threshold_bytes: usize::MAX,
        flush_threshold_batches: usize::MAX,
        ..Options::default()
    }
}

fn indexed() -> TableOptions {
    TableOptions {
        indexed_columns: vec!["campaign".into(), "bucket".into()],
        auto_index: true,
    }
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), quiet(), Arc::new(OsVfs)).expect("open");
    store
        .create_table("events", events_schema(), indexed())
        .expect("create");
    let batch = events_batch(1, 0, BATCH);
    let mut g = c.benchmark_group("storage/append");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(30);
    g.bench_function("10k_rows_fsync", |b| {
        b.iter(|| store.append("events", &batch).expect("append"));
    });
    g.finish();
}

fn flush(c: &mut Criterion) {
    let rows = 200_000;
    let batches: Vec<RecordBatch> = (0..rows / BATCH)
        .map(|i| events_batch(2, (i * BATCH) as i64, BATCH))
        .collect();
    let mut g = c.benchmark_group("storage/flush");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.bench_function("200k_rows_to_segment", |b| {
        bench_flush(b, &batches, &quiet())
    });
    g.finish();
}

/// Times writing `batches`, appended to a new store, to a segment.
fn bench_flush(b: &mut criterion::Bencher<'_>, batches: &[RecordBatch], opts: &Options) {
    b.iter_batched(
        || {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open_with(dir.path(), opts.clone(), Arc::new(OsVfs)).expect("open");
            store
                .create_table("events", events_schema(), indexed())
                .expect("create");
            for batch in batches {
                store.append("events", batch).expect("append");
            }
            (dir, store)
        },
        |(dir, store)| {
            store.checkpoint().expect("flush");
            (dir, store)
        },
        BatchSize::PerIteration,
    );
}

/// A table of `rows` events in segments of 1M rows, on disk.
fn scan_fixture(rows: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_with(dir.path(), quiet(), Arc::new(OsVfs)).expect("open");
    store
        .create_table("events", events_schema(), indexed())
        .expect("create");
    let mut start = 0;
    while start < rows {
        store
            .append("events", &events_batch(3, start as i64, BATCH))
            .expect("append");
        start += BATCH;
        if start % 1_000_000 == 0 {
            store.checkpoint().expect("flush");
        }
    }
    store.checkpoint().expect("flush");
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "scan fixture: {rows} rows, {:.1} MiB on disk",
        bytes as f64 / (1 << 20) as f64
    );
    (dir, store)
}

fn count(store: &Store, opts: &ScanOptions) -> usize {
    let scan = store
        .table("events")
        .expect("table")
        .scan(opts)
        .expect("scan");
    scan.collect()
        .expect("rows")
        .iter()
        .map(RecordBatch::num_rows)
        .sum()
}

fn scans(c: &mut Criterion) {
    let rows: usize = std::env::var("TESSERA_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4_000_000);
    let (_dir, store) = scan_fixture(rows);
    let mut g = c.benchmark_group("storage/scan");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("full_scan_sum_amount", |b| {
        b.iter(|| {
            let opts = ScanOptions {
                projection: Some(vec!["amount".into()]),
                ..ScanOptions::default()
            };
            let scan = store
                .table("events")
                .expect("table")
                .scan(&opts)
                .expect("scan");
            let mut total = 0.0;
            for batch in scan.collect().expect("rows") {
                total += sum(batch.column(0).as_primitive::<Float64Type>()).unwrap_or(0.0);
            }
            total
        });
    });
    for (label, column, value, expect_frac) in [
        ("0.1pct", "campaign", 42, 0.001),
        ("10pct", "bucket", 7, 0.1),
    ] {
        let pred = Predicate::cmp(column, CmpOp::Eq, Value::Int(value));
        for use_index in [true, false] {
            let opts = ScanOptions {
                projection: Some(vec!["id".into(), "amount".into()]),
                predicate: Some(pred.clone()),
                use_indexes: use_index,
                use_zone_maps: use_index,
                ..ScanOptions::default()
            };
            let n = count(&store, &opts);
            let frac = n as f64 / rows as f64;
            assert!(
                (frac - expect_frac).abs() < expect_frac * 0.2,
                "selectivity {frac} for {label}"
            );
            let name = format!(
                "filter_{label}_{}",
                if use_index {
                    "bitmap_index"
                } else {
                    "full_scan"
                }
            );
            g.bench_function(name, |b| b.iter(|| count(&store, &opts)));
        }
    }
    g.finish();
}

/// What encryption at rest costs the storage engine: writing 200k rows to a
/// segment, and opening a 1M-row table cold and summing a column (an
/// encrypted segment is read and decrypted into memory instead of mapped),
/// each without and with a key.
fn encryption(c: &mut Criterion) {
    let key = || Some(Key::from_bytes([0x42; 32]));
    let mut g = c.benchmark_group("storage/encryption");
    g.sample_size(10);
    let rows = 200_000;
    let batches: Vec<RecordBatch> = (0..rows / BATCH)
        .map(|i| events_batch(4, (i * BATCH) as i64, BATCH))
        .collect();
    g.throughput(Throughput::Elements(rows as u64));
    for (label, encryption) in [("plain", None), ("encrypted", key())] {
        let opts = Options {
            encryption,
            ..quiet()
        };
        g.bench_function(format!("flush_200k_rows_{label}"), |b| {
            bench_flush(b, &batches, &opts)
        });
    }
    let rows = 1_000_000;
    g.throughput(Throughput::Elements(rows as u64));
    for (label, encryption) in [("plain", None), ("encrypted", key())] {
        let opts = Options {
            encryption,
            ..quiet()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_with(dir.path(), opts.clone(), Arc::new(OsVfs)).expect("open");
        store
            .create_table("events", events_schema(), indexed())
            .expect("create");
        for i in 0..rows / BATCH {
            store
                .append("events", &events_batch(5, (i * BATCH) as i64, BATCH))
                .expect("append");
        }
        store.checkpoint().expect("flush");
        drop(store);
        g.bench_function(format!("open_and_sum_1m_rows_{label}"), |b| {
            b.iter(|| {
                let store =
                    Store::open_with(dir.path(), opts.clone(), Arc::new(OsVfs)).expect("open");
                let scan = store
                    .table("events")
                    .expect("table")
                    .scan(&ScanOptions {
                        projection: Some(vec!["amount".into()]),
                        ..ScanOptions::default()
                    })
                    .expect("scan");
                let mut total = 0.0;
                for batch in scan.collect().expect("rows") {
                    total += sum(batch.column(0).as_primitive::<Float64Type>()).unwrap_or(0.0);
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, append, flush, scans, encryption);
criterion_main!(benches);
