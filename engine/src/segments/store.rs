//! Where segment members live: the space's table `<space>$segments`, one
//! row per refresh of a segment:
//!
//! | column | type | content |
//! |---|---|---|
//! | `segment` | TEXT | the segment's name |
//! | `version` | BIGINT | 1 for the first computation, +1 per refresh |
//! | `refreshed_at` | TIMESTAMP | when it was computed (UTC) |
//! | `seconds` | DOUBLE PRECISION | how long computing it took |
//! | `size` | BIGINT | members |
//! | `members` | BYTEA | the members' profile ids: a roaring bitmap in the portable format (the RoaringFormatSpec shared with C, Java and Go) |
//!
//! A refresh appends its row through the log (durable on return); a
//! definition publishes its first row with the catalog in one bulk load.
//! Every version stays, for `segment_history` and `segment_changes`.

use std::sync::Arc;
use std::time::Duration;

use roaring::RoaringBitmap;
use tessera_sql::SqlEngine;
use tessera_sql::datafusion::arrow::array::{Array, AsArray};
use tessera_sql::datafusion::arrow::array::{
    BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use tessera_sql::storage::{Mutation, Predicate, ScanOptions, Store, TableOptions, Value};

use crate::error::{EngineError, Result};
use crate::identity::graph::now_micros;
use crate::space::{ReadOnlyHook, Space};

/// One computation of a segment's members.
#[derive(Debug, Clone)]
pub struct Version {
    /// 1, 2, …; 0 for a segment never computed.
    pub number: i64,
    /// When (microseconds since the Unix epoch).
    pub refreshed_at: i64,
    /// How long it took.
    pub seconds: f64,
    /// The members, as profile ids then current.
    pub members: Arc<RoaringBitmap>,
    /// The space's committed writes when it was computed (for `ON COMMIT`).
    pub writes_seen: Seen,
}

/// Which write statements of which space object a version has seen (see
/// [`crate::appended::Recent`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// The space object's count ([`crate::appended::Recent::epoch`]).
    pub epoch: u64,
    /// Its write statements.
    pub writes: u64,
}

impl Seen {
    /// What `space` has committed now.
    pub fn now(space: &Space) -> Self {
        Self {
            epoch: space.appended().epoch(),
            writes: space.writes_committed(),
        }
    }

    /// Whether `space` committed writes this has not seen.
    pub fn behind(&self, space: &Space) -> bool {
        *self != Self::now(space)
    }
}

impl Version {
    /// No members, never computed.
    pub fn empty() -> Self {
        Self {
            number: 0,
            refreshed_at: 0,
            seconds: 0.0,
            members: Arc::new(RoaringBitmap::new()),
            writes_seen: Seen::default(),
        }
    }

    /// The version after `previous`.
    pub fn next(
        previous: Option<&Version>,
        members: RoaringBitmap,
        took: Duration,
        writes_seen: Seen,
    ) -> Self {
        Self {
            number: previous.map_or(1, |p| p.number + 1),
            refreshed_at: now_micros(),
            seconds: took.as_secs_f64(),
            members: Arc::new(members),
            writes_seen,
        }
    }
}

/// The storage name of a space's membership table.
pub fn table(space: &Space) -> String {
    space.spec.table("$segments")
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new(
            "refreshed_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("seconds", DataType::Float64, false),
        Field::new("size", DataType::Int64, false),
        Field::new("members", DataType::Binary, false),
    ]))
}

fn row(name: &str, v: &Version) -> Result<RecordBatch> {
    let mut bytes = Vec::with_capacity(v.members.serialized_size());
    v.members.serialize_into(&mut bytes)?;
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![name])),
            Arc::new(Int64Array::from(vec![v.number])),
            Arc::new(TimestampMicrosecondArray::from(vec![v.refreshed_at])),
            Arc::new(Float64Array::from(vec![v.seconds])),
            Arc::new(Int64Array::from(vec![v.members.len() as i64])),
            Arc::new(BinaryArray::from_iter_values([bytes])),
        ],
    )?)
}

/// Only segment statements write the membership table.
pub fn protect(engine: &SqlEngine, space: &Space) {
    engine.hooks().set(
        &table(space),
        Some(Arc::new(ReadOnlyHook::new(format!(
            "the segment memberships of profile space {}",
            space.spec.name
        )))),
    );
}

/// Stores version `v` of segment `name`; with `catalog` (key, definition)
/// the definition is published with it, atomically.
pub fn publish(
    engine: &SqlEngine,
    space: &Space,
    name: &str,
    v: &Version,
    catalog: Option<(&str, Vec<u8>)>,
) -> Result<()> {
    let t = table(space);
    let store = engine.store();
    let rows = row(name, v)?;
    let exists = store.table(&t).is_ok();
    match catalog {
        None if exists => {
            let mut m = Mutation::new();
            m.append(&t, rows);
            store.writer().commit(m)?;
        }
        catalog => {
            let mut load = store.bulk();
            let target = if exists {
                load.append(&t)?
            } else {
                load.create(&t, schema(), TableOptions::default())?
            };
            load.push(target, &rows)?;
            let published = match catalog {
                Some((key, def)) => {
                    let (state, bytes) = engine.catalog_with_extension(key, Some(def))?;
                    load.set_catalog(bytes);
                    Some(state)
                }
                None => None,
            };
            load.publish()?;
            if let Some(state) = published {
                engine.catalog_published(state);
            }
            if !exists {
                engine.refresh_table(&t)?;
                protect(engine, space);
            }
        }
    }
    Ok(())
}

