//! `ERASE PROFILE`: see the [module above](super) for the steps.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use roaring::RoaringBitmap;
use tessera_sql::datafusion::arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tessera_sql::parser::{Erase, ProfileTarget};
use tessera_sql::storage::{Mutation, Predicate, ScanOptions, Value};
use tessera_sql::{QueryOutput, SqlEngine};

use super::{Event, Pending, Privacy, SUPPRESSION_TABLE, event_rows, suppress};
use crate::error::{EngineError, Result};
use crate::identity::graph::{ProfileId, now_micros};
use crate::space::{Space, log_rows};
use crate::spaces::Spaces;
use crate::unify::{PROFILE_ID, storage_name};

/// Values shorter than this are not looked for in the files (too many
/// would match by chance).
const MIN_NEEDLE: usize = 5;

/// What one erasure did.
#[derive(Debug, Clone)]
pub struct Erased {
    /// The request id (for `VERIFY ERASURE`, `erasure_requests`).
    pub request: String,
    /// The space.
    pub space: String,
    /// The profile erased.
    pub profile: ProfileId,
    /// Rows deleted, per source table.
    pub rows: Vec<(String, u64)>,
    /// Identifier values erased from the graph.
    pub identifiers: usize,
    /// Stored segment versions rewritten.
    pub segment_versions: usize,
    /// The values to look for once purged (raw and normalised).
    pub needles: Vec<Vec<u8>>,
    /// When its purge is due (microseconds since the Unix epoch; now for
    /// `IMMEDIATELY`).
    pub deadline: i64,
}

/// An erasure ready to commit.
struct Prepared {
    erased: Erased,
    mutation: Mutation,
    /// (kind, hash) of the values to suppress.
    hashes: Vec<(String, String)>,
    /// What was erased from the archive.
    archived: super::archive::ArchiveErasure,
}

/// The space an `ERASE` names (the only one when it names none).
pub fn space_of(
    spaces: &Spaces,
    name: Option<&tessera_sql::datafusion::sql::sqlparser::ast::ObjectName>,
) -> Result<Arc<Space>> {
    match name {
        Some(n) => {
            let storage = storage_name(n)?;
            spaces.get(&storage).ok_or_else(|| {
                EngineError::UndefinedObject(format!(
                    "profile space \"{n}\" does not exist (UNIFY defines one)"
                ))
            })
        }
        None => {
            let all = spaces.all();
            match all.as_slice() {
                [one] => Ok(Arc::clone(one)),
                [] => Err(EngineError::UndefinedObject(
                    "there is no profile space to erase from (UNIFY defines one)".into(),
                )),
                many => Err(EngineError::InvalidOption(format!(
                    "the database has {} profile spaces: name one, as in ERASE PROFILE 42 IN {}",
                    many.len(),
                    many[0].spec.name
                ))),
            }
        }
    }
}

/// The live profile `target` names in `graph`, and (for an identifier)
/// the kind and normalised value named.
pub(crate) fn resolve(
    graph: &crate::identity::graph::IdentityGraph,
    spec: &crate::unify::UnifySpec,
    target: &ProfileTarget,
) -> Result<(ProfileId, Option<(String, String)>)> {
    let config = graph.config();
    Ok(match target {
        ProfileTarget::Id(id) => {
            if graph.is_erased(*id) {
                return Err(EngineError::InvalidOption(format!(
                    "profile {id} of {} was erased already (see erasure_requests)",
                    spec.name
                )));
            }
            if *id >= graph.profiles_created() {
                return Err(EngineError::UndefinedObject(format!(
                    "profile {id} does not exist in profile space {}",
                    spec.name
                )));
            }
            let p = graph.survivor(*id);
            if graph.is_erased(p) {
                return Err(EngineError::InvalidOption(format!(
                    "profile {id} was merged into profile {p}, which was erased already"
                )));
            }
            (p, None)
        }
        ProfileTarget::Identifier { kind, value } => {
            let k = spec.kind_index(kind)?;
            let norm = config.kinds[k]
                .normalizer
                .apply(value, config.region)
                .ok_or_else(|| {
                    EngineError::InvalidOption(format!("{value:?} is not a usable {kind}"))
                })?;
            let p = graph.profile_of(k, &norm).ok_or_else(|| {
                EngineError::UndefinedObject(format!(
                    "no profile of {} holds the {kind} {value:?} (erased already, or never seen)",
                    spec.name
                ))
            })?;
            (p, Some((kind.clone(), norm)))
        }
    })
}

/// A new request id: `er-` and 16 random hexadecimal digits.
fn request_id() -> String {
    format!("er-{:016x}", rand::random::<u64>())
}

