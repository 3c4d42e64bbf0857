//! The embedded `Database` API beyond plain `sql()`: streaming results, the
//! query memory limit, optimizer statistics, large INSERT … SELECT through
//! the bulk path, and value checks (lengths, numeric ranges).

use std::sync::Arc;

use tessera_engine::engine_arrow::array::{Int64Array, RecordBatch, StringArray};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Schema};
use tessera_engine::{Database, EngineOptions};

fn rows(db: &Database, sql: &str) -> usize {
    db.sql(sql).unwrap().iter().map(|b| b.num_rows()).sum()
}

fn scalar_i64(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap();
    let col = b[0].column(0);
    tessera_engine::engine_arrow::compute::cast(col, &DataType::Int64)
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

/// A table `t (id BIGINT, label TEXT)` with `n` rows appended in batches.
fn filled(db: &Database, n: i64) {
    db.sql("CREATE TABLE t (id BIGINT NOT NULL, label TEXT)")
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("label", DataType::Utf8, true),
    ]));
    let step = 50_000;
    for start in (0..n).step_by(step as usize) {
        let end = (start + step).min(n);
        let ids: Vec<i64> = (start..end).collect();
        let labels: Vec<String> = ids.iter().map(|i| format!("label-{i:08}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(labels)),
            ],
        )
        .unwrap();
        db.append("t", &batch).unwrap();
    }
}

#[test]
fn sql_stream_yields_batches_as_asked() {
    let db = Database::open_in_memory().unwrap();
    filled(&db, 200_000);
    db.flush().unwrap();
    let mut stream = db
        .sql_stream("SELECT id, label FROM t WHERE id % 2 = 0")
        .unwrap();
    assert_eq!(stream.schema().fields().len(), 2);
    let first = stream.next().unwrap().unwrap();
    assert!(first.num_rows() > 0 && first.num_rows() < 100_000);
    let mut total = first.num_rows();
    let mut batches = 1;
    for b in stream {
        total += b.unwrap().num_rows();
        batches += 1;
    }
    assert_eq!(total, 100_000);
    assert!(batches > 1, "one batch: not streamed");

    // Earlier statements of the text run first; errors arrive as SqlErrors.
    let n: usize = db
        .sql_stream("INSERT INTO t VALUES (-1, 'x'); SELECT * FROM t WHERE id < 0")
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(n, 1);
    let err = db.sql_stream("SELECT nope FROM t").unwrap_err();
    assert_eq!(err.sqlstate(), "42703");
}

#[test]
fn exceeding_the_memory_limit_is_53200_and_the_database_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_with(
        dir.path(),
        EngineOptions {
            memory_limit: Some(2 << 20),
            ..Default::default()
        },
    )
    .unwrap();
    filled(&db, 300_000);
    // A sort of ~10 MiB of strings cannot fit in 2 MiB (and Tessera does not
    // spill to disk yet).
    let err = db
        .sql("SELECT label, id FROM t ORDER BY label DESC")
        .unwrap_err();
    assert_eq!(err.sqlstate(), "53200", "{err}");
    assert!(err.to_string().to_lowercase().contains("memory"), "{err}");
    // Streaming aggregates that need little memory still run.
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM t"), 300_000);
}

#[test]
fn statistics_answer_count_and_stay_correct_after_deletes() {
    let db = Database::open_in_memory().unwrap();
    filled(&db, 1000);
    db.flush().unwrap();
    let plan = db
        .execute("EXPLAIN SELECT count(*) FROM t")
        .unwrap()
        .pop()
        .unwrap();
    let text = tessera_engine::pretty(&plan.schema, &plan.batches).unwrap();
    // The exact row count lets DataFusion answer without scanning.
    let physical = text.split("physical_plan").nth(1).unwrap_or_default();
    assert!(!physical.contains("TesseraScanExec"), "{text}");

    db.sql("DELETE FROM t WHERE id < 10").unwrap();
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM t"), 990);
    // min/max are bounds only (zone maps still see deleted rows): computed.
    assert_eq!(scalar_i64(&db, "SELECT min(id) FROM t"), 10);
    assert_eq!(scalar_i64(&db, "SELECT max(id) FROM t WHERE id < 500"), 499);
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM t WHERE id >= 900"),
        100
    );
}

#[test]
fn a_large_insert_select_streams_into_segments_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        bulk_insert_bytes: 64 << 10,
        ..Default::default()
    };
    let db = Database::open_with(dir.path(), options.clone()).unwrap();
    filled(&db, 100_000);
    db.sql("CREATE TABLE copy_of_t (id BIGINT NOT NULL, label VARCHAR(20))")
        .unwrap();
    let tag = db
        .execute("INSERT INTO copy_of_t SELECT id, label FROM t")
        .unwrap()
        .pop()
        .unwrap()
        .tag;
    assert_eq!(tag, "INSERT 0 100000");
    let (segments, in_memory) = db
        .engine()
        .store()
        .table("public.copy_of_t")
        .unwrap()
        .segment_count();
    assert!(segments >= 1 && in_memory == 0, "{segments} {in_memory}");

    // A value too long for VARCHAR(20), near the end: nothing is kept.
    db.sql("INSERT INTO t VALUES (100000, 'a label much too long for twenty')")
        .unwrap();
    let err = db
        .sql("INSERT INTO copy_of_t SELECT id, label FROM t")
        .unwrap_err();
    assert_eq!(err.sqlstate(), "22001", "{err}");
    assert_eq!(rows(&db, "SELECT id FROM copy_of_t"), 100_000);
    drop(db);
    let db = Database::open_with(dir.path(), options).unwrap();
    assert_eq!(rows(&db, "SELECT id FROM copy_of_t"), 100_000);
    assert!(db.verify().unwrap().problems.is_empty());
}

#[test]
fn append_rejects_what_sql_would() {
    let db = Database::open_in_memory().unwrap();
    db.sql("CREATE TABLE p (email VARCHAR(5) NOT NULL)")
        .unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "email",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec!["ok", "too long"]))],
    )
    .unwrap();
    let err = db.append("p", &batch).unwrap_err();
    assert_eq!(err.sqlstate(), "22001", "{err}");
    assert_eq!(rows(&db, "SELECT * FROM p"), 0);
}
