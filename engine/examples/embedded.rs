//! Embedding Tessera: open a database in a directory, load rows through the
//! Arrow append API and through SQL, query (collected and streamed),
//! compact and verify.
//!
//! `cargo run -p tessera-engine --example embedded [DIR]`

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use tessera_engine::engine_arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Schema};
use tessera_engine::{Database, pretty};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("tessera-embedded-{}", std::process::id())),
    };
    let db = Database::open(&dir)?;
    db.sql(
        "CREATE TABLE IF NOT EXISTS orders (
             order_id BIGINT NOT NULL, email VARCHAR(254), channel TEXT, amount DOUBLE PRECISION)",
    )?;

    // Arrow in: one durable append of 100 000 rows.
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let n = 100_000i64;
    let channels = ["web", "app", "store"];
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("customer{}@example.com", i % 25_000)),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| channels[(i % 3) as usize]),
            )),
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| (i % 200) as f64 + 0.99),
            )),
        ],
    )?;
    db.append("orders", &batch)?;
    db.sql("INSERT INTO orders VALUES (-1, 'marie@example.com', 'app', 42.0)")?;
    db.flush()?;

    // SQL out, collected.
    let out = db
        .execute("SELECT channel, count(*) AS orders, round(sum(amount), 2) AS revenue FROM orders GROUP BY channel ORDER BY channel")?
        .pop()
        .ok_or("no result")?;
    println!("{}", pretty(&out.schema, &out.batches)?);

    // SQL out, streamed batch by batch.
    let mut rows = 0;
    let mut batches = 0;
    for b in db.sql_stream("SELECT order_id, email FROM orders WHERE amount > 150")? {
        rows += b?.num_rows();
        batches += 1;
    }
    println!("streamed {rows} rows in {batches} batches");

    // Deleted rows are hidden at once and purged from disk by compaction.
    db.sql("DELETE FROM orders WHERE channel = 'store'")?;
    let report = db.compact()?;
    println!(
        "compacted: {} segments rewritten into {}, {} deleted rows purged",
        report.segments_removed, report.segments_written, report.rows_purged
    );
    let problems = db.verify()?.problems;
    println!("verify: {} problems", problems.len());
    if problems.is_empty() && std::env::args().nth(1).is_none() {
        drop(db);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