/// Erases one person; see the module documentation of [`super`].
pub async fn erase(
    engine: &SqlEngine,
    spaces: &Spaces,
    privacy: &Privacy,
    stmt: &Erase,
    deadline: std::time::Duration,
) -> Result<Erased> {
    let space = space_of(spaces, stmt.space.as_ref())?;
    let salt = privacy.ensure(engine)?;
    let _token = space.writer_token().await;
    let store = engine.store();
    let mut w = store.writer();
    let snapshot = w.snapshot();
    let mut st = space.state()?;
    let spec = &space.spec;
    let config = st.graph.config().clone();
    let (profile, given) = resolve(&st.graph, spec, &stmt.target)?;

    // From here on a failure leaves the graph changed but not the log:
    // it is rebuilt before its next use.
    let result = (|| -> Result<Prepared> {
        let gone = st
            .graph
            .erase_profile(profile)
            .map_err(EngineError::InvalidOption)?;
        let ids: RoaringBitmap = gone
            .ids
            .iter()
            .filter_map(|i| u32::try_from(*i).ok())
            .collect();
        let mut m = Mutation::new();
        let mut rows = Vec::new();
        let mut raw: Vec<(usize, String)> = Vec::new();
        // How many of the person's records carry each value.
        let mut carried: HashMap<(usize, String), u32> = HashMap::new();
        // What the person's rows carry: counts of each normalised value,
        // and the text values as stored (looked for in the files later).
        let absorb = |b: &RecordBatch,
                      source: &crate::unify::SourceSpec,
                      carried: &mut HashMap<(usize, String), u32>,
                      raw: &mut Vec<(usize, String)>|
         -> Result<()> {
            crate::unify::for_each_row(b, source, None, |r, _| {
                for (k, v) in st.graph.normalize(r) {
                    *carried.entry((usize::from(k), v)).or_default() += 1;
                }
            })?;
            for (k, c) in &source.columns {
                let Some(col) = b.column_by_name(c) else {
                    continue;
                };
                // Only text is looked for in the files: the eight bytes
                // of a number occur by chance everywhere.
                if col.data_type() == &DataType::Utf8 {
                    let text = col.as_string::<i32>();
                    raw.extend(text.iter().flatten().map(|v| (*k, v.to_string())));
                }
            }
            Ok(())
        };
        for source in &spec.sources {
            let t = snapshot.table(&source.table)?;
            let mut projection = vec![PROFILE_ID.to_string()];
            projection.extend(source.columns.iter().map(|(_, c)| c.clone()));
            let scan = t.scan(&ScanOptions {
                projection: Some(projection),
                predicate: Some(Predicate::InList {
                    column: PROFILE_ID.to_string(),
                    values: gone.ids.iter().map(|i| Value::Int(*i as i64)).collect(),
                }),
                filter: true,
                row_ids: true,
                ..ScanOptions::default()
            })?;
            let mut row_ids = Vec::new();
            for part in scan.partitions {
                for b in part {
                    let b = b?;
                    row_ids.extend_from_slice(super::row_ids(&b));
                    absorb(&b, source, &mut carried, &mut raw)?;
                }
            }
            rows.push((source.table.clone(), row_ids.len() as u64));
            if !row_ids.is_empty() {
                m.delete(&source.table, row_ids);
            }
        }
        // Archived rows of the person: their files are rewritten without
        // them in this same commit.
        let stored_ids: HashSet<i64> = gone.ids.iter().map(|i| *i as i64).collect();
        let archived = super::archive::erase_rows(store, &snapshot, spec, &stored_ids, &mut m)?;
        for (i, b) in &archived.removed {
            absorb(b, &spec.sources[*i], &mut carried, &mut raw)?;
        }
        rows.extend(archived.rows.iter().cloned());
        // A value other people's records carry too (a family tablet, an
        // email whose link a limit refused) is theirs as well.
        let shared: HashSet<(usize, String)> = gone
            .values
            .iter()
            .zip(&gone.records)
            .filter(|(kv, n)| **n > carried.get(*kv).copied().unwrap_or(0))
            .map(|(kv, _)| kv.clone())
            .collect();
        let segment_versions = crate::segments::store::scrub(&snapshot, &space, &ids, &mut m)?;
        let delta = st.graph.take_delta();
        let log = log_rows(delta, Space::next_seq(&st))?;
        Space::take_seq(&mut st, crate::space::rows_in(&log));
        for b in log {
            m.append(&Space::log_table(spec), b);
        }

        // Suppression: every value of the person's but a device other
        // people's records carry too (a family tablet).
        let mut hashes = Vec::new();
        for (k, v) in &gone.values {
            let Some(kind) = config.kinds.get(*k) else {
                continue;
            };
            if !shared.contains(&(*k, v.clone())) {
                hashes.push((kind.name.clone(), suppress::hash(&salt, &kind.name, v)));
            }
        }
        // The subject: the identifier named, or the person's first value.
        let subject = match &given {
            Some((kind, norm)) => suppress::hash(&salt, kind, norm),
            None => gone
                .values
                .iter()
                .min_by_key(|(k, _)| *k)
                .map(|(k, v)| {
                    let kind = config.kinds.get(*k).map_or("?", |s| s.name.as_str());
                    suppress::hash(&salt, kind, v)
                })
                .unwrap_or_default(),
        };
        // What to look for in the files later: stored and normalised
        // forms, except values someone else still holds.
        let mut needles: Vec<Vec<u8>> = Vec::new();
        let forms = raw.into_iter().flat_map(|(k, v)| {
            let n = config.kinds[k].normalizer.apply(&v, config.region);
            [Some(v.trim().to_string()), n].into_iter().flatten()
        });
        for v in forms {
            let still_held = config.kinds.iter().enumerate().any(|(k, spec)| {
                spec.normalizer.apply(&v, config.region).is_some_and(|n| {
                    st.graph.profile_of(k, &n).is_some() || shared.contains(&(k, n))
                })
            });
            if v.len() >= MIN_NEEDLE && !still_held && !needles.iter().any(|n| n == v.as_bytes()) {
                needles.push(v.into_bytes());
            }
        }

        let request = request_id();
        let now = now_micros();
        let due = if stmt.immediately {
            now
        } else {
            now.saturating_add(i64::try_from(deadline.as_micros()).unwrap_or(i64::MAX))
        };
        let mut events = vec![Event {
            subject: Some(subject),
            space: Some(format!("{}.{}", spec.schema, spec.name)),
            deadline: Some(due),
            ..Event::new(&request, "received")
        }];
        for (table, n) in &rows {
            events.push(Event {
                table: Some(table.clone()),
                rows: Some(*n as i64),
                ..Event::new(&request, "tombstoned")
            });
        }
        events.push(Event {
            rows: Some(gone.values.len() as i64),
            ..Event::new(&request, "identifiers")
        });
        events.push(Event {
            rows: Some(segment_versions as i64),
            ..Event::new(&request, "segments")
        });
        m.append(super::LOG_TABLE, event_rows(&events)?);
        if !hashes.is_empty() {
            let n = hashes.len();
            let space_name = format!("{}.{}", spec.schema, spec.name);
            m.append(
                SUPPRESSION_TABLE,
                RecordBatch::try_new(
                    super::suppression_schema(),
                    vec![
                        Arc::new(StringArray::from(vec![request.as_str(); n])),
                        Arc::new(StringArray::from(vec![space_name.as_str(); n])),
                        Arc::new(StringArray::from_iter_values(hashes.iter().map(|h| &h.0))),
                        Arc::new(StringArray::from_iter_values(hashes.iter().map(|h| &h.1))),
                    ],
                )?,
            );
        }
        let erased = Erased {
            request,
            space: spec.name.clone(),
            profile,
            rows,
            identifiers: gone.values.len(),
            segment_versions,
            needles,
            deadline: due,
        };
        Ok(Prepared {
            erased,
            mutation: m,
            hashes,
            archived,
        })
    })();
    let Prepared {
        erased,
        mutation: m,
        hashes,
        archived,
    } = match result {
        Ok(r) => r,
        Err(e) => {
            drop(st);
            space.mark_stale();
            return Err(e);
        }
    };
    if let Err(e) = w.commit(m) {
        drop(st);
        space.mark_stale();
        return Err(e.into());
    }
    drop(st);
    drop(w);
    space.erase_committed(profile);
    super::archive::erased(engine, &archived)?;
    {
        let mut list = space.suppressions().write();
        let list = list.get_or_insert_with(|| suppress::Suppressions::new(salt));
        for (kind, hash) in hashes {
            list.insert(kind, hash, erased.request.clone());
        }
    }
    privacy.pending.lock().insert(
        erased.request.clone(),
        Pending {
            deadline: erased.deadline,
            needles: erased.needles.clone(),
        },
    );
    Ok(erased)
}

/// The result row of `ERASE PROFILE`.
pub fn output(e: &Erased, purged: Option<i64>, found: Option<i64>) -> Result<QueryOutput> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("space", DataType::Utf8, false),
        Field::new("profile_id", DataType::Int64, false),
        Field::new("rows_erased", DataType::Int64, false),
        Field::new("identifiers", DataType::Int64, false),
        Field::new("segment_versions", DataType::Int64, false),
        Field::new(
            "purged_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("found", DataType::Int64, true),
    ]));
    let rows: u64 = e.rows.iter().map(|r| r.1).sum();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![e.request.as_str()])),
            Arc::new(StringArray::from(vec![e.space.as_str()])),
            Arc::new(Int64Array::from(vec![e.profile as i64])),
            Arc::new(Int64Array::from(vec![rows as i64])),
            Arc::new(Int64Array::from(vec![e.identifiers as i64])),
            Arc::new(Int64Array::from(vec![e.segment_versions as i64])),
            Arc::new(TimestampMicrosecondArray::from(vec![purged])),
            Arc::new(Int64Array::from(vec![found])),
        ],
    )?;
    Ok(QueryOutput {
        schema,
        batches: vec![batch],
        tag: "ERASE 1".into(),
    })
}
