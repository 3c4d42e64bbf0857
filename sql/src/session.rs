//! [`SqlEngine`]: runs SQL text against a [`Store`].
//!
//! DDL that changes what is stored (tables, indexes, views, schemas) is
//! handled here and persisted through the storage manifest; queries and DML
//! are planned and run by DataFusion over [`TesseraTable`]s; Tessera's own
//! statements are dispatched to their handlers.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, ColumnOption, Expr as AstExpr, ObjectName, ObjectType,
    TableConstraint,
};
use parking_lot::Mutex;
use tessera_storage::{Store, TableOptions};

use crate::catalog::{CatalogState, ViewDef};
use crate::copy;
use crate::error::{Result, SqlError};
use crate::hook::Hooks;
use crate::parser::{self, Statement};
use crate::provider::TesseraTable;
use crate::types;

/// The DataFusion catalog name Tessera's schemas live in.
pub const CATALOG: &str = "tessera";
/// The default schema.
pub const DEFAULT_SCHEMA: &str = "public";

/// Options of a SQL engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Push filters into the storage engine (zone maps, bitmap indexes).
    pub pushdown: bool,
    /// Memory limit for query execution in bytes; exceeding it is an error
    /// with SQLSTATE 53200, not an abort.
    pub memory_limit: Option<usize>,
    /// Input bytes past which an `INSERT` stops gathering its rows into one
    /// log record and streams them into new segment files instead (still
    /// atomic; memory stays bounded). 64 MiB by default.
    pub bulk_insert_bytes: usize,
    /// How long after `ERASE PROFILE` its rows may stay in the database's
    /// files (deleted from queries already) before a purge rewrites them.
    /// 24 hours by default.
    pub erasure_deadline: std::time::Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pushdown: true,
            memory_limit: None,
            bulk_insert_bytes: 64 << 20,
            erasure_deadline: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// The result of one statement.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// Result columns (empty for statements that return no rows).
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// PostgreSQL-style command tag (`SELECT 3`, `INSERT 0 2`, `CREATE TABLE`).
    pub tag: String,
}

impl QueryOutput {
    /// The output of a statement that returns no rows, only its tag.
    pub fn command(tag: impl Into<String>) -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            tag: tag.into(),
        }
    }

    /// Number of result rows.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The result of one statement as a stream of batches: a query's rows are
/// produced as the consumer asks for them (nothing is buffered beyond
/// DataFusion's operators); other statements have run when this is returned.
pub struct QueryStream {
    /// Result columns.
    pub schema: SchemaRef,
    /// The rows.
    pub stream: datafusion::physical_plan::SendableRecordBatchStream,
    /// The command tag; for a query, `SELECT` (the count is known at the end).
    pub tag: String,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .field("tag", &self.tag)
            .finish()
    }
}

impl QueryStream {
    /// A stream over batches already computed.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self::from_output(QueryOutput {
            schema,
            batches,
            tag: "SELECT".into(),
        })
    }

    fn from_output(out: QueryOutput) -> Self {
        let schema = Arc::clone(&out.schema);
        let batches = out.batches.into_iter().map(Ok);
        Self {
            stream: Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    Arc::clone(&schema),
                    futures::stream::iter(batches),
                ),
            ),
            schema,
            tag: out.tag,
        }
    }
}

/// Runs SQL over one store. `Send + Sync`; share it behind an `Arc`.
pub struct SqlEngine {
    store: Store,
    ctx: SessionContext,
    catalog: Mutex<CatalogState>,
    options: EngineOptions,
    progress: Mutex<Option<copy::Progress>>,
    hooks: Hooks,
    /// Tables the layers above provide (storage names), not stored here.
    provided: Mutex<std::collections::BTreeSet<String>>,
    /// Parameter names of the table functions that take named arguments.
    table_params: crate::named::TableParams,
    /// PII columns and the masking key.
    pii: crate::pii::PiiTags,
}

impl std::fmt::Debug for SqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlEngine")
            .field("store", &self.store.dir())
            .field("options", &self.options)
            .finish()
    }
}

/// A table or view name resolved to (schema, name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    schema: String,
    name: String,
}

