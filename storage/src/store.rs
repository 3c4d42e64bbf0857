//! The store: opening and recovery, commits, flushes, DDL, deletes and
//! compaction. See the crate documentation for the walk-through.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use roaring::RoaringBitmap;

use crate::commit::{Apply, CommitState, Pending};
use crate::crypt::{self, Key};
use crate::error::{Error, Result};
use crate::index::bitmap_bytes;
use crate::io::{DirLock, OsVfs, Vfs};
use crate::manifest::{self, DvEntry, Manifest, SegmentEntry, TableEntry};
use crate::scan::{ScanOptions, Snapshot, TableSnapshot, split_row_id};
use crate::segment::{self, Segment};
use crate::table::{TableMeta, TableOptions, schema_from_ipc, schema_to_ipc};
use crate::version::{MemView, SegmentView, TableVersion, Version, conform};
use crate::wal::{self, WalCommit, WalOp, WalWriter};
use crate::{dv, verify};

/// Tuning knobs of a store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Flush a table's in-memory rows to a segment past this many bytes.
    pub flush_threshold_bytes: usize,
    /// ... or past this many appended batches.
    pub flush_threshold_batches: usize,
    /// Compaction writes segments of at most this many rows.
    pub target_segment_rows: usize,
    /// Background compaction merges small segments once a table has this
    /// many of one size tier (a factor of 4 in bytes, everything under 4 MiB
    /// one tier).
    pub compaction_min_small_segments: usize,
    /// Background compaction rewrites a segment once this fraction of its rows is deleted.
    pub compaction_delete_ratio: f64,
    /// Run flushes and compactions on a background thread.
    pub background: bool,
    /// The key of an encrypted database: creating a database with a key
    /// encrypts every file it will write; an encrypted database opens only
    /// with its key (see `crypt`).
    pub encryption: Option<Key>,
    /// A segment holds at most this many bytes of one text or binary
    /// column's values (below Arrow IPC's 2 GiB of 32-bit offsets).
    pub segment_value_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            flush_threshold_bytes: 64 << 20,
            flush_threshold_batches: 2048,
            target_segment_rows: 1 << 20,
            compaction_min_small_segments: 8,
            compaction_delete_ratio: 0.2,
            background: true,
            encryption: None,
            segment_value_bytes: 1 << 30,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten or merged.
    pub segments_removed: usize,
    /// Segments written.
    pub segments_written: usize,
    /// Deleted rows physically dropped.
    pub rows_purged: u64,
}

/// A set of changes committed atomically: all of them or none survive a crash.
#[derive(Debug, Default, Clone)]
pub struct Mutation {
    deletes: Vec<(String, Vec<u64>)>,
    appends: Vec<(String, RecordBatch)>,
}

impl Mutation {
    /// An empty mutation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes rows by the row ids a scan returned ([`crate::ROW_ID_COLUMN`]).
    pub fn delete(&mut self, table: &str, row_ids: Vec<u64>) -> &mut Self {
        self.deletes.push((table.to_string(), row_ids));
        self
    }

    /// Appends a batch.
    pub fn append(&mut self, table: &str, batch: RecordBatch) -> &mut Self {
        self.appends.push((table.to_string(), batch));
        self
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.deletes.iter().all(|d| d.1.is_empty())
            && self.appends.iter().all(|a| a.1.num_rows() == 0)
    }
}

/// An embedded storage engine over one directory. Cheap to clone; all clones
/// share the same state. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    worker: Mutex<Option<(Sender<Msg>, JoinHandle<()>)>>,
    encrypted: bool,
}

#[derive(Debug, Clone, Copy)]
enum Msg {
    Flush,
    Stop,
}

#[derive(Debug)]
struct Persisted {
    manifest_version: u64,
    next_table_id: u64,
    wal_seq: u64,
    /// DV files on disk that the live manifest references.
    dv_files: HashMap<u64, u64>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) opts: Options,
    _lock: Box<dyn DirLock>,
    version: RwLock<Arc<Version>>,
    commit: Mutex<CommitState>,
    commit_cv: Condvar,
    /// One structural writer at a time: deletes, flushes, DDL, compaction.
    pub(crate) mutation: Mutex<()>,
    next_segment_id: AtomicU64,
    persisted: Mutex<Persisted>,
    signal: Mutex<Option<Sender<Msg>>>,
    background_error: Mutex<Option<String>>,
}

/// Exclusive access for a read-modify-write (DELETE, UPDATE): while it is
/// held, row ids from its snapshot stay valid. Appends still go on.
#[derive(Debug)]
pub struct WriteGuard<'a> {
    store: &'a Store,
    lock: Option<MutexGuard<'a, ()>>,
    flush: bool,
}

