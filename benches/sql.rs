//! SQL benchmarks through the embedded `Database`: `COPY … FROM` a CSV of
//! synthetic orders (1 GiB by default), a full-scan aggregate, and a
//! selective lookup answered through a bitmap index, each run the way a user
//! runs it (SQL text in, Arrow batches out).
//!
//! `cargo bench -p tessera-benches --bench sql`. The CSV is written once to
//! `target/bench-data/` (`TESSERA_BENCH_CSV_MB` sets its size, default
//! 1024); `benches/duckdb/run_sql.sh` runs the same statements on DuckDB
//! over the same file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_benches::{ORDERS_DDL, write_orders_csv};
use tessera_engine::Database;

fn csv_path() -> (PathBuf, u64) {
    let mb: u64 = std::env::var("TESSERA_BENCH_CSV_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&dir).expect("bench data directory");
    let path = dir.join(format!("orders-{mb}MB.csv"));
    if !path.exists() {
        write_orders_csv(&path, mb << 20, 42).expect("write the orders CSV");
    }
    (path, mb)
}

fn copy_sql(path: &std::path::Path) -> String {
    format!(
        "COPY orders FROM '{}' WITH (FORMAT csv, HEADER true)",
        path.display()
    )
}

fn run(db: &Database, sql: &str) -> usize {
    db.sql(sql)
        .expect("query runs")
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

fn copy_csv(c: &mut Criterion) {
    let (path, _) = csv_path();
    let bytes = std::fs::metadata(&path).expect("csv").len();
    let mut g = c.benchmark_group("sql_copy");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Bytes(bytes));
    g.bench_function("copy_csv", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(path.parent().expect("parent")).expect("dir");
                let db = Database::open(dir.path()).expect("open");
                db.sql(ORDERS_DDL).expect("create");
                let t = Instant::now();
                db.sql(&copy_sql(&path)).expect("copy");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn queries(c: &mut Criterion) {
    let (path, _) = csv_path();
    let dir = tempfile::tempdir_in(path.parent().expect("parent")).expect("dir");
    let db = Database::open(dir.path()).expect("open");
    db.sql(ORDERS_DDL).expect("create");
    db.sql("CREATE INDEX ON orders (store_id)").expect("index");
    db.sql(&copy_sql(&path)).expect("copy");
    let mut g = c.benchmark_group("sql_query");
    g.sample_size(20);
    g.bench_function("full_scan_aggregate", |b| {
        b.iter(|| {
            run(
                &db,
                "SELECT channel, count(*), sum(amount), avg(amount) FROM orders GROUP BY channel",
            )
        })
    });
    g.bench_function("selective_lookup_index", |b| {
        b.iter(|| {
            run(
                &db,
                "SELECT order_id, email, amount FROM orders WHERE store_id = 42",
            )
        })
    });
    g.bench_function("selective_lookup_scan", |b| {
        // The same rows found without the index: an expression the storage
        // engine does not answer, so every row is read and compared.
        b.iter(|| {
            run(
                &db,
                "SELECT order_id, email, amount FROM orders WHERE abs(store_id) = 42",
            )
        })
    });
    g.finish();
}

criterion_group!(benches, copy_csv, queries);
criterion_main!(benches);
