//! Differential test: for random tables and random predicates (equality,
//! IN, ranges, BETWEEN, IS NULL, AND/OR/NOT, and expressions that cannot be
//! pushed down), the result with zone-map and bitmap-index pushdown equals
//! the result with pushdown disabled (DataFusion filtering every row).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::Int64Type;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_engine::{Database, EngineOptions};

const CHANNELS: [&str; 5] = ["web", "app", "store", "email", "phone"];

fn batch(db: &Database, rng: &mut StdRng, start: i64, n: usize, skew: i32) -> RecordBatch {
    let schema = {
        let out = db
            .execute("SELECT * FROM t LIMIT 0")
            .unwrap()
            .pop()
            .unwrap();
        out.schema
    };
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
                .map(|_| (!nul(rng)).then(|| 19700 + rng.random_range(0..30)))
                .collect::<Date32Array>(),
        ),
        Arc::new(
            ids.iter()
                .map(|_| {
                    (!nul(rng))
                        .then(|| 1_700_000_000_000_000 + rng.random_range(0..86_400_000_000i64))
                })
                .collect::<TimestampMicrosecondArray>(),
        ),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

fn literal(rng: &mut StdRng, col: &str) -> String {
    if rng.random_bool(0.03) {
        return "NULL".into();
    }
    match col {
        "id" => rng.random_range(-10..3000).to_string(),
        "channel" => format!(
            "'{}'",
            if rng.random_bool(0.1) {
                "fax"
            } else {
                CHANNELS[rng.random_range(0..5)]
            }
        ),
        "amount" => rng.random_range(-100..3200).to_string(),
        "score" => format!("{:.2}", rng.random_range(-60.0..60.0)),
        "flag" => if rng.random_bool(0.5) {
            "true"
        } else {
            "false"
        }
        .into(),
        "day" => format!("DATE '2023-12-{:02}'", rng.random_range(1..29)),
        _ => format!(
            "TIMESTAMP '2023-11-14 {:02}:{:02}:00'",
            rng.random_range(0..24),
            rng.random_range(0..60)
        ),
    }
}

fn predicate(rng: &mut StdRng, depth: u32) -> String {
    let cols = ["id", "channel", "amount", "score", "flag", "day", "ts"];
    let col = cols[rng.random_range(0..cols.len())];
    let ops = ["=", "<>", "<", "<=", ">", ">="];
    let leaf = rng.random_range(0..12);
    if depth == 0 || leaf < 5 {
        return match leaf % 6 {
            0 | 1 => format!(
                "{col} {} {}",
                ops[rng.random_range(0..6)],
                literal(rng, col)
            ),
            2 => {
                let items: Vec<String> = (0..rng.random_range(1..4))
                    .map(|_| literal(rng, col))
                    .collect();
                let not = if rng.random_bool(0.3) { "NOT " } else { "" };
                format!("{col} {not}IN ({})", items.join(", "))
            }
            3 => format!(
                "{col} IS {}NULL",
                if rng.random_bool(0.5) { "NOT " } else { "" }
            ),
            4 => format!(
                "{col} BETWEEN {} AND {}",
                literal(rng, col),
                literal(rng, col)
            ),
            // Not pushable: an expression over the column.
            _ => match col {
                "channel" => format!(
                    "upper(channel) = '{}'",
                    CHANNELS[rng.random_range(0..5)].to_uppercase()
                ),
                "amount" | "id" => format!("{col} % 7 = {}", rng.random_range(0..7)),
                _ => format!("{col} IS NOT NULL"),
            },
        };
    }
    match rng.random_range(0..3) {
        0 => format!(
            "({} AND {})",
            predicate(rng, depth - 1),
            predicate(rng, depth - 1)
        ),
        1 => format!(
            "({} OR {})",
            predicate(rng, depth - 1),
            predicate(rng, depth - 1)
        ),
        _ => format!("NOT ({})", predicate(rng, depth - 1)),
    }
}

fn ids(db: &Database, sql: &str) -> Vec<i64> {
    let batches = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[test]
fn pushdown_results_equal_datafusion_filtering() {
    let seeds: u64 = tessera_tests::env_or("TESSERA_DIFF_SEEDS", 6);
    let mut pushed = 0;
    for seed in 0..seeds {
        let dir = tempfile::tempdir().unwrap();
        let fast = Database::open(dir.path().join("fast")).unwrap();
        let slow = Database::open_with(
            dir.path().join("slow"),
            EngineOptions {
                pushdown: false,
                ..Default::default()
            },
        )
        .unwrap();
        let ddl = "CREATE TABLE t (id BIGINT NOT NULL, channel TEXT, amount INTEGER, score DOUBLE PRECISION, \
                   flag BOOLEAN, day DATE, ts TIMESTAMP); CREATE INDEX ON t (amount)";
        fast.execute(ddl).unwrap();
        slow.execute(ddl).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next = 0;
        for seg in 0..3 {
            let n = rng.random_range(300..900);
            let b = batch(&fast, &mut rng, next, n, seg * 1000);
            fast.append("t", &b).unwrap();
            slow.append("t", &b).unwrap();
            next += n as i64;
            if seg < 2 {
                fast.flush().unwrap();
                slow.flush().unwrap();
            }
        }
        fast.sql("DELETE FROM t WHERE id % 97 = 3").unwrap();
        slow.sql("DELETE FROM t WHERE id % 97 = 3").unwrap();
        for case in 0..40 {
            let pred = predicate(&mut rng, 2);
            let q = format!("SELECT id FROM t WHERE {pred} ORDER BY id");
            let (a, b) = (ids(&fast, &q), ids(&slow, &q));
            if a != b {
                let only_fast: Vec<i64> = a
                    .iter()
                    .filter(|x| !b.contains(x))
                    .take(10)
                    .copied()
                    .collect();
                let only_slow: Vec<i64> = b
                    .iter()
                    .filter(|x| !a.contains(x))
                    .take(10)
                    .copied()
                    .collect();
                panic!(
                    "seed {seed} case {case}: {pred}\nonly with pushdown: {only_fast:?}\nonly without: {only_slow:?}"
                );
            }
            let plan = fast
                .execute(&format!("EXPLAIN SELECT id FROM t WHERE {pred}"))
                .unwrap()
                .pop()
                .unwrap();
            let text = format!("{:?}", plan.batches);
            if text.contains("predicate=") {
                pushed += 1;
            }
        }
    }
    assert!(pushed > 20, "pushdown happened ({pushed} plans)");
}