impl Name {
    fn storage(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn from_storage(storage_name: &str) -> Result<Name> {
        let (s, t) = storage_name
            .split_once('.')
            .ok_or_else(|| SqlError::UndefinedTable(storage_name.to_string()))?;
        Ok(Name {
            schema: s.to_string(),
            name: t.to_string(),
        })
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.schema == DEFAULT_SCHEMA {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

/// PostgreSQL folds unquoted identifiers to lower case.
fn ident(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn resolve(name: &ObjectName) -> Result<Name> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string()))
        .collect();
    match parts.as_slice() {
        [t] => Ok(Name {
            schema: DEFAULT_SCHEMA.into(),
            name: t.clone(),
        }),
        [s, t] => Ok(Name {
            schema: s.clone(),
            name: t.clone(),
        }),
        [c, s, t] if c == CATALOG => Ok(Name {
            schema: s.clone(),
            name: t.clone(),
        }),
        _ => Err(SqlError::UndefinedTable(name.to_string())),
    }
}

impl SqlEngine {
    /// Opens the SQL layer over `store`: registers its tables and replays
    /// its persisted schemas and views.
    pub async fn open(store: Store, options: EngineOptions) -> Result<Self> {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA);
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        if store.is_encrypted() {
            // Spill files would hold table data in plaintext: a query over
            // the memory limit fails (53200) instead of spilling.
            runtime = runtime.with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            );
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        let catalog = CatalogState::decode(store.snapshot().catalog())?;
        let engine = SqlEngine {
            store,
            ctx,
            catalog: Mutex::new(catalog.clone()),
            options,
            progress: Mutex::new(None),
            hooks: Hooks::default(),
            provided: Mutex::new(Default::default()),
            table_params: Default::default(),
            pii: crate::pii::PiiTags::load(&catalog.extensions),
        };
        for s in &catalog.schemas {
            engine.register_schema(s)?;
        }
        for t in engine.store.snapshot().tables() {
            if let Some((schema, name)) = t.name.split_once('.') {
                engine.register_table(&Name {
                    schema: schema.into(),
                    name: name.into(),
                })?;
            }
        }
        engine.protect_pii_audit();
        engine.replay_views().await;
        Ok(engine)
    }

    /// Registers the persisted views that are not registered yet. Run at
    /// open, and again by the layers above once they have registered their
    /// own tables and functions (a view may use them). A view whose tables
    /// were dropped stays defined but fails when used.
    pub async fn replay_views(&self) {
        let views = self.catalog.lock().views.clone();
        for v in &views {
            let registered = self
                .schema(&v.schema)
                .is_some_and(|s| s.table_exist(&v.name));
            if !registered {
                let _ = self.ctx.sql(&v.sql).await;
            }
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Registers the table function `name`, whose arguments may also be
    /// given by name (`name => value`) in the order of `params`.
    pub fn register_table_function(
        &self,
        name: &str,
        function: Arc<dyn datafusion::catalog::TableFunctionImpl>,
        params: &[&str],
    ) {
        self.ctx.register_udtf(name, function);
        self.table_params.set(name, params);
    }

    /// The DataFusion session (for registering functions and tables).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs every statement of `sql` in turn; stops at the first error.
    pub async fn execute(&self, sql: &str) -> Result<Vec<QueryOutput>> {
        let mut out = Vec::new();
        for stmt in parser::parse(sql)? {
            out.push(self.run(stmt).await?);
        }
        Ok(out)
    }

    /// Runs one parsed statement, streaming a query's rows.
    pub async fn run_stream(&self, stmt: Statement) -> Result<QueryStream> {
        match stmt {
            Statement::Sql(s) if matches!(*s, ast::Statement::Query(_)) => {
                let plan = self.plan_in(&self.ctx, *s).await?;
                self.stream_plan(&self.ctx, plan).await
            }
            other => Ok(QueryStream::from_output(self.run(other).await?)),
        }
    }

    /// A session of its own over this engine's catalog, tables and
    /// functions (a connection's): settings changed in it (default schema,
    /// time zone) stay in it, while tables and views created anywhere are
    /// seen by all.
    pub fn new_session(&self) -> SessionContext {
        SessionContext::new_with_state(self.ctx.state())
    }

    /// Plans a query (or `EXPLAIN`) in `ctx`, a session from
    /// [`SqlEngine::new_session`]; `$n` placeholders stay in the plan.
    pub async fn plan_in(
        &self,
        ctx: &SessionContext,
        mut stmt: ast::Statement,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        let access = pii_access(ctx);
        self.pii.check_probes(&stmt, access.as_ref())?;
        self.table_params.bind(&mut stmt)?;
        let state = ctx.state();
        Ok(state
            .statement_to_plan(DFStatement::Statement(Box::new(stmt)))
            .await?)
    }

    /// Runs a plan from [`SqlEngine::plan_in`] (its placeholders filled),
    /// streaming its rows.
    pub async fn stream_plan(
        &self,
        ctx: &SessionContext,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<QueryStream> {
        let df = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        Ok(QueryStream {
            schema,
            stream,
            tag: "SELECT".into(),
        })
    }

    /// `COPY table FROM STDIN`: loads the rows a client sent, spooled to
    /// the file `spool`, with the statement's options (text format unless
    /// it says otherwise), atomically like any `COPY`.
    pub async fn copy_from_spool(
        &self,
        stmt: ast::Statement,
        spool: &std::path::Path,
    ) -> Result<QueryOutput> {
        match stmt {
            ast::Statement::Copy {
                source,
                to: false,
                target: ast::CopyTarget::Stdin,
                options,
                legacy_options,
                ..
            } => {
                let target = ast::CopyTarget::File {
                    filename: spool.display().to_string(),
                };
                self.copy(source, false, target, &options, &legacy_options)
                    .await
            }
            other => Err(SqlError::Syntax(format!("not a COPY FROM STDIN: {other}"))),
        }
    }

    /// Runs one parsed statement.
    pub async fn run(&self, stmt: Statement) -> Result<QueryOutput> {
        match stmt {
            Statement::Compact(c) => {
                let table = match &c.table {
                    Some(t) => {
                        let name = resolve(t)?;
                        self.store
                            .table(&name.storage())
                            .map_err(|_| SqlError::UndefinedTable(name.to_string()))?;
                        Some(name.storage())
                    }
                    None => None,
                };
                // Rows past their table's retention go first, and are
                // purged from the files by this same compaction.
                let expired = self.expire_now(table.as_deref())?;
                let report = match &table {
                    Some(t) => self.store.compact_table(t)?,
                    None => self.store.compact()?,
                };
                let schema = Arc::new(Schema::new(vec![
                    Field::new("segments_removed", DataType::UInt64, false),
                    Field::new("segments_written", DataType::UInt64, false),
                    Field::new("rows_purged", DataType::UInt64, false),
                    Field::new("rows_expired", DataType::UInt64, false),
                ]));
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(arrow::array::UInt64Array::from(vec![
                            report.segments_removed as u64,
                        ])),
                        Arc::new(arrow::array::UInt64Array::from(vec![
                            report.segments_written as u64,
                        ])),
                        Arc::new(arrow::array::UInt64Array::from(vec![report.rows_purged])),
                        Arc::new(arrow::array::UInt64Array::from(vec![expired])),
                    ],
                )?;
                Ok(QueryOutput {
                    schema,
                    batches: vec![batch],
                    tag: "COMPACT".into(),
                })
            }
            Statement::Verify(_) => {
                let report = self.store.verify()?;
                let schema = Arc::new(Schema::new(vec![
                    Field::new("file", DataType::Utf8, false),
                    Field::new("problem", DataType::Utf8, false),
                ]));
                let files: Vec<String> = report
                    .problems
                    .iter()
                    .map(|p| p.path.display().to_string())
                    .collect();
                let details: Vec<String> =
                    report.problems.iter().map(|p| p.detail.clone()).collect();
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(StringArray::from(files)),
                        Arc::new(StringArray::from(details)),
                    ],
                )?;
                Ok(QueryOutput {
                    schema,
                    batches: vec![batch],
                    tag: format!("VERIFY {}", report.problems.len()),
                })
            }
            Statement::Sql(s) => self.run_sql(*s).await,
            Statement::Unify(_)
            | Statement::Segment(_)
            | Statement::Erase(_)
            | Statement::VerifyErasure(_)
            | Statement::LiftSuppression(_)
            | Statement::ExportProfile(_)
            | Statement::AlterUnify(_)
            | Statement::Archive(_) => Err(SqlError::Unsupported(
                "UNIFY, SEGMENT and erasure statements outside the engine; run them through tessera_engine::Database".into(),
            )),
            Statement::SetPii(p) => self.set_pii(&p),
            Statement::GrantPii(_) => Err(SqlError::Unsupported(
                "pii_reader is a privilege of the server's roles (tessera serve); an embedding program reads PII as the database's owner".into(),
            )),
        }
    }

