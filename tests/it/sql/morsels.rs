//! Scans share their work as morsels among one partition per thread: each
//! row is read exactly once, whatever the mix of segment files, rows still
//! in memory and deleted rows, and a plan executed again reads every
//! morsel again.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use futures::StreamExt;
use tessera_engine::Database;
use tessera_sql::datafusion::physical_plan::{collect, displayable};

fn rows(start: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + n)),
            Arc::new(Int64Array::from_iter_values(
                (start..start + n).map(|i| i % 1000),
            )),
        ],
    )
    .unwrap()
}

/// 600 000 rows in a file (three batches), 200 000 more in memory (four
/// appends), 1 000 of them deleted.
fn table() -> (Database, Vec<i64>) {
    let db = Database::open_in_memory().unwrap();
    db.execute("CREATE TABLE t (id BIGINT NOT NULL, v BIGINT NOT NULL)")
        .unwrap();
    for k in 0..3 {
        db.append("t", &rows(k * 200_000, 200_000)).unwrap();
    }
    db.flush().unwrap();
    for k in 0..4 {
        db.append("t", &rows(600_000 + k * 50_000, 50_000)).unwrap();
    }
    db.execute("DELETE FROM t WHERE id % 800 = 7").unwrap();
    let ids = (0..800_000).filter(|i| i % 800 != 7).collect();
    (db, ids)
}

fn one_int(db: &Database, sql: &str) -> Vec<i64> {
    let out = db.sql(sql).unwrap();
    let b = &out[0];
    (0..b.num_columns())
        .map(|c| b.column(c).as_primitive::<Int64Type>().value(0))
        .collect()
}

#[test]
fn every_row_is_read_once_whatever_the_threads() {
    let (db, ids) = table();
    let n = ids.len() as i64;
    let sum_v: i64 = ids.iter().map(|i| i % 1000).sum();
    let sum_id: i64 = ids.iter().sum();
    let plan = db.sql("EXPLAIN SELECT sum(v) FROM t").unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("morsels="), "{text}");
    for threads in [1, 2, 3, 8] {
        db.sql(&format!(
            "SET datafusion.execution.target_partitions = {threads}"
        ))
        .unwrap();
        assert_eq!(
            one_int(
                &db,
                "SELECT count(*), count(DISTINCT id), sum(v), sum(id) FROM t"
            ),
            vec![n, n, sum_v, sum_id],
            "{threads} threads"
        );
        let filtered: Vec<i64> = ids.iter().copied().filter(|i| i % 1000 < 10).collect();
        assert_eq!(
            one_int(&db, "SELECT count(*), sum(id) FROM t WHERE v < 10"),
            vec![filtered.len() as i64, filtered.iter().sum()],
            "{threads} threads"
        );
        // A limit keeps one partition per segment and still stops early.
        assert_eq!(
            one_int(&db, "SELECT count(*) FROM (SELECT id FROM t LIMIT 1234)"),
            vec![1234]
        );
    }
}

#[test]
fn a_plan_executed_again_reads_every_morsel_again() {
    let (db, ids) = table();
    let ctx = db.engine().context().clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let plan = ctx
            .sql("SELECT id FROM t")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(shown.contains("morsels="), "{shown}");
        // A partition opened alone and left after one batch (a consumer
        // that stopped early): the next execution still reads every row
        // once.
        let mut one = plan.execute(1, ctx.task_ctx()).unwrap();
        assert!(one.next().await.is_some());
        drop(one);
        for run in 0..3 {
            let out = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
            let mut got: Vec<i64> = out
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            got.sort_unstable();
            assert_eq!(got, ids, "run {run}");
        }
    });
}
