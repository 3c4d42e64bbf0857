//! `TesseraScanExec`: the physical scan of a Tessera table, one DataFusion
//! partition per storage segment (on disk or in memory).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use tessera_storage::{Predicate, ScanPartition, ScanReport};

use crate::error::SqlError;

/// Scans a Tessera table.
#[derive(Debug)]
pub struct TesseraScanExec {
    table: String,
    partitions: Arc<Vec<ScanPartition>>,
    report: ScanReport,
    predicate: Option<Predicate>,
    limit: Option<usize>,
    schema: SchemaRef,
    statistics: Arc<Statistics>,
    properties: Arc<PlanProperties>,
    read_map: Option<Arc<dyn crate::hook::TableHook>>,
    pii: Option<Arc<crate::pii::Guard>>,
}

impl TesseraScanExec {
    /// A scan over the planned partitions of `table`.
    pub fn new(
        table: String,
        schema: SchemaRef,
        partitions: Vec<ScanPartition>,
        report: ScanReport,
        predicate: Option<Predicate>,
        limit: Option<usize>,
        statistics: Statistics,
    ) -> Self {
        let n = partitions.len().max(1);
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(n),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            table,
            partitions: Arc::new(partitions),
            report,
            predicate,
            limit,
            schema,
            statistics: Arc::new(statistics),
            properties: Arc::new(properties),
            read_map: None,
            pii: None,
        }
    }

    /// Masks, or counts for the audit, the PII columns of every batch
    /// ([`crate::pii`]).
    pub(crate) fn with_pii(mut self, guard: Option<Arc<crate::pii::Guard>>) -> Self {
        self.pii = guard;
        self
    }

    /// Maps every batch read through `hook` ([`crate::hook::TableHook::map_read`]).
    pub fn with_read_map(mut self, hook: Option<Arc<dyn crate::hook::TableHook>>) -> Self {
        self.read_map = hook;
        self
    }

    /// What pruning and indexes decided.
    pub fn report(&self) -> &ScanReport {
        &self.report
    }
}

impl DisplayAs for TesseraScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let r = &self.report;
        write!(
            f,
            "TesseraScanExec: table={}, partitions={}",
            self.table,
            self.partitions.len()
        )?;
        if let Some(p) = &self.predicate {
            write!(f, ", predicate={p}")?;
        }
        write!(f, ", segments={}", r.segments_total)?;
        if !r.segments_pruned.is_empty() {
            let ids: Vec<String> = r.segments_pruned.iter().map(u64::to_string).collect();
            write!(f, ", pruned=[{}]", ids.join(","))?;
        }
        if !r.index_lookups.is_empty() {
            let used: Vec<String> = r
                .index_lookups
                .iter()
                .map(|(seg, cols, rows)| format!("{seg}:{}->{rows} rows", cols.join("+")))
                .collect();
            write!(f, ", bitmap_index=[{}]", used.join(", "))?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TesseraScanExec {
    fn name(&self) -> &str {
        "TesseraScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(match args.partition() {
            None => Arc::clone(&self.statistics),
            // Per-segment figures are not kept apart; a partition is unknown.
            Some(_) => Arc::new(Statistics::new_unknown(&self.schema)),
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size().max(1);
        let schema = Arc::clone(&self.schema);
        let part = self.partitions.get(partition).cloned();
        let read_map = self.read_map.clone();
        let pii = self.pii.clone();
        let iter: Box<dyn Iterator<Item = Result<arrow::array::RecordBatch>> + Send> = match part {
            // A table with no segments still has one (empty) partition.
            None => Box::new(std::iter::empty()),
            Some(p) => Box::new(p.into_iter().flat_map(move |r| {
                // Segments hold batches of up to 256K rows; hand DataFusion
                // slices of its batch size (zero-copy).
                let out: Vec<Result<arrow::array::RecordBatch>> = match r {
                    Ok(b) => (0..b.num_rows())
                        .step_by(batch_size)
                        .map(|o| {
                            let slice = b.slice(o, batch_size.min(b.num_rows() - o));
                            let mapped = match &read_map {
                                Some(h) => h.map_read(slice),
                                None => Ok(slice),
                            };
                            match &pii {
                                Some(g) => mapped.and_then(|b| g.apply(b)),
                                None => mapped,
                            }
                            .map_err(SqlError::into_datafusion)
                        })
                        .collect(),
                    Err(e) => vec![Err(SqlError::Storage(e).into_datafusion())],
                };
                out
            })),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(iter),
        )))
    }
}