    /// `ALTER TABLE t ALTER COLUMN c { SET | DROP } PII`.
    fn set_pii(&self, p: &crate::parser::SetPii) -> Result<QueryOutput> {
        let name = resolve(&p.table)?;
        let table = name.storage();
        let snap = self
            .store
            .table(&table)
            .map_err(|_| SqlError::UndefinedTable(name.to_string()))?;
        if let Some(h) = self.hooks.get(&table)
            && h.read_only()
        {
            return Err(SqlError::ReadOnly(format!(
                "permission denied: \"{table}\" is {}",
                h.owner()
            )));
        }
        let column = ident(&p.column);
        let schema = snap.schema();
        let field = schema.field_with_name(&column).map_err(|_| {
            SqlError::UndefinedColumn(format!(
                "column \"{column}\" of relation {name} does not exist"
            ))
        })?;
        if p.pii && !crate::pii::maskable(field.data_type()) {
            return Err(SqlError::Unsupported(format!(
                "column \"{column}\" is {}: PII masking covers text and bigint columns",
                field.data_type()
            )));
        }
        let mut cols = self.pii.columns(&table);
        if p.pii {
            cols.insert(column);
        } else {
            cols.remove(&column);
        }
        if self.pii.key().is_none() {
            let key: [u8; 32] = rand::random();
            self.set_extension(crate::pii::KEY, Some(key.to_vec()))?;
            self.pii.set_key(key);
        }
        if crate::pii::ensure_audit(&self.store)? {
            self.refresh_table(crate::pii::AUDIT_TABLE)?;
        }
        self.protect_pii_audit();
        let entry = self.pii.set(&table, cols)?;
        self.set_extension(&format!("{}{table}", crate::pii::TAG_PREFIX), entry)?;
        Ok(QueryOutput::command("ALTER TABLE"))
    }

    /// Users read the PII audit; only Tessera writes it.
    fn protect_pii_audit(&self) {
        if self.store.table(crate::pii::AUDIT_TABLE).is_ok() {
            self.hooks.set(
                crate::pii::AUDIT_TABLE,
                Some(Arc::new(crate::hook::ReadOnlyHook::new(
                    "the audit of PII reads".into(),
                ))),
            );
        }
    }

    /// The PII columns and masking key of this engine's tables.
    pub fn pii(&self) -> &crate::pii::PiiTags {
        &self.pii
    }

