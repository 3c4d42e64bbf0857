//! `VERIFY ERASURE` and `LIFT SUPPRESSION`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_sql::datafusion::arrow::array::{
    AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tessera_sql::parser::{LiftSuppression, VerifyErasure};
use tessera_sql::storage::{Mutation, Predicate, ScanOptions, Value};
use tessera_sql::{QueryOutput, SqlEngine};

use super::{Event, LOG_TABLE, Privacy, SUPPRESSION_TABLE, event_rows, read_all, read_events};
use crate::error::{EngineError, Result};
use crate::spaces::Spaces;

/// The `received` event of `request`, or an error naming it.
fn received(engine: &SqlEngine, request: &str) -> Result<(Event, Vec<Event>)> {
    let events: Vec<Event> = read_events(engine.store())?
        .into_iter()
        .filter(|e| e.request == request)
        .collect();
    let first = events
        .iter()
        .find(|e| e.event == "received")
        .cloned()
        .ok_or_else(|| {
            EngineError::UndefinedObject(format!(
                "there is no erasure request '{request}' (see erasure_requests)"
            ))
        })?;
    Ok((first, events))
}

/// The hashes `request` suppressed, as (kind, hash).
fn hashes_of(engine: &SqlEngine, request: &str) -> Result<BTreeSet<(String, String)>> {
    let mut out = BTreeSet::new();
    for b in read_all(engine.store(), SUPPRESSION_TABLE)? {
        let col = |n: &str| b.column_by_name(n).and_then(|c| c.as_string_opt::<i32>());
        let (Some(r), Some(k), Some(h)) = (col("request_id"), col("kind"), col("hash")) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if r.value(i) == request {
                out.insert((k.value(i).to_string(), h.value(i).to_string()));
            }
        }
    }
    Ok(out)
}

/// `VERIFY ERASURE 'id' FOR 'value', …`: reads every byte of every file
/// of the database for each value (as given and as each identifier kind
/// of the space normalises it) and reports, per value, whether it is one
/// the request erased and how often it occurs. Recorded as `verified`.
pub fn verify(
    engine: &SqlEngine,
    spaces: &Spaces,
    privacy: &Privacy,
    stmt: &VerifyErasure,
) -> Result<QueryOutput> {
    let (first, events) = received(engine, &stmt.request)?;
    if stmt.values.is_empty() {
        return Err(EngineError::InvalidOption(format!(
            "name the values to look for, as in VERIFY ERASURE '{}' FOR 'marie@example.com', \
             '+33 6 12 34 56 78': Tessera keeps no readable copy of an erased person's data",
            stmt.request
        )));
    }
    let salt = privacy
        .salt
        .lock()
        .ok_or_else(|| EngineError::InvalidOption("the database has no erasure salt".into()))?;
    let hashes = hashes_of(engine, &stmt.request)?;
    let space = first.space.as_deref().and_then(|s| spaces.get(s));
    let mut needles: Vec<Vec<u8>> = Vec::new();
    // Per value: (matches the request, indexes of its needles).
    let mut per_value: Vec<(bool, Vec<usize>)> = Vec::new();
    for value in &stmt.values {
        let mut forms = vec![value.trim().to_string()];
        let mut matches = false;
        if let Some(space) = &space {
            let config = &space.spec.config;
            for kind in &config.kinds {
                if let Some(n) = kind.normalizer.apply(value, config.region) {
                    let h = super::suppress::hash(&salt, &kind.name, &n);
                    matches |= hashes.contains(&(kind.name.clone(), h.clone()))
                        || first.subject.as_deref() == Some(h.as_str());
                    forms.push(n);
                }
            }
        }
        let mut idx = Vec::new();
        for f in forms {
            if f.is_empty() {
                continue;
            }
            let pos = match needles.iter().position(|n| n == f.as_bytes()) {
                Some(p) => p,
                None => {
                    needles.push(f.into_bytes());
                    needles.len() - 1
                }
            };
            if !idx.contains(&pos) {
                idx.push(pos);
            }
        }
        per_value.push((matches, idx));
    }
    let report = engine.store().find_bytes(&needles)?;
    let mut counts = Vec::new();
    let mut files = Vec::new();
    for (_, idx) in &per_value {
        let hits: Vec<_> = report
            .found
            .iter()
            .filter(|f| idx.contains(&f.value))
            .collect();
        let mut names: Vec<String> = hits.iter().map(|f| f.file.display().to_string()).collect();
        names.sort();
        names.dedup();
        counts.push(hits.len() as i64);
        files.push((!names.is_empty()).then(|| names.join(", ")));
    }
    let total: i64 = counts.iter().sum();
    let mut m = Mutation::new();
    m.append(
        LOG_TABLE,
        event_rows(&[Event {
            rows: Some(total),
            ..Event::new(&stmt.request, "verified")
        }])?,
    );
    engine.store().writer().commit(m)?;
    let purged = events.iter().find(|e| e.event == "purged").map(|e| e.at);
    let n = stmt.values.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("erased_by_request", DataType::Boolean, false),
        Field::new("occurrences", DataType::Int64, false),
        Field::new("files", DataType::Utf8, true),
        Field::new(
            "purged_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("bytes_read", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![stmt.request.as_str(); n])),
            Arc::new(StringArray::from_iter_values(stmt.values.iter())),
            Arc::new(BooleanArray::from(
                per_value.iter().map(|p| p.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(counts)),
            Arc::new(StringArray::from(files)),
            Arc::new(TimestampMicrosecondArray::from(vec![purged; n])),
            Arc::new(Int64Array::from(vec![report.bytes as i64; n])),
        ],
    )?;
    Ok(QueryOutput {
        schema,
        batches: vec![batch],
        tag: format!("VERIFY ERASURE {n}"),
    })
}

/// `LIFT SUPPRESSION 'id'`: data about the person is loaded again from
/// now on. The audit log keeps that it was lifted.
pub fn lift(engine: &SqlEngine, spaces: &Spaces, stmt: &LiftSuppression) -> Result<QueryOutput> {
    received(engine, &stmt.request)?;
    let store = engine.store();
    let mut w = store.writer();
    let snap = w.snapshot().table(SUPPRESSION_TABLE)?;
    let scan = snap.scan(&ScanOptions {
        projection: Some(Vec::new()),
        predicate: Some(Predicate::eq(
            "request_id",
            Value::Str(stmt.request.clone()),
        )),
        filter: true,
        row_ids: true,
        ..ScanOptions::default()
    })?;
    let mut ids = Vec::new();
    for part in scan.partitions {
        for b in part {
            let b = b?;
            ids.extend_from_slice(super::row_ids(&b));
        }
    }
    if ids.is_empty() {
        return Err(EngineError::InvalidOption(format!(
            "erasure request '{}' suppresses nothing (lifted already?)",
            stmt.request
        )));
    }
    let n = ids.len();
    let mut m = Mutation::new();
    m.delete(SUPPRESSION_TABLE, ids);
    m.append(
        LOG_TABLE,
        event_rows(&[Event {
            rows: Some(n as i64),
            ..Event::new(&stmt.request, "suppression lifted")
        }])?,
    );
    w.commit(m)?;
    drop(w);
    for space in spaces.all() {
        if let Some(list) = space.suppressions().write().as_mut() {
            list.lift(&stmt.request);
        }
    }
    Ok(QueryOutput {
        schema: Arc::new(Schema::empty()),
        batches: Vec::new(),
        tag: "LIFT SUPPRESSION".into(),
    })
}
