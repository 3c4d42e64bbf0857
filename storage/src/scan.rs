//! Reading: snapshots, scans, partitions.
//!
//! A [`Snapshot`] pins one [`Version`] of the store; it stays consistent while
//! appends, flushes and compactions go on, and keeps the segment files it
//! needs alive. [`TableSnapshot::scan`] plans a scan: it prunes segments by
//! their zone maps, selects rows through bitmap indexes and returns one
//! [`ScanPartition`] per segment (in memory or on disk), each an independent
//! iterator of Arrow batches that can run on its own thread.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, RecordBatch, UInt32Array, UInt64Array,
};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::FileDecoder;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::idset::BatchKey;
use crate::index::{Selection, select};
use crate::predicate::Predicate;
use crate::segment::{Mapped, Segment};
use crate::table::TableMeta;
use crate::version::{TableVersion, Version, columns_by_name, conform};
use crate::zonemap::ColumnStats;

/// Name of the optional row-id column: `segment id << 32 | row position`.
pub const ROW_ID_COLUMN: &str = "__tessera_row_id";

/// A selection of more than 1/16 of a segment's rows is applied by
/// evaluating the predicate instead (see `docs/benchmarks.md`).
pub const DENSE_SELECTION_DIVISOR: u64 = 16;

/// Splits a row id into (segment id, row position).
pub fn split_row_id(row_id: u64) -> (u64, u32) {
    (row_id >> 32, (row_id & 0xffff_ffff) as u32)
}

/// A consistent, read-only view of the whole store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) version: Arc<Version>,
}

impl Snapshot {
    /// The tables, by name.
    pub fn tables(&self) -> Vec<Arc<TableMeta>> {
        self.version
            .tables
            .values()
            .map(|t| Arc::clone(&t.meta))
            .collect()
    }

    /// One table.
    pub fn table(&self, name: &str) -> Result<TableSnapshot> {
        self.version
            .tables
            .get(name)
            .map(|t| TableSnapshot {
                table: Arc::clone(t),
            })
            .ok_or_else(|| Error::TableNotFound(name.to_string()))
    }

    /// The catalog bytes the layers above stored with
    /// [`Store::set_catalog`](crate::Store::set_catalog).
    pub fn catalog(&self) -> &[u8] {
        &self.version.catalog
    }

    /// The manifest version this snapshot was taken after.
    pub fn manifest_version(&self) -> u64 {
        self.version.manifest_version
    }
}

/// Whole-table statistics for a query optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStats {
    /// Live rows.
    pub rows: u64,
    /// Per column (in schema order), merged over segments; bounds are `None`
    /// when any part of the table is not covered by a zone map.
    pub columns: Vec<ColumnStats>,
}

/// One table as of a snapshot.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    table: Arc<TableVersion>,
}

/// Names one version of a table without keeping it alive: see
/// [`TableSnapshot::version_token`].
#[derive(Debug, Clone)]
pub struct VersionToken(std::sync::Weak<TableVersion>);

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Column names to return, in order; `None` for all.
    pub projection: Option<Vec<String>>,
    /// Rows to consider; see `filter`.
    pub predicate: Option<Predicate>,
    /// Skip segments whose zone maps rule the predicate out.
    pub use_zone_maps: bool,
    /// Select rows through bitmap indexes.
    pub use_indexes: bool,
    /// Return only rows where the predicate is TRUE. Without it the scan may
    /// return extra rows (those pruning could not exclude) and the caller filters.
    pub filter: bool,
    /// Stop each partition after this many rows.
    pub limit: Option<usize>,
    /// Append the [`ROW_ID_COLUMN`].
    pub row_ids: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            projection: None,
            predicate: None,
            use_zone_maps: true,
            use_indexes: true,
            filter: true,
            limit: None,
            row_ids: false,
        }
    }
}