    /// `ALTER TABLE t SET (retention = '…', retention_column = c)`.
    fn set_retention(&self, table: &str, options: &[ast::SqlOption]) -> Result<()> {
        use crate::retention::{KEY_PREFIX, Retention, change, fits, interval};
        let Some(c) = change(options)? else {
            return Ok(());
        };
        if let Some(h) = self.hooks.get(table)
            && h.read_only()
        {
            return Err(SqlError::ReadOnly(format!(
                "permission denied: \"{table}\" is {}; its rows are kept by Tessera",
                h.owner()
            )));
        }
        let key = format!("{KEY_PREFIX}{table}");
        let old = self.extension(&key).and_then(|b| Retention::decode(&b));
        let Some(given) = c.interval else {
            return self.set_extension(&key, None);
        };
        interval(&given)?;
        let column = c.column.or(old.map(|o| o.column)).ok_or_else(|| {
            SqlError::InvalidParameter(format!(
                "a retention needs its column: ALTER TABLE {table} SET (retention = '{given}', retention_column = the_time_column)"
            ))
        })?;
        let schema = self.store.table(table)?.schema();
        let field = schema.field_with_name(&column).map_err(|_| {
            SqlError::UndefinedColumn(format!(
                "column \"{column}\" of relation {table} does not exist"
            ))
        })?;
        if !fits(field.data_type()) {
            return Err(SqlError::DatatypeMismatch(format!(
                "retention column \"{column}\" is {}, it must be a timestamp or a date",
                field.data_type()
            )));
        }
        let r = Retention {
            interval: given,
            column,
        };
        self.set_extension(&key, Some(r.encode()?))
    }

    /// The retention of each table that has one (storage names).
    pub fn retentions(&self) -> Vec<(String, crate::retention::Retention)> {
        use crate::retention::{KEY_PREFIX, Retention};
        self.extensions(KEY_PREFIX)
            .into_iter()
            .filter_map(|(k, v)| {
                let table = k.strip_prefix(KEY_PREFIX)?.to_string();
                Some((table, Retention::decode(&v)?))
            })
            .collect()
    }

    /// Deletes the rows past their table's retention now (of `table` only,
    /// with `Some`); returns how many. `COMPACT` runs it first.
    pub fn expire_now(&self, table: Option<&str>) -> Result<u64> {
        self.expire(table, chrono::Utc::now())
    }

    /// Deletes the rows past their table's retention at `now` (of `table`
    /// only, with `Some`); returns how many.
    pub fn expire(&self, table: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let mut n = 0;
        for (t, r) in self.retentions() {
            if table.is_some_and(|only| only != t) {
                continue;
            }
            let Ok(snapshot) = self.store.table(&t) else {
                continue;
            };
            let schema = snapshot.schema();
            let Ok(field) = schema.field_with_name(&r.column) else {
                continue;
            };
            n += self
                .store
                .delete_where(&t, &r.expired(field.data_type(), now)?)?;
        }
        Ok(n)
    }

    /// The extension blob stored in the catalog under `key`.
    pub fn extension(&self, key: &str) -> Option<Vec<u8>> {
        self.catalog.lock().extension(key).map(<[u8]>::to_vec)
    }

