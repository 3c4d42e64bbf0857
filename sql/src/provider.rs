//! `TesseraTable`: a DataFusion [`TableProvider`] over one storage table.
//!
//! Reads: morsels of every segment shared by one partition per thread
//! ([`crate::exec`]), projection pushdown, filters pushed
//! down exactly where the storage engine can answer them (zone maps, bitmap
//! indexes, exact evaluation), `LIMIT` pushed down when every filter is.
//! Writes: `INSERT` (all rows in one atomic commit), `DELETE` and `UPDATE`
//! (row ids from a snapshot taken under the write lock; the delete and the
//! re-append of an `UPDATE` are one atomic commit).

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::{and_kleene, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use tessera_storage::{Mutation, Predicate, ROW_ID_COLUMN, ScanOptions, Store};

use crate::error::SqlError;
use crate::exec::TesseraScanExec;
use crate::hook::{HookWrite, TableHook, WriteKind};
use crate::pushdown::to_predicate;
use crate::session::EngineOptions;

/// A storage table as DataFusion sees it.
#[derive(Debug, Clone)]
pub struct TesseraTable {
    store: Store,
    /// The storage name (`schema.table`).
    name: String,
    schema: SchemaRef,
    pushdown: bool,
    bulk_insert_bytes: usize,
    hooks: crate::hook::Hooks,
    pii: crate::pii::PiiTags,
}

impl TesseraTable {
    /// The table `name` (storage name) of `store`. With
    /// `options.pushdown` off, every filter stays with DataFusion (for
    /// differential tests).
    pub fn new(
        store: Store,
        name: &str,
        options: &EngineOptions,
        hooks: crate::hook::Hooks,
        pii: crate::pii::PiiTags,
    ) -> Result<Self, SqlError> {
        let schema = store.table(name)?.schema();
        Ok(Self {
            store,
            name: name.to_string(),
            schema,
            pushdown: options.pushdown,
            bulk_insert_bytes: options.bulk_insert_bytes,
            hooks,
            pii,
        })
    }

    fn hook(&self) -> Option<Arc<dyn TableHook>> {
        self.hooks.get(&self.name)
    }

    /// The storage predicate of a filter. One that reads a column whose
    /// stored values a hook maps is filtered after the mapping, unless the
    /// [`crate::hook::MappedFilter`] knows its equivalent on the stored
    /// values.
    fn storage_predicate(&self, f: &Expr) -> Option<Predicate> {
        if let Some(h) = self.hook() {
            let mapped = h.mapped_columns();
            if f.column_refs().iter().any(|c| mapped.contains(&c.name)) {
                let f = unqualify(f.clone()).ok()?;
                return self.hooks.mapped_filter()?.predicate(&self.name, &f);
            }
        }
        storage_predicate(f, &self.schema)
    }

    fn predicate(&self, filters: &[Expr]) -> (Option<Predicate>, bool) {
        if !self.pushdown {
            return (None, filters.is_empty());
        }
        let mut preds = Vec::new();
        let mut all = true;
        for f in filters {
            match self.storage_predicate(f) {
                Some(p) => preds.push(p),
                None => all = false,
            }
        }
        let p = match preds.len() {
            0 => None,
            1 => preds.pop(),
            _ => Some(Predicate::And(preds)),
        };
        (p, all)
    }
}

/// Strips table qualifiers from column references.
fn unqualify(e: Expr) -> Result<Expr> {
    e.transform_up(|e| {
        Ok(match e {
            Expr::Column(c) if c.relation.is_some() => {
                Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}

/// The storage predicate of a filter, if it has one.
fn storage_predicate(f: &Expr, schema: &Schema) -> Option<Predicate> {
    to_predicate(&unqualify(f.clone()).ok()?, schema)
}

#[async_trait]
impl TableProvider for TesseraTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.pushdown && self.storage_predicate(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snap = self
            .store
            .table(&self.name)
            .map_err(|e| SqlError::Storage(e).into_datafusion())?;
        // PII: a reader without pii_reader sees those columns masked, and
        // filters on them apply to the masked values (never to the stored
        // ones, which would tell what they are).
        let pii_columns = self.pii.columns(&self.name);
        let access = crate::pii::access_of(state.config().get_extension::<crate::pii::PiiAccess>());
        let masking = !pii_columns.is_empty() && access.as_ref().is_some_and(|a| !a.reader);
        // Filters DataFusion handed over but the storage engine cannot answer
        // (the optimizer may rewrite a filter after asking): applied here.
        let mut pushed = Vec::new();
        let mut rest = Vec::new();
        for f in filters {
            let f = unqualify(f.clone())?;
            let on_masked = masking
                && f.column_refs()
                    .iter()
                    .any(|c| pii_columns.contains(&c.name));
            match (self.pushdown && !on_masked, self.storage_predicate(&f)) {
                (true, Some(p)) => pushed.push(p),
                _ => rest.push(f),
            }
        }
        let predicate = match pushed.len() {
            0 => None,
            1 => pushed.pop(),
            _ => Some(Predicate::And(pushed)),
        };
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut read = wanted.clone();
        for f in &rest {
            for c in f.column_refs() {
                if let Ok(i) = self.schema.index_of(&c.name)
                    && !read.contains(&i)
                {
                    read.push(i);
                }
            }
        }
        let opts = ScanOptions {
            projection: Some(
                read.iter()
                    .map(|i| self.schema.field(*i).name().clone())
                    .collect(),
            ),
            predicate: predicate.clone(),
            limit: if rest.is_empty() { limit } else { None },
            ..ScanOptions::default()
        };
        let scan = snap
            .scan(&opts)
            .map_err(|e| SqlError::Storage(e).into_datafusion())?;
        let scan_schema = Arc::clone(&scan.schema);
        let hook = self.hook();
        let mut statistics = crate::stats::scan_statistics(
            &self.schema,
            &snap.statistics(),
            &scan_schema,
            opts.predicate.is_some() || opts.limit.is_some(),
        );
        if let Some(h) = &hook {
            // Zone maps bound the stored values, not the mapped ones.
            for c in h.mapped_columns() {
                if let Ok(i) = scan_schema.index_of(&c)
                    && let Some(cs) = statistics.column_statistics.get_mut(i)
                {
                    *cs = datafusion::common::stats::ColumnStatistics::new_unknown();
                }
            }
        }
        let read_pii: Vec<(usize, String)> = scan_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| pii_columns.contains(f.name()))
            .map(|(i, f)| (i, f.name().clone()))
            .collect();
        let guard = if read_pii.is_empty() {
            None
        } else if masking {
            let key = self.pii.key().ok_or_else(|| {
                SqlError::InvalidParameter("the database has PII columns but no masking key".into())
                    .into_datafusion()
            })?;
            for (i, _) in &read_pii {
                if let Some(cs) = statistics.column_statistics.get_mut(*i) {
                    *cs = datafusion::common::stats::ColumnStatistics::new_unknown();
                }
            }
            Some(Arc::new(crate::pii::Guard::Mask {
                key,
                columns: read_pii.iter().map(|(i, _)| *i).collect(),
            }))
        } else {
            Some(Arc::new(crate::pii::Guard::Audit(Arc::new(
                crate::pii::Audit {
                    store: self.store.clone(),
                    user: access.map_or_else(|| "owner".to_string(), |a| a.user),
                    table: self.name.clone(),
                    columns: read_pii.into_iter().map(|(_, n)| n).collect(),
                    rows: Default::default(),
                    executed: Default::default(),
                },
            ))))
        };
        let mut plan: Arc<dyn ExecutionPlan> = Arc::new(
            TesseraScanExec::new(
                self.name.clone(),
                scan.schema,
                scan.partitions,
                scan.report,
                predicate,
                opts.limit,
                statistics,
            )
            .with_read_map(hook)
            .with_pii(guard)
            .with_lanes(state.config_options().execution.target_partitions),
        );
        if let Some(cond) = rest.into_iter().reduce(Expr::and) {
            let df_schema = DFSchema::try_from(Arc::clone(&scan_schema))?;
            let cond = state.create_physical_expr(cond, &df_schema)?;
            plan = Arc::new(FilterExec::try_new(cond, plan)?);
            if read.len() != wanted.len() {
                let exprs: Vec<ProjectionExpr> = wanted
                    .iter()
                    .enumerate()
                    .map(|(pos, i)| {
                        let name = self.schema.field(*i).name().clone();
                        ProjectionExpr {
                            expr: Arc::new(PhysColumn::new(&name, pos)),
                            alias: name,
                        }
                    })
                    .collect();
                plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
            }
        }
        Ok(plan)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(SqlError::Unsupported(format!("INSERT {insert_op}")).into_datafusion());
        }
        Ok(Arc::new(DmlExec::new(self.clone(), Dml::Insert(input))))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exprs = self.physical(state, &filters)?;
        let (predicate, _) = self.predicate(&filters);
        Ok(Arc::new(DmlExec::new(
            self.clone(),
            Dml::Delete {
                filters: exprs,
                predicate,
            },
        )))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exprs = self.physical(state, &filters)?;
        let (predicate, _) = self.predicate(&filters);
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        let mut set = Vec::new();
        for (col, e) in assignments {
            let i = self.schema.index_of(&col).map_err(|_| {
                SqlError::UndefinedColumn(format!(
                    "column \"{col}\" of relation \"{}\" does not exist",
                    self.name
                ))
                .into_datafusion()
            })?;
            set.push((i, state.create_physical_expr(unqualify(e)?, &df_schema)?));
        }
        Ok(Arc::new(DmlExec::new(
            self.clone(),
            Dml::Update {
                set,
                filters: exprs,
                predicate,
            },
        )))
    }
}

impl TesseraTable {
    fn physical(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> Result<Vec<Arc<dyn PhysicalExpr>>> {
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        filters
            .iter()
            .map(|f| state.create_physical_expr(unqualify(f.clone())?, &df_schema))
            .collect()
    }
}

/// A write to a Tessera table.
#[derive(Debug)]
enum Dml {
    Insert(Arc<dyn ExecutionPlan>),
    Delete {
        filters: Vec<Arc<dyn PhysicalExpr>>,
        predicate: Option<Predicate>,
    },
    Update {
        set: Vec<(usize, Arc<dyn PhysicalExpr>)>,
        filters: Vec<Arc<dyn PhysicalExpr>>,
        predicate: Option<Predicate>,
    },
}

/// Executes an `INSERT`, `DELETE` or `UPDATE`; produces one row with the
/// number of rows written, in a `count` column.
#[derive(Debug)]
pub struct DmlExec {
    table: TesseraTable,
    dml: Dml,
    properties: Arc<PlanProperties>,
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl DmlExec {
    fn new(table: TesseraTable, dml: Dml) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            table,
            dml,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for DmlExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match self.dml {
            Dml::Insert(_) => "Insert",
            Dml::Delete { .. } => "Delete",
            Dml::Update { .. } => "Update",
        };
        write!(f, "Tessera{op}Exec: table={}", self.table.name)
    }
}

impl ExecutionPlan for DmlExec {
    fn name(&self) -> &str {
        "TesseraDmlExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        match &self.dml {
            Dml::Insert(input) => vec![input],
            _ => vec![],
        }
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (&self.dml, children.into_iter().next()) {
            (Dml::Insert(_), Some(input)) => Ok(Arc::new(DmlExec::new(
                self.table.clone(),
                Dml::Insert(input),
            ))),
            _ => Ok(self),
        }
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let table = self.table.clone();
        let fut: futures::future::BoxFuture<'static, Result<RecordBatch>> = match &self.dml {
            Dml::Insert(input) => {
                let input = Arc::clone(input);
                Box::pin(async move {
                    let stream = datafusion::physical_plan::execute_stream(input, context)?;
                    let n = insert(table, stream).await?;
                    count_batch(n)
                })
            }
            Dml::Delete { filters, predicate } => {
                let (filters, predicate) = (filters.clone(), predicate.clone());
                Box::pin(async move {
                    let n = rewrite(&table, &filters, predicate, None)
                        .await
                        .map_err(SqlError::into_datafusion)?;
                    count_batch(n)
                })
            }
            Dml::Update {
                set,
                filters,
                predicate,
            } => {
                let (set, filters, predicate) = (set.clone(), filters.clone(), predicate.clone());
                Box::pin(async move {
                    let n = rewrite(&table, &filters, predicate, Some(&set))
                        .await
                        .map_err(SqlError::into_datafusion)?;
                    count_batch(n)
                })
            }
        };
        let stream = futures::stream::once(fut).boxed();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            stream,
        )))
    }
}