/// What planning a scan decided, for `EXPLAIN`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanReport {
    /// Segments (on disk and in memory) in the table.
    pub segments_total: usize,
    /// Ids of segments skipped by their zone maps.
    pub segments_pruned: Vec<u64>,
    /// Per segment read through indexes: id, indexed columns used, rows selected.
    pub index_lookups: Vec<(u64, Vec<String>, u64)>,
    /// Whether every scanned segment answered the predicate exactly from indexes.
    pub exact: bool,
}

/// A planned scan: independent partitions plus the plan report.
#[derive(Debug)]
pub struct TableScan {
    /// The output schema.
    pub schema: SchemaRef,
    /// One per segment that survived pruning.
    pub partitions: Vec<ScanPartition>,
    /// What pruning and indexes did.
    pub report: ScanReport,
}

impl TableScan {
    /// Runs every partition in turn and collects the batches.
    pub fn collect(self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for p in self.partitions {
            for b in p.into_iter() {
                out.push(b?);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
enum Source {
    Disk(Arc<Segment>),
    Memory { id: u64, batches: Vec<RecordBatch> },
}

/// The scan of one segment: an iterator of batches. Cloning is cheap (the
/// segment is shared, the selection is a bitmap).
#[derive(Debug, Clone)]
pub struct ScanPartition {
    source: Source,
    deletes: Arc<RoaringBitmap>,
    selection: Selection,
    /// Columns decoded: output columns plus those the filter needs.
    read: Vec<String>,
    /// The schema of `read`, from the table.
    read_schema: SchemaRef,
    /// Positions in `read` of the output columns.
    output: Vec<usize>,
    schema: SchemaRef,
    predicate: Option<Predicate>,
    row_ids: bool,
    limit: Option<usize>,
    /// The batches it reads, by position in the segment (`None`: all).
    batches: Option<std::ops::Range<usize>>,
}

/// Rows a morsel of an in-memory segment gathers from its batches (those
/// of a file are one batch each, [`crate::segment::BATCH_ROWS`]).
const MORSEL_ROWS: usize = 64 * 1024;

impl ScanPartition {
    /// The partition cut into morsels, units of work whichever thread is
    /// free takes next: one per batch of a file, consecutive batches of a
    /// segment in memory gathered up to 64K rows. Together they read
    /// exactly the rows the partition reads; a scan with a limit stays
    /// whole (the limit counts the rows of the whole segment).
    pub fn morsels(self) -> Vec<ScanPartition> {
        if self.limit.is_some() || self.batches.is_some() {
            return vec![self];
        }
        let sizes: Vec<usize> = match &self.source {
            Source::Disk(seg) => seg
                .batch_starts()
                .windows(2)
                .map(|w| (w[1] - w[0]) as usize)
                .collect(),
            Source::Memory { batches, .. } => batches.iter().map(RecordBatch::num_rows).collect(),
        };
        let one_per_batch = matches!(self.source, Source::Disk(_));
        let mut ranges = Vec::new();
        let (mut start, mut rows) = (0, 0);
        for (i, n) in sizes.iter().enumerate() {
            rows += n;
            if one_per_batch || rows >= MORSEL_ROWS || i + 1 == sizes.len() {
                ranges.push(start..i + 1);
                (start, rows) = (i + 1, 0);
            }
        }
        if ranges.len() <= 1 {
            return vec![self];
        }
        ranges
            .into_iter()
            .map(|r| ScanPartition {
                batches: Some(r),
                ..self.clone()
            })
            .collect()
    }

    /// The segment id.
    pub fn segment_id(&self) -> u64 {
        match &self.source {
            Source::Disk(s) => s.id(),
            Source::Memory { id, .. } => *id,
        }
    }

    /// Rows of the segment it reads (before deletions, selection and
    /// filter): what the partition costs to go through, for splitting work.
    pub fn source_rows(&self) -> u64 {
        match &self.source {
            Source::Disk(s) => s.rows(),
            Source::Memory { batches, .. } => batches.iter().map(|b| b.num_rows() as u64).sum(),
        }
    }

    /// Non-null values of `column` in the segment it reads (before
    /// deletions, selection and filter), from the segment's statistics:
    /// with [`Self::source_rows`], what a pass over some of the columns
    /// costs. `None` for a column the segment does not have.
    pub fn non_null(&self, column: &str) -> Option<u64> {
        match &self.source {
            Source::Disk(s) => s
                .stats(column)
                .map(|st| st.row_count.saturating_sub(st.null_count)),
            Source::Memory { batches, .. } => batches
                .iter()
                .map(|b| {
                    b.column_by_name(column)
                        .map(|c| (c.len() - c.null_count()) as u64)
                })
                .sum(),
        }
    }

    /// Whether the partition reads an in-memory segment.
    pub fn in_memory(&self) -> bool {
        matches!(self.source, Source::Memory { .. })
    }
}

impl TableSnapshot {
    pub(crate) fn from_version(table: Arc<TableVersion>) -> Self {
        Self { table }
    }

    /// A token naming this version of the table without holding it (its
    /// files can go as soon as no snapshot needs them).
    pub fn version_token(&self) -> VersionToken {
        VersionToken(Arc::downgrade(&self.table))
    }

    /// Whether this snapshot is of the version `token` names: no commit,
    /// flush or compaction changed the table in between. (A change while a
    /// token exists always makes a new version, never edits this one.)
    pub fn is_version(&self, token: &VersionToken) -> bool {
        std::sync::Weak::ptr_eq(&token.0, &Arc::downgrade(&self.table))
    }

    /// The table's metadata.
    pub fn meta(&self) -> &TableMeta {
        &self.table.meta
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.table.meta.schema)
    }

    /// Live rows.
    pub fn row_count(&self) -> u64 {
        self.table.live_rows()
    }

    /// Bytes the table takes: its segment files, and the rows still held
    /// in memory (and in the log) until they are written to one.
    pub fn size_bytes(&self) -> u64 {
        let files: u64 = self.table.segments.iter().map(|s| s.seg.file_len()).sum();
        files + self.table.memory_bytes() as u64
    }

    /// Number of segments on disk and in memory.
    pub fn segment_count(&self) -> (usize, usize) {
        (self.table.segments.len(), self.table.memory.len())
    }

    /// Whole-table statistics (bounds include deleted rows: still valid bounds).
    pub fn statistics(&self) -> TableStats {
        let schema = &self.table.meta.schema;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let mut acc = ColumnStats::default();
            let mut known = self.table.memory.iter().all(|m| m.rows == 0);
            let mut first = true;
            for s in &self.table.segments {
                match s.seg.stats(f.name()) {
                    Some(st) => {
                        acc.null_count += st.null_count;
                        acc.row_count += st.row_count;
                        if first {
                            acc.min = st.min;
                            acc.max = st.max;
                            first = false;
                        } else {
                            acc.min = merge(acc.min, st.min, std::cmp::Ordering::Less);
                            acc.max = merge(acc.max, st.max, std::cmp::Ordering::Greater);
                        }
                    }
                    None => known = false,
                }
            }
            if !known || first {
                acc.min = None;
                acc.max = None;
            }
            columns.push(acc);
        }
        TableStats {
            rows: self.row_count(),
            columns,
        }
    }

    /// Plans a scan.
    pub fn scan(&self, opts: &ScanOptions) -> Result<TableScan> {
        let meta = &self.table.meta;
        let schema = &meta.schema;
        let out_cols: Vec<String> = match &opts.projection {
            Some(p) => p.clone(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let mut read = out_cols.clone();
        for name in &out_cols {
            if schema.index_of(name).is_err() {
                return Err(Error::ColumnNotFound {
                    table: meta.name.clone(),
                    column: name.clone(),
                });
            }
        }
        if let Some(p) = &opts.predicate {
            for c in p.columns() {
                if schema.index_of(c).is_err() {
                    return Err(Error::ColumnNotFound {
                        table: meta.name.clone(),
                        column: c.to_string(),
                    });
                }
                if opts.filter && !read.iter().any(|r| r == c) {
                    read.push(c.to_string());
                }
            }
        }
        let output: Vec<usize> = (0..out_cols.len()).collect();
        let read_schema = Arc::new(Schema::new(
            read.iter()
                .filter_map(|n| schema.field_with_name(n).ok().cloned())
                .collect::<Vec<_>>(),
        ));
        let mut fields: Vec<Field> = out_cols
            .iter()
            .filter_map(|n| schema.field_with_name(n).ok().cloned())
            .collect();
        if opts.row_ids {
            fields.push(Field::new(ROW_ID_COLUMN, DataType::UInt64, false));
        }
        let out_schema = Arc::new(Schema::new(fields));

        let mut report = ScanReport {
            segments_total: self.table.segments.len() + self.table.memory.len(),
            exact: true,
            ..Default::default()
        };
        let mut partitions = Vec::new();
        let part = |source, deletes, selection| ScanPartition {
            source,
            deletes,
            selection,
            read: read.clone(),
            read_schema: Arc::clone(&read_schema),
            output: output.clone(),
            schema: Arc::clone(&out_schema),
            predicate: opts.predicate.clone().filter(|_| opts.filter),
            row_ids: opts.row_ids,
            limit: opts.limit,
            batches: None,
        };
        for s in &self.table.segments {
            let seg = &s.seg;
            if let Some(p) = &opts.predicate
                && opts.use_zone_maps
                && !p.may_match(&|c| seg.stats(c))
            {
                report.segments_pruned.push(seg.id());
                continue;
            }
            let selection = match &opts.predicate {
                Some(p) if opts.use_indexes => {
                    let mut loaded = std::collections::HashMap::new();
                    for c in p.columns() {
                        if let Some(ix) = seg.index(c)? {
                            loaded.insert(c.to_string(), ix);
                        }
                    }
                    let mut used = Vec::new();
                    let rows = u32::try_from(seg.rows()).map_err(|_| {
                        Error::corrupt(seg.path(), "segment has more than 2^32 rows")
                    })?;
                    let sel = select(p, rows, &|c| loaded.get(c).map(Arc::clone), &mut used);
                    if !used.is_empty() {
                        let n = sel.rows().map_or(seg.rows(), |r| r.len());
                        report.index_lookups.push((seg.id(), used, n));
                    }
                    // Applying a dense selection row by row costs more than
                    // evaluating the predicate on every row: then the index
                    // only answers which segments to skip.
                    let dense = sel
                        .rows()
                        .is_some_and(|r| r.len() * DENSE_SELECTION_DIVISOR > seg.rows());
                    if dense && opts.filter {
                        Selection::All
                    } else {
                        sel
                    }
                }
                _ => Selection::All,
            };
            if opts.predicate.is_some() && !selection.is_exact() {
                report.exact = false;
            }
            if selection.rows().is_some_and(|r| r.is_empty()) {
                report.segments_pruned.push(seg.id());
                continue;
            }
            partitions.push(part(
                Source::Disk(Arc::clone(seg)),
                Arc::clone(&s.deletes),
                selection,
            ));
        }
        for m in &self.table.memory {
            if m.rows == 0 {
                continue;
            }
            if opts.predicate.is_some() {
                report.exact = false;
            }
            partitions.push(part(
                Source::Memory {
                    id: m.id,
                    batches: m.batches.clone(),
                },
                Arc::clone(&m.deletes),
                Selection::All,
            ));
        }
        if opts.predicate.is_none() {
            report.exact = false;
        }
        Ok(TableScan {
            schema: out_schema,
            partitions,
            report,
        })
    }
}

fn merge(
    a: Option<crate::Value>,
    b: Option<crate::Value>,
    keep: std::cmp::Ordering,
) -> Option<crate::Value> {
    match (a, b) {
        (Some(a), Some(b)) => match b.compare(&a) {
            Some(o) if o == keep => Some(b),
            Some(_) => Some(a),
            None => None,
        },
        _ => None,
    }
}

impl IntoIterator for ScanPartition {
    type Item = Result<RecordBatch>;
    type IntoIter = PartitionIter;

    fn into_iter(self) -> PartitionIter {
        let done = self.limit == Some(0);
        PartitionIter {
            next: self.batches.as_ref().map_or(0, |r| r.start),
            part: self,
            starts: None,
            mapped: None,
            decoder: None,
            emitted: 0,
            done,
        }
    }
}

/// Iterator over the batches of one [`ScanPartition`].
#[derive(Debug)]
pub struct PartitionIter {
    part: ScanPartition,
    next: usize,
    starts: Option<Vec<u64>>,
    mapped: Option<Arc<Mapped>>,
    decoder: Option<FileDecoder>,
    emitted: usize,
    done: bool,
}

impl PartitionIter {
    fn starts(&mut self) -> &[u64] {
        if self.starts.is_none() {
            let s = match &self.part.source {
                Source::Disk(seg) => seg.batch_starts(),
                Source::Memory { batches, .. } => {
                    let mut acc = 0;
                    let mut v = vec![0];
                    for b in batches {
                        acc += b.num_rows() as u64;
                        v.push(acc);
                    }
                    v
                }
            };
            self.starts = Some(s);
        }
        self.starts.as_deref().unwrap_or(&[])
    }

    /// Produces the next non-empty batch, or `None` at the end.
    fn step(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let i = self.next;
            let end = self.part.batches.as_ref().map_or(usize::MAX, |r| r.end);
            let starts = self.starts();
            if i + 1 >= starts.len() || i >= end {
                self.done = true;
                return Ok(None);
            }
            let (lo, hi) = (starts[i], starts[i + 1]);
            self.next += 1;
            let Some(keep) = self.keep(lo, hi) else {
                continue;
            };
            let batch = self.decode(i)?;
            let (batch, positions, is_output) = match (keep, self.filter_predicate()) {
                // Rows the predicate and the deletions keep, found first,
                // picked once: the columns of the other rows (strings
                // above all) are never copied.
                (Keep::Rows(rows), Some(pred)) => {
                    let mask = pred.evaluate_at(&batch, self.batch_key(i))?;
                    let lo32 = lo as u32;
                    // Ascending, as `rows` is.
                    let kept = RoaringBitmap::from_sorted_iter(rows.iter().filter(|r| {
                        let j = (r - lo32) as usize;
                        j < mask.len() && arrow::array::Array::is_valid(&mask, j) && mask.value(j)
                    }))
                    .map_err(|e| Error::InvalidInput(format!("cannot select rows: {e}")))?;
                    if kept.is_empty() {
                        continue;
                    }
                    (pick(&batch, &kept, lo32)?, Some(kept), false)
                }
                (Keep::Rows(rows), None) => (pick(&batch, &rows, lo as u32)?, Some(rows), false),
                (Keep::All, _) => self.apply_filter(batch, None, lo, self.batch_key(i))?,
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let mut out = if is_output {
                batch
            } else {
                self.finish(batch, positions.as_ref(), lo)?
            };
            if let Some(limit) = self.part.limit {
                let left = limit - self.emitted;
                if out.num_rows() >= left {
                    out = out.slice(0, left);
                    self.done = true;
                }
            }
            self.emitted += out.num_rows();
            return Ok(Some(out));
        }
    }

    /// Names batch `i` of a segment file, whose rows never change (the
    /// rows of a segment still in memory have no such name).
    fn batch_key(&self, i: usize) -> Option<BatchKey> {
        match &self.part.source {
            Source::Disk(seg) => Some(BatchKey {
                segment: seg.id(),
                batch: u32::try_from(i).ok()?,
            }),
            Source::Memory { .. } => None,
        }
    }

    /// Which rows of `[lo, hi)` to read, or `None` when none.
    fn keep(&self, lo: u64, hi: u64) -> Option<Keep> {
        let (lo32, hi32) = (lo as u32, hi as u32);
        let deleted = self.part.deletes.range_cardinality(lo32..hi32);
        match self.part.selection.rows() {
            None if deleted == 0 => Some(Keep::All),
            None => {
                let mut r = RoaringBitmap::new();
                r.insert_range(lo32..hi32);
                r -= self.part.deletes.as_ref();
                (!r.is_empty()).then_some(Keep::Rows(r))
            }
            Some(sel) => {
                let n = sel.range_cardinality(lo32..hi32);
                if n == 0 {
                    return None;
                }
                if n == hi - lo && deleted == 0 {
                    return Some(Keep::All);
                }
                let mut r = RoaringBitmap::new();
                r.insert_range(lo32..hi32);
                r &= sel;
                r -= self.part.deletes.as_ref();
                (!r.is_empty()).then_some(Keep::Rows(r))
            }
        }
    }

    /// Decodes batch `i` with the `read` columns, conformed to the table
    /// schema but for integer columns a file stores narrower, which keep
    /// their stored type until [`widen`] (after the predicate's filter).
    fn decode(&mut self, i: usize) -> Result<RecordBatch> {
        let target = &self.part.read_schema;
        match &self.part.source {
            Source::Memory { batches, .. } => {
                let b = batches
                    .get(i)
                    .ok_or_else(|| Error::InvalidInput(format!("no batch {i}")))?;
                conform(b, target)
            }
            Source::Disk(seg) => {
                if self.mapped.is_none() {
                    self.mapped = Some(seg.mapped()?);
                }
                let mapped = self.mapped.as_ref().map(Arc::clone).ok_or(Error::Closed)?;
                if self.decoder.is_none() {
                    let names: Vec<&str> = self.part.read.iter().map(String::as_str).collect();
                    let positions = seg.positions(&names);
                    // Columns added to the table after this segment was
                    // written are filled with NULLs (`stored_as_read`).
                    let present: Vec<usize> = positions.into_iter().flatten().collect();
                    self.decoder = Some(seg.decoder(&mapped, &present, true)?);
                }
                let decoder = self.decoder.as_ref().ok_or(Error::Closed)?;
                let batch = seg.read_physical(decoder, &mapped, i)?;
                stored_as_read(&batch, target)
            }
        }
    }

    /// The predicate rows must pass here (not one the selection answered
    /// exactly).
    fn filter_predicate(&self) -> Option<&Predicate> {
        self.part
            .predicate
            .as_ref()
            .filter(|_| !self.part.selection.is_exact())
    }

    /// Keeps the rows of `batch` where the predicate is TRUE (unless the
    /// selection answered it): the batch, the kept positions (with row
    /// ids), and whether the batch is already the scan's output.
    fn apply_filter(
        &self,
        batch: RecordBatch,
        positions: Option<RoaringBitmap>,
        lo: u64,
        at: Option<BatchKey>,
    ) -> Result<(RecordBatch, Option<RoaringBitmap>, bool)> {
        let Some(pred) = &self.part.predicate else {
            return Ok((batch, positions, false));
        };
        if self.part.selection.is_exact() {
            return Ok((batch, positions, false));
        }
        let mask = pred.evaluate_at(&batch, at)?;
        if !self.part.row_ids {
            // Only the columns the scan returns are filtered (not those
            // read for the predicate alone): the result is the output.
            let err =
                |e: arrow::error::ArrowError| Error::InvalidInput(format!("cannot filter: {e}"));
            // Precomputed indices pay off only when several columns are
            // filtered.
            let mut builder = arrow::compute::FilterBuilder::new(&mask);
            if self.part.output.len() > 1 {
                builder = builder.optimize();
            }
            let filter = builder.build();
            let cols = self
                .part
                .output
                .iter()
                .zip(self.part.schema.fields())
                .map(|(i, f)| widen(&filter.filter(batch.column(*i)).map_err(err)?, f))
                .collect::<Result<Vec<_>>>()?;
            let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(filter.count()));
            let out = RecordBatch::try_new_with_options(Arc::clone(&self.part.schema), cols, &opts)
                .map_err(err)?;
            return Ok((out, None, true));
        }
        let filtered = filter_record_batch(&batch, &mask)
            .map_err(|e| Error::InvalidInput(format!("cannot filter: {e}")))?;
        let all: Vec<u32> = match &positions {
            Some(p) => p.iter().collect(),
            None => (lo as u32..lo as u32 + batch.num_rows() as u32).collect(),
        };
        let kept: RoaringBitmap = all
            .into_iter()
            .zip(mask.iter())
            .filter_map(|(r, m)| (m == Some(true)).then_some(r))
            .collect();
        Ok((filtered, Some(kept), false))
    }

    fn finish(
        &self,
        batch: RecordBatch,
        positions: Option<&RoaringBitmap>,
        lo: u64,
    ) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = self
            .part
            .output
            .iter()
            .zip(self.part.schema.fields())
            .map(|(i, f)| widen(batch.column(*i), f))
            .collect::<Result<_>>()?;
        if self.part.row_ids {
            let seg = self.part.segment_id() << 32;
            let ids: UInt64Array = match positions {
                Some(p) => p.iter().map(|r| seg | u64::from(r)).collect(),
                None => (lo..lo + batch.num_rows() as u64)
                    .map(|r| seg | r)
                    .collect(),
            };
            cols.push(Arc::new(ids));
        }
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::clone(&self.part.schema), cols, &opts)
            .map_err(|e| Error::InvalidInput(format!("cannot build scan output: {e}")))
    }
}

/// The stored columns of a decoded batch in the order and under the names
/// of `target` (the columns read): a column the file lacks (added to the
/// table after it was written) becomes NULL; a narrow integer column keeps
/// its stored type.
fn stored_as_read(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let cols = columns_by_name(batch, target);
    let fields: Vec<Arc<Field>> = target
        .fields()
        .iter()
        .zip(&cols)
        .map(|(f, col)| {
            if col.data_type() == f.data_type() {
                Arc::clone(f)
            } else {
                Arc::new(Field::new(
                    f.name(),
                    col.data_type().clone(),
                    f.is_nullable(),
                ))
            }
        })
        .collect();
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), cols, &opts).map_err(|e| {
        Error::SchemaMismatch(format!("cannot reshape batch to the table schema: {e}"))
    })
}

