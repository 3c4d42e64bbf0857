//! `EXPORT PROFILE`: everything the database holds about one person, as
//! one JSON document (the right of access, GDPR article 15, and to data
//! portability, article 20: "structured, commonly used and
//! machine-readable").
//!
//! ```json
//! {
//!   "format": "tessera.profile/1",
//!   "exported_at": "2026-11-27T10:00:00.000000Z",
//!   "space": "public.customers",
//!   "profile_id": 42,
//!   "profile_ids": [42, 97],
//!   "first_seen": "…", "last_seen": "…",
//!   "identifiers": [{"kind": "email", "value": "marie@example.com",
//!                    "records": 3, "first_seen": "…", "last_seen": "…"}],
//!   "merges": [{"merged_profile": 97, "surviving_profile": 42,
//!               "kind": "email", "value": "…", "merged_at": "…"}],
//!   "segments": ["high_value"],
//!   "sources": {"public.orders": [{"order_id": 1, "email": "…", …}], …}
//! }
//! ```
//!
//! Source rows are read through SQL (`SELECT * FROM source WHERE
//! profile_id = …`), as a query would see them.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};
use tessera_sql::datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use tessera_sql::parser::ExportProfile;
use tessera_sql::{QueryOutput, SqlEngine};

use super::erase::{resolve, space_of};
use crate::error::{EngineError, Result};
use crate::identity::graph::now_micros;
use crate::segments::Segments;
use crate::spaces::Spaces;

/// A time (microseconds since the epoch) as RFC 3339 text, in UTC.
fn time(us: Option<i64>) -> Json {
    us.and_then(tessera_sql::datafusion::arrow::temporal_conversions::timestamp_us_to_datetime)
        .map_or(Json::Null, |d| {
            Json::String(d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        })
}

fn quoted(storage_name: &str) -> String {
    storage_name
        .split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Rows as JSON objects.
fn rows_json(batches: &[RecordBatch]) -> Result<Vec<Json>> {
    let mut w = tessera_sql::datafusion::arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::InvalidOption(format!("the rows cannot be written as JSON: {e}")))
}

/// The document of the person `stmt` names, and its profile id.
pub async fn document(
    engine: &SqlEngine,
    spaces: &Spaces,
    segments: &Segments,
    stmt: &ExportProfile,
) -> Result<(i64, Json)> {
    let space = space_of(spaces, stmt.space.as_ref())?;
    let spec = &space.spec;
    let (profile, ids, identifiers, merges, seen) = {
        let st = space.state()?;
        let g = &st.graph;
        let (p, _) = resolve(g, spec, &stmt.target)?;
        let kind = |k: usize| g.config().kinds.get(k).map_or("?", |s| s.name.as_str());
        let identifiers: Vec<Json> = g
            .identifier_details()
            .filter(|r| r.profile == p)
            .map(|r| {
                json!({
                    "kind": kind(r.kind),
                    "value": r.value,
                    "records": r.records,
                    "first_seen": time(r.first_seen),
                    "last_seen": time(r.last_seen),
                })
            })
            .collect();
        let merges: Vec<Json> = g
            .merges()
            .iter()
            .filter(|m| g.survivor(m.survivor) == p)
            .map(|m| {
                json!({
                    "merged_profile": m.merged,
                    "surviving_profile": m.survivor,
                    "kind": kind(m.kind),
                    "value": m.value,
                    "merged_at": time(Some(m.at)),
                })
            })
            .collect();
        (p, g.ids_of(p), identifiers, merges, g.profile_seen(p))
    };
    let member_of: Vec<Json> = segments
        .all()
        .iter()
        .filter(|s| s.def.space == spec.table(""))
        .filter(|s| u32::try_from(profile).is_ok_and(|p| s.members(&space).contains(p)))
        .map(|s| Json::String(s.def.name.clone()))
        .collect();
    let mut sources = Map::new();
    // Each source, and its archive (`archive.<table>`) if it has one.
    let archives = super::archive::archived_sources(engine)?;
    let tables = spec.sources.iter().flat_map(|s| {
        let archive = archives
            .contains(&s.table)
            .then(|| super::archive::archive_name(&s.table));
        std::iter::once(s.table.clone()).chain(archive)
    });
    for table in tables {
        // Through SQL: profile ids read as current ones.
        let sql = format!(
            "SELECT * FROM {} WHERE profile_id = {profile}",
            quoted(&table)
        );
        let mut out = Vec::new();
        for stmt in tessera_sql::parser::parse(&sql)? {
            out = engine.run(stmt).await?.batches;
        }
        // The same export twice is the same document: rows in a fixed order.
        let mut rows = rows_json(&out)?;
        rows.sort_by_cached_key(|r| r.to_string());
        sources.insert(table, Json::Array(rows));
    }
    let doc = json!({
        "format": "tessera.profile/1",
        "exported_at": time(Some(now_micros())),
        "space": spec.table(""),
        "profile_id": profile,
        "profile_ids": ids,
        "first_seen": time(seen.0),
        "last_seen": time(seen.1),
        "identifiers": identifiers,
        "merges": merges,
        "segments": member_of,
        "sources": sources,
    });
    Ok((profile as i64, doc))
}

/// `EXPORT PROFILE`: the document written to the file named (one row:
/// profile, file, bytes), or returned as one row of one column
/// `document` for `TO STDOUT`.
pub async fn export(
    engine: &SqlEngine,
    spaces: &Spaces,
    segments: &Segments,
    stmt: &ExportProfile,
) -> Result<QueryOutput> {
    let (profile, doc) = document(engine, spaces, segments, stmt).await?;
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| EngineError::InvalidOption(format!("the export cannot be encoded: {e}")))?;
    match &stmt.to {
        None => {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "document",
                DataType::Utf8,
                false,
            )]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(StringArray::from(vec![text]))],
            )?;
            Ok(QueryOutput {
                schema,
                batches: vec![batch],
                tag: "EXPORT PROFILE 1".into(),
            })
        }
        Some(file) => {
            std::fs::write(file, text.as_bytes()).map_err(|e| {
                EngineError::Io(std::io::Error::new(
                    e.kind(),
                    format!("EXPORT PROFILE cannot write {file}: {e}"),
                ))
            })?;
            let schema = Arc::new(Schema::new(vec![
                Field::new("profile_id", DataType::Int64, false),
                Field::new("file", DataType::Utf8, false),
                Field::new("bytes", DataType::Int64, false),
            ]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(vec![profile])),
                    Arc::new(StringArray::from(vec![file.as_str()])),
                    Arc::new(Int64Array::from(vec![text.len() as i64])),
                ],
            )?;
            Ok(QueryOutput {
                schema,
                batches: vec![batch],
                tag: "EXPORT PROFILE 1".into(),
            })
        }
    }
}