impl WriteGuard<'_> {
    /// A snapshot taken under the guard.
    pub fn snapshot(&self) -> Snapshot {
        self.store.snapshot()
    }

    /// Commits a mutation atomically; returns its log sequence number.
    pub fn commit(&mut self, m: Mutation) -> Result<u64> {
        let (lsn, flush) = self.store.handle.shared.commit_mutation(m)?;
        self.flush |= flush;
        Ok(lsn)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        if self.flush {
            self.store.request_flush();
        }
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(dir, Options::default(), Arc::new(OsVfs))
    }

    /// Opens (or creates) a database with explicit options and file system.
    pub fn open_with(dir: impl AsRef<Path>, opts: Options, vfs: Arc<dyn Vfs>) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        vfs.create_dir_all(&dir)?;
        let lock = vfs.lock(&dir)?;
        let (vfs, encrypted) = crypt::open(&dir, vfs, opts.encryption.as_ref())?;
        let shared = Arc::new(Shared::recover(dir, opts, vfs, lock)?);
        let worker = if shared.opts.background {
            let (tx, rx) = crossbeam_channel::unbounded();
            *shared.signal.lock() = Some(tx.clone());
            let weak = Arc::downgrade(&shared);
            let join = std::thread::Builder::new()
                .name("tessera-storage".into())
                .spawn(move || background(weak, rx))
                .map_err(|e| Error::io("spawn background thread", "", e))?;
            Some((tx, join))
        } else {
            None
        };
        Ok(Store {
            handle: Arc::new(Handle {
                shared,
                worker: Mutex::new(worker),
                encrypted,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// Whether the database is encrypted at rest: then nothing may write
    /// its data to a file in plaintext (query spills, spooled input).
    pub fn is_encrypted(&self) -> bool {
        self.handle.encrypted
    }

    /// Puts an encrypted database under key `new` instead of `current`
    /// (which must be its key). Files are encrypted under a data key of
    /// their own, which is only sealed anew: nothing else is rewritten, and
    /// a crash leaves one key or the other in force.
    pub fn rekey(&self, current: &Key, new: &Key) -> Result<()> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        crypt::rekey(sh.vfs.as_ref(), &sh.dir, current, new)
    }

    /// A consistent view of every table, pinned until dropped.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: Arc::clone(&self.shared().version.read()),
        }
    }

    /// One table as of now.
    pub fn table(&self, name: &str) -> Result<TableSnapshot> {
        self.snapshot().table(name)
    }

    /// Creates a table.
    pub fn create_table(
        &self,
        name: &str,
        schema: SchemaRef,
        options: TableOptions,
    ) -> Result<Arc<TableMeta>> {
        validate_schema(name, &schema, &options)?;
        let sh = self.shared();
        let _m = sh.mutation.lock();
        if self.snapshot().table(name).is_ok() {
            return Err(Error::TableExists(name.to_string()));
        }
        let mut created = None;
        sh.checkpoint_locked(|plan, next_table_id| {
            if plan.tables.contains_key(name) {
                return Err(Error::TableExists(name.to_string()));
            }
            let meta = Arc::new(TableMeta {
                id: *next_table_id,
                name: name.to_string(),
                schema,
                options,
            });
            *next_table_id += 1;
            created = Some(Arc::clone(&meta));
            plan.tables.insert(
                name.to_string(),
                Arc::new(TableVersion {
                    meta,
                    segments: Vec::new(),
                    memory: Vec::new(),
                }),
            );
            Ok(())
        })?;
        created.ok_or(Error::Closed)
    }

    /// Drops a table; its files are deleted once no snapshot uses them.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        sh.checkpoint_locked(|plan, _| {
            plan.tables
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| Error::TableNotFound(name.to_string()))
        })
    }

    /// Adds a nullable column at the end of a table; existing rows read NULL.
    pub fn add_column(&self, table: &str, field: Field) -> Result<()> {
        if !field.is_nullable() {
            return Err(Error::InvalidInput(format!(
                "column \"{}\" added to an existing table must be nullable",
                field.name()
            )));
        }
        let sh = self.shared();
        let _m = sh.mutation.lock();
        sh.checkpoint_locked(|plan, _| {
            let t = plan
                .tables
                .get_mut(table)
                .ok_or_else(|| Error::TableNotFound(table.to_string()))?;
            if t.meta.schema.index_of(field.name()).is_ok() {
                return Err(Error::InvalidInput(format!(
                    "column \"{}\" of table \"{table}\" already exists",
                    field.name()
                )));
            }
            let mut fields: Vec<Field> = t
                .meta
                .schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(field.clone());
            let schema = Arc::new(Schema::new(fields));
            validate_schema(table, &schema, &t.meta.options)?;
            let t = Arc::make_mut(t);
            t.meta = Arc::new(TableMeta {
                schema,
                ..(*t.meta).clone()
            });
            Ok(())
        })
    }

    /// Adds a bitmap index on `column` and builds it for the existing rows.
    pub fn create_index(&self, table: &str, column: &str) -> Result<()> {
        let sh = self.shared();
        {
            let _m = sh.mutation.lock();
            let snap = self.snapshot().table(table)?;
            snap.schema()
                .field_with_name(column)
                .map_err(|_| Error::ColumnNotFound {
                    table: table.to_string(),
                    column: column.to_string(),
                })?;
            sh.checkpoint_locked(|plan, _| {
                let t = plan.tables.get_mut(table).ok_or_else(|| Error::TableNotFound(table.to_string()))?;
                let field = t.meta.schema.field_with_name(column).map_err(|_| Error::ColumnNotFound {
                    table: table.to_string(),
                    column: column.to_string(),
                })?;
                if !crate::index::ColumnIndex::supports(field.data_type()) {
                    return Err(Error::InvalidInput(format!(
                        "cannot index column \"{column}\" of type {}: bitmap indexes cover booleans, integers, dates, timestamps and text",
                        field.data_type()
                    )));
                }
                if t.meta.options.indexed_columns.iter().any(|c| c == column) {
                    return Ok(());
                }
                let t = Arc::make_mut(t);
                let mut options = t.meta.options.clone();
                options.indexed_columns.push(column.to_string());
                t.meta = Arc::new(TableMeta { options, ..(*t.meta).clone() });
                Ok(())
            })?;
            // Rewrite every segment of the table so it carries the index.
            sh.compact_locked(Some(table), true, true)?;
        }
        Ok(())
    }

    /// Stores the opaque catalog bytes of the layers above, durably.
    pub fn set_catalog(&self, catalog: Vec<u8>) -> Result<()> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        sh.checkpoint_locked(|plan, _| {
            plan.catalog = Arc::new(catalog);
            Ok(())
        })
    }

    /// Appends a batch durably; returns its log sequence number once it is
    /// fsynced and visible to new snapshots.
    pub fn append(&self, table: &str, batch: &RecordBatch) -> Result<u64> {
        let mut m = Mutation::new();
        m.append(table, batch.clone());
        let (lsn, flush) = self.shared().commit_mutation(m)?;
        if flush {
            self.request_flush();
        }
        Ok(lsn)
    }

    /// Loads many rows at once, atomically and without going through the log:
    /// the batches are written straight to new segment files (fsynced), then
    /// one manifest version adds them all. Either every row is there after
    /// a crash or none is; memory stays bounded by one segment's worth of
    /// rows. A bad batch (schema, NOT NULL) aborts the load, leaving the
    /// table as it was. Returns the number of rows loaded.
    pub fn bulk_load<E: From<Error>>(
        &self,
        table: &str,
        batches: impl IntoIterator<Item = std::result::Result<RecordBatch, E>>,
    ) -> std::result::Result<u64, E> {
        let mut load = self.bulk();
        let target = load.append(table)?;
        for b in batches {
            load.push(target, &b?)?;
        }
        if load.rows(target) == 0 {
            return Ok(0);
        }
        let rows = load.publish()?;
        Ok(rows.first().copied().unwrap_or(0))
    }

    /// Exclusive access for a read-modify-write.
    pub fn writer(&self) -> WriteGuard<'_> {
        WriteGuard {
            store: self,
            lock: Some(self.shared().mutation.lock()),
            flush: false,
        }
    }

    /// Deletes the rows where `predicate` is TRUE; returns how many.
    pub fn delete_where(&self, table: &str, predicate: &crate::Predicate) -> Result<u64> {
        let mut w = self.writer();
        let snap = w.snapshot().table(table)?;
        let scan = snap.scan(&ScanOptions {
            projection: Some(Vec::new()),
            predicate: Some(predicate.clone()),
            row_ids: true,
            ..ScanOptions::default()
        })?;
        let mut ids = Vec::new();
        for b in scan.collect()? {
            if let Some(col) = b.column_by_name(crate::ROW_ID_COLUMN) {
                let col = arrow::array::AsArray::as_primitive::<arrow::datatypes::UInt64Type>(
                    col.as_ref(),
                );
                ids.extend(col.values().iter().copied());
            }
        }
        let n = ids.len() as u64;
        if n > 0 {
            let mut m = Mutation::new();
            m.delete(table, ids);
            w.commit(m)?;
        }
        Ok(n)
    }

    /// Writes every in-memory row to segments and trims the log.
    pub fn checkpoint(&self) -> Result<()> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        sh.checkpoint_locked(|_, _| Ok(()))
    }

    /// Merges small segments and rewrites every segment with deleted rows, so
    /// that deleted data is gone from every file the store keeps.
    pub fn compact(&self) -> Result<CompactionReport> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        sh.compact_locked(None, true, false)
    }

    /// [`Store::compact`] for one table.
    pub fn compact_table(&self, table: &str) -> Result<CompactionReport> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        self.snapshot().table(table)?;
        sh.compact_locked(Some(table), true, false)
    }

    /// Checks every file of the store; see [`verify::VerifyReport`].
    pub fn verify(&self) -> Result<verify::VerifyReport> {
        let sh = self.shared();
        let _m = sh.mutation.lock();
        let persisted = sh.persisted.lock().manifest_version;
        // The log is read while no commit is being written to it, so the
        // tail a leader is appending is not mistaken for damage.
        let pause_commits = |read_log: &mut dyn FnMut()| {
            let mut c = sh.commit.lock();
            while c.leader {
                sh.commit_cv.wait(&mut c);
            }
            read_log();
        };
        verify::verify(&sh.vfs, &sh.dir, persisted, &pause_commits)
    }

    /// The error of the last failed background flush or compaction, if any.
    pub fn background_error(&self) -> Option<String> {
        self.shared().background_error.lock().clone()
    }

    fn request_flush(&self) {
        let sh = self.shared();
        let tx = sh.signal.lock().clone();
        match tx {
            Some(tx) => {
                let _ = tx.send(Msg::Flush);
            }
            None => {
                // Busy: whoever holds it (a WriteGuard, a compaction) flushes
                // when it lets go, or the next append does.
                let Some(_m) = sh.mutation.try_lock() else {
                    return;
                };
                if sh.needs_flush()
                    && let Err(e) = sh.checkpoint_locked(|_, _| Ok(()))
                {
                    *sh.background_error.lock() = Some(e.to_string());
                }
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some((tx, join)) = self.worker.lock().take() {
            *self.shared.signal.lock() = None;
            let _ = tx.send(Msg::Stop);
            let _ = join.join();
        }
    }
}

/// Bytes below which every small segment is of one size tier (4 MiB).
const TIER_FLOOR_BYTES: u64 = 4 << 20;

/// The size tier of a segment file of `bytes`: 0 under
/// [`TIER_FLOOR_BYTES`], then one tier per factor of 4.
fn size_tier(bytes: u64) -> u32 {
    if bytes < TIER_FLOOR_BYTES {
        0
    } else {
        // A factor of 4 is two binary orders of magnitude.
        1 + (bytes / TIER_FLOOR_BYTES).ilog2() / 2
    }
}

fn background(shared: std::sync::Weak<Shared>, rx: Receiver<Msg>) {
    loop {
        let msg = rx.recv_timeout(Duration::from_secs(2));
        if matches!(
            msg,
            Ok(Msg::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        ) {
            return;
        }
        let Some(sh) = shared.upgrade() else { return };
        let _m = sh.mutation.lock();
        let mut result = Ok(());
        if sh.needs_flush() {
            result = sh.checkpoint_locked(|_, _| Ok(()));
        }
        if result.is_ok() && sh.commit.lock().poisoned.is_none() {
            result = sh.compact_locked(None, false, false).map(|_| ());
        }
        if let Err(e) = result {
            *sh.background_error.lock() = Some(e.to_string());
        }
    }
}

pub(crate) fn validate_schema(name: &str, schema: &Schema, options: &TableOptions) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidInput("a table needs a name".into()));
    }
    let mut seen = HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(Error::InvalidInput(format!(
                "column \"{}\" appears twice in table \"{name}\"",
                f.name()
            )));
        }
        if f.name() == crate::ROW_ID_COLUMN {
            return Err(Error::InvalidInput(format!(
                "column name \"{}\" is reserved",
                f.name()
            )));
        }
    }
    for c in &options.indexed_columns {
        let f = schema
            .field_with_name(c)
            .map_err(|_| Error::ColumnNotFound {
                table: name.into(),
                column: c.clone(),
            })?;
        if !crate::index::ColumnIndex::supports(f.data_type()) {
            return Err(Error::InvalidInput(format!(
                "cannot index column \"{c}\" of type {}",
                f.data_type()
            )));
        }
    }
    Ok(())
}

fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let err =
        |e: arrow::error::ArrowError| Error::InvalidInput(format!("cannot encode batch: {e}"));
    let mut w = StreamWriter::try_new(&mut out, batch.schema_ref()).map_err(err)?;
    w.write(batch).map_err(err)?;
    w.finish().map_err(err)?;
    drop(w);
    Ok(out)
}

fn decode_ipc(bytes: &[u8], path: &Path) -> Result<RecordBatch> {
    let corrupt = |e: arrow::error::ArrowError| {
        Error::corrupt(path, format!("cannot decode logged batch: {e}"))
    };
    let mut r = StreamReader::try_new(bytes, None).map_err(corrupt)?;
    match r.next() {
        Some(b) => b.map_err(corrupt),
        None => Err(Error::corrupt(path, "logged batch is empty")),
    }
}

/// The bytes of values of the widest text or binary column of `b` (its
/// slice only).
fn value_bytes(b: &RecordBatch) -> usize {
    use arrow::array::AsArray;
    b.columns()
        .iter()
        .map(|c| {
            let offsets = match c.data_type() {
                arrow::datatypes::DataType::Utf8 => c.as_string::<i32>().value_offsets(),
                arrow::datatypes::DataType::Binary => c.as_binary::<i32>().value_offsets(),
                _ => return 0,
            };
            match (offsets.first(), offsets.last()) {
                (Some(a), Some(z)) => (z - a).max(0) as usize,
                _ => 0,
            }
        })
        .max()
        .unwrap_or(0)
}