fn count_batch(n: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![n]))],
    )?)
}

/// Casts a batch produced by a query to the table's schema, by position.
fn to_table_schema(table: &TesseraTable, batch: &RecordBatch) -> Result<RecordBatch, SqlError> {
    let schema = &table.schema;
    if batch.num_columns() != schema.fields().len() {
        return Err(SqlError::Storage(tessera_storage::Error::SchemaMismatch(
            format!(
                "INSERT has {} columns, table \"{}\" has {}",
                batch.num_columns(),
                table.name,
                schema.fields().len()
            ),
        )));
    }
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (col, f) in batch.columns().iter().zip(schema.fields()) {
        cols.push(crate::types::cast_to(col, f)?);
    }
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), cols, &opts)
        .map_err(|e| SqlError::Storage(tessera_storage::Error::SchemaMismatch(e.to_string())))
}

/// Runs an `INSERT`: atomic either way. Small inputs are gathered and
/// committed through the log as one record; past
/// [`EngineOptions::bulk_insert_bytes`] the rows stream into new segment files
/// published in one manifest version, so memory stays bounded and there is
/// no limit on the size of an `INSERT … SELECT`.
async fn insert(table: TesseraTable, mut input: SendableRecordBatchStream) -> Result<u64> {
    let mut gathered = Vec::new();
    let mut bytes = 0usize;
    let mut n = 0u64;
    while let Some(b) = input.next().await {
        let b = to_table_schema(&table, &b?).map_err(SqlError::into_datafusion)?;
        crate::types::check_lengths(&b, &table.schema, n + 1).map_err(SqlError::into_datafusion)?;
        n += b.num_rows() as u64;
        bytes += b.get_array_memory_size();
        gathered.push(b);
        if bytes > table.bulk_insert_bytes {
            return bulk_insert(table, gathered, n, input).await;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    // The rows stored: a hook may drop some (an erased person's, suppressed).
    commit_appends(
        &table.store,
        &table.hooks,
        &table.name,
        gathered,
        Mutation::new(),
    )
    .await
    .map_err(SqlError::into_datafusion)
}

/// Appends `batches` (the table's columns) to `table` and commits them with
/// `m` in one log record; a hook on the table fills its generated columns
/// and adds its rows to the same commit. Returns the rows appended to
/// `table` (the hook may have dropped some).
pub(crate) async fn commit_appends(
    store: &Store,
    hooks: &crate::hook::Hooks,
    table: &str,
    batches: Vec<RecordBatch>,
    mut m: Mutation,
) -> Result<u64, SqlError> {
    let mut hw = match hooks.get(table) {
        Some(h) => Some(h.begin_write(table, WriteKind::Append).await?),
        None => None,
    };
    let mut written = 0u64;
    for b in batches {
        let b = match &mut hw {
            Some(w) => w.rows(b)?,
            None => b,
        };
        written += b.num_rows() as u64;
        m.append(table, b);
    }
    if let Some(w) = &mut hw {
        for (t, b) in w.finish()? {
            m.append(&t, b);
        }
    }
    let mut guard = store.writer();
    check_hook_unchanged(hooks, table, hw.is_some())?;
    guard.commit(m)?;
    if let Some(w) = hw {
        w.committed();
    }
    Ok(written)
}

/// A hook attached to `table` after the statement began (a `UNIFY` made it
/// a source meanwhile): its rows would miss their generated columns.
/// Checked under the store's structural lock, which `UNIFY` holds while it
/// attaches hooks.
fn check_hook_unchanged(
    hooks: &crate::hook::Hooks,
    table: &str,
    had_hook: bool,
) -> Result<(), SqlError> {
    if hooks.get(table).is_some() != had_hook {
        return Err(SqlError::Storage(tessera_storage::Error::Conflict(
            format!(
                "table \"{table}\" became a source of a profile space while this statement ran; \
             nothing was written, run it again"
            ),
        )));
    }
    Ok(())
}

/// Loads `batches` into `table` through a [`tessera_storage::BulkLoad`]
/// (atomic, bounded memory), with the table's hook filling generated
/// columns and adding its rows to the same publication. Blocking.
pub(crate) fn bulk_append(
    store: &Store,
    hooks: &crate::hook::Hooks,
    mut hw: Option<Box<dyn HookWrite>>,
    table: &str,
    batches: impl IntoIterator<Item = Result<RecordBatch, SqlError>>,
) -> Result<u64, SqlError> {
    let mut load = store.bulk();
    check_hook_unchanged(hooks, table, hw.is_some())?;
    let target = load.append(table)?;
    for b in batches {
        let b = b?;
        let b = match &mut hw {
            Some(w) => w.rows(b)?,
            None => b,
        };
        load.push(target, &b)?;
    }
    let n = load.rows(target);
    if n == 0 {
        return Ok(0);
    }
    if let Some(w) = &mut hw {
        let mut extra: Vec<(String, tessera_storage::LoadTarget)> = Vec::new();
        for (t, b) in w.finish()? {
            let target = match extra.iter().find(|(name, _)| *name == t) {
                Some((_, target)) => *target,
                None => {
                    let target = load.append(&t)?;
                    extra.push((t, target));
                    target
                }
            };
            load.push(target, &b)?;
        }
    }
    load.publish()?;
    if let Some(w) = hw {
        w.committed();
    }
    Ok(n)
}

/// The rest of a large `INSERT`: a blocking thread writes segments while
/// this task feeds it batches through a small channel (backpressure).
async fn bulk_insert(
    table: TesseraTable,
    gathered: Vec<RecordBatch>,
    mut n: u64,
    mut input: SendableRecordBatchStream,
) -> Result<u64> {
    let hw = match table.hook() {
        Some(h) => Some(
            h.begin_write(&table.name, WriteKind::Append)
                .await
                .map_err(SqlError::into_datafusion)?,
        ),
        None => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, SqlError>>(4);
    let store = table.store.clone();
    let name = table.name.clone();
    let hooks = table.hooks.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let batches = std::iter::from_fn(move || rx.blocking_recv());
        bulk_append(&store, &hooks, hw, &name, batches)
    });
    let feed = async {
        for b in gathered {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        while let Some(b) = input.next().await {
            let b = b.map_err(SqlError::from).and_then(|b| {
                let b = to_table_schema(&table, &b)?;
                crate::types::check_lengths(&b, &table.schema, n + 1)?;
                n += b.num_rows() as u64;
                Ok(b)
            });
            let failed = b.is_err();
            // A failed batch ends the load: bulk_append aborts on it and
            // nothing of the statement is published.
            if tx.send(b).await.is_err() || failed {
                return;
            }
        }
    };
    feed.await;
    drop(tx);
    writer
        .await
        .map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!(
                "the thread writing the INSERT's segments ended unexpectedly: {e}"
            ))
        })?
        .map_err(SqlError::into_datafusion)
}

