//! Consent (GDPR article 6(1)(a) and 7): which purposes each person of a
//! profile space agreed to.
//!
//! `ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted,
//! recorded_at)` declares one of the space's sources its consent record:
//! each row is a decision (a purpose, granted or withdrawn, when), and the
//! row's `profile_id` says whose. The latest decision per profile and
//! purpose wins; on the same instant a withdrawal wins over a grant; a
//! person without a decision for a purpose has not consented.
//!
//! | reader | what it gives |
//! |---|---|
//! | `has_consent(profile_id, 'purpose' [, 'space'])` | the latest decision, `false` without one |
//! | `segment('name', purpose => 'p')` | the members who consent to `p` |
//! | `segment_count('expr', 'p')` | how many members of a set expression consent to `p` |
//! | `tessera export-segment … --purpose p` | the consenting members, and how many were left out |
//!
//! The decisions are read from the table once per version of it (and of
//! the space's merges) and kept as one bitmap of consenting profiles per
//! purpose, so a probe costs what `in_segment` costs. Because the consent
//! table is a source of the space, an `ERASE PROFILE` removes the person's
//! decisions with the rest of their rows, and `EXPORT PROFILE` includes
//! them.
//!
//! The declaration is kept in the catalog under `consent:<space>`
//! (postcard: format `u32` = 1, then [`ConsentSource`]).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use tessera_sql::datafusion::arrow::array::{Array, AsArray, Int64Array};
use tessera_sql::datafusion::arrow::compute::cast;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use tessera_sql::parser::{AlterUnify, AlterUnifyAction};
use tessera_sql::storage::{ScanOptions, TableSnapshot, VersionToken};
use tessera_sql::{QueryOutput, SqlEngine, SqlError};

use crate::error::{EngineError, Result};
use crate::space::Space;
use crate::spaces::Spaces;
use crate::unify::{PROFILE_ID, ident, storage_name};

/// Catalog key prefix of consent declarations.
const KEY_PREFIX: &str = "consent:";
/// Format of a stored declaration.
const FORMAT: u32 = 1;

/// A space's consent record: a source table and its three columns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsentSource {
    /// Storage name of the table (one of the space's sources).
    pub table: String,
    /// The purpose column.
    pub purpose: String,
    /// The decision column (boolean).
    pub granted: String,
    /// The time column.
    pub recorded_at: String,
}

/// The latest decisions of one space, as of one version of its consent
/// table.
#[derive(Debug)]
pub struct Decisions {
    space: Weak<Space>,
    table: VersionToken,
    merges: usize,
    source: ConsentSource,
    /// Per purpose, the profiles whose latest decision is a grant.
    granted: HashMap<String, RoaringBitmap>,
}

