//! The profile spaces of a database: defined by `UNIFY`, restored at open,
//! attached to the SQL layer (source hooks, profile tables).
//!
//! ## A full `UNIFY`, step by step ([`Spaces::unify`])
//!
//! 1. The definition is checked against the tables ([`UnifySpec`]).
//! 2. Writes to the space's current sources wait (its writer token), and a
//!    [`BulkLoad`](tessera_sql::storage::BulkLoad) takes the store's
//!    structural lock.
//! 3. Every source is read from one snapshot: a junk-detection pass, then
//!    resolution, source by source in storage order. One thread reads and
//!    prepares the records (their identifiers normalised and hashed),
//!    another resolves them a batch behind, a third rewrites each source
//!    with its `profile_id` column as it is resolved.
//! 4. The whole graph goes to the log table `space$graph`, the definition
//!    to the catalog; the hooks are attached, then everything is published
//!    in one manifest version: after a crash either all of it is there or
//!    none.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use tessera_sql::datafusion::arrow::array::RecordBatch;
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};
use tessera_sql::hook::TableHook;
use tessera_sql::storage::TableOptions;
use tessera_sql::{SqlEngine, SqlError};

use crate::error::{EngineError, Result};
use crate::profiles::{Computed, ProfileTable, ProfileTableKind};
use crate::space::{ReadOnlyHook, Space, log_rows, log_schema};
use crate::unify::{PROFILE_ID, UnifyReport, UnifySpec, report, resolve_all};

/// Prefix of the catalog keys of profile-space definitions.
const KEY_PREFIX: &str = "unify:";
/// Format of a stored definition (its first field).
const DEF_FORMAT: u32 = 2;

fn encode_def(spec: &UnifySpec) -> Result<Vec<u8>> {
    postcard::to_allocvec(&(DEF_FORMAT, spec)).map_err(|e| {
        EngineError::InvalidOption(format!("the UNIFY definition cannot be encoded: {e}"))
    })
}

fn decode_def(key: &str, bytes: &[u8]) -> Result<UnifySpec> {
    let space = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    let (format, _) = postcard::take_from_bytes::<u32>(bytes).map_err(|e| {
        EngineError::InvalidOption(format!("the definition of {space} cannot be read: {e}"))
    })?;
    if format != DEF_FORMAT {
        return Err(EngineError::Sql(SqlError::Unsupported(format!(
            "profile space {space} was defined by an older Tessera (format {format}); run its UNIFY again"
        ))));
    }
    let (_, spec): (u32, UnifySpec) = postcard::from_bytes(bytes).map_err(|e| {
        EngineError::InvalidOption(format!("the definition of {space} cannot be read: {e}"))
    })?;
    Ok(spec)
}

/// The profile spaces of one database, by the storage name of their
/// profile table.
#[derive(Debug, Default)]
pub struct Spaces {
    spaces: RwLock<BTreeMap<String, Arc<Space>>>,
}

impl Spaces {
    /// Restores every space defined in the catalog of `engine` from its log
    /// and attaches it. A space whose log cannot be read is an error: the
    /// database does not open half-unified.
    pub fn open(engine: &SqlEngine) -> Result<Spaces> {
        let spaces = Spaces::default();
        for (key, bytes) in engine.extensions(KEY_PREFIX) {
            let spec = decode_def(&key, &bytes)?;
            let space = Arc::new(Space::restore(spec, engine.store().clone())?);
            spaces.attach(engine, &space)?;
        }
        Ok(spaces)
    }

    /// The space whose profile table is `storage_name`.
    pub fn get(&self, storage_name: &str) -> Option<Arc<Space>> {
        self.spaces.read().get(storage_name).cloned()
    }

    /// Every space.
    pub fn all(&self) -> Vec<Arc<Space>> {
        self.spaces.read().values().cloned().collect()
    }

    fn attach(&self, engine: &SqlEngine, space: &Arc<Space>) -> Result<()> {
        for i in 0..space.spec.sources.len() {
            let hook: Arc<dyn TableHook> = space.hook(i)?;
            engine.hooks().set(&space.spec.sources[i].table, Some(hook));
        }
        engine.hooks().set(
            &Space::log_table(&space.spec),
            Some(Arc::new(ReadOnlyHook::new(format!(
                "the identity-graph log of profile space {}",
                space.spec.name
            )))),
        );
        for (kind, suffix) in ProfileTableKind::ALL {
            engine.provide_table(
                &space.spec.table(suffix),
                Some(Arc::new(Computed(
                    ProfileTable::new(Arc::clone(space), kind).with_pii(engine.pii().clone()),
                ))),
            )?;
        }
        self.spaces
            .write()
            .insert(space.spec.table(""), Arc::clone(space));
        Ok(())
    }

    fn detach(&self, engine: &SqlEngine, space: &Space) {
        for s in &space.spec.sources {
            engine.hooks().set(&s.table, None);
        }
        self.spaces.write().remove(&space.spec.table(""));
    }