/// `col` in the type of `field` (the scan's output): a narrow stored
/// integer column is cast back, once its rows are filtered.
fn widen(col: &ArrayRef, field: &Field) -> Result<ArrayRef> {
    if col.data_type() == field.data_type() {
        return Ok(Arc::clone(col));
    }
    crate::segment::widen_int(col, field.data_type())
}

enum Keep {
    All,
    Rows(RoaringBitmap),
}

/// Selects the rows in `rows` (positions in the segment; the batch starts at
/// `lo`): `take` when sparse, a filter mask when dense.
fn pick(batch: &RecordBatch, rows: &RoaringBitmap, lo: u32) -> Result<RecordBatch> {
    let err = |e: arrow::error::ArrowError| Error::InvalidInput(format!("cannot select rows: {e}"));
    let n = batch.num_rows();
    if (rows.len() as usize) * 32 < n {
        let idx: UInt32Array = rows.iter().map(|r| r - lo).collect();
        take_record_batch(batch, &idx).map_err(err)
    } else {
        let mut mask = BooleanBufferBuilder::new(n);
        mask.append_n(n, false);
        for r in rows {
            let i = (r - lo) as usize;
            if i < n {
                mask.set_bit(i, true);
            }
        }
        filter_record_batch(batch, &BooleanArray::new(mask.finish(), None)).map_err(err)
    }
}

impl Iterator for PartitionIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        match self.step() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