    /// Every extension blob whose key starts with `prefix`.
    pub fn extensions(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.catalog
            .lock()
            .extensions
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Stores (or with `None` removes) an extension blob in the catalog,
    /// durably (a new manifest version).
    pub fn set_extension(&self, key: &str, value: Option<Vec<u8>>) -> Result<()> {
        let mut cat = self.catalog.lock().clone();
        cat.set_extension(key, value);
        self.save_catalog(cat)
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The hooks the layers above attach to tables.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Registers table `storage_name` (`schema.table`) anew, after its
    /// columns changed underneath (a bulk load replaced it).
    pub fn refresh_table(&self, storage_name: &str) -> Result<()> {
        self.register_table(&Name::from_storage(storage_name)?)
    }

    /// Saves the catalog as `state` would have it with `key` set: for a
    /// bulk load that publishes the catalog with its rows
    /// ([`tessera_storage::BulkLoad::set_catalog`]). Returns the bytes to
    /// publish; [`SqlEngine::catalog_published`] installs them after.
    pub fn catalog_with_extension(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(CatalogState, Vec<u8>)> {
        let mut cat = self.catalog.lock().clone();
        cat.set_extension(key, value);
        let bytes = cat.encode()?;
        Ok((cat, bytes))
    }

    /// Installs a catalog a bulk load published.
    pub fn catalog_published(&self, state: CatalogState) {
        *self.catalog.lock() = state;
    }

    /// Registers a table the layers above provide (UNIFY's profile tables)
    /// under `storage_name`; `None` removes it. Such a name cannot be
    /// taken by `CREATE TABLE` or `CREATE VIEW`.
    pub fn provide_table(
        &self,
        storage_name: &str,
        provider: Option<Arc<dyn datafusion::catalog::TableProvider>>,
    ) -> Result<()> {
        let name = Name::from_storage(storage_name)?;
        let schema = self
            .schema(&name.schema)
            .ok_or_else(|| SqlError::UndefinedSchema(name.schema.clone()))?;
        schema.deregister_table(&name.name)?;
        let mut provided = self.provided.lock();
        match provider {
            Some(p) => {
                schema.register_table(name.name.clone(), p)?;
                provided.insert(storage_name.to_string());
            }
            None => {
                provided.remove(storage_name);
            }
        }
        Ok(())
    }

    /// Whether `storage_name` names a stored or provided table.
    fn table_taken(&self, storage_name: &str) -> bool {
        self.store.table(storage_name).is_ok() || self.provided.lock().contains(storage_name)
    }

    /// Whether `storage_name` names a stored or provided table, or a view.
    pub fn name_taken(&self, storage_name: &str) -> bool {
        let is_view = storage_name.split_once('.').is_some_and(|(schema, name)| {
            self.catalog
                .lock()
                .views
                .iter()
                .any(|v| v.schema == schema && v.name == name)
        });
        self.table_taken(storage_name) || is_view
    }

    /// Appends a batch (every column of the table but its generated ones,
    /// by name) to `table` (storage name), durably: the embedded append API.
    /// Declared lengths are checked and the table's hook runs, as for
    /// `INSERT`.
    pub async fn append(&self, table: &str, batch: &RecordBatch) -> Result<()> {
        let schema = self.store.table(table)?.schema();
        let generated = self.hooks.generated(table);
        let mut cols = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            match batch.column_by_name(f.name()) {
                Some(c) if !generated.contains(f.name()) => cols.push(Arc::clone(c)),
                _ if generated.contains(f.name()) || f.is_nullable() => cols.push(
                    arrow::array::new_null_array(f.data_type(), batch.num_rows()),
                ),
                _ => {
                    return Err(SqlError::Storage(
                        tessera_storage::Error::NotNullViolation {
                            table: table.to_string(),
                            column: f.name().clone(),
                        },
                    ));
                }
            }
        }
        if let Some(extra) = batch
            .schema()
            .fields()
            .iter()
            .find(|f| schema.index_of(f.name()).is_err())
        {
            return Err(SqlError::UndefinedColumn(format!(
                "column \"{}\" of relation \"{table}\" does not exist",
                extra.name()
            )));
        }
        let batch = types::batch_with_rows(&schema, cols, batch.num_rows())?;
        types::check_lengths(&batch, &schema, 1)?;
        crate::provider::commit_appends(
            &self.store,
            &self.hooks,
            table,
            vec![batch],
            tessera_storage::Mutation::new(),
        )
        .await
        .map(|_| ())
    }

    async fn run_sql(&self, mut stmt: ast::Statement) -> Result<QueryOutput> {
        use ast::Statement as S;
        let access = pii_access(&self.ctx);
        self.pii.check_probes(&stmt, access.as_ref())?;
        self.table_params.bind(&mut stmt)?;
        match stmt {
            S::CreateTable(ct) => self.create_table(ct).await,
            S::Drop {
                object_type: ObjectType::Table,
                if_exists,
                names,
                ..
            } => {
                for n in &names {
                    let name = resolve(n)?;
                    if self.provided.lock().contains(&name.storage()) {
                        return Err(SqlError::WrongObjectType(format!(
                            "\"{name}\" is a table of a profile space, kept by UNIFY; it cannot be dropped"
                        )));
                    }
                    if self.store.table(&name.storage()).is_err() {
                        if if_exists {
                            continue;
                        }
                        return Err(SqlError::UndefinedTable(name.to_string()));
                    }
                    if let Some(h) = self.hooks.get(&name.storage()) {
                        return Err(SqlError::DependentObjects(format!(
                            "cannot drop table {name}: it is {}",
                            h.owner()
                        )));
                    }
                    self.store.drop_table(&name.storage())?;
                    // Its retention and PII tags go with it.
                    for key in [
                        format!("{}{}", crate::retention::KEY_PREFIX, name.storage()),
                        format!("{}{}", crate::pii::TAG_PREFIX, name.storage()),
                    ] {
                        if self.extension(&key).is_some() {
                            self.set_extension(&key, None)?;
                        }
                    }
                    self.pii.set(&name.storage(), Default::default())?;
                    if let Some(s) = self.schema(&name.schema) {
                        s.deregister_table(&name.name)?;
                    }
                }
                Ok(QueryOutput::command("DROP TABLE"))
            }
            S::Drop {
                object_type: ObjectType::View,
                if_exists,
                names,
                ..
            } => {
                for n in &names {
                    let name = resolve(n)?;
                    let mut cat = self.catalog.lock().clone();
                    let before = cat.views.len();
                    cat.views
                        .retain(|v| !(v.schema == name.schema && v.name == name.name));
                    if cat.views.len() == before {
                        if if_exists {
                            continue;
                        }
                        return Err(SqlError::UndefinedTable(name.to_string()));
                    }
                    self.save_catalog(cat)?;
                    if let Some(s) = self.schema(&name.schema) {
                        s.deregister_table(&name.name)?;
                    }
                }
                Ok(QueryOutput::command("DROP VIEW"))
            }
            S::CreateView(v) => {
                let name = resolve(&v.name)?;
                self.require_schema(&name.schema)?;
                if self.table_taken(&name.storage()) {
                    return Err(SqlError::DuplicateTable(name.to_string()));
                }
                let exists = self
                    .catalog
                    .lock()
                    .views
                    .iter()
                    .any(|d| d.schema == name.schema && d.name == name.name);
                if exists && !v.or_replace {
                    return Err(SqlError::DuplicateTable(name.to_string()));
                }
                let sql = ast::Statement::CreateView(v).to_string();
                if exists && let Some(s) = self.schema(&name.schema) {
                    s.deregister_table(&name.name)?;
                }
                // DataFusion plans the view (checking it) and registers it.
                self.ctx.sql(&sql).await?.collect().await?;
                let mut cat = self.catalog.lock().clone();
                cat.views
                    .retain(|d| !(d.schema == name.schema && d.name == name.name));
                cat.views.push(ViewDef {
                    schema: name.schema.clone(),
                    name: name.name.clone(),
                    sql,
                });
                self.save_catalog(cat)?;
                Ok(QueryOutput::command("CREATE VIEW"))
            }
            S::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => {
                let name = match &schema_name {
                    ast::SchemaName::Simple(n) | ast::SchemaName::NamedAuthorization(n, _) => {
                        n.0.iter()
                            .map(|p| p.as_ident().map(ident).unwrap_or_else(|| p.to_string()))
                            .collect::<Vec<_>>()
                            .join(".")
                    }
                    ast::SchemaName::UnnamedAuthorization(i) => ident(i),
                };
                if name == DEFAULT_SCHEMA || self.catalog.lock().schemas.contains(&name) {
                    if if_not_exists {
                        return Ok(QueryOutput::command("CREATE SCHEMA"));
                    }
                    return Err(SqlError::DuplicateTable(format!("schema {name}")));
                }
                let mut cat = self.catalog.lock().clone();
                cat.schemas.push(name.clone());
                self.save_catalog(cat)?;
                self.register_schema(&name)?;
                Ok(QueryOutput::command("CREATE SCHEMA"))
            }
            S::CreateIndex(ci) => {
                let table = resolve(&ci.table_name)?;
                self.store
                    .table(&table.storage())
                    .map_err(|_| SqlError::UndefinedTable(table.to_string()))?;
                for c in &ci.columns {
                    let AstExpr::Identifier(col) = &c.column.expr else {
                        return Err(SqlError::Unsupported(format!(
                            "an index on the expression {}",
                            c.column.expr
                        )));
                    };
                    self.store.create_index(&table.storage(), &ident(col))?;
                }
                Ok(QueryOutput::command("CREATE INDEX"))
            }
            S::AlterTable(at) => {
                let name = resolve(&at.name)?;
                if self.store.table(&name.storage()).is_err() {
                    if at.if_exists {
                        return Ok(QueryOutput::command("ALTER TABLE"));
                    }
                    return Err(SqlError::UndefinedTable(name.to_string()));
                }
                for op in &at.operations {
                    match op {
                        AlterTableOperation::SetOptionsParens { options } => {
                            self.set_retention(&name.storage(), options)?;
                        }
                        AlterTableOperation::AddColumn {
                            column_def,
                            if_not_exists,
                            ..
                        } => {
                            let col = ident(&column_def.name);
                            let exists = self
                                .store
                                .table(&name.storage())?
                                .schema()
                                .index_of(&col)
                                .is_ok();
                            if exists && *if_not_exists {
                                continue;
                            }
                            let not_null = column_def
                                .options
                                .iter()
                                .any(|o| matches!(o.option, ColumnOption::NotNull));
                            if not_null {
                                return Err(SqlError::Unsupported(
                                    "adding a NOT NULL column to an existing table (existing rows would be NULL)".into(),
                                ));
                            }
                            self.store.add_column(
                                &name.storage(),
                                types::field(&col, &column_def.data_type, true)?,
                            )?;
                        }
                        other => return Err(SqlError::Unsupported(format!("ALTER TABLE {other}"))),
                    }
                }
                self.register_table(&name)?;
                Ok(QueryOutput::command("ALTER TABLE"))
            }
            S::Insert(mut ins) if ins.columns.is_empty() => {
                // Generated columns are not given: an INSERT without a column
                // list names the others.
                if let ast::TableObject::TableName(t) = &ins.table
                    && let Ok(name) = resolve(t)
                {
                    let generated = self.hooks.generated(&name.storage());
                    if !generated.is_empty()
                        && let Ok(t) = self.store.table(&name.storage())
                    {
                        ins.columns = t
                            .schema()
                            .fields()
                            .iter()
                            .filter(|f| !generated.contains(f.name()))
                            .map(|f| ObjectName::from(vec![ast::Ident::with_quote('"', f.name())]))
                            .collect();
                    }
                }
                self.datafusion(S::Insert(ins)).await
            }
            S::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                self.copy(source, to, target, &options, &legacy_options)
                    .await
            }
            other => self.datafusion(other).await,
        }
    }

    async fn datafusion(&self, stmt: ast::Statement) -> Result<QueryOutput> {
        let tag = tag_of(&stmt);
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(DFStatement::Statement(Box::new(stmt)))
            .await?;
        let df = dataframe_of(&self.ctx, state, plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let tag = match tag.as_str() {
            "SELECT" => format!("SELECT {rows}"),
            "INSERT" | "DELETE" | "UPDATE" => {
                let n: u64 = batches
                    .iter()
                    .filter_map(|b| b.column_by_name("count"))
                    .filter_map(|c| {
                        c.as_primitive_opt::<UInt64Type>()
                            .map(|a| a.values().iter().sum::<u64>())
                    })
                    .sum();
                let tag = if tag == "INSERT" {
                    format!("INSERT 0 {n}")
                } else {
                    format!("{tag} {n}")
                };
                // Like PostgreSQL, a write reports its count in the tag, not as rows.
                return Ok(QueryOutput::command(tag));
            }
            _ => tag,
        };
        Ok(QueryOutput {
            schema,
            batches,
            tag,
        })
    }

    async fn create_table(&self, ct: ast::CreateTable) -> Result<QueryOutput> {
        let name = resolve(&ct.name)?;
        self.require_schema(&name.schema)?;
        let exists_view = self
            .catalog
            .lock()
            .views
            .iter()
            .any(|v| v.schema == name.schema && v.name == name.name);
        if self.table_taken(&name.storage()) || exists_view {
            if ct.if_not_exists {
                return Ok(QueryOutput::command("CREATE TABLE"));
            }
            return Err(SqlError::DuplicateTable(name.to_string()));
        }
        let mut pk: Vec<String> = Vec::new();
        for c in &ct.constraints {
            if let TableConstraint::PrimaryKey(p) = c {
                for col in &p.columns {
                    if let AstExpr::Identifier(i) = &col.column.expr {
                        pk.push(ident(i));
                    }
                }
            }
        }
        if let Some(query) = ct.query {
            // CREATE TABLE … AS SELECT: the result's columns, then its rows.
            let out = self.datafusion(ast::Statement::Query(query)).await?;
            let fields: Vec<Field> = out
                .schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect();
            let schema = Arc::new(Schema::new(fields));
            self.store.create_table(
                &name.storage(),
                Arc::clone(&schema),
                TableOptions::default(),
            )?;
            self.register_table(&name)?;
            let mut m = tessera_storage::Mutation::new();
            let mut n = 0;
            for b in out.batches {
                n += b.num_rows();
                m.append(
                    &name.storage(),
                    RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec())?,
                );
            }
            self.store.writer().commit(m)?;
            return Ok(QueryOutput::command(format!("SELECT {n}")));
        }
        if ct.columns.is_empty() {
            return Err(SqlError::Syntax("a table needs at least one column".into()));
        }
        let mut fields = Vec::with_capacity(ct.columns.len());
        for c in &ct.columns {
            let col = ident(&c.name);
            let not_null = pk.contains(&col)
                || c.options.iter().any(|o| {
                    matches!(
                        o.option,
                        ColumnOption::NotNull | ColumnOption::PrimaryKey(_)
                    )
                });
            fields.push(types::field(&col, &c.data_type, !not_null)?);
        }
        self.store.create_table(
            &name.storage(),
            Arc::new(Schema::new(fields)),
            TableOptions::default(),
        )?;
        self.register_table(&name)?;
        Ok(QueryOutput::command("CREATE TABLE"))
    }

    /// Sets the function told how far a `COPY` has read (`FROM`) or
    /// written (`TO`).
    pub fn set_progress(&self, progress: Option<copy::Progress>) {
        *self.progress.lock() = progress;
    }

    async fn copy(
        &self,
        source: ast::CopySource,
        to: bool,
        target: ast::CopyTarget,
        options: &[ast::CopyOption],
        legacy: &[ast::CopyLegacyOption],
    ) -> Result<QueryOutput> {
        let path = match target {
            ast::CopyTarget::File { filename } => std::path::PathBuf::from(filename),
            ast::CopyTarget::Stdin | ast::CopyTarget::Stdout => {
                return Err(SqlError::Unsupported(
                    "COPY FROM STDIN / TO STDOUT outside a client connection; name a file, or use psql with tessera serve"
                        .into(),
                ));
            }
            other => return Err(SqlError::Unsupported(format!("COPY {other}"))),
        };
        let opts = copy::CopyOptions::parse(options, legacy, &path)?;
        if to {
            let query = copy_source_query(source, true)?;
            let out = self.datafusion(query).await?;
            let progress = self.progress.lock().clone();
            let n = copy::write(&path, &opts, &out.schema, &out.batches, progress)?;
            return Ok(QueryOutput::command(format!("COPY {n}")));
        }
        let ast::CopySource::Table {
            table_name,
            columns,
        } = source
        else {
            return Err(SqlError::Syntax(
                "COPY FROM loads a table, not a query".into(),
            ));
        };
        let name = resolve(&table_name)?;
        let table = self
            .store
            .table(&name.storage())
            .map_err(|_| SqlError::UndefinedTable(name.to_string()))?;
        let table_schema = table.schema();
        let generated = self.hooks.generated(&name.storage());
        let file_schema = if columns.is_empty() {
            Arc::new(Schema::new(
                table_schema
                    .fields()
                    .iter()
                    .filter(|f| !generated.contains(f.name()))
                    .map(|f| f.as_ref().clone())
                    .collect::<Vec<_>>(),
            ))
        } else {
            let mut fields = Vec::with_capacity(columns.len());
            for c in &columns {
                let c = ident(c);
                let f = table_schema.field_with_name(&c).map_err(|_| {
                    SqlError::UndefinedColumn(format!(
                        "column \"{c}\" of relation \"{name}\" does not exist"
                    ))
                })?;
                fields.push(f.clone());
            }
            Arc::new(Schema::new(fields))
        };
        let progress = self.progress.lock().clone();
        let batches = copy::read(&path, &opts, file_schema, progress)?;
        let mut seen = 0u64;
        let label = name.to_string();
        let hw = match self.hooks.get(&name.storage()) {
            Some(h) => Some(
                h.begin_write(&name.storage(), crate::hook::WriteKind::Append)
                    .await?,
            ),
            None => None,
        };
        let n = crate::provider::bulk_append(
            &self.store,
            &self.hooks,
            hw,
            &name.storage(),
            batches.map(|b| {
                b.and_then(|b| {
                    let first = seen + 1;
                    seen += b.num_rows() as u64;
                    copy::widen(b, &table_schema, &label, first)
                })
            }),
        )?;
        Ok(QueryOutput::command(format!("COPY {n}")))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.ctx.catalog(CATALOG).and_then(|c| c.schema(name))
    }

    fn require_schema(&self, schema: &str) -> Result<()> {
        if schema == DEFAULT_SCHEMA || self.catalog.lock().schemas.iter().any(|s| s == schema) {
            Ok(())
        } else {
            Err(SqlError::UndefinedSchema(schema.to_string()))
        }
    }

    fn register_schema(&self, name: &str) -> Result<()> {
        let catalog = self
            .ctx
            .catalog(CATALOG)
            .ok_or_else(|| SqlError::Unsupported("a missing catalog".into()))?;
        if catalog.schema(name).is_none() {
            catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()))?;
        }
        Ok(())
    }

    fn register_table(&self, name: &Name) -> Result<()> {
        let schema = self
            .schema(&name.schema)
            .ok_or_else(|| SqlError::UndefinedSchema(name.schema.clone()))?;
        let table = TesseraTable::new(
            self.store.clone(),
            &name.storage(),
            &self.options,
            self.hooks.clone(),
            self.pii.clone(),
        )?;
        schema.deregister_table(&name.name)?;
        schema.register_table(name.name.clone(), Arc::new(table))?;
        Ok(())
    }

    fn save_catalog(&self, state: CatalogState) -> Result<()> {
        self.store.set_catalog(state.encode()?)?;
        *self.catalog.lock() = state;
        Ok(())
    }
}

