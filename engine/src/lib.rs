//! # Tessera's engine: the embeddable `Database`
//!
//! [`Database`] is what an application embeds: open a directory (or memory),
//! run SQL, append Arrow batches, compact, verify. It holds the
//! customer-data domain (the identity graph and profiles of [`unify`],
//! [`segments`], the erasure and export of one person's data in
//! [`privacy`]) and registers its statements into the SQL layer.
//!
//! ## A query, from `sql()` to the mapped segment
//!
//! 1. [`Database::sql`] hands the text to the SQL layer's
//!    [`SqlEngine`] on the database's Tokio runtime.
//! 2. The SQL layer parses it (Tessera's statements or PostgreSQL's),
//!    plans it with DataFusion, and pushes filters it can answer exactly into
//!    the storage engine (`tessera_sql::pushdown`); the engine translates
//!    `in_segment(profile_id, 'vip')` on a source into a set of stored
//!    profile ids the scan probes (`functions::segment::InSegmentFilter`).
//! 3. The scan (`tessera_sql::exec::TesseraScanExec`) takes a storage
//!    snapshot: segments pruned by zone maps, rows selected through
//!    roaring-bitmap indexes, the rest cut into morsels that one stream per
//!    thread takes in turn.
//! 4. Each morsel decodes Arrow batches straight from the read-only
//!    memory map of its segment file (`tessera_storage`), after the file's
//!    checksum was verified; DataFusion runs the rest of the plan on both
//!    cores and `sql()` returns the batches.
//!
//! ```
//! use tessera_engine::Database;
//!
//! # fn main() -> tessera_engine::Result<()> {
//! let db = Database::open_in_memory()?;
//! db.sql("CREATE TABLE orders (id BIGINT NOT NULL, email TEXT, amount NUMERIC(10,2))")?;
//! db.sql("INSERT INTO orders VALUES (1, 'marie@example.com', 19.90), (2, 'paul@example.com', 5.00)")?;
//! let batches = db.sql("SELECT email FROM orders WHERE amount > 10")?;
//! assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

pub use error::{EngineError, Result};
use tessera_sql::SqlEngine;
pub use tessera_sql::datafusion::arrow as engine_arrow;
use tessera_sql::datafusion::arrow::array::RecordBatch;
pub use tessera_sql::storage::{CompactionReport, Key, VerifyReport};
use tessera_sql::storage::{Options, OsVfs, Store, sim::SimVfs};
pub use tessera_sql::{EngineOptions, QueryOutput, QueryStream, SqlError};

pub mod appended;
pub mod datagen;
mod error;
pub mod functions;
pub mod identity;
pub mod privacy;
pub mod profiles;
pub mod segments;
pub mod space;
pub mod spaces;
pub mod unify;

/// Formats batches as an aligned text table (with the header even when
/// there are no rows).
pub fn pretty(
    schema: &tessera_sql::datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> std::result::Result<String, tessera_sql::datafusion::arrow::error::ArrowError> {
    tessera_sql::datafusion::arrow::util::pretty::pretty_format_batches_with_schema(
        std::sync::Arc::clone(schema),
        batches,
    )
    .map(|t| t.to_string())
}

/// The rows of a query, batch by batch (see [`Database::sql_stream`]).
#[derive(Debug)]
pub struct RowStream {
    db: Database,
    inner: QueryStream,
}

impl RowStream {
    /// The result's columns.
    pub fn schema(&self) -> tessera_sql::datafusion::arrow::datatypes::SchemaRef {
        Arc::clone(&self.inner.schema)
    }
}

impl Iterator for RowStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        use futures::StreamExt;
        let next = self.db.inner.runtime.block_on(self.inner.stream.next());
        next.map(|r| r.map_err(|e| EngineError::Sql(SqlError::from(e))))
    }
}

/// An embedded Tessera database. Cheap to clone; thread-safe.
#[derive(Debug, Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: tokio::runtime::Runtime,
    engine: SqlEngine,
    spaces: Arc<spaces::Spaces>,
    segments: Arc<segments::Segments>,
    privacy: Arc<privacy::Privacy>,
    consents: Arc<privacy::consent::Consents>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The purge thread ends at its next look.
        self.privacy
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.privacy.wake.notify_all();
        self.segments.scheduler.close();
        // A schema the layers above registered may hold the catalog list
        // that holds it (pg_catalog lists every catalog): that cycle would
        // keep the tables, and so the store and its directory lock, alive
        // after the database closes. Emptying the catalogs breaks it.
        let ctx = self.engine.context();
        for name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&name) {
                for schema in catalog.schema_names() {
                    let _ = catalog.deregister_schema(&schema, true);
                }
            }
        }
    }
}