/// Removes every version of segment `name`.
pub fn forget(engine: &SqlEngine, space: &Space, name: &str) -> Result<()> {
    let t = table(space);
    if engine.store().table(&t).is_ok() {
        engine
            .store()
            .delete_where(&t, &Predicate::eq("segment", Value::Str(name.to_string())))?;
    }
    Ok(())
}

/// Every stored version of every segment of the space, by segment, oldest
/// first (`only`: of that segment alone).
fn read(store: &Store, space: &Space, only: Option<&str>) -> Result<Vec<(String, Version)>> {
    let t = table(space);
    let Ok(snap) = store.table(&t) else {
        return Ok(Vec::new());
    };
    let scan = snap.scan(&ScanOptions {
        predicate: only.map(|n| Predicate::eq("segment", Value::Str(n.to_string()))),
        ..ScanOptions::default()
    })?;
    let corrupt =
        |what: &str| EngineError::corrupt_table(&t, format!("segment memberships {t}: {what}"));
    let mut out = Vec::new();
    for part in scan.partitions {
        for b in part {
            let b = b?;
            let col = |n: &str| {
                b.column_by_name(n)
                    .ok_or_else(|| corrupt("a column is missing"))
            };
            let names = col("segment")?
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt("segment"))?;
            let versions = col("version")?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| corrupt("version"))?;
            let at = col("refreshed_at")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| corrupt("refreshed_at"))?;
            let secs = col("seconds")?
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| corrupt("seconds"))?;
            let members = col("members")?
                .as_binary_opt::<i32>()
                .ok_or_else(|| corrupt("members"))?;
            for i in 0..b.num_rows() {
                if names.is_null(i) || members.is_null(i) {
                    return Err(corrupt("a NULL in a row"));
                }
                let bitmap = RoaringBitmap::deserialize_from(members.value(i))
                    .map_err(|e| corrupt(&format!("a bitmap cannot be read: {e}")))?;
                out.push((
                    names.value(i).to_string(),
                    Version {
                        number: versions.value(i),
                        refreshed_at: at.value(i),
                        seconds: secs.value(i),
                        members: Arc::new(bitmap),
                        writes_seen: Seen::default(),
                    },
                ));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, a.1.number).cmp(&(&b.0, b.1.number)));
    Ok(out)
}

/// The latest version of each segment of the space.
pub fn latest(store: &Store, space: &Space) -> Result<std::collections::BTreeMap<String, Version>> {
    Ok(read(store, space, None)?.into_iter().collect())
}

/// Every version of segment `name`, oldest first.
pub fn history(store: &Store, space: &Space, name: &str) -> Result<Vec<Version>> {
    Ok(read(store, space, Some(name))?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Adds to `m` the rewrite of every stored version (of every segment of
/// the space) that counts one of `ids`, without them: an erased person
/// leaves no membership behind, present or past. `snapshot` is the
/// writer's. Returns the versions rewritten.
pub fn scrub(
    snapshot: &tessera_sql::storage::Snapshot,
    space: &Space,
    ids: &RoaringBitmap,
    m: &mut Mutation,
) -> Result<usize> {
    let t = table(space);
    let Ok(snap) = snapshot.table(&t) else {
        return Ok(0);
    };
    let scan = snap.scan(&ScanOptions {
        row_ids: true,
        ..ScanOptions::default()
    })?;
    let mut gone = Vec::new();
    for part in scan.partitions {
        for b in part {
            let b = b?;
            let (Some(names), Some(members), Some(row_ids)) = (
                b.column_by_name("segment")
                    .and_then(|c| c.as_string_opt::<i32>()),
                b.column_by_name("members")
                    .and_then(|c| c.as_binary_opt::<i32>()),
                b.column_by_name(tessera_sql::storage::ROW_ID_COLUMN)
                    .and_then(|c| {
                        c.as_primitive_opt::<tessera_sql::datafusion::arrow::datatypes::UInt64Type>(
                        )
                    }),
            ) else {
                return Err(EngineError::corrupt_table(
                    &t,
                    format!("segment memberships {t}: a column is missing"),
                ));
            };
            let col = |n: &str| b.column_by_name(n);
            let (Some(versions), Some(at), Some(secs)) = (
                col("version").and_then(|c| c.as_primitive_opt::<Int64Type>()),
                col("refreshed_at").and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>()),
                col("seconds").and_then(|c| c.as_primitive_opt::<Float64Type>()),
            ) else {
                return Err(EngineError::corrupt_table(
                    &t,
                    format!("segment memberships {t}: a column is missing"),
                ));
            };
            for i in 0..b.num_rows() {
                let bitmap = RoaringBitmap::deserialize_from(members.value(i)).map_err(|e| {
                    EngineError::corrupt_table(
                        &t,
                        format!("segment memberships {t}: a bitmap cannot be read: {e}"),
                    )
                })?;
                if bitmap.is_disjoint(ids) {
                    continue;
                }
                gone.push(row_ids.value(i));
                let v = Version {
                    number: versions.value(i),
                    refreshed_at: at.value(i),
                    seconds: secs.value(i),
                    members: Arc::new(bitmap - ids),
                    writes_seen: Seen::default(),
                };
                m.append(&t, row(names.value(i), &v)?);
            }
        }
    }
    let n = gone.len();
    if n > 0 {
        m.delete(&t, gone);
    }
    Ok(n)
}
