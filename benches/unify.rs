//! UNIFY benchmarks through the embedded `Database`, over the generator's
//! multi-channel data (`tessera gen`, seed 42): a full `UNIFY` of the four
//! sources, and appending 10 000 orders to the unified database (each
//! append resolved into the graph and logged in the same commit).
//!
//! `cargo bench -p tessera-benches --bench unify`; `TESSERA_BENCH_PERSONS`
//! sets the size (default 100 000). The Parquet files are written once to
//! `target/bench-data/unify-N/`, with `tessera_ids.parquet` (every record's
//! profile) for `benches/duckdb/run.sh unify`, which runs the DuckDB
//! comparison and scores both against the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_engine::Database;
use tessera_engine::datagen::{Formats, GenOptions, write_dataset};
use tessera_engine::engine_arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

/// The documented UNIFY of the generated tables.
const UNIFY: &str = tessera_engine::datagen::UNIFY_EXAMPLE;

fn persons() -> u64 {
    std::env::var("TESSERA_BENCH_PERSONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn data_dir(persons: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-data")
        .join(format!("unify-{persons}"));
    if !dir.join("load.sql").exists() {
        let formats = Formats {
            csv: false,
            parquet: true,
        };
        write_dataset(&GenOptions::new(persons, 42), &dir, formats, |_| {})
            .expect("generate the data");
    }
    dir
}

/// A database in `db` with the generated tables loaded.
fn load(data: &Path, db: &Path) -> Database {
    let _ = std::fs::remove_dir_all(db);
    let database = Database::open(db).expect("open");
    let script = std::fs::read_to_string(data.join("load.sql")).expect("load.sql");
    database
        .execute(&script)
        .expect("load the generated tables");
    database
}

fn source_rows(db: &Database) -> u64 {
    let q = "SELECT (SELECT count(*) FROM crm_contacts) + (SELECT count(*) FROM orders) \
             + (SELECT count(*) FROM web_events) + (SELECT count(*) FROM support_tickets)";
    let b = db.sql(q).expect("count");
    b[0].column(0).as_primitive::<Int64Type>().value(0) as u64
}

/// Every record's profile, for scoring beside DuckDB.
fn export_ids(db: &Database, data: &Path) {
    let q = format!(
        "COPY (SELECT 'crm_contacts' AS source, customer_id AS row_id, profile_id FROM crm_contacts \
         UNION ALL SELECT 'orders', order_id, profile_id FROM orders \
         UNION ALL SELECT 'web_events', event_id, profile_id FROM web_events \
         UNION ALL SELECT 'support_tickets', ticket_id, profile_id FROM support_tickets) \
         TO '{}' WITH (FORMAT parquet)",
        data.join("tessera_ids.parquet").display()
    );
    db.sql(&q).expect("export the profile ids");
}

/// 10 000 new orders, numbered from `first_id`: most by known customers
/// (their e-mail and phone as the CRM has them), some by new guests.
fn new_orders(db: &Database, first_id: i64, round: i64) -> RecordBatch {
    let known = db
        .sql("SELECT email, phone FROM crm_contacts WHERE email IS NOT NULL LIMIT 20000")
        .expect("contacts");
    let mut emails: Vec<Option<String>> = Vec::new();
    let mut phones: Vec<Option<String>> = Vec::new();
    for b in &known {
        let (e, p) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            emails.push(Some(e.value(i).to_string()));
            phones.push(p.is_valid(i).then(|| p.value(i).to_string()));
        }
    }
    let n = 10_000usize;
    let pick = |i: usize| (i * 7919 + round as usize * 104_729) % emails.len().max(1);
    let email: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 10 == 0 {
                Some(format!("guest{round}-{i}@example.net"))
            } else {
                emails.get(pick(i)).cloned().flatten()
            }
        })
        .collect();
    let phone: Vec<Option<String>> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                phones.get(pick(i)).cloned().flatten()
            } else {
                None
            }
        })
        .collect();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("phone", DataType::Utf8, true),
        Field::new("channel", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("ordered_at", ts, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(first_id..first_id + n as i64)),
            Arc::new(Int64Array::from(vec![None::<i64>; n])),
            Arc::new(StringArray::from(email)),
            Arc::new(StringArray::from(phone)),
            Arc::new(StringArray::from(vec!["web"; n])),
            Arc::new(Float64Array::from(vec![25.0; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                1_790_000_000_000_000i64;
                n
            ])),
        ],
    )
    .expect("orders batch")
}

fn unify(c: &mut Criterion) {
    let persons = persons();
    let data = data_dir(persons);
    let db_dir = data.join("tessera.db");
    let db = load(&data, &db_dir);
    let rows = source_rows(&db);

    let mut g = c.benchmark_group("unify");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(rows));
    g.bench_function(format!("full/{persons}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                db.sql(UNIFY).expect("UNIFY");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    export_ids(&db, &data);

    let max: i64 = db.sql("SELECT max(order_id) FROM orders").expect("max")[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    let mut round = 0i64;
    let mut g = c.benchmark_group("unify_append");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_millis(1))
        .throughput(Throughput::Elements(10_000));
    g.bench_function(format!("orders_10k/{persons}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let batch = new_orders(&db, max + 1 + round * 10_000, round);
                let t = Instant::now();
                db.append("orders", &batch).expect("append");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    drop(db);
    let _ = std::fs::remove_dir_all(&db_dir);
}

criterion_group!(benches, unify);
criterion_main!(benches);
