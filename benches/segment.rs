//! SEGMENT benchmarks through the embedded `Database`, over a unified space
//! of `TESSERA_BENCH_PROFILES` profiles (default 1 000 000): CRM contacts,
//! and five orders per profile on average.
//!
//! - `segment_count` of a three-way expression, through SQL;
//! - `in_segment` filtering orders vs the equivalent `profile_id IN (SELECT …)`
//!   semi-join over the segment's defining query: repeated (the set keeps
//!   its answer per batch of each file) and first after the members
//!   changed (every row probed);
//! - a full refresh of a typical segment (an aggregate over every order,
//!   and a filter over every order);
//! - appending 10 000 orders: alone, with a row-level `ON COMMIT` segment
//!   (refreshed incrementally from the new rows), and with an aggregate per
//!   profile (refreshed incrementally for the profiles the new rows
//!   touched);
//! - exporting a segment of every profile to Parquet;
//! - a restart: opening the database again (the identity graph and the
//!   segments restored) and answering a first `segment_count`.
//!
//! `cargo bench -p tessera-benches --bench segment`. With
//! `TESSERA_BENCH_EXPORT=DIR`, the data (crm, orders with their profile
//! ids, the profile table) is also written to DIR as Parquet for
//! `benches/duckdb/run.sh segment DIR`, which runs the same work in DuckDB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_engine::Database;
use tessera_engine::engine_arrow::array::{
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Schema, TimeUnit};

/// 2026-01-01 in microseconds.
const T0: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;

fn profiles() -> i64 {
    std::env::var("TESSERA_BENCH_PROFILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn orders(rng: &mut StdRng, first: i64, n: usize, customers: i64) -> RecordBatch {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Int64, false),
        Field::new("ordered_at", ts, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(first..first + n as i64)),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| rng.random_range(0..customers)),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| rng.random_range(1..300)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..n).map(|_| T0 + rng.random_range(0..330) * DAY),
            )),
        ],
    )
    .expect("orders")
}

fn setup(dir: &std::path::Path, n: i64) -> Database {
    let db = Database::open(dir).expect("open");
    db.execute(
        "CREATE TABLE crm (customer_id BIGINT NOT NULL, email TEXT);
         CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT, amount BIGINT, ordered_at TIMESTAMP)",
    )
    .expect("tables");
    let chunk = 200_000i64;
    let mut at = 0;
    while at < n {
        let m = chunk.min(n - at);
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(at..at + m)),
                Arc::new(StringArray::from_iter_values(
                    (at..at + m).map(|i| format!("customer{i}@example.com")),
                )),
            ],
        )
        .expect("crm");
        db.append("crm", &b).expect("crm rows");
        at += m;
    }
    let mut rng = StdRng::seed_from_u64(42);
    let total = 5 * n;
    let mut at = 0;
    while at < total {
        let m = 500_000.min(total - at);
        db.append("orders", &orders(&mut rng, at, m as usize, n))
            .expect("orders rows");
        at += m;
    }
    db.flush().expect("flush");
    db.execute(
        "UNIFY people FROM crm (customer_id, email), orders (customer_id);
         CREATE SEGMENT recent ON people AS SELECT profile_id FROM orders WHERE ordered_at > TIMESTAMP '2026-10-01 00:00:00';
         CREATE SEGMENT high_value ON people AS SELECT profile_id FROM orders GROUP BY profile_id HAVING sum(amount) > 1000;
         CREATE SEGMENT vip ON people AS SELECT profile_id FROM crm WHERE customer_id % 10 = 0;
         CREATE SEGMENT everyone ON people AS SELECT profile_id FROM crm",
    )
    .expect("unify and segments");
    db
}

fn rows(db: &Database, sql: &str) -> usize {
    db.sql(sql)
        .expect("query")
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

/// Revenue of vip's orders, filtered by `in_segment`.
const IN_VIP: &str = "SELECT count(*), sum(amount) FROM orders WHERE in_segment(profile_id, 'vip')";

/// The time of `query` alone, `iters` times, each after `setup()`'s
/// statement (not timed).
fn timed_after(
    db: &Database,
    iters: u64,
    query: &str,
    mut setup: impl FnMut() -> String,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        rows(db, &setup());
        let started = Instant::now();
        rows(db, query);
        total += started.elapsed();
    }
    total
}