/// A handle that does not keep a [`Database`] open (for functions
/// registered inside the database itself, which would otherwise keep it
/// alive forever).
#[derive(Debug, Clone)]
pub struct WeakDatabase(std::sync::Weak<Inner>);

impl WeakDatabase {
    /// The database, if it is still open.
    pub fn upgrade(&self) -> Option<Database> {
        self.0.upgrade().map(|inner| Database { inner })
    }
}

impl segments::scheduler::Runner for WeakDatabase {
    fn refresh_scheduled(&self) -> Option<usize> {
        let db = self.upgrade()?;
        let inner = &db.inner;
        let (_, failed) = inner.runtime.block_on(
            inner
                .segments
                .refresh_scheduled(&inner.engine, &inner.spaces),
        );
        Some(failed)
    }
}

impl Database {
    /// A handle that does not keep the database open.
    pub fn downgrade(&self) -> WeakDatabase {
        WeakDatabase(Arc::downgrade(&self.inner))
    }

    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Self::open_with(path, EngineOptions::default())
    }

    /// Opens (or creates) a database with explicit SQL options.
    pub fn open_with(path: impl AsRef<Path>, options: EngineOptions) -> Result<Database> {
        let store = Store::open(path)?;
        Self::with_store(store, options)
    }

    /// Opens (or creates) a database encrypted at rest under `key`
    /// (AES-256-GCM; see `docs/privacy.md`). A new directory becomes an
    /// encrypted database; an existing one opens only if it was created
    /// with this key (SQLSTATE 28000 otherwise), and a database created
    /// without encryption refuses a key (55000).
    pub fn open_encrypted(
        path: impl AsRef<Path>,
        key: Key,
        options: EngineOptions,
    ) -> Result<Database> {
        let store_options = Options {
            encryption: Some(key),
            ..Options::default()
        };
        let store = Store::open_with(path, store_options, Arc::new(OsVfs))?;
        Self::with_store(store, options)
    }

    /// Puts an encrypted database under key `new` instead of `current`
    /// (its key now). Only the data key's seal is rewritten, atomically;
    /// SQLSTATE 28000 if `current` is not the key, 55000 for a database
    /// created without encryption.
    pub fn rekey(&self, current: &Key, new: &Key) -> Result<()> {
        Ok(self.inner.engine.store().rekey(current, new)?)
    }

    /// A database that lives in memory only, gone when dropped.
    pub fn open_in_memory() -> Result<Database> {
        let store = Store::open_with("/memory", Options::default(), Arc::new(SimVfs::new()))?;
        Self::with_store(store, EngineOptions::default())
    }

    /// A database over an opened storage engine (one with its own options
    /// or file system, for tests that inject faults).
    pub fn with_store(store: Store, options: EngineOptions) -> Result<Database> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("tessera-query")
            // DataFusion's planner and optimizer recurse over a query's
            // tree: deep client queries need more than tokio's 2 MiB.
            .thread_stack_size(16 << 20)
            .build()
            .map_err(|e| {
                EngineError::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot start the query runtime: {e}"),
                ))
            })?;
        let engine = runtime.block_on(SqlEngine::open(store, options))?;
        let spaces = Arc::new(spaces::Spaces::open(&engine)?);
        let segments = Arc::new(segments::Segments::open(&engine, &spaces)?);
        let privacy = Arc::new(privacy::Privacy::open(&engine, &spaces)?);
        privacy::archive::open(&engine)?;
        if engine.store().table(privacy::LOG_TABLE).is_ok() {
            privacy::provide_view(&engine);
        }
        let consents = Arc::new(privacy::consent::Consents::open(&engine)?);
        functions::register(&engine, &spaces, &segments, &consents);
        // Views over profile tables and functions can be planned now.
        runtime.block_on(engine.replay_views());
        let db = Database {
            inner: Arc::new(Inner {
                runtime,
                engine,
                spaces,
                segments,
                privacy,
                consents,
            }),
        };
        // Erasures whose purge was due while the database was closed (or
        // interrupted by a crash) are purged now, in the background.
        if !db.inner.privacy.pending().is_empty() {
            privacy::purge::start_purger(&db.inner.privacy, db.downgrade());
        }
        // EVERY segments, also those due while the database was closed.
        segments::scheduler::Scheduler::start(&db.inner.segments, db.downgrade()).map_err(|e| {
            EngineError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot start the segment scheduler: {e}"),
            ))
        })?;
        Ok(db)
    }

    /// The database's Tokio runtime: async callers (the wire server) run
    /// their tasks on it.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.inner.runtime.handle().clone()
    }

    /// Runs SQL (one or more statements) and returns the rows of the last.
    /// Call it from outside an async runtime; inside one, use [`Database::sql_async`].
    pub fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        Ok(self
            .execute(query)?
            .pop()
            .map(|o| o.batches)
            .unwrap_or_default())
    }

    /// Runs SQL and streams the rows of its last statement (earlier ones run
    /// first): batches are produced as the iterator is advanced, so a query
    /// over a table larger than memory can be consumed batch by batch.
    /// Call it from outside an async runtime; async callers use
    /// [`SqlEngine::run_stream`] through [`Database::engine`].
    pub fn sql_stream(&self, query: &str) -> Result<RowStream> {
        let mut statements = tessera_sql::parser::parse(query)?;
        let last = statements
            .pop()
            .ok_or_else(|| SqlError::Syntax("an empty query".into()))?;
        for s in statements {
            self.run(s)?;
        }
        let inner = self
            .inner
            .runtime
            .block_on(self.inner.engine.run_stream(last))?;
        Ok(RowStream {
            db: self.clone(),
            inner,
        })
    }

    /// Runs SQL and returns every statement's output with its command tag.
    pub fn execute(&self, query: &str) -> Result<Vec<QueryOutput>> {
        self.inner.runtime.block_on(self.execute_async(query))
    }

    /// Splits SQL text into statements without running them.
    pub fn parse(&self, query: &str) -> Result<Vec<tessera_sql::parser::Statement>> {
        Ok(tessera_sql::parser::parse(query)?)
    }

    /// Runs one parsed statement.
    pub fn run(&self, statement: tessera_sql::parser::Statement) -> Result<QueryOutput> {
        self.inner.runtime.block_on(self.run_async(statement))
    }

    /// [`Database::execute`] for async callers.
    pub async fn sql_async(&self, query: &str) -> Result<Vec<QueryOutput>> {
        self.execute_async(query).await
    }

    async fn execute_async(&self, query: &str) -> Result<Vec<QueryOutput>> {
        let mut out = Vec::new();
        for stmt in tessera_sql::parser::parse(query)? {
            out.push(self.run_async(stmt).await?);
        }
        Ok(out)
    }

    /// Runs one statement: the engine's own (UNIFY, …) here, the rest in
    /// the SQL layer. For async callers (the wire server).
    pub async fn run_async(
        &self,
        statement: tessera_sql::parser::Statement,
    ) -> Result<QueryOutput> {
        let out = match statement {
            tessera_sql::parser::Statement::Compact(c) => {
                // The graph logs first: their old rows are then purged by
                // the storage compaction.
                let table = match &c.table {
                    Some(t) => Some(unify::storage_name(t)?),
                    None => None,
                };
                self.inner.spaces.compact_logs(table.as_deref()).await?;
                // `COMPACT customers` (a profile space) compacts its log's table.
                let c = match table.as_deref().and_then(|t| self.inner.spaces.get(t)) {
                    Some(space) => {
                        let log = space::Space::log_table(&space.spec);
                        let (schema, name) = log.split_once('.').unwrap_or(("public", &log));
                        tessera_sql::parser::Compact {
                            table: Some(tessera_sql::datafusion::sql::sqlparser::ast::ObjectName::from(vec![
                                tessera_sql::datafusion::sql::sqlparser::ast::Ident::with_quote('"', schema),
                                tessera_sql::datafusion::sql::sqlparser::ast::Ident::with_quote('"', name),
                            ])),
                        }
                    }
                    None => c,
                };
                let everything = c.table.is_none();
                let due = self.inner.privacy.due();
                let out = self
                    .inner
                    .engine
                    .run(tessera_sql::parser::Statement::Compact(c))
                    .await?;
                // Compacting everything purges the erasures made before it.
                if everything && !due.is_empty() {
                    privacy::purge::completed(&self.inner.engine, &self.inner.privacy, due)?;
                }
                out
            }
            tessera_sql::parser::Statement::Unify(u) => self.unify(&u).await?,
            tessera_sql::parser::Statement::Erase(e) => self.erase(&e).await?,
            tessera_sql::parser::Statement::VerifyErasure(v) => privacy::verify::verify(
                &self.inner.engine,
                &self.inner.spaces,
                &self.inner.privacy,
                &v,
            )?,
            tessera_sql::parser::Statement::LiftSuppression(l) => {
                privacy::verify::lift(&self.inner.engine, &self.inner.spaces, &l)?
            }
            tessera_sql::parser::Statement::ExportProfile(e) => {
                privacy::export::export(
                    &self.inner.engine,
                    &self.inner.spaces,
                    &self.inner.segments,
                    &e,
                )
                .await?
            }
            tessera_sql::parser::Statement::Segment(s) => self.segment(s).await?,
            tessera_sql::parser::Statement::Archive(a) => {
                privacy::archive::archive(&self.inner.engine, &a).await?
            }
            tessera_sql::parser::Statement::AlterUnify(a) => {
                self.inner
                    .consents
                    .alter(&self.inner.engine, &self.inner.spaces, &a)?
            }
            other => self.inner.engine.run(other).await?,
        };
        self.after_statement().await?;
        Ok(out)
    }

    /// `COPY table FROM STDIN` once a client has sent its data (spooled to
    /// the file `spool`): loads it atomically, then refreshes the segments
    /// that follow the table, as after any write.
    pub async fn copy_from_spool(
        &self,
        statement: tessera_sql::datafusion::sql::sqlparser::ast::Statement,
        spool: &Path,
    ) -> Result<QueryOutput> {
        let out = self.inner.engine.copy_from_spool(statement, spool).await?;
        self.after_statement().await?;
        Ok(out)
    }

    /// What follows every statement: segments refreshed `ON COMMIT` (and
    /// those whose `EVERY` interval has passed) are brought up to date.
    async fn after_statement(&self) -> Result<()> {
        self.inner
            .segments
            .refresh_due(&self.inner.engine, &self.inner.spaces)
            .await
    }

    fn segment_context(&self) -> functions::segment::Context {
        functions::segment::Context::new(
            Arc::clone(&self.inner.spaces),
            Arc::clone(&self.inner.segments),
            Arc::clone(&self.inner.consents),
            self.inner.engine.pii().clone(),
        )
    }

    /// `CREATE`, `ALTER`, `DROP` and `REFRESH` `SEGMENT`.
    async fn segment(&self, stmt: tessera_sql::parser::SegmentStatement) -> Result<QueryOutput> {
        use tessera_sql::parser::SegmentStatement as S;
        let (engine, spaces, segs) = (&self.inner.engine, &self.inner.spaces, &self.inner.segments);
        let (tag, changed) = match &stmt {
            S::Create(c) => {
                let created = segs.create(engine, spaces, c).await?;
                functions::provide_segments_table(engine, &self.segment_context());
                ("CREATE SEGMENT", vec![created])
            }
            S::Alter(a) => ("ALTER SEGMENT", vec![segs.alter(engine, spaces, a).await?]),
            S::Drop(d) => {
                segs.drop_segment(engine, spaces, &d.name, d.if_exists)
                    .await?;
                ("DROP SEGMENT", Vec::new())
            }
            S::Refresh(r) => match &r.name {
                Some(n) => (
                    "REFRESH SEGMENT",
                    vec![segs.refresh(engine, spaces, n).await?],
                ),
                None => ("REFRESH SEGMENTS", segs.refresh_all(engine, spaces).await?),
            },
        };
        segments::report(tag, &changed)
    }

    /// `ERASE PROFILE`: see [`privacy`].
    async fn erase(&self, stmt: &tessera_sql::parser::Erase) -> Result<QueryOutput> {
        let (engine, spaces, p) = (&self.inner.engine, &self.inner.spaces, &self.inner.privacy);
        let deadline = engine.options().erasure_deadline;
        let erased = privacy::erase::erase(engine, spaces, p, stmt, deadline).await?;
        if !stmt.immediately {
            privacy::purge::start_purger(p, self.downgrade());
            p.wake.notify_all();
            return privacy::erase::output(&erased, None, None);
        }
        let purged = privacy::purge::purge(engine, spaces, p).await?;
        let mine = purged.iter().find(|x| x.request == erased.request);
        privacy::erase::output(&erased, mine.map(|m| m.at), mine.and_then(|m| m.found))
    }

    /// Purges the files of every erasure made so far now, without waiting
    /// for their deadlines (what the background purge does at each one).
    pub fn purge_erasures(&self) -> Result<Vec<privacy::purge::Purged>> {
        self.inner.runtime.block_on(privacy::purge::purge(
            &self.inner.engine,
            &self.inner.spaces,
            &self.inner.privacy,
        ))
    }

    /// Erasure requests whose files are not purged yet.
    pub fn pending_erasures(&self) -> Vec<String> {
        self.inner.privacy.pending()
    }

    /// `UNIFY`: resolves every record of the sources from scratch; see
    /// [`spaces`].
    async fn unify(&self, stmt: &tessera_sql::parser::Unify) -> Result<QueryOutput> {
        use tessera_sql::datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
        use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema};

        let engine = &self.inner.engine;
        let spec = unify::UnifySpec::from_statement(stmt, engine.store())?;
        let space = spec.name.clone();
        let report = self.inner.spaces.unify(engine, spec).await?;
        // The new space object keeps suppressing the people erased before.
        self.inner
            .privacy
            .load_suppressions(engine, &self.inner.spaces)?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("space", DataType::Utf8, false),
            Field::new("records", DataType::Int64, false),
            Field::new("profiles", DataType::Int64, false),
            Field::new("merges", DataType::Int64, false),
            Field::new("junk_values", DataType::Int64, false),
            Field::new("seconds", DataType::Float64, false),
        ]));
        let records: u64 = report.records.iter().sum();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![space])),
                Arc::new(Int64Array::from(vec![records as i64])),
                Arc::new(Int64Array::from(vec![report.profiles as i64])),
                Arc::new(Int64Array::from(vec![report.merges as i64])),
                Arc::new(Int64Array::from(vec![report.junk as i64])),
                Arc::new(Float64Array::from(vec![report.seconds])),
            ],
        )?;
        Ok(QueryOutput {
            schema,
            batches: vec![batch],
            tag: format!("UNIFY {}", report.profiles),
        })
    }

    /// Appends a batch to `table` (`name` or `schema.name`), durably. The
    /// batch holds the table's columns by name (nullable ones may be left
    /// out; a generated `profile_id` is filled in).
    pub fn append(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        let name = if table.contains('.') {
            table.to_string()
        } else {
            format!("{}.{table}", tessera_sql::DEFAULT_SCHEMA)
        };
        self.inner.runtime.block_on(async {
            self.inner.engine.append(&name, batch).await?;
            self.after_statement().await
        })
    }

    /// Writes every row still in memory to segment files (the log is
    /// trimmed). Rows are durable before this; it only changes where they live.
    pub fn flush(&self) -> Result<()> {
        Ok(self.inner.engine.store().checkpoint()?)
    }

    /// Compacts every table: expires the rows past their table's
    /// retention, merges small segments, purges deleted rows (and so the
    /// files of every erasure made before it).
    pub fn compact(&self) -> Result<CompactionReport> {
        let due = self.inner.privacy.due();
        self.inner.engine.expire_now(None)?;
        self.inner
            .runtime
            .block_on(self.inner.spaces.compact_logs(None))?;
        let report = self.inner.engine.store().compact()?;
        if !due.is_empty() {
            privacy::purge::completed(&self.inner.engine, &self.inner.privacy, due)?;
        }
        Ok(report)
    }

    /// Verifies every file of the database.
    pub fn verify(&self) -> Result<VerifyReport> {
        Ok(self.inner.engine.store().verify()?)
    }

    /// The SQL engine, for registering functions and statements.
    pub fn engine(&self) -> &SqlEngine {
        &self.inner.engine
    }

    /// The size of a set expression over segments (`'high_value &
    /// !recent_buyers | vip'`), computed on their bitmaps: what the SQL
    /// function `segment_count` returns, without planning a query.
    pub fn segment_count(&self, expr: &str) -> Result<u64> {
        self.segment_count_for(expr, None)
    }

    /// The size of a set expression counting only the profiles that
    /// consent to `purpose` (with `Some`): what `segment_count(expr,
    /// purpose)` returns.
    pub fn segment_count_for(&self, expr: &str, purpose: Option<&str>) -> Result<u64> {
        let e = segments::expr::parse(expr)?;
        self.segment_context()
            .count(&e, purpose)
            .map_err(|e| EngineError::Sql(SqlError::from(e)))
    }

    /// The profile space whose profile table is `name` (`name` or
    /// `schema.name`).
    pub fn space(&self, name: &str) -> Option<Arc<space::Space>> {
        let name = if name.contains('.') {
            name.to_string()
        } else {
            format!("{}.{name}", tessera_sql::DEFAULT_SCHEMA)
        };
        self.inner.spaces.get(&name)
    }
}
