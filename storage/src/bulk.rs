//! [`BulkLoad`]: many rows into several tables, published at once.
//!
//! A bulk load writes its rows straight to new segment files (fsynced, not
//! through the log) and publishes them all in one manifest version: after a
//! crash either every row of every table is there or none is. Each target
//! table is appended to, replaced (its rows and possibly its columns), or
//! created. The catalog bytes may change in the same version.
//!
//! The load holds the store's structural lock from [`Store::bulk`] to
//! [`BulkLoad::publish`], so no delete, DDL, flush or compaction runs in
//! between; appends still do. A replaced table is checked at publication:
//! if rows were appended to it after the caller read it, the load fails with
//! [`Error::Conflict`] and changes nothing, so no acknowledged row is lost.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parking_lot::MutexGuard;

use crate::error::{Error, Result};
use crate::scan::Snapshot;
use crate::store::{SegmentSink, Store};
use crate::table::{TableMeta, TableOptions};
use crate::version::{TableVersion, conform};

/// What a bulk load does to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Adds rows to the table.
    Append,
    /// Replaces the table's rows (and columns); the table had this many live
    /// rows when the caller read it.
    Replace { live_rows: u64 },
    /// Creates the table.
    Create,
}

struct Target<'a> {
    table: String,
    mode: Mode,
    meta: Arc<TableMeta>,
    sink: SegmentSink<'a>,
    rows: u64,
}

/// A load into several tables that becomes visible (and durable) at once;
/// dropped without [`BulkLoad::publish`], it leaves no trace.
pub struct BulkLoad<'a> {
    store: &'a Store,
    _lock: MutexGuard<'a, ()>,
    targets: Vec<Target<'a>>,
    catalog: Option<Vec<u8>>,
}

impl std::fmt::Debug for BulkLoad<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad")
            .field(
                "targets",
                &self
                    .targets
                    .iter()
                    .map(|t| (&t.table, t.mode, t.rows))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A table of a [`BulkLoad`], as returned by its `append`, `replace` and
/// `create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTarget(usize);

impl Store {
    /// Starts a bulk load (see [`BulkLoad`]). It holds the structural lock
    /// until published or dropped: read what it rewrites through
    /// [`BulkLoad::snapshot`].
    pub fn bulk(&self) -> BulkLoad<'_> {
        BulkLoad {
            store: self,
            _lock: self.shared().mutation.lock(),
            targets: Vec::new(),
            catalog: None,
        }
    }
}

impl<'a> BulkLoad<'a> {
    /// A snapshot taken under the load's lock.
    pub fn snapshot(&self) -> Snapshot {
        self.store.snapshot()
    }

    fn add(&mut self, table: &str, mode: Mode, meta: TableMeta) -> Result<LoadTarget> {
        if self.targets.iter().any(|t| t.table == table) {
            return Err(Error::InvalidInput(format!(
                "table \"{table}\" is named twice in one bulk load"
            )));
        }
        let sh = self.store.shared();
        let meta = Arc::new(meta);
        self.targets.push(Target {
            table: table.to_string(),
            mode,
            sink: SegmentSink::new(sh, Arc::clone(&meta), sh.opts.target_segment_rows.max(1)),
            meta,
            rows: 0,
        });
        Ok(LoadTarget(self.targets.len() - 1))
    }

    /// Rows pushed to the target are added to `table`.
    pub fn append(&mut self, table: &str) -> Result<LoadTarget> {
        let meta = self.snapshot().table(table)?.meta().clone();
        self.add(table, Mode::Append, meta)
    }

    /// Rows pushed to the target replace those of `table`, whose columns
    /// become `schema`. `snapshot` is the table as the caller read it: if
    /// rows were appended since, [`BulkLoad::publish`] fails with
    /// [`Error::Conflict`].
    pub fn replace(
        &mut self,
        table: &str,
        schema: SchemaRef,
        snapshot: &crate::TableSnapshot,
    ) -> Result<LoadTarget> {
        let current = self.snapshot().table(table)?.meta().clone();
        let meta = TableMeta { schema, ..current };
        crate::store::validate_schema(table, &meta.schema, &meta.options)?;
        let live_rows = snapshot.row_count();
        self.add(table, Mode::Replace { live_rows }, meta)
    }

    /// Creates `table` with the rows pushed to the target.
    pub fn create(
        &mut self,
        table: &str,
        schema: SchemaRef,
        options: TableOptions,
    ) -> Result<LoadTarget> {
        crate::store::validate_schema(table, &schema, &options)?;
        if self.snapshot().table(table).is_ok() {
            return Err(Error::TableExists(table.to_string()));
        }
        let meta = TableMeta {
            id: 0, // assigned at publication
            name: table.to_string(),
            schema,
            options,
        };
        self.add(table, Mode::Create, meta)
    }