/// DELETE (`set = None`) or UPDATE: finds the rows where every filter is
/// TRUE under the write lock, then deletes them (and appends their new
/// versions) in one commit.
async fn rewrite(
    table: &TesseraTable,
    filters: &[Arc<dyn PhysicalExpr>],
    predicate: Option<Predicate>,
    set: Option<&[(usize, Arc<dyn PhysicalExpr>)]>,
) -> Result<u64, SqlError> {
    let hook = table.hook();
    let mut hw = match &hook {
        Some(h) => Some(h.begin_write(&table.name, WriteKind::Rewrite).await?),
        None => None,
    };
    let mut w = table.store.writer();
    check_hook_unchanged(&table.hooks, &table.name, hw.is_some())?;
    let snap = w.snapshot().table(&table.name)?;
    let scan = snap.scan(&ScanOptions {
        predicate,
        row_ids: true,
        ..ScanOptions::default()
    })?;
    let mut ids: Vec<u64> = Vec::new();
    let mut n_updated = 0u64;
    let mut m = Mutation::new();
    let ncols = table.schema.fields().len();
    for part in scan.partitions {
        for batch in part {
            let batch = batch?;
            let data = batch.project(&(0..ncols).collect::<Vec<_>>())?;
            let data = RecordBatch::try_new(Arc::clone(&table.schema), data.columns().to_vec())?;
            let data = match &hook {
                Some(h) => h.map_read(data)?,
                None => data,
            };
            let mut mask = BooleanArray::from(vec![true; data.num_rows()]);
            for f in filters {
                let v = f
                    .evaluate(&data)
                    .and_then(|v| v.into_array(data.num_rows()))
                    .map_err(SqlError::from)?;
                let v = v.as_boolean_opt().cloned().ok_or_else(|| {
                    SqlError::InvalidText("a WHERE condition must be boolean".into())
                })?;
                mask = and_kleene(&mask, &v)?;
            }
            let matched = filter_record_batch(&data, &mask)?;
            if matched.num_rows() == 0 {
                continue;
            }
            let row_ids = filter_record_batch(&batch, &mask)?;
            let col = row_ids
                .column_by_name(ROW_ID_COLUMN)
                .ok_or_else(|| SqlError::Unsupported("scan without row ids".into()))?;
            ids.extend(col.as_primitive::<UInt64Type>().values().iter().copied());
            if let Some(set) = set {
                let mut cols: Vec<ArrayRef> = matched.columns().to_vec();
                for (i, e) in set {
                    let v = e
                        .evaluate(&matched)
                        .and_then(|v| v.into_array(matched.num_rows()))
                        .map_err(SqlError::from)?;
                    cols[*i] = crate::types::cast_to(&v, table.schema.field(*i))?;
                }
                let updated = RecordBatch::try_new(Arc::clone(&table.schema), cols)?;
                crate::types::check_lengths(&updated, &table.schema, n_updated + 1)?;
                n_updated += updated.num_rows() as u64;
                let updated = match &mut hw {
                    Some(w) => w.rows(updated)?,
                    None => updated,
                };
                m.append(&table.name, updated);
            }
        }
    }
    let n = ids.len() as u64;
    if n > 0 {
        m.delete(&table.name, ids);
        if let Some(hw) = &mut hw {
            for (t, b) in hw.finish()? {
                m.append(&t, b);
            }
        }
        w.commit(m)?;
        if let Some(hw) = hw {
            hw.committed();
        }
    }
    Ok(n)
}
