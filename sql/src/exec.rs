//! `TesseraScanExec`: the physical scan of a Tessera table.
//!
//! Its unit of work is a morsel: one batch of a segment file (256K rows),
//! or up to 64K rows of a segment still in memory. The scan has one
//! partition per thread of the session (`target_partitions`), and each
//! partition's stream takes the next morsel not yet taken when it finishes
//! one, so the threads finish together whatever the number and size of the
//! segments: five equal segments on two threads would otherwise be three
//! on one thread and two on the other, a fifth of the time lost. This is
//! morsel-driven scheduling (Leis et al., 2014), as DuckDB's scans and
//! DataFusion's sibling file streams do it.
//!
//! A scan with a `LIMIT` keeps one partition per segment, each counting its
//! own rows.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use arrow::array::RecordBatch;
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
use tessera_storage::{PartitionIter, Predicate, ScanPartition, ScanReport};

use crate::error::SqlError;

/// Scans a Tessera table.
#[derive(Debug, Clone)]
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
    /// When the partitions share morsels: the executions under way.
    shared: Option<Arc<parking_lot::Mutex<Executions>>>,
}

/// The morsels one execution of a scan shares among its partitions.
#[derive(Debug)]
struct Work {
    morsels: Arc<Vec<ScanPartition>>,
    next: AtomicUsize,
}

impl Work {
    fn take(&self) -> Option<ScanPartition> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.morsels.get(i).cloned()
    }
}

/// The execution whose partitions are being opened. Partitions opened with
/// the same task context, each once, belong to one execution; a partition
/// opened again, or under another context (another `collect` of the same
/// plan), starts the next execution, with every morsel to read again.
#[derive(Debug)]
struct Executions {
    morsels: Arc<Vec<ScanPartition>>,
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    work: Arc<Work>,
    context: Weak<TaskContext>,
    opened: Vec<bool>,
}

impl Executions {
    fn new(morsels: Arc<Vec<ScanPartition>>) -> Arc<parking_lot::Mutex<Self>> {
        Arc::new(parking_lot::Mutex::new(Self {
            morsels,
            current: None,
        }))
    }

    fn open(&mut self, partition: usize, lanes: usize, context: &Arc<TaskContext>) -> Arc<Work> {
        if let Some(c) = &mut self.current
            && Weak::ptr_eq(&c.context, &Arc::downgrade(context))
            && let Some(slot) = c.opened.get_mut(partition)
            && !*slot
        {
            *slot = true;
            return Arc::clone(&c.work);
        }
        let work = Arc::new(Work {
            morsels: Arc::clone(&self.morsels),
            next: AtomicUsize::new(0),
        });
        let mut opened = vec![false; lanes];
        if let Some(slot) = opened.get_mut(partition) {
            *slot = true;
        }
        self.current = Some(Current {
            work: Arc::clone(&work),
            context: Arc::downgrade(context),
            opened,
        });
        work
    }
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
            shared: None,
        }
    }

    /// Shares the scan's work among `lanes` partitions (the session's
    /// threads) as morsels, when it has more than one morsel and no limit.
    pub fn with_lanes(mut self, lanes: usize) -> Self {
        if self.limit.is_some() || lanes < 2 {
            return self;
        }
        let morsels: Vec<ScanPartition> = self
            .partitions
            .iter()
            .flat_map(|p| p.clone().morsels())
            .collect();
        if morsels.len() < 2 {
            return self;
        }
        let lanes = lanes.min(morsels.len());
        self.properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&self.schema)),
            Partitioning::UnknownPartitioning(lanes),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        self.shared = Some(Executions::new(Arc::new(morsels)));
        self
    }

    /// Partitions of its output.
    fn lanes(&self) -> usize {
        self.properties.partitioning.partition_count()
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
            self.lanes()
        )?;
        if let Some(shared) = &self.shared {
            write!(f, ", morsels={}", shared.lock().morsels.len())?;
        }
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

    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(shared) = &self.shared else {
            return Ok(self);
        };
        let morsels = Arc::clone(&shared.lock().morsels);
        Ok(Arc::new(Self {
            shared: Some(Executions::new(morsels)),
            ..self.as_ref().clone()
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batch_size = context.session_config().batch_size().max(1);
        let schema = Arc::clone(&self.schema);
        let read_map = self.read_map.clone();
        let pii = self.pii.clone();
        let batches: Box<dyn Iterator<Item = tessera_storage::Result<RecordBatch>> + Send> =
            match &self.shared {
                Some(shared) => {
                    let work = shared.lock().open(partition, self.lanes(), &context);
                    Box::new(Morsels {
                        work,
                        current: None,
                    })
                }
                // A table with no segments still has one (empty) partition.
                None => match self.partitions.get(partition).cloned() {
                    None => Box::new(std::iter::empty()),
                    Some(p) => Box::new(p.into_iter()),
                },
            };
        let iter = batches.flat_map(move |r| {
            // Segments hold batches of up to 256K rows; hand DataFusion
            // slices of its batch size (zero-copy).
            let out: Vec<Result<RecordBatch>> = match r {
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
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(iter),
        )))
    }
}

/// One partition's batches: morsel after morsel, each taken when the one
/// before is done, until none is left.
struct Morsels {
    work: Arc<Work>,
    current: Option<PartitionIter>,
}

impl Iterator for Morsels {
    type Item = tessera_storage::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.current
                && let Some(b) = it.next()
            {
                return Some(b);
            }
            self.current = Some(self.work.take()?.into_iter());
        }
    }
}
