//! The in-memory state readers see: an immutable [`Version`] of every table,
//! replaced (never mutated) by each commit, flush and compaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::SchemaRef;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::manifest::DvEntry;
use crate::segment::Segment;
use crate::table::TableMeta;

/// A sealed segment with the deletions that apply to it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub seg: Arc<Segment>,
    pub deletes: Arc<RoaringBitmap>,
    /// The deletion vector as last persisted (its file holds `count` rows).
    pub dv: Option<DvEntry>,
}

impl SegmentView {
    pub fn dv_dirty(&self) -> bool {
        self.deletes.len() != self.dv.map_or(0, |d| d.count)
    }
}

/// An in-memory segment: appended rows not yet written to a segment file.
#[derive(Debug, Clone)]
pub(crate) struct MemView {
    pub id: u64,
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
    pub bytes: usize,
    pub deletes: Arc<RoaringBitmap>,
    /// Sealed: being written to a file; new rows go to a new in-memory segment.
    pub sealed: bool,
}

/// One table as of one version.
#[derive(Debug, Clone)]
pub(crate) struct TableVersion {
    pub meta: Arc<TableMeta>,
    pub segments: Vec<SegmentView>,
    pub memory: Vec<MemView>,
}

impl TableVersion {
    pub fn memory_bytes(&self) -> usize {
        self.memory
            .iter()
            .filter(|m| !m.sealed)
            .map(|m| m.bytes)
            .sum()
    }

    pub fn memory_batches(&self) -> usize {
        self.memory
            .iter()
            .filter(|m| !m.sealed)
            .map(|m| m.batches.len())
            .sum()
    }

    /// Rows of segment `id` (on disk or in memory), if it exists.
    pub fn segment_rows(&self, id: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.seg.id() == id)
            .map(|s| s.seg.rows())
            .or_else(|| self.memory.iter().find(|m| m.id == id).map(|m| m.rows))
    }

    /// Adds deleted rows to segment `id`.
    pub fn delete(&mut self, id: u64, rows: &RoaringBitmap) -> Result<()> {
        if let Some(s) = self.segments.iter_mut().find(|s| s.seg.id() == id) {
            let mut d = (*s.deletes).clone();
            d |= rows;
            s.deletes = Arc::new(d);
            return Ok(());
        }
        if let Some(m) = self.memory.iter_mut().find(|m| m.id == id) {
            let mut d = (*m.deletes).clone();
            d |= rows;
            m.deletes = Arc::new(d);
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "table \"{}\" has no segment {id}",
            self.meta.name
        )))
    }

    /// Appends rows to in-memory segment `id`, which must hold `first_row` rows.
    pub fn append(&mut self, id: u64, first_row: u64, batch: RecordBatch) -> Result<()> {
        let m = match self.memory.iter_mut().find(|m| m.id == id) {
            Some(m) => m,
            None => {
                self.memory.push(MemView {
                    id,
                    batches: Vec::new(),
                    rows: 0,
                    bytes: 0,
                    deletes: Arc::new(RoaringBitmap::new()),
                    sealed: false,
                });
                let last = self.memory.len() - 1;
                &mut self.memory[last]
            }
        };
        if m.rows != first_row || m.sealed {
            return Err(Error::InvalidInput(format!(
                "append to in-memory segment {id} at row {first_row}, but it holds {} rows{}",
                m.rows,
                if m.sealed { " and is sealed" } else { "" }
            )));
        }
        m.rows += batch.num_rows() as u64;
        m.bytes += batch.get_array_memory_size();
        m.batches.push(batch);
        Ok(())
    }

    /// Live (not deleted) rows.
    pub fn live_rows(&self) -> u64 {
        let disk: u64 = self
            .segments
            .iter()
            .map(|s| s.seg.rows() - s.deletes.len())
            .sum();
        let mem: u64 = self.memory.iter().map(|m| m.rows - m.deletes.len()).sum();
        disk + mem
    }
}

/// Every table as of one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    pub manifest_version: u64,
    pub tables: BTreeMap<String, Arc<TableVersion>>,
    pub catalog: Arc<Vec<u8>>,
}

impl Version {
    pub fn table_by_id(&self, id: u64) -> Option<&Arc<TableVersion>> {
        self.tables.values().find(|t| t.meta.id == id)
    }

    pub fn table_by_id_mut(&mut self, id: u64) -> Option<&mut TableVersion> {
        self.tables
            .values_mut()
            .find(|t| t.meta.id == id)
            .map(Arc::make_mut)
    }
}

/// The columns of `batch` named by `schema`, in its order; those the batch
/// lacks (added to the table after it was written) are NULL.
pub(crate) fn columns_by_name(batch: &RecordBatch, schema: &SchemaRef) -> Vec<ArrayRef> {
    schema
        .fields()
        .iter()
        .map(|f| match batch.schema_ref().index_of(f.name()) {
            Ok(i) => Arc::clone(batch.column(i)),
            Err(_) => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect()
}

/// Reshapes `batch` to `schema` by column name: columns the batch lacks (added
/// to the table after it was written) become NULL.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let cols = columns_by_name(batch, schema);
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), cols, &opts).map_err(|e| {
        Error::SchemaMismatch(format!("cannot reshape batch to the table schema: {e}"))
    })
}
