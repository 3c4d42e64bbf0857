//! Data generators shared by Tessera's benchmarks.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Event types of the synthetic web-event table.
pub const EVENT_TYPES: [&str; 6] = [
    "page_view",
    "add_to_cart",
    "purchase",
    "login",
    "search",
    "signup",
];
/// Channels.
pub const CHANNELS: [&str; 4] = ["web", "app", "email", "store"];

/// Schema of the synthetic `events` table: `campaign` has 1000 uniformly
/// distributed values (an equality selects 0.1 % of rows), `bucket` has 10
/// (an equality selects 10 %).
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("profile_id", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("campaign", DataType::Int64, false),
        Field::new("bucket", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// `n` events with ids from `start`, deterministic for `seed`.
pub fn events_batch(seed: u64, start: i64, n: usize) -> RecordBatch {
    let mut rng = StdRng::seed_from_u64(seed ^ start as u64);
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|_| rng.random_range(0..1_000_000)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter()
                .map(|_| EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())]),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter()
                .map(|_| CHANNELS[rng.random_range(0..CHANNELS.len())]),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|_| rng.random_range(0..1000)),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|_| rng.random_range(0..10)),
        )),
        Arc::new(
            ids.iter()
                .map(|_| rng.random_bool(0.8).then(|| rng.random_range(1.0..500.0)))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                ids.iter().map(|i| 1_700_000_000_000_000 + i * 1_000_000),
            )
            .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(events_schema(), cols).expect("generated batch matches its schema")
}

/// Columns of the synthetic `orders` CSV of the SQL benchmarks, as Tessera
/// and DuckDB declare them.
pub const ORDERS_DDL: &str = "CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT NOT NULL, \
     email TEXT, channel TEXT NOT NULL, status TEXT NOT NULL, store_id BIGINT NOT NULL, \
     amount DOUBLE PRECISION, ordered_at TIMESTAMP NOT NULL)";

/// Statuses of the synthetic orders.
pub const STATUSES: [&str; 5] = ["paid", "shipped", "delivered", "returned", "cancelled"];

/// Writes a CSV of synthetic orders (with a header) to `path` until it
/// holds at least `target_bytes`; deterministic for `seed`. `store_id` has
/// 1000 uniform values (an equality selects 0.1 %), `channel` 4, `status`
/// 5; `email` is empty (NULL) for 5 % of rows. Returns (rows, bytes).
pub fn write_orders_csv(
    path: &std::path::Path,
    target_bytes: u64,
    seed: u64,
) -> std::io::Result<(u64, u64)> {
    use std::io::Write;
    let tmp = path.with_extension("csv.tmp");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut rng = StdRng::seed_from_u64(seed);
    let header = b"order_id,customer_id,email,channel,status,store_id,amount,ordered_at\n";
    out.write_all(header)?;
    let mut bytes = header.len() as u64;
    let mut rows = 0u64;
    let mut line = String::with_capacity(160);
    while bytes < target_bytes {
        use std::fmt::Write as _;
        line.clear();
        let customer: u64 = rng.random_range(0..2_000_000);
        let email = if rng.random_bool(0.05) {
            String::new()
        } else {
            format!("customer{customer}@example.com")
        };
        let secs = 1_700_000_000 + rows * 3;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        let _ = writeln!(
            line,
            "{rows},{customer},{email},{},{},{},{:.2},{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            CHANNELS[rng.random_range(0..CHANNELS.len())],
            STATUSES[rng.random_range(0..STATUSES.len())],
            rng.random_range(0..1000),
            rng.random_range(1.0..500.0f64),
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
        rows += 1;
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok((rows, bytes))
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(super::civil_from_days(-1), (1969, 12, 31));
    }
}