    /// Compacts the graph log of every space (`COMPACT`), or of the space
    /// whose log or profile table is `table`; returns how many logs.
    pub async fn compact_logs(&self, table: Option<&str>) -> Result<usize> {
        let mut n = 0;
        for space in self.all() {
            let mine = table
                .is_none_or(|t| t == Space::log_table(&space.spec) || t == space.spec.table(""));
            if mine {
                space.compact_log().await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Runs `UNIFY` from scratch for `spec`: see the module documentation.
    pub async fn unify(&self, engine: &SqlEngine, spec: UnifySpec) -> Result<UnifyReport> {
        let started = Instant::now();
        let name = spec.table("");
        let previous = self.get(&name);
        let _token = match &previous {
            Some(p) => Some(p.writer_token().await),
            None => None,
        };
        // The names UNIFY shows its tables under must be free (or its own).
        if previous.is_none() {
            for (_, suffix) in ProfileTableKind::ALL {
                let t = spec.table(suffix);
                if engine.name_taken(&t) {
                    return Err(EngineError::Sql(SqlError::DuplicateTable(format!(
                        "{t} (a table UNIFY {} would replace; drop it or choose another name)",
                        spec.name
                    ))));
                }
            }
        }
        let log = Space::log_table(&spec);
        if previous.is_none() && engine.store().table(&log).is_ok() {
            return Err(EngineError::Sql(SqlError::DuplicateTable(format!(
                "{log} (the graph log UNIFY {} would write)",
                spec.name
            ))));
        }
        for s in &spec.sources {
            let owned = previous
                .as_ref()
                .is_some_and(|p| p.spec.sources.iter().any(|o| o.table == s.table));
            if engine.hooks().get(&s.table).is_some() && !owned {
                return Err(EngineError::InvalidOption(format!(
                    "\"{}\" is already a source of another profile space; a table feeds one space",
                    s.label
                )));
            }
            let schema = engine.store().table(&s.table)?.schema();
            if !owned && schema.index_of(PROFILE_ID).is_ok() {
                return Err(EngineError::InvalidOption(format!(
                    "\"{}\" has a column named {PROFILE_ID}; UNIFY adds its own (rename that column)",
                    s.label
                )));
            }
        }

        let store = engine.store();
        let mut load = store.bulk();
        let snapshot = load.snapshot();
        let mut targets = Vec::with_capacity(spec.sources.len());
        for s in &spec.sources {
            let table = snapshot.table(&s.table)?;
            let schema = table.schema();
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            if schema.index_of(PROFILE_ID).is_err() {
                fields.push(Field::new(PROFILE_ID, DataType::Int64, true));
            }
            let with_id = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
            let target = load.replace(&s.table, with_id, &table)?;
            load.write_early(target)?;
            targets.push(target);
        }
        // Three threads on two cores: reading and preparing the records
        // (normalised, hashed), resolving them, and rewriting the sources
        // (encoding, zone maps, indexes, writes).
        let (graph, records, rows) = std::thread::scope(|scope| -> Result<_> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, RecordBatch)>(4);
            let (snapshot, spec) = (&snapshot, &spec);
            let resolver = scope.spawn(move || {
                let (mut graph, records) = resolve_all(snapshot, spec, |i, batch| {
                    tx.send((i, batch)).map_err(|_| {
                        EngineError::Io(std::io::Error::other("the UNIFY writer stopped"))
                    })
                })?;
                drop(tx);
                // The graph's log is encoded here while the writer finishes
                // the sources' last segments.
                let log = log_rows(graph.take_delta(), 0)?;
                Ok::<_, EngineError>((graph, records, log))
            });
            let mut pushed = Ok(());
            let mut current = None;
            for (i, batch) in &rx {
                // The resolver is done with the previous source: write its
                // last segment while it reads this one.
                pushed = match current.replace(i) {
                    Some(done) if done != i => load.flush(targets[done]),
                    _ => Ok(()),
                }
                .and_then(|()| load.push(targets[i], &batch));
                if pushed.is_err() {
                    break;
                }
            }
            // A writer that failed stops the resolver (its next send fails).
            drop(rx);
            let resolved = resolver.join().map_err(|_| {
                EngineError::Io(std::io::Error::other("the UNIFY resolver panicked"))
            })?;
            pushed?;
            resolved
        })?;
        let log_target = match snapshot.table(&log) {
            Ok(t) => load.replace(&log, log_schema(), &t)?,
            Err(_) => load.create(&log, log_schema(), TableOptions::default())?,
        };
        for b in &rows {
            load.push(log_target, b)?;
        }
        let next_seq = crate::space::rows_in(&rows) as i64;
        let key = format!("{KEY_PREFIX}{name}");
        let (catalog, bytes) = engine.catalog_with_extension(&key, Some(encode_def(&spec)?))?;
        load.set_catalog(bytes);
        let report = report(&graph, records, started);

        // Hooks go on before the load lets go of the store: a write that
        // started without one and commits after sees the change and stops
        // (SQLSTATE 40001) instead of writing rows without profile ids.
        let space = Arc::new(Space::new(spec, store.clone(), graph, next_seq));
        if let Some(p) = &previous {
            // People erased before stay suppressed from the first write on.
            *space.suppressions().write() = p.suppressions().read().clone();
            self.detach(engine, p);
        }
        for (i, s) in space.spec.sources.iter().enumerate() {
            let hook: Arc<dyn TableHook> = space.hook(i)?;
            engine.hooks().set(&s.table, Some(hook));
        }
        if let Err(e) = load.publish() {
            for s in &space.spec.sources {
                engine.hooks().set(&s.table, None);
            }
            if let Some(p) = &previous {
                self.attach(engine, p)?;
            }
            return Err(e.into());
        }
        engine.catalog_published(catalog);
        for s in &space.spec.sources {
            engine.refresh_table(&s.table)?;
        }
        engine.refresh_table(&log)?;
        self.attach(engine, &space)?;
        Ok(report)
    }
}
