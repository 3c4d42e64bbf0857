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