/// The command tag of a statement run by DataFusion.
/// The query a `COPY … TO` reads: its query, or `SELECT columns FROM
/// table` (with `qualify`, the table's name resolved to its schema here;
/// without, left to the session's search path).
pub fn copy_source_query(source: ast::CopySource, qualify: bool) -> Result<ast::Statement> {
    match source {
        ast::CopySource::Query(q) => Ok(ast::Statement::Query(q)),
        ast::CopySource::Table {
            table_name,
            columns,
        } => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(|c| format!("\"{}\"", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let from = if qualify {
                let name = resolve(&table_name)?;
                format!("\"{}\".\"{}\"", name.schema, name.name)
            } else {
                table_name.to_string()
            };
            let sql = format!("SELECT {cols} FROM {from}");
            match parser::parse(&sql)?.pop() {
                Some(Statement::Sql(s)) => Ok(*s),
                _ => Err(SqlError::Syntax(sql)),
            }
        }
    }
}

/// The PII access of `ctx`'s session, read in place: a copy of the
/// session's state per statement is most of what a short query costs.
fn pii_access(ctx: &SessionContext) -> Option<crate::pii::PiiAccess> {
    crate::pii::access_of(
        ctx.state_ref()
            .read()
            .config()
            .get_extension::<crate::pii::PiiAccess>(),
    )
}

/// The data frame of `plan`, planned with `state` (a copy of `ctx`'s): a
/// query runs on that copy instead of taking another; what changes the
/// session or the catalog (`SET`, `CREATE VIEW`, …) goes through `ctx`.
async fn dataframe_of(
    ctx: &SessionContext,
    state: datafusion::execution::SessionState,
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<datafusion::dataframe::DataFrame> {
    use datafusion::logical_expr::LogicalPlan as P;
    Ok(match plan {
        P::Ddl(_) | P::Statement(_) => ctx.execute_logical_plan(plan).await?,
        plan => datafusion::dataframe::DataFrame::new(state, plan),
    })
}

fn tag_of(stmt: &ast::Statement) -> String {
    use ast::Statement as S;
    match stmt {
        S::Query(_) => "SELECT",
        S::Insert(_) => "INSERT",
        S::Delete(_) => "DELETE",
        S::Update { .. } => "UPDATE",
        S::Explain { .. } | S::ExplainTable { .. } => "EXPLAIN",
        S::Set(_) => "SET",
        S::ShowVariable { .. } | S::ShowTables { .. } | S::ShowColumns { .. } => "SHOW",
        _ => "OK",
    }
    .to_string()
}