/// Writes batches into new segment files of at most `target` rows, and at
/// most [`Options::segment_value_bytes`] of one column's values: Arrow
/// IPC's `Utf8`/`Binary` offsets are 32-bit (2 GiB), and a few huge values
/// (a graph log's entries) reach that long before `target` rows do. Files
/// it wrote are deleted again if it is dropped without
/// [`SegmentSink::finish`].
pub(crate) struct SegmentSink<'a> {
    shared: &'a Shared,
    meta: Arc<TableMeta>,
    target: usize,
    max_bytes: usize,
    chunk: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    written: Vec<SegmentView>,
    finished: bool,
}

impl<'a> SegmentSink<'a> {
    pub(crate) fn new(shared: &'a Shared, meta: Arc<TableMeta>, target: usize) -> Self {
        Self {
            shared,
            meta,
            target,
            max_bytes: shared.opts.segment_value_bytes.max(1),
            chunk: Vec::new(),
            rows: 0,
            bytes: 0,
            written: Vec::new(),
            finished: false,
        }
    }

    pub(crate) fn push(&mut self, mut b: RecordBatch) -> Result<()> {
        while b.num_rows() > 0 {
            let mut take = (self.target - self.rows).min(b.num_rows());
            let mut piece = b.slice(0, take);
            // Fewer rows while one column's values would not fit a segment.
            while take > 1 && value_bytes(&piece) > self.max_bytes {
                take /= 2;
                piece = b.slice(0, take);
            }
            let bytes = value_bytes(&piece);
            if self.rows > 0 && self.bytes + bytes > self.max_bytes {
                self.flush()?;
            }
            self.chunk.push(piece);
            self.rows += take;
            self.bytes += bytes;
            b = b.slice(take, b.num_rows() - take);
            if self.rows >= self.target {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Segments of at most `rows` rows from now on (what is pushed already
    /// is written first if it reaches that).
    pub(crate) fn set_target(&mut self, rows: usize) -> Result<()> {
        self.target = rows.max(1);
        if self.rows >= self.target {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows pushed so far as a segment now (none: nothing).
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let sh = self.shared;
        let id = sh.next_segment_id.fetch_add(1, Ordering::SeqCst);
        segment::write(
            sh.vfs.as_ref(),
            &sh.dir,
            id,
            &self.meta.schema,
            &self.chunk,
            &self.meta.options,
        )?;
        let seg = Arc::new(Segment::open(
            Arc::clone(&sh.vfs),
            &sh.dir,
            id,
            self.rows as u64,
        )?);
        self.written.push(SegmentView {
            seg,
            deletes: Arc::new(RoaringBitmap::new()),
            dv: None,
        });
        self.chunk.clear();
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<Vec<SegmentView>> {
        self.flush()?;
        self.finished = true;
        Ok(std::mem::take(&mut self.written))
    }
}

impl Drop for SegmentSink<'_> {
    fn drop(&mut self) {
        if !self.finished {
            for s in &self.written {
                s.seg.mark_obsolete();
            }
        }
    }
}

/// The tables and catalog a checkpoint will publish.
pub(crate) struct Plan {
    pub tables: BTreeMap<String, Arc<TableVersion>>,
    pub catalog: Arc<Vec<u8>>,
}

impl Shared {
    fn recover(
        dir: PathBuf,
        opts: Options,
        vfs: Arc<dyn Vfs>,
        lock: Box<dyn DirLock>,
    ) -> Result<Shared> {
        let loaded = manifest::load_current(vfs.as_ref(), &dir)?;
        let fresh = loaded.is_none();
        let m = loaded.map(|(_, m)| m).unwrap_or(Manifest {
            version: 0,
            next_segment_id: 1,
            next_table_id: 1,
            flushed_lsn: 0,
            wal_first_seq: 1,
            tables: Vec::new(),
            catalog: Vec::new(),
        });
        // 1. Tables and their segments, as the manifest lists them.
        let mut tables = BTreeMap::new();
        let mut dv_files = HashMap::new();
        let mpath = dir.join(manifest::file_name(m.version));
        for t in &m.tables {
            let schema = schema_from_ipc(&t.schema_ipc, &mpath)?;
            let meta = Arc::new(TableMeta {
                id: t.id,
                name: t.name.clone(),
                schema,
                options: t.options.clone(),
            });
            let mut segments = Vec::with_capacity(t.segments.len());
            for s in &t.segments {
                let seg = Arc::new(Segment::open(Arc::clone(&vfs), &dir, s.id, s.rows)?);
                let deletes = match s.dv {
                    Some(d) => {
                        let path = dir.join(dv::file_name(s.id, d.version));
                        let bm = dv::decode(&vfs.read(&path)?, &path, s.id, s.rows)?;
                        if bm.len() != d.count {
                            return Err(Error::corrupt(
                                &path,
                                "deletion vector holds a different count than the manifest says",
                            ));
                        }
                        dv_files.insert(s.id, d.version);
                        bm
                    }
                    None => RoaringBitmap::new(),
                };
                segments.push(SegmentView {
                    seg,
                    deletes: Arc::new(deletes),
                    dv: s.dv,
                });
            }
            tables.insert(
                t.name.clone(),
                Arc::new(TableVersion {
                    meta,
                    segments,
                    memory: Vec::new(),
                }),
            );
        }
        let mut version = Version {
            manifest_version: m.version,
            tables,
            catalog: Arc::new(m.catalog.clone()),
        };

        // 2. Replay the log.
        let names = vfs.list(&dir)?;
        let mut wal_seqs: Vec<u64> = names
            .iter()
            .filter_map(|n| wal::parse_file_name(n))
            .collect();
        wal_seqs.sort_unstable();
        let mut next_segment_id = m.next_segment_id;
        let mut last_lsn = m.flushed_lsn;
        let mut prev_lsn = None;
        let mut torn: Option<PathBuf> = None;
        let mut replayed = false;
        for &seq in wal_seqs.iter().filter(|s| **s >= m.wal_first_seq && !fresh) {
            let path = dir.join(wal::file_name(seq));
            let scan = wal::read_file(vfs.as_ref(), &path, true, prev_lsn)?;
            if seq == m.wal_first_seq && scan.valid_len == 0 {
                // This file was created and synced before the manifest naming
                // it was published: it cannot be short because of a crash.
                return Err(Error::corrupt(
                    &path,
                    "log file named by the manifest is truncated",
                ));
            }
            if let Some(t) = &torn
                && !scan.records.is_empty()
            {
                return Err(Error::corrupt(
                    t,
                    "damaged log record followed by a later log file with records",
                ));
            }
            if scan.tail_bytes > 0 {
                torn = Some(path.clone());
            }
            for rec in scan.records {
                prev_lsn = Some(rec.lsn);
                if rec.lsn <= m.flushed_lsn {
                    continue;
                }
                replayed = true;
                last_lsn = rec.lsn;
                for op in rec.commit.ops {
                    match op {
                        WalOp::Append {
                            table,
                            segment,
                            first_row,
                            ipc,
                        } => {
                            let batch = decode_ipc(&ipc, &path)?;
                            let t = version.table_by_id_mut(table).ok_or_else(|| {
                                Error::corrupt(
                                    &path,
                                    format!("log record {} names unknown table {table}", rec.lsn),
                                )
                            })?;
                            if batch.schema_ref().fields() != t.meta.schema.fields() {
                                return Err(Error::corrupt(
                                    &path,
                                    format!(
                                        "log record {} does not match the schema of table \"{}\"",
                                        rec.lsn, t.meta.name
                                    ),
                                ));
                            }
                            t.append(segment, first_row, batch).map_err(|e| {
                                Error::corrupt(&path, format!("log record {}: {e}", rec.lsn))
                            })?;
                            next_segment_id = next_segment_id.max(segment + 1);
                        }
                        WalOp::Delete {
                            table,
                            segment,
                            rows,
                        } => {
                            let rows = WalOp::delete_rows(&rows, &path)?;
                            let t = version.table_by_id_mut(table).ok_or_else(|| {
                                Error::corrupt(
                                    &path,
                                    format!("log record {} names unknown table {table}", rec.lsn),
                                )
                            })?;
                            let n = t.segment_rows(segment).ok_or_else(|| {
                                Error::corrupt(
                                    &path,
                                    format!(
                                        "log record {} deletes from unknown segment {segment}",
                                        rec.lsn
                                    ),
                                )
                            })?;
                            if rows.max().is_some_and(|r| u64::from(r) >= n) {
                                return Err(Error::corrupt(
                                    &path,
                                    format!(
                                        "log record {} deletes rows past the end of segment {segment}",
                                        rec.lsn
                                    ),
                                ));
                            }
                            t.delete(segment, &rows).map_err(|e| {
                                Error::corrupt(&path, format!("log record {}: {e}", rec.lsn))
                            })?;
                        }
                    }
                }
            }
        }
        let _ = replayed;
        let max_seq = wal_seqs
            .last()
            .copied()
            .unwrap_or(0)
            .max(m.wal_first_seq.saturating_sub(1));
        let shared = Shared {
            dir,
            vfs,
            opts,
            _lock: lock,
            version: RwLock::new(Arc::new(version)),
            commit: Mutex::new(CommitState {
                next_lsn: last_lsn + 1,
                durable_lsn: last_lsn,
                ..CommitState::default()
            }),
            commit_cv: Condvar::new(),
            mutation: Mutex::new(()),
            next_segment_id: AtomicU64::new(next_segment_id),
            persisted: Mutex::new(Persisted {
                manifest_version: m.version,
                next_table_id: m.next_table_id,
                wal_seq: max_seq,
                dv_files,
            }),
            signal: Mutex::new(None),
            background_error: Mutex::new(None),
        };
        // 3. Start a fresh log file, write what was replayed to segments and
        //    publish a manifest: the old log files, torn tails included, go.
        {
            let _m = shared.mutation.lock();
            shared.checkpoint_locked(|_, _| Ok(()))?;
        }
        shared.remove_orphans()?;
        Ok(shared)
    }

    /// Whether some table's in-memory rows passed a flush threshold.
    fn needs_flush(&self) -> bool {
        let v = self.version.read();
        v.tables.values().any(|t| {
            t.memory_bytes() >= self.opts.flush_threshold_bytes
                || t.memory_batches() >= self.opts.flush_threshold_batches
        })
    }

    fn poison(&self, e: &Error) {
        let mut c = self.commit.lock();
        if c.poisoned.is_none() {
            c.poisoned = Some(e.to_string());
        }
        self.commit_cv.notify_all();
    }

    /// Commits a mutation; returns (lsn, whether a flush threshold was passed).
    fn commit_mutation(&self, m: Mutation) -> Result<(u64, bool)> {
        // Validate and encode outside the commit lock.
        let snap = Arc::clone(&self.version.read());
        let mut appends = Vec::new();
        for (name, batch) in m.appends {
            let t = snap
                .tables
                .get(&name)
                .ok_or_else(|| Error::TableNotFound(name.clone()))?;
            t.meta.check_batch(&batch)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = RecordBatch::try_new(Arc::clone(&t.meta.schema), batch.columns().to_vec())
                .map_err(|e| Error::SchemaMismatch(e.to_string()))?;
            let ipc = encode_ipc(&batch)?;
            appends.push((t.meta.id, batch, ipc));
        }
        let mut deletes = Vec::new();
        for (name, ids) in m.deletes {
            let t = snap
                .tables
                .get(&name)
                .ok_or_else(|| Error::TableNotFound(name.clone()))?;
            let mut per: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
            for id in ids {
                let (seg, row) = split_row_id(id);
                per.entry(seg).or_default().insert(row);
            }
            for (seg, rows) in per {
                let n = t.segment_rows(seg).ok_or_else(|| {
                    Error::InvalidInput(format!("row id names segment {seg}, which table \"{name}\" does not have (stale row id?)"))
                })?;
                if rows.max().is_some_and(|r| u64::from(r) >= n) {
                    return Err(Error::InvalidInput(format!(
                        "row id past the end of segment {seg} of table \"{name}\""
                    )));
                }
                let bytes = bitmap_bytes(&rows)?;
                deletes.push((t.meta.id, seg, rows, bytes));
            }
        }
        if appends.is_empty() && deletes.is_empty() {
            let c = self.commit.lock();
            return Ok((c.durable_lsn, false));
        }
        let touched: Vec<u64> = appends.iter().map(|a| a.0).collect();

        let mut c = self.commit.lock();
        if let Some(p) = &c.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        let v = Arc::clone(&self.version.read());
        let mut ops = Vec::new();
        let mut apply = Vec::new();
        for (table, batch, ipc) in appends {
            if v.table_by_id(table).is_none() {
                return Err(Error::TableNotFound(format!("(dropped table {table})")));
            }
            let next_id = &self.next_segment_id;
            let slot = c
                .active
                .entry(table)
                .or_insert_with(|| (next_id.fetch_add(1, Ordering::SeqCst), 0));
            let (segment, first_row) = *slot;
            slot.1 += batch.num_rows() as u64;
            ops.push(WalOp::Append {
                table,
                segment,
                first_row,
                ipc,
            });
            apply.push(Apply::Append {
                table,
                segment,
                first_row,
                batch,
            });
        }
        for (table, segment, rows, bytes) in deletes {
            ops.push(WalOp::Delete {
                table,
                segment,
                rows: bytes,
            });
            apply.push(Apply::Delete {
                table,
                segment,
                rows,
            });
        }
        let lsn = c.next_lsn;
        let bytes = wal::encode_record(lsn, &WalCommit { ops })?;
        c.next_lsn += 1;
        c.queue.push(Pending {
            lsn,
            bytes,
            ops: apply,
        });
        loop {
            if c.durable_lsn >= lsn {
                break;
            }
            if let Some(p) = &c.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            if !c.leader {
                self.lead(&mut c);
                continue;
            }
            self.commit_cv.wait(&mut c);
        }
        drop(c);
        let v = self.version.read();
        let flush = touched.iter().any(|id| {
            v.table_by_id(*id).is_some_and(|t| {
                t.memory_bytes() >= self.opts.flush_threshold_bytes
                    || t.memory_batches() >= self.opts.flush_threshold_batches
            })
        });
        Ok((lsn, flush))
    }

    /// Writes and fsyncs everything queued, then applies it. Called with the
    /// commit lock held; releases it during the I/O.
    fn lead(&self, c: &mut MutexGuard<'_, CommitState>) {
        let batch = std::mem::take(&mut c.queue);
        let Some(last) = batch.last().map(|p| p.lsn) else {
            return;
        };
        let mut wal = c.wal.take();
        c.leader = true;
        let result = MutexGuard::unlocked(c, || -> Result<()> {
            let w = wal
                .as_mut()
                .ok_or_else(|| Error::Poisoned("no log file is open".into()))?;
            let mut buf = Vec::with_capacity(batch.iter().map(|p| p.bytes.len()).sum());
            for p in &batch {
                buf.extend_from_slice(&p.bytes);
            }
            w.append(&buf)?;
            w.sync()?;
            self.apply(batch)
        });
        c.wal = wal;
        c.leader = false;
        match result {
            Ok(()) => c.durable_lsn = last,
            Err(e) => {
                if c.poisoned.is_none() {
                    c.poisoned = Some(e.to_string());
                }
            }
        }
        self.commit_cv.notify_all();
    }

    fn apply(&self, batch: Vec<Pending>) -> Result<()> {
        let mut v = self.version.write();
        let mut next = (**v).clone();
        for p in batch {
            for op in p.ops {
                match op {
                    Apply::Append {
                        table,
                        segment,
                        first_row,
                        batch,
                    } => next
                        .table_by_id_mut(table)
                        .ok_or_else(|| Error::TableNotFound(format!("table id {table}")))?
                        .append(segment, first_row, batch)?,
                    Apply::Delete {
                        table,
                        segment,
                        rows,
                    } => next
                        .table_by_id_mut(table)
                        .ok_or_else(|| Error::TableNotFound(format!("table id {table}")))?
                        .delete(segment, &rows)?,
                }
            }
        }
        *v = Arc::new(next);
        Ok(())
    }

    /// Flushes every in-memory segment, lets `change` edit the tables, and
    /// publishes the result as a new manifest. Caller holds `mutation`.
    pub(crate) fn checkpoint_locked(
        &self,
        change: impl FnOnce(&mut Plan, &mut u64) -> Result<()>,
    ) -> Result<()> {
        // 1. Barrier: drain the commit queue, rotate the log, seal memory.
        let flushed_lsn;
        let new_seq;
        {
            let mut c = self.commit.lock();
            loop {
                if c.leader {
                    self.commit_cv.wait(&mut c);
                } else if !c.queue.is_empty() {
                    self.lead(&mut c);
                } else {
                    break;
                }
            }
            if let Some(p) = &c.poisoned {
                return Err(Error::Poisoned(p.clone()));
            }
            new_seq = self.persisted.lock().wal_seq + 1;
            match WalWriter::create(self.vfs.as_ref(), &self.dir, new_seq) {
                Ok(w) => c.wal = Some(w),
                Err(e) => {
                    c.poisoned = Some(e.to_string());
                    c.wal = None;
                    self.commit_cv.notify_all();
                    return Err(e);
                }
            }
            self.persisted.lock().wal_seq = new_seq;
            c.active.clear();
            flushed_lsn = c.durable_lsn;
            let mut v = self.version.write();
            let mut next = (**v).clone();
            for t in next.tables.values_mut() {
                if t.memory.iter().any(|m| !m.sealed) {
                    for m in &mut Arc::make_mut(t).memory {
                        m.sealed = true;
                    }
                }
            }
            *v = Arc::new(next);
        }
        let result = self.finish_checkpoint(flushed_lsn, new_seq, change);
        if let Err(e) = &result
            && !matches!(
                e,
                Error::TableExists(_)
                    | Error::TableNotFound(_)
                    | Error::InvalidInput(_)
                    | Error::Conflict(_)
                    | Error::ColumnNotFound { .. }
            )
        {
            self.poison(e);
        }
        result
    }

    fn finish_checkpoint(
        &self,
        flushed_lsn: u64,
        new_seq: u64,
        change: impl FnOnce(&mut Plan, &mut u64) -> Result<()>,
    ) -> Result<()> {
        let base = Arc::clone(&self.version.read());
        // 2. Write sealed in-memory segments as files.
        let mut tables = BTreeMap::new();
        let mut fresh: Vec<Arc<Segment>> = Vec::new();
        for (name, t) in &base.tables {
            let mut segments = t.segments.clone();
            for m in t.memory.iter().filter(|m| m.sealed && m.rows > 0) {
                let batches: Vec<RecordBatch> = m
                    .batches
                    .iter()
                    .map(|b| conform(b, &t.meta.schema))
                    .collect::<Result<_>>()?;
                segment::write(
                    self.vfs.as_ref(),
                    &self.dir,
                    m.id,
                    &t.meta.schema,
                    &batches,
                    &t.meta.options,
                )?;
                let seg = Arc::new(Segment::open(
                    Arc::clone(&self.vfs),
                    &self.dir,
                    m.id,
                    m.rows,
                )?);
                fresh.push(Arc::clone(&seg));
                segments.push(SegmentView {
                    seg,
                    deletes: Arc::clone(&m.deletes),
                    dv: None,
                });
            }
            tables.insert(
                name.clone(),
                Arc::new(TableVersion {
                    meta: Arc::clone(&t.meta),
                    segments,
                    memory: Vec::new(),
                }),
            );
        }
        let mut plan = Plan {
            tables,
            catalog: Arc::clone(&base.catalog),
        };
        let (old_version, mut next_table_id) = {
            let p = self.persisted.lock();
            (p.manifest_version, p.next_table_id)
        };
        change(&mut plan, &mut next_table_id)?;
        let new_version = old_version + 1;

        // 3. Persist changed deletion vectors.
        let mut dv_written = false;
        let mut new_dv_files = HashMap::new();
        for t in plan.tables.values_mut() {
            for s in &mut Arc::make_mut(t).segments {
                if s.dv_dirty() {
                    if s.deletes.is_empty() {
                        s.dv = None;
                    } else {
                        dv::write(
                            self.vfs.as_ref(),
                            &self.dir,
                            s.seg.id(),
                            new_version,
                            &s.deletes,
                        )?;
                        s.dv = Some(DvEntry {
                            version: new_version,
                            count: s.deletes.len(),
                        });
                        dv_written = true;
                    }
                }
                if let Some(d) = s.dv {
                    new_dv_files.insert(s.seg.id(), d.version);
                }
            }
        }
        if dv_written {
            self.vfs.sync_dir(&self.dir)?;
        }

        // 4. Publish the manifest.
        let mut entries = Vec::with_capacity(plan.tables.len());
        for t in plan.tables.values() {
            entries.push(TableEntry {
                id: t.meta.id,
                name: t.meta.name.clone(),
                schema_ipc: schema_to_ipc(&t.meta.schema)?,
                options: t.meta.options.clone(),
                segments: t
                    .segments
                    .iter()
                    .map(|s| SegmentEntry {
                        id: s.seg.id(),
                        rows: s.seg.rows(),
                        file_len: s.seg.file_len(),
                        dv: s.dv,
                    })
                    .collect(),
            });
        }
        let m = Manifest {
            version: new_version,
            next_segment_id: self.next_segment_id.load(Ordering::SeqCst),
            next_table_id,
            flushed_lsn,
            wal_first_seq: new_seq,
            tables: entries,
            catalog: plan.catalog.to_vec(),
        };
        manifest::publish(self.vfs.as_ref(), &self.dir, &m)?;

        // 5. Install: the new segments replace the sealed memory; rows
        //    appended since the barrier stay in memory.
        let live_ids: HashSet<u64> = plan
            .tables
            .values()
            .flat_map(|t| t.segments.iter().map(|s| s.seg.id()))
            .collect();
        // A segment written from memory just now that the plan dropped (its
        // table was replaced or dropped) was never published: its file goes
        // with its last handle, below.
        for seg in &fresh {
            if !live_ids.contains(&seg.id()) {
                seg.mark_obsolete();
            }
        }
        {
            let mut v = self.version.write();
            let mut next = Version {
                manifest_version: new_version,
                tables: BTreeMap::new(),
                catalog: Arc::clone(&plan.catalog),
            };
            for (name, t) in &plan.tables {
                let mut t = (**t).clone();
                if let Some(cur) = v.table_by_id(t.meta.id) {
                    t.memory = cur
                        .memory
                        .iter()
                        .filter(|m| !m.sealed)
                        .cloned()
                        .collect::<Vec<MemView>>();
                }
                next.tables.insert(name.clone(), Arc::new(t));
            }
            for t in v.tables.values() {
                for s in &t.segments {
                    if !live_ids.contains(&s.seg.id()) {
                        s.seg.mark_obsolete();
                    }
                }
            }
            *v = Arc::new(next);
        }

        // 6. Remove what the new manifest no longer needs.
        let old_dv = {
            let mut p = self.persisted.lock();
            p.manifest_version = new_version;
            p.next_table_id = next_table_id;
            std::mem::replace(&mut p.dv_files, new_dv_files.clone())
        };
        for (seg, ver) in old_dv {
            if new_dv_files.get(&seg) != Some(&ver) {
                self.remove_quietly(&self.dir.join(dv::file_name(seg, ver)));
            }
        }
        for name in self.vfs.list(&self.dir)? {
            let stale_wal = wal::parse_file_name(&name).is_some_and(|s| s < new_seq);
            let stale_manifest = manifest::parse_file_name(&name).is_some_and(|v| v < new_version);
            if stale_wal || stale_manifest {
                self.remove_quietly(&self.dir.join(&name));
            }
        }
        Ok(())
    }

    fn remove_quietly(&self, path: &Path) {
        // A file that cannot be removed now is an orphan the next open removes.
        let _ = self.vfs.remove(path);
    }

    /// Deletes files no manifest references (left by a crash).
    fn remove_orphans(&self) -> Result<()> {
        let v = Arc::clone(&self.version.read());
        let p = self.persisted.lock();
        let live_segments: HashSet<u64> = v
            .tables
            .values()
            .flat_map(|t| t.segments.iter().map(|s| s.seg.id()))
            .collect();
        for name in self.vfs.list(&self.dir)? {
            let orphan = name.ends_with(".tmp")
                || (name.starts_with("seg-")
                    && !live_segments
                        .iter()
                        .any(|id| segment::file_name(*id) == name))
                || dv::parse_file_name(&name)
                    .is_some_and(|(s, ver)| p.dv_files.get(&s) != Some(&ver))
                || manifest::parse_file_name(&name).is_some_and(|ver| ver != p.manifest_version)
                || wal::parse_file_name(&name).is_some_and(|s| s < p.wal_seq);
            if orphan {
                self.remove_quietly(&self.dir.join(&name));
            }
        }
        Ok(())
    }

    /// Rewrites segments: with `force`, every segment with deleted rows and
    /// all small segments (or, with `all`, every segment of `only`);
    /// otherwise only past the background thresholds. Caller holds `mutation`.
    pub(crate) fn compact_locked(
        &self,
        only: Option<&str>,
        force: bool,
        all: bool,
    ) -> Result<CompactionReport> {
        let wanted = |t: &TableVersion| -> Vec<SegmentView> {
            let target = self.opts.target_segment_rows.max(1);
            let is_small = |s: &SegmentView| (s.seg.rows() as usize) < target / 2;
            // Small segments merge with others of their size only (by
            // bytes: a table of few wide rows, such as a segment's kept
            // members, is small by rows forever). Merging every small
            // segment each time rewrote a growing table whole at each
            // merge; tier by tier, each byte is rewritten a few times.
            let tier = if force {
                None
            } else {
                let mut counts: HashMap<u32, usize> = HashMap::new();
                for s in t.segments.iter().filter(|s| is_small(s)) {
                    *counts.entry(size_tier(s.seg.file_len())).or_default() += 1;
                }
                counts
                    .into_iter()
                    .filter(|(_, n)| *n >= self.opts.compaction_min_small_segments)
                    .map(|(tier, _)| tier)
                    .min()
            };
            let small = t.segments.iter().filter(|s| is_small(s)).count();
            let merge_small = if force { small >= 2 } else { tier.is_some() };
            t.segments
                .iter()
                .filter(|s| {
                    let ratio = s.deletes.len() as f64 / s.seg.rows().max(1) as f64;
                    let mergeable =
                        is_small(s) && tier.is_none_or(|tier| size_tier(s.seg.file_len()) == tier);
                    all || (merge_small && mergeable)
                        || (force && !s.deletes.is_empty())
                        || (!s.deletes.is_empty() && ratio >= self.opts.compaction_delete_ratio)
                })
                .cloned()
                .collect()
        };
        let applies = |name: &str| only.is_none_or(|o| o == name);
        if !force {
            // Background: only act (and flush) when some table needs it.
            let v = Arc::clone(&self.version.read());
            if !v
                .tables
                .iter()
                .any(|(n, t)| applies(n) && !wanted(t).is_empty())
            {
                return Ok(CompactionReport::default());
            }
        }
        self.checkpoint_locked(|_, _| Ok(()))?;
        let base = Arc::clone(&self.version.read());
        let target = self.opts.target_segment_rows.max(1);
        let mut report = CompactionReport::default();
        let mut replaced: HashMap<String, (Vec<u64>, Vec<SegmentView>)> = HashMap::new();
        for (name, t) in &base.tables {
            if !applies(name) {
                continue;
            }
            let victims = wanted(t);
            if victims.is_empty() {
                continue;
            }
            // Read the victims' live rows and write them out again.
            let subset = TableVersion {
                meta: Arc::clone(&t.meta),
                segments: victims.iter().map(|s| (*s).clone()).collect(),
                memory: Vec::new(),
            };
            let snap = TableSnapshot::from_version(Arc::new(subset));
            let mut sink = SegmentSink::new(self, Arc::clone(&t.meta), target);
            for part in snap.scan(&ScanOptions::default())?.partitions {
                for b in part {
                    sink.push(b?)?;
                }
            }
            let written = sink.finish()?;
            report.segments_removed += victims.len();
            report.segments_written += written.len();
            report.rows_purged += victims.iter().map(|s| s.deletes.len()).sum::<u64>();
            replaced.insert(
                name.clone(),
                (victims.iter().map(|s| s.seg.id()).collect(), written),
            );
        }
        if replaced.is_empty() {
            return Ok(report);
        }
        let result = self.checkpoint_locked(move |plan, _| {
            for (name, (gone, new)) in replaced {
                if let Some(t) = plan.tables.get_mut(&name) {
                    let t = Arc::make_mut(t);
                    t.segments.retain(|s| !gone.contains(&s.seg.id()));
                    t.segments.extend(new);
                }
            }
            Ok(())
        });
        result.map(|()| report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BinaryArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::{TIER_FLOOR_BYTES, size_tier};
    use crate::sim::SimVfs;
    use crate::{Options, ScanOptions, Store, TableOptions};

    #[test]
    fn size_tiers_are_factors_of_four_above_the_floor() {
        assert_eq!(size_tier(0), 0);
        assert_eq!(size_tier(TIER_FLOOR_BYTES - 1), 0);
        assert_eq!(size_tier(TIER_FLOOR_BYTES), 1);
        assert_eq!(size_tier(4 * TIER_FLOOR_BYTES - 1), 1);
        assert_eq!(size_tier(4 * TIER_FLOOR_BYTES), 2);
        assert!(size_tier(u64::MAX) < 64);
    }

    /// A table of few wide rows (small by rows forever): the background
    /// merges the new small files together, not the big one they follow.
    #[test]
    fn the_background_merges_small_segments_of_one_size_tier() {
        let opts = Options {
            background: false,
            compaction_min_small_segments: 3,
            ..Options::default()
        };
        let store = Store::open_with("/db", opts, Arc::new(SimVfs::new())).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "members",
            DataType::Binary,
            false,
        )]));
        store
            .create_table("t", Arc::clone(&schema), TableOptions::default())
            .unwrap();
        let wide = vec![7u8; 1_500_000];
        let add = |n: usize| {
            for _ in 0..n {
                let col = BinaryArray::from_iter_values([wide.as_slice()]);
                store
                    .append(
                        "t",
                        &RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(col)]).unwrap(),
                    )
                    .unwrap();
                store.checkpoint().unwrap();
            }
        };
        let segments = || -> Vec<u64> {
            let scan = store
                .table("t")
                .unwrap()
                .scan(&ScanOptions::default())
                .unwrap();
            scan.partitions.iter().map(|p| p.segment_id()).collect()
        };
        let background = || {
            let sh = store.shared();
            let _m = sh.mutation.lock();
            sh.compact_locked(None, false, false).unwrap()
        };
        add(2);
        assert_eq!(background().segments_removed, 0, "two of tier 0");
        add(1);
        assert_eq!(background().segments_removed, 3);
        let merged = segments();
        assert_eq!(merged.len(), 1, "4.5 MB: tier 1");
        add(3);
        let report = background();
        assert_eq!(report.segments_removed, 3, "only the three new files");
        let now = segments();
        assert_eq!(now.len(), 2);
        assert!(now.contains(&merged[0]), "the tier-1 file stays: {now:?}");
        assert_eq!(store.table("t").unwrap().row_count(), 6);
        // COMPACT merges every small segment.
        assert_eq!(store.compact().unwrap().segments_removed, 2);
        assert_eq!(segments().len(), 1);
    }
}