fn segment(c: &mut Criterion) {
    let n = profiles();
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).expect("dir");
    let started = Instant::now();
    let db = setup(dir.path(), n);
    eprintln!("set up {n} profiles in {:.1?}", started.elapsed());
    for b in db
        .sql("SELECT name, size FROM segments ORDER BY name")
        .expect("sizes")
    {
        eprintln!(
            "{}",
            tessera_engine::engine_arrow::util::pretty::pretty_format_batches(&[b]).expect("print")
        );
    }
    if let Ok(out) = std::env::var("TESSERA_BENCH_EXPORT") {
        std::fs::create_dir_all(&out).expect("export dir");
        for (name, q) in [
            ("crm", "SELECT customer_id, email, profile_id FROM crm"),
            (
                "orders",
                "SELECT order_id, customer_id, amount, ordered_at, profile_id FROM orders",
            ),
            ("people", "SELECT * FROM segment('everyone')"),
        ] {
            rows(
                &db,
                &format!("COPY ({q}) TO '{out}/{name}.parquet' WITH (FORMAT parquet)"),
            );
        }
    }

    let mut g = c.benchmark_group(format!("segment/{n}"));
    g.sample_size(30).warm_up_time(Duration::from_millis(500));
    g.bench_function("segment_count_3way_sql", |b| {
        b.iter(|| rows(&db, "SELECT segment_count('high_value & !recent | vip')"))
    });
    g.bench_function("segment_count_3way_bitmaps", |b| {
        b.iter(|| {
            db.segment_count("high_value & !recent | vip")
                .expect("count")
        })
    });
    g.bench_function("in_segment_filter", |b| b.iter(|| rows(&db, IN_VIP)));
    // The first query after the members changed: the set is new and has
    // kept no answer yet, so every row is probed. (A refresh that changes
    // nothing keeps the set: the definition alternates between two tenths
    // of the customers, the same size.)
    let mut tenth = 0;
    g.bench_function("in_segment_filter_first", |b| {
        b.iter_custom(|iters| {
            timed_after(&db, iters, IN_VIP, || {
                tenth = 1 - tenth;
                format!(
                    "CREATE OR REPLACE SEGMENT vip ON people AS \
                     SELECT profile_id FROM crm WHERE customer_id % 10 = {tenth}"
                )
            })
        })
    });
    // After a refresh that left the members as they were: the set, and
    // the answers it kept, stay.
    g.bench_function("in_segment_filter_after_unchanged_refresh", |b| {
        b.iter_custom(|iters| timed_after(&db, iters, IN_VIP, || "REFRESH SEGMENT vip".to_string()))
    });
    if tenth == 1 {
        rows(
            &db,
            "CREATE OR REPLACE SEGMENT vip ON people AS \
             SELECT profile_id FROM crm WHERE customer_id % 10 = 0",
        );
    }
    g.bench_function("semi_join_filter", |b| {
        b.iter(|| {
            rows(
                &db,
                "SELECT count(*), sum(amount) FROM orders WHERE profile_id IN \
                 (SELECT profile_id FROM crm WHERE customer_id % 10 = 0)",
            )
        })
    });
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("refresh_high_value", |b| {
        b.iter(|| rows(&db, "REFRESH SEGMENT high_value"))
    });
    g.bench_function("refresh_recent", |b| {
        b.iter(|| rows(&db, "REFRESH SEGMENT recent"))
    });
    let mut rng = StdRng::seed_from_u64(7);
    let mut next = 10 * n;
    let mut append = |db: &Database, b: &mut criterion::Bencher| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batch = orders(&mut rng, next, 10_000, n);
                next += 10_000;
                let t = Instant::now();
                db.append("orders", &batch).expect("append");
                total += t.elapsed();
            }
            total
        })
    };
    // Each append bench starts from the 5 orders per profile of the set-up:
    // the rows the one before appended are deleted and purged.
    g.measurement_time(Duration::from_secs(5));
    let first_appended = 10 * n;
    let reset = |db: &Database| {
        db.execute(&format!(
            "DELETE FROM orders WHERE order_id >= {first_appended}; COMPACT orders"
        ))
        .expect("reset orders");
    };
    g.bench_function("append_10k_orders", |b| append(&db, b));
    reset(&db);
    for (segment, label) in [
        ("recent", "append_10k_orders_on_commit_incremental"),
        ("high_value", "append_10k_orders_on_commit_aggregate"),
    ] {
        db.execute(&format!("ALTER SEGMENT {segment} REFRESH ON COMMIT"))
            .expect("on commit");
        g.bench_function(label, |b| append(&db, b));
        for b in db
            .sql(&format!(
                "SELECT name, last_refresh_kind, refresh_seconds FROM segments WHERE name = '{segment}'"
            ))
            .expect("refresh kind")
        {
            eprintln!(
                "{}",
                tessera_engine::engine_arrow::util::pretty::pretty_format_batches(&[b])
                    .expect("print")
            );
        }
        db.execute(&format!("ALTER SEGMENT {segment} REFRESH MANUAL"))
            .expect("manual");
        reset(&db);
    }
    let out = dir.path().join("everyone.parquet");
    g.bench_function("export_everyone_parquet", |b| {
        b.iter(|| {
            rows(
                &db,
                &format!(
                    "COPY (SELECT * FROM segment('everyone')) TO '{}' WITH (FORMAT parquet)",
                    out.display()
                ),
            )
        })
    });
    // A restart: the database closed, then opened again with its profile
    // space (the identity graph restored from its log, no UNIFY re-run)
    // and its segments, and the first query answered.
    drop(db);
    g.bench_function("reopen_and_first_segment_count", |b| {
        b.iter(|| {
            let db = Database::open(dir.path()).expect("reopen");
            db.segment_count("high_value & !recent | vip")
                .expect("count")
        })
    });
    g.finish();
}

criterion_group!(benches, segment);
criterion_main!(benches);