    /// Sets the catalog bytes in the same manifest version.
    pub fn set_catalog(&mut self, catalog: Vec<u8>) {
        self.catalog = Some(catalog);
    }

    /// Writes `batch` (columns and types exactly those of the target) to
    /// new segment files of the target.
    pub fn push(&mut self, target: LoadTarget, batch: &RecordBatch) -> Result<()> {
        let t = self.target_mut(target)?;
        t.meta.check_batch(batch)?;
        t.rows += batch.num_rows() as u64;
        t.sink.push(conform(batch, &t.meta.schema)?)
    }

    /// Writes the rows pushed to `target` so far to a segment now, instead
    /// of waiting for a full one: for a caller done with that table whose
    /// load goes on with others (the file is written while the next table
    /// is being read, not at publication).
    pub fn flush(&mut self, target: LoadTarget) -> Result<()> {
        self.target_mut(target)?.sink.flush()
    }

    /// Writes the target's segments at half the store's segment size (the
    /// smallest that compaction leaves as they are) instead of the full
    /// size. For a load that produces its rows while it writes them: the
    /// first file is written sooner, and less is left to write after the
    /// last row.
    pub fn write_early(&mut self, target: LoadTarget) -> Result<()> {
        let rows = self.store.shared().opts.target_segment_rows.max(2) / 2;
        self.target_mut(target)?.sink.set_target(rows)
    }

    fn target_mut(&mut self, target: LoadTarget) -> Result<&mut Target<'a>> {
        self.targets
            .get_mut(target.0)
            .ok_or_else(|| Error::InvalidInput("unknown bulk-load target".into()))
    }

    /// Rows pushed to `target` so far.
    pub fn rows(&self, target: LoadTarget) -> u64 {
        self.targets.get(target.0).map_or(0, |t| t.rows)
    }

    /// Publishes every target in one manifest version; returns the rows
    /// loaded per target, in the order they were added.
    pub fn publish(self) -> Result<Vec<u64>> {
        let BulkLoad {
            store,
            _lock,
            targets,
            catalog,
        } = self;
        let mut written = Vec::with_capacity(targets.len());
        let mut pending = Vec::with_capacity(targets.len());
        let mut rows = Vec::with_capacity(targets.len());
        for t in targets {
            rows.push(t.rows);
            pending.push(t.sink.finish()?);
            written.push((t.table, t.mode, t.meta));
        }
        let all: Vec<_> = pending
            .iter()
            .flatten()
            .map(|s| Arc::clone(&s.seg))
            .collect();
        let mut planned = false;
        let result = store.shared().checkpoint_locked(|plan, next_table_id| {
            for (i, (table, mode, meta)) in written.iter().enumerate() {
                let segments = std::mem::take(&mut pending[i]);
                match mode {
                    Mode::Append => {
                        let t = plan
                            .tables
                            .get_mut(table)
                            .ok_or_else(|| Error::TableNotFound(table.clone()))?;
                        Arc::make_mut(t).segments.extend(segments);
                    }
                    Mode::Replace { live_rows } => {
                        let t = plan
                            .tables
                            .get_mut(table)
                            .ok_or_else(|| Error::TableNotFound(table.clone()))?;
                        if t.live_rows() != *live_rows {
                            return Err(Error::Conflict(format!(
                                "table \"{table}\" changed while it was being rewritten \
                                 ({live_rows} rows were read, it now has {}); nothing was \
                                 changed, run the statement again",
                                t.live_rows()
                            )));
                        }
                        let t = Arc::make_mut(t);
                        t.meta = Arc::new(TableMeta {
                            schema: Arc::clone(&meta.schema),
                            ..(*t.meta).clone()
                        });
                        t.segments = segments;
                    }
                    Mode::Create => {
                        if plan.tables.contains_key(table) {
                            return Err(Error::TableExists(table.clone()));
                        }
                        let meta = Arc::new(TableMeta {
                            id: *next_table_id,
                            ..(**meta).clone()
                        });
                        *next_table_id += 1;
                        plan.tables.insert(
                            table.clone(),
                            Arc::new(TableVersion {
                                meta,
                                segments,
                                memory: Vec::new(),
                            }),
                        );
                    }
                }
            }
            if let Some(c) = catalog {
                plan.catalog = Arc::new(c);
            }
            planned = true;
            Ok(())
        });
        if result.is_err() && !planned {
            // Refused before any manifest could name them: unlink the files.
            // (Past that point a failure poisons the store, and the next
            // open removes whatever no manifest references.)
            for s in all {
                s.mark_obsolete();
            }
        }
        result.map(|()| rows)
    }
}