impl Decisions {
    /// The profiles consenting to `purpose` (none if nobody decided on it).
    pub fn granted(&self, purpose: &str) -> RoaringBitmap {
        self.granted
            .get(purpose.trim())
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `profile` (a current id) consents to `purpose`.
    pub fn has(&self, profile: u32, purpose: &str) -> bool {
        self.granted
            .get(purpose.trim())
            .is_some_and(|b| b.contains(profile))
    }
}

/// The consent declarations of a database, and their decisions.
#[derive(Debug)]
pub struct Consents {
    store: tessera_sql::storage::Store,
    sources: RwLock<HashMap<String, ConsentSource>>,
    cache: Mutex<HashMap<String, Arc<Decisions>>>,
}

fn encode(source: &ConsentSource) -> Result<Vec<u8>> {
    postcard::to_allocvec(&(FORMAT, source)).map_err(|e| {
        EngineError::InvalidOption(format!("the consent declaration cannot be encoded: {e}"))
    })
}

fn decode(key: &str, bytes: &[u8]) -> Result<ConsentSource> {
    let (format, source): (u32, ConsentSource) = postcard::from_bytes(bytes).map_err(|e| {
        EngineError::corrupt_table("catalog", format!("consent declaration {key}: {e}"))
    })?;
    if format != FORMAT {
        return Err(EngineError::corrupt_table(
            "catalog",
            format!("consent declaration {key} has format {format}, this Tessera reads {FORMAT}"),
        ));
    }
    Ok(source)
}

impl Consents {
    /// The declarations stored in `engine`'s catalog.
    pub fn open(engine: &SqlEngine) -> Result<Consents> {
        let mut sources = HashMap::new();
        for (key, bytes) in engine.extensions(KEY_PREFIX) {
            let space = key.strip_prefix(KEY_PREFIX).unwrap_or(&key).to_string();
            sources.insert(space, decode(&key, &bytes)?);
        }
        Ok(Consents {
            store: engine.store().clone(),
            sources: RwLock::new(sources),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The consent record of `space`, if it has one.
    pub fn source(&self, space: &Space) -> Option<ConsentSource> {
        self.sources.read().get(&space.spec.table("")).cloned()
    }

    /// The spaces with a consent record (storage names).
    pub fn spaces(&self) -> Vec<String> {
        let mut s: Vec<String> = self.sources.read().keys().cloned().collect();
        s.sort();
        s
    }

    /// The latest decisions of `space`: read again when its consent table
    /// or its merges changed since they were last read.
    pub fn decisions(&self, space: &Arc<Space>) -> Result<Arc<Decisions>> {
        let key = space.spec.table("");
        let Some(source) = self.source(space) else {
            return Err(EngineError::Sql(SqlError::NotInPrerequisiteState(format!(
                "profile space {} has no consent record; declare one with ALTER UNIFY {} SET CONSENT FROM table (purpose, granted, recorded_at)",
                space.spec.name, space.spec.name
            ))));
        };
        if !space.spec.sources.iter().any(|s| s.table == source.table) {
            return Err(EngineError::Sql(SqlError::NotInPrerequisiteState(format!(
                "the consent record of profile space {} is {}, which its UNIFY no longer reads; add it back to the UNIFY or declare another with ALTER UNIFY {} SET CONSENT",
                space.spec.name, source.table, space.spec.name
            ))));
        }
        let table = self.store.snapshot().table(&source.table)?;
        let merges = space.merges_committed();
        if let Some(d) = self.cache.lock().get(&key)
            && table.is_version(&d.table)
            && d.merges == merges
            && d.source == source
            && std::ptr::eq(d.space.as_ptr(), Arc::as_ptr(space))
        {
            return Ok(Arc::clone(d));
        }
        let d = Arc::new(read(space, table, merges, source)?);
        self.cache.lock().insert(key, Arc::clone(&d));
        Ok(d)
    }

    /// `ALTER UNIFY space SET CONSENT …` / `DROP CONSENT`.
    pub fn alter(
        &self,
        engine: &SqlEngine,
        spaces: &Spaces,
        stmt: &AlterUnify,
    ) -> Result<QueryOutput> {
        let space = super::erase::space_of(spaces, Some(&stmt.space))?;
        let key = space.spec.table("");
        match &stmt.action {
            AlterUnifyAction::SetConsent(c) => {
                let source = ConsentSource {
                    table: storage_name(&c.table)?,
                    purpose: ident(&c.purpose),
                    granted: ident(&c.granted),
                    recorded_at: ident(&c.recorded_at),
                };
                check(engine, &space, &source)?;
                engine.set_extension(&format!("{KEY_PREFIX}{key}"), Some(encode(&source)?))?;
                self.sources.write().insert(key, source);
            }
            AlterUnifyAction::DropConsent => {
                if self.sources.read().get(&key).is_none() {
                    return Err(EngineError::UndefinedObject(format!(
                        "profile space {} has no consent record to drop",
                        space.spec.name
                    )));
                }
                engine.set_extension(&format!("{KEY_PREFIX}{key}"), None)?;
                self.sources.write().remove(&key);
                self.cache.lock().remove(&key);
            }
        }
        Ok(QueryOutput::command("ALTER UNIFY"))
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

/// The declaration names a source of the space and columns of fitting types.
fn check(engine: &SqlEngine, space: &Space, source: &ConsentSource) -> Result<()> {
    let table = engine.store().table(&source.table).map_err(|_| {
        EngineError::Sql(SqlError::UndefinedTable(format!(
            "relation \"{}\" does not exist",
            source.table
        )))
    })?;
    if !space.spec.sources.iter().any(|s| s.table == source.table) {
        return Err(EngineError::Sql(SqlError::WrongObjectType(format!(
            "{} is not a source of profile space {}: its rows need a profile_id; add it to the space's UNIFY (for example {} (email)) and run UNIFY again",
            source.table, space.spec.name, source.table
        ))));
    }
    let schema = table.schema();
    let column = |name: &str| {
        schema
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                EngineError::UndefinedColumn(format!(
                    "column \"{name}\" of relation {} does not exist",
                    source.table
                ))
            })
    };
    let mismatch = |name: &str, t: &DataType, want: &str| {
        EngineError::Sql(SqlError::DatatypeMismatch(format!(
            "consent column \"{name}\" is {t}, it must be {want}"
        )))
    };
    let t = column(&source.purpose)?;
    if !is_text(&t) {
        return Err(mismatch(&source.purpose, &t, "text"));
    }
    let t = column(&source.granted)?;
    if t != DataType::Boolean {
        return Err(mismatch(&source.granted, &t, "boolean"));
    }
    let t = column(&source.recorded_at)?;
    if !matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    ) {
        return Err(mismatch(&source.recorded_at, &t, "a timestamp or a date"));
    }
    Ok(())
}

/// Reads the latest decision per profile and purpose from `table`.
fn read(
    space: &Arc<Space>,
    table: TableSnapshot,
    merges: usize,
    source: ConsentSource,
) -> Result<Decisions> {
    let scan = table.scan(&ScanOptions {
        projection: Some(vec![
            PROFILE_ID.to_string(),
            source.purpose.clone(),
            source.granted.clone(),
            source.recorded_at.clone(),
        ]),
        ..ScanOptions::default()
    })?;
    let mut purposes: HashMap<String, u32> = HashMap::new();
    // (profile, purpose) → (recorded_at, granted)
    let mut latest: HashMap<(u32, u32), (i64, bool)> = HashMap::new();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    for part in scan.partitions {
        for b in part {
            let b = b?;
            let ids = cast(b.column(0), &DataType::Int64)?;
            let ids = space.map_ids(ids.as_primitive::<Int64Type>());
            let purpose = cast(b.column(1), &DataType::Utf8)?;
            let purpose = purpose.as_string::<i32>();
            let granted = b.column(2).as_boolean();
            let at = cast(b.column(3), &ts)?;
            let at = at.as_primitive::<tessera_sql::datafusion::arrow::datatypes::TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                let (Some(id), Some(p), Some(g)) = (
                    value(&ids, i).and_then(|v| u32::try_from(v).ok()),
                    (!purpose.is_null(i)).then(|| purpose.value(i).trim()),
                    (!granted.is_null(i)).then(|| granted.value(i)),
                ) else {
                    continue;
                };
                let when = if at.is_null(i) { i64::MIN } else { at.value(i) };
                let next = purposes.len() as u32;
                let p = *purposes.entry(p.to_string()).or_insert(next);
                latest
                    .entry((id, p))
                    .and_modify(|old| {
                        // Later wins; on the same instant a withdrawal wins.
                        if when > old.0 || (when == old.0 && !g) {
                            *old = (when, g);
                        }
                    })
                    .or_insert((when, g));
            }
        }
    }
    let mut names = vec![String::new(); purposes.len()];
    for (name, i) in purposes {
        names[i as usize] = name;
    }
    let mut granted: HashMap<String, RoaringBitmap> = names
        .iter()
        .map(|n| (n.clone(), RoaringBitmap::new()))
        .collect();
    let erased = space.erased();
    for ((id, p), (_, g)) in latest {
        if g && !erased.contains(id)
            && let Some(b) = granted.get_mut(&names[p as usize])
        {
            b.insert(id);
        }
    }
    Ok(Decisions {
        space: Arc::downgrade(space),
        table: table.version_token(),
        merges,
        source,
        granted,
    })
}

fn value(ids: &Int64Array, i: usize) -> Option<i64> {
    (!ids.is_null(i)).then(|| ids.value(i))
}
