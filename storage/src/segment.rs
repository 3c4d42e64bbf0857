//! Immutable segments: one file per segment holding an Arrow IPC file
//! (uncompressed, 64-byte aligned buffers, so columns are read zero-copy from
//! the mapping), the bitmap indexes, a metadata block (zone maps, index
//! directory) and a fixed 64-byte footer with the checksums.
//!
//! ```text
//! [ Arrow IPC file ][ index block ]*[ metadata block (postcard) ][ footer (64 B) ]
//! ```
//! The byte layout is drawn in `docs/storage.md`.

use std::collections::HashMap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, DictionaryArray, Int32Array, RecordBatch,
    StringArray,
};
use arrow::buffer::Buffer;
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{
    DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema, SchemaRef,
};
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow::ipc::{Block, convert::fb_to_schema, root_as_footer};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::appender::CrcAppender;
use crate::codec::{LeReader, PutLe, crc, from_postcard, to_postcard, to_usize};
use crate::error::{Error, Result};
use crate::index::{AUTO_INDEX_MAX_DISTINCT, ColumnIndex};
use crate::io::{Vfs, WritableFile};
use crate::table::TableOptions;
use crate::value::Value;
use crate::zonemap::ColumnStats;

/// Magic bytes opening the segment footer.
pub const SEGMENT_MAGIC: &[u8; 8] = b"TESSSEG1";
/// Current segment format version: 2 may store integer columns narrower
/// than their type ([`narrow_type`]); 1 never does, and is still read.
pub const SEGMENT_FORMAT: u32 = 2;
/// Oldest segment format version still read.
pub const SEGMENT_FORMAT_MIN: u32 = 1;
/// Field metadata key of a column stored narrower than its type: the
/// type's Arrow name (`Int64`, `Int32` or `Int16`).
pub const LOGICAL_TYPE_KEY: &str = "tessera.logical_type";
/// Size of the fixed footer at the end of every segment file.
pub const FOOTER_LEN: u64 = 64;
/// Rows per Arrow record batch inside a segment (the unit of decoding).
pub const BATCH_ROWS: usize = 256 * 1024;
/// String columns with at most this many distinct values (and no more than
/// half as many as rows) are dictionary-encoded.
pub const DICTIONARY_MAX_DISTINCT: usize = 1 << 16;

/// File name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("seg-{id:020}.tseg")
}

/// Where a column's bitmap index sits in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRef {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32C of the block.
    pub crc: u32,
    /// Distinct non-null values.
    pub distinct: u64,
}

/// What the segment records about one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    /// Column name.
    pub name: String,
    /// Zone map.
    pub stats: ColumnStats,
    /// Whether the column is stored dictionary-encoded.
    pub dictionary: bool,
    /// The bitmap index, if the column has one.
    pub index: Option<IndexRef>,
}

/// The metadata block of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Segment id (also in the file name).
    pub id: u64,
    /// Total rows.
    pub rows: u64,
    /// Rows of each Arrow record batch, in order.
    pub batch_rows: Vec<u64>,
    /// One entry per column, in schema order.
    pub columns: Vec<ColumnMeta>,
}

#[derive(Debug, Clone, Copy)]
struct Footer {
    ipc_len: u64,
    meta_offset: u64,
    meta_len: u64,
    ipc_crc: u32,
    meta_crc: u32,
    rows: u64,
}

impl Footer {
    /// Length of the IPC file with its padding to 8 bytes: the region the
    /// data checksum covers, where the index blocks begin.
    fn data_len(&self) -> u64 {
        self.ipc_len.div_ceil(8) * 8
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.put_u32(SEGMENT_FORMAT);
        out.put_u32(0); // flags, reserved
        out.put_u64(self.ipc_len);
        out.put_u64(self.meta_offset);
        out.put_u64(self.meta_len);
        out.put_u32(self.ipc_crc);
        out.put_u32(self.meta_crc);
        out.put_u64(self.rows);
        let c = crc(&out);
        out.put_u32(c);
        out.extend_from_slice(b"TSG1");
        out
    }

    fn decode(bytes: &[u8], path: &Path, file_len: u64) -> Result<Footer> {
        let mut r = LeReader::new(bytes, path);
        if r.bytes(8)? != SEGMENT_MAGIC {
            return Err(Error::corrupt(path, "segment footer magic is missing"));
        }
        let format = r.u32()?;
        let _flags = r.u32()?;
        let f = Footer {
            ipc_len: r.u64()?,
            meta_offset: r.u64()?,
            meta_len: r.u64()?,
            ipc_crc: r.u32()?,
            meta_crc: r.u32()?,
            rows: r.u64()?,
        };
        let stored = r.u32()?;
        if crc(&bytes[..56]) != stored {
            return Err(Error::corrupt(path, "segment footer checksum mismatch"));
        }
        if r.bytes(4)? != b"TSG1" {
            return Err(Error::corrupt(path, "segment end marker is missing"));
        }
        if !(SEGMENT_FORMAT_MIN..=SEGMENT_FORMAT).contains(&format) {
            return Err(Error::corrupt(
                path,
                format!("unsupported segment format version {format}"),
            ));
        }
        let end = f
            .meta_offset
            .checked_add(f.meta_len)
            .and_then(|e| e.checked_add(FOOTER_LEN));
        if f.data_len() > f.meta_offset || end != Some(file_len) {
            return Err(Error::corrupt(
                path,
                "segment footer offsets do not match the file length",
            ));
        }
        Ok(f)
    }
}

/// Encodes `batches` (all of `schema`) as segment `id` and writes the file
/// durably: temporary file, fsync, read-only, rename, directory fsync.
pub(crate) fn write(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u64,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: &TableOptions,
) -> Result<()> {
    let path = dir.join(file_name(id));
    let tmp = dir.join(format!("{}.tmp", file_name(id)));
    let mut f = vfs.create(&tmp)?;
    if let Err(e) = encode(id, schema, batches, options, f.as_mut()) {
        drop(f);
        // Best effort: a temporary file no manifest names is also removed
        // at the next open.
        let _ = vfs.remove(&tmp);
        return Err(e);
    }
    f.sync()?;
    drop(f);
    vfs.set_read_only(&tmp)?;
    vfs.rename(&tmp, &path)?;
    vfs.sync_dir(dir)
}

fn arrow_write_err(e: arrow::error::ArrowError) -> Error {
    Error::InvalidInput(format!("cannot encode segment: {e}"))
}

/// Writes the bytes of a segment file to `file`, streamed (the file's
/// bytes are never all in memory at once).
pub(crate) fn encode(
    id: u64,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: &TableOptions,
    file: &mut dyn WritableFile,
) -> Result<()> {
    let all = concat_batches(schema, batches).map_err(arrow_write_err)?;
    let rows = all.num_rows();
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut indexes: Vec<Option<ColumnIndex>> = Vec::new();
    let mut physical_fields = Vec::new();
    let mut physical_cols: Vec<ArrayRef> = Vec::new();
    for (field, col) in schema.fields().iter().zip(all.columns()) {
        let explicit = options.indexed_columns.iter().any(|c| c == field.name());
        let index = if explicit {
            ColumnIndex::build(col, None)
        } else if options.auto_index {
            ColumnIndex::build(col, Some(AUTO_INDEX_MAX_DISTINCT))
        } else {
            None
        };
        let dictionary = (*field.data_type() == DataType::Utf8)
            .then(|| dictionary_of(col, index.as_ref()))
            .flatten();
        let stats = match dictionary.as_ref().and_then(|d| d.as_any_dictionary_opt()) {
            Some(d) => ColumnStats::compute_with_values(col, d.values()),
            None => ColumnStats::compute(col),
        };
        let is_dictionary = dictionary.is_some();
        // A string column may be stored as a dictionary, a signed integer
        // column narrower ([`narrow_type`] is `None` for any other type).
        let (pf, pc) = if let Some(encoded) = dictionary {
            let dt = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            (Field::new(field.name(), dt, field.is_nullable()), encoded)
        } else if let Some(dt) = narrow_type(field.data_type(), &stats) {
            let encoded = cast(col, &dt).map_err(arrow_write_err)?;
            let mut meta = field.metadata().clone();
            meta.insert(LOGICAL_TYPE_KEY.to_string(), field.data_type().to_string());
            (
                Field::new(field.name(), dt, field.is_nullable()).with_metadata(meta),
                encoded,
            )
        } else {
            (field.as_ref().clone(), Arc::clone(col))
        };
        physical_fields.push(pf);
        physical_cols.push(pc);
        columns.push(ColumnMeta {
            name: field.name().clone(),
            stats,
            dictionary: is_dictionary,
            index: None,
        });
        indexes.push(index);
    }
    let physical = Arc::new(Schema::new(physical_fields));
    let encoded =
        RecordBatch::try_new(Arc::clone(&physical), physical_cols).map_err(arrow_write_err)?;

    // 1. The Arrow IPC file, uncompressed and 64-byte aligned.
    let mut out = CrcAppender::new(file);
    let opts = IpcWriteOptions::try_new(64, false, arrow::ipc::MetadataVersion::V5)
        .map_err(arrow_write_err)?;
    let mut batch_rows = Vec::new();
    let ipc = (|| -> std::result::Result<(), arrow::error::ArrowError> {
        let mut writer = FileWriter::try_new_with_options(&mut out, &physical, opts)?;
        let mut start = 0;
        while start < rows || (rows == 0 && batch_rows.is_empty()) {
            let len = BATCH_ROWS.min(rows - start);
            writer.write(&encoded.slice(start, len))?;
            batch_rows.push(len as u64);
            start += len;
            if rows == 0 {
                break;
            }
        }
        writer.finish()
    })();
    if let Err(e) = ipc {
        // The file's own error (disk full, a fault) before Arrow's wording.
        return Err(out.take_error().unwrap_or_else(|| arrow_write_err(e)));
    }
    let ipc_len = out.len();
    out.pad8()?;
    // The data checksum covers the IPC file and its padding: every byte of a
    // segment file is under some checksum.
    let ipc_crc = out.crc();

    // 2. Index blocks.
    for (meta, index) in columns.iter_mut().zip(&indexes) {
        if let Some(index) = index {
            let bytes = index.encode()?;
            meta.index = Some(IndexRef {
                offset: out.len(),
                len: bytes.len() as u64,
                crc: crc(&bytes),
                distinct: index.distinct() as u64,
            });
            out.put(&bytes)?;
        }
    }

    // 3. Metadata block and footer.
    let meta = SegmentMeta {
        id,
        rows: rows as u64,
        batch_rows,
        columns,
    };
    let meta_bytes = to_postcard(&meta, "segment metadata")?;
    let footer = Footer {
        ipc_len,
        meta_offset: out.len(),
        meta_len: meta_bytes.len() as u64,
        ipc_crc,
        meta_crc: crc(&meta_bytes),
        rows: rows as u64,
    };
    out.put(&meta_bytes)?;
    out.put(&footer.encode())?;
    out.drain()
}

/// The narrowest signed integer type holding every value of a signed
/// integer column of `logical` type with these statistics, when narrower
/// than `logical`. Scans filter such a column before widening what they
/// return, so a filter reads a half, a quarter or an eighth of the bytes.
pub fn narrow_type(logical: &DataType, stats: &ColumnStats) -> Option<DataType> {
    if !matches!(logical, DataType::Int16 | DataType::Int32 | DataType::Int64) {
        return None;
    }
    let (Some(Value::Int(lo)), Some(Value::Int(hi))) = (&stats.min, &stats.max) else {
        return None;
    };
    let fits = |min: i64, max: i64| min <= *lo && *hi <= max;
    let narrow = if fits(i8::MIN.into(), i8::MAX.into()) {
        DataType::Int8
    } else if fits(i16::MIN.into(), i16::MAX.into()) {
        DataType::Int16
    } else if fits(i32::MIN.into(), i32::MAX.into()) {
        DataType::Int32
    } else {
        return None;
    };
    (narrow.primitive_width() < logical.primitive_width()).then_some(narrow)
}

/// The type a column stored as `field` has for readers: the one its
/// metadata names when stored narrower, else its own.
pub(crate) fn logical_type(field: &Field) -> DataType {
    match field.metadata().get(LOGICAL_TYPE_KEY).map(String::as_str) {
        Some("Int64") => DataType::Int64,
        Some("Int32") => DataType::Int32,
        Some("Int16") => DataType::Int16,
        _ => field.data_type().clone(),
    }
}

/// `col`, an integer column a file stores narrower than its type, in that
/// type. A widening cast never fails, so it maps every value without the
/// per-value check (and validity rebuilt) of arrow's safe cast: several
/// times faster.
pub(crate) fn widen_int(col: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    fn unary<F, T>(col: &ArrayRef) -> ArrayRef
    where
        F: ArrowPrimitiveType,
        T: ArrowPrimitiveType,
        F::Native: Into<T::Native>,
    {
        Arc::new(col.as_primitive::<F>().unary::<_, T>(Into::into))
    }
    Ok(match (col.data_type(), to) {
        (DataType::Int8, DataType::Int16) => unary::<Int8Type, Int16Type>(col),
        (DataType::Int8, DataType::Int32) => unary::<Int8Type, Int32Type>(col),
        (DataType::Int8, DataType::Int64) => unary::<Int8Type, Int64Type>(col),
        (DataType::Int16, DataType::Int32) => unary::<Int16Type, Int32Type>(col),
        (DataType::Int16, DataType::Int64) => unary::<Int16Type, Int64Type>(col),
        (DataType::Int32, DataType::Int64) => unary::<Int32Type, Int64Type>(col),
        (from, to) => {
            return Err(Error::SchemaMismatch(format!(
                "a column stored as {from} is read as {to}: only narrower signed integers widen"
            )));
        }
    })
}

/// A string column as `Dictionary(Int32, Utf8)` when it has few distinct
/// values (at most [`DICTIONARY_MAX_DISTINCT`] and half its non-null rows),
/// else `None`. From its index when it has one (no hashing); otherwise in
/// one pass that counts the values and assigns their codes together.
fn dictionary_of(col: &ArrayRef, index: Option<&ColumnIndex>) -> Option<ArrayRef> {
    let rows = col.len() - col.null_count();
    if rows < 64 {
        return None;
    }
    let cap = DICTIONARY_MAX_DISTINCT.min(rows / 2);
    if let Some(idx) = index {
        if idx.distinct() > cap {
            return None;
        }
        if let Some(d) = idx.to_dictionary(col.len()) {
            return Some(d);
        }
    }
    let strings = col.as_string::<i32>();
    let mut codes_of: hashbrown::HashMap<&str, i32> = hashbrown::HashMap::new();
    let mut values: Vec<&str> = Vec::new();
    let mut codes: Vec<i32> = Vec::with_capacity(col.len());
    for s in strings.iter() {
        let code = match s {
            None => 0,
            Some(s) => match codes_of.get(s) {
                Some(c) => *c,
                None => {
                    if values.len() >= cap {
                        return None;
                    }
                    let c = i32::try_from(values.len()).ok()?;
                    codes_of.insert(s, c);
                    values.push(s);
                    c
                }
            },
        };
        codes.push(code);
    }
    let keys = Int32Array::new(codes.into(), col.nulls().cloned());
    let dict = DictionaryArray::<Int32Type>::try_new(
        keys,
        Arc::new(StringArray::from_iter_values(values)),
    )
    .ok()?;
    Some(Arc::new(dict))
}

/// Parses the metadata block of a whole segment file held in memory,
/// checking the footer and metadata checksums (for tools and tests).
pub fn read_meta(bytes: &[u8], path: &Path) -> Result<SegmentMeta> {
    let len = bytes.len() as u64;
    if len < FOOTER_LEN {
        return Err(Error::corrupt(
            path,
            "file is shorter than a segment footer",
        ));
    }
    let footer = Footer::decode(&bytes[bytes.len() - FOOTER_LEN as usize..], path, len)?;
    let start = to_usize(footer.meta_offset, path, "metadata offset")?;
    let end = start + to_usize(footer.meta_len, path, "metadata length")?;
    let meta = &bytes[start..end];
    if crc(meta) != footer.meta_crc {
        return Err(Error::corrupt(path, "segment metadata checksum mismatch"));
    }
    from_postcard(meta, path, "segment metadata")
}

/// A sealed segment file, opened: its metadata is in memory, its data is
/// mapped on first use, its indexes are loaded on first use.
#[derive(Debug)]
pub struct Segment {
    id: u64,
    path: PathBuf,
    vfs: Arc<dyn Vfs>,
    footer: Footer,
    meta: SegmentMeta,
    mapped: Mutex<Option<Arc<Mapped>>>,
    indexes: Mutex<HashMap<String, Arc<ColumnIndex>>>,
    obsolete: AtomicBool,
}

/// The mapped data of a segment and what is needed to decode it.
#[derive(Debug)]
pub(crate) struct Mapped {
    buffer: Buffer,
    schema: SchemaRef,
    version: arrow::ipc::MetadataVersion,
    dictionaries: Vec<Block>,
    batches: Vec<Block>,
}

impl Segment {
    /// Opens segment `id` in `dir`, checking its footer and metadata
    /// checksums and that it holds `rows` rows.
    pub(crate) fn open(vfs: Arc<dyn Vfs>, dir: &Path, id: u64, rows: u64) -> Result<Segment> {
        let path = dir.join(file_name(id));
        let len = vfs.len(&path)?;
        if len < FOOTER_LEN {
            return Err(Error::corrupt(
                &path,
                format!("file of {len} bytes is shorter than a segment footer"),
            ));
        }
        let fbytes = vfs.read_at(&path, len - FOOTER_LEN, FOOTER_LEN)?;
        let footer = Footer::decode(&fbytes, &path, len)?;
        let mbytes = vfs.read_at(&path, footer.meta_offset, footer.meta_len)?;
        if crc(&mbytes) != footer.meta_crc {
            return Err(Error::corrupt(&path, "segment metadata checksum mismatch"));
        }
        let meta: SegmentMeta = from_postcard(&mbytes, &path, "segment metadata")?;
        if meta.id != id || meta.rows != footer.rows || meta.rows != rows {
            return Err(Error::corrupt(
                &path,
                format!(
                    "segment says id {} with {} rows, the manifest expects id {id} with {rows} rows",
                    meta.id, meta.rows
                ),
            ));
        }
        if meta.batch_rows.iter().sum::<u64>() != meta.rows {
            return Err(Error::corrupt(
                &path,
                "segment batch sizes do not add up to its row count",
            ));
        }
        for c in &meta.columns {
            if let Some(ix) = &c.index
                && ix
                    .offset
                    .checked_add(ix.len)
                    .is_none_or(|end| ix.offset < footer.data_len() || end > footer.meta_offset)
            {
                return Err(Error::corrupt(
                    &path,
                    format!("index of column \"{}\" lies outside the index area", c.name),
                ));
            }
        }
        Ok(Segment {
            id,
            path,
            vfs,
            footer,
            meta,
            mapped: Mutex::new(None),
            indexes: Mutex::new(HashMap::new()),
            obsolete: AtomicBool::new(false),
        })
    }

    /// The segment id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of rows (deleted ones included).
    pub fn rows(&self) -> u64 {
        self.meta.rows
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata block.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.footer.meta_offset + self.footer.meta_len + FOOTER_LEN
    }

    /// Zone map of a column, if the segment has the column.
    pub fn stats(&self, column: &str) -> Option<ColumnStats> {
        self.meta
            .columns
            .iter()
            .find(|c| c.name == column)
            .map(|c| c.stats.clone())
    }

    /// Marks the file for deletion once the last reader drops it.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::SeqCst);
    }

    /// Verifies the data checksum with ordinary reads, then maps the file.
    pub(crate) fn mapped(&self) -> Result<Arc<Mapped>> {
        let mut slot = self.mapped.lock();
        if let Some(m) = slot.as_ref() {
            return Ok(Arc::clone(m));
        }
        let data_len = self.footer.data_len();
        let mismatch = || Error::corrupt(&self.path, "segment data checksum mismatch");
        if !self.vfs.maps_to_memory() {
            let data = self.vfs.read_at(&self.path, 0, data_len)?;
            if crc(&data) != self.footer.ipc_crc {
                return Err(mismatch());
            }
        }
        let buffer = self.vfs.map(&self.path)?;
        if buffer.len() as u64 != self.file_len() {
            return Err(Error::corrupt(
                &self.path,
                "segment file changed length while being opened",
            ));
        }
        if self.vfs.maps_to_memory() {
            // A copy in memory cannot fault: check the bytes just read.
            let data = usize::try_from(data_len)
                .ok()
                .and_then(|n| buffer.as_slice().get(..n))
                .ok_or_else(mismatch)?;
            if crc(data) != self.footer.ipc_crc {
                return Err(mismatch());
            }
        }
        let m = Arc::new(Mapped::parse(buffer, self.footer.ipc_len, &self.path)?);
        if m.batches.len() != self.meta.batch_rows.len() {
            return Err(Error::corrupt(
                &self.path,
                "segment holds a different number of batches than its metadata says",
            ));
        }
        *slot = Some(Arc::clone(&m));
        Ok(m)
    }

    /// A decoder for the given physical column projection, with the
    /// dictionaries it needs already read; reused for every batch of a scan.
    /// `trusted` skips per-array validation (see `mmap::segment_decoder`).
    pub(crate) fn decoder(
        &self,
        mapped: &Mapped,
        projection: &[usize],
        trusted: bool,
    ) -> Result<FileDecoder> {
        let mut decoder = crate::mmap::segment_decoder(
            Arc::clone(&mapped.schema),
            mapped.version,
            projection.to_vec(),
            trusted,
        );
        for block in &mapped.dictionaries {
            decoder
                .read_dictionary(block, &mapped.block(block, &self.path)?)
                .map_err(|e| {
                    Error::corrupt(&self.path, format!("cannot decode a dictionary: {e}"))
                })?;
        }
        Ok(decoder)
    }

    /// Decodes record batch `i` with its columns in their logical types
    /// (dictionary-encoded and narrow ones cast back).
    pub(crate) fn read_batch(
        &self,
        decoder: &FileDecoder,
        mapped: &Mapped,
        i: usize,
    ) -> Result<RecordBatch> {
        let batch = self.read_physical(decoder, mapped, i)?;
        let corrupt = |e: arrow::error::ArrowError| {
            Error::corrupt(&self.path, format!("cannot decode batch {i}: {e}"))
        };
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut cols = Vec::with_capacity(batch.num_columns());
        for (f, c) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            let logical = logical_type(f);
            if &logical == c.data_type() {
                cols.push(Arc::clone(c));
                fields.push(f.as_ref().clone());
            } else {
                cols.push(widen_int(c, &logical)?);
                fields.push(Field::new(f.name(), logical, f.is_nullable()));
            }
        }
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), cols, &opts)
            .map_err(corrupt)
    }

    /// Decodes record batch `i` as stored, but for dictionary-encoded
    /// columns, cast back to strings: an integer column stored narrower
    /// than its type keeps the narrow type, its field naming the logical
    /// one ([`logical_type`]). Scans filter such batches before widening.
    pub(crate) fn read_physical(
        &self,
        decoder: &FileDecoder,
        mapped: &Mapped,
        i: usize,
    ) -> Result<RecordBatch> {
        let corrupt = |e: arrow::error::ArrowError| {
            Error::corrupt(&self.path, format!("cannot decode batch {i}: {e}"))
        };
        let block = mapped
            .batches
            .get(i)
            .ok_or_else(|| Error::corrupt(&self.path, format!("no batch {i}")))?;
        let batch = decoder
            .read_record_batch(block, &mapped.block(block, &self.path)?)
            .map_err(corrupt)?
            .ok_or_else(|| Error::corrupt(&self.path, format!("batch {i} is empty")))?;
        let expected = self.meta.batch_rows.get(i).copied().unwrap_or(0);
        if batch.num_rows() as u64 != expected {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "batch {i} has {} rows, metadata says {expected}",
                    batch.num_rows()
                ),
            ));
        }
        if !batch
            .schema_ref()
            .fields()
            .iter()
            .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
        {
            return Ok(batch);
        }
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut cols = Vec::with_capacity(batch.num_columns());
        for (f, c) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            if let DataType::Dictionary(_, value) = f.data_type() {
                cols.push(cast(c, value).map_err(corrupt)?);
                fields.push(Field::new(
                    f.name(),
                    value.as_ref().clone(),
                    f.is_nullable(),
                ));
            } else {
                cols.push(Arc::clone(c));
                fields.push(f.as_ref().clone());
            }
        }
        let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), cols, &opts)
            .map_err(corrupt)
    }

    /// Row offset of each batch, plus the total at the end.
    pub(crate) fn batch_starts(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.meta.batch_rows.len() + 1);
        let mut acc = 0;
        out.push(0);
        for r in &self.meta.batch_rows {
            acc += r;
            out.push(acc);
        }
        out
    }

    /// The bitmap index of `column`, loaded (and checksummed) on first use.
    pub fn index(&self, column: &str) -> Result<Option<Arc<ColumnIndex>>> {
        let Some(ix) = self
            .meta
            .columns
            .iter()
            .find(|c| c.name == column)
            .and_then(|c| c.index.clone())
        else {
            return Ok(None);
        };
        if let Some(i) = self.indexes.lock().get(column) {
            return Ok(Some(Arc::clone(i)));
        }
        let bytes = self.vfs.read_at(&self.path, ix.offset, ix.len)?;
        if crc(&bytes) != ix.crc {
            return Err(Error::corrupt(
                &self.path,
                format!("bitmap index of column \"{column}\" checksum mismatch"),
            ));
        }
        let index = Arc::new(ColumnIndex::decode(&bytes, &self.path)?);
        self.indexes
            .lock()
            .insert(column.to_string(), Arc::clone(&index));
        Ok(Some(index))
    }

    /// Names of the indexed columns.
    pub fn indexed_columns(&self) -> Vec<&str> {
        self.meta
            .columns
            .iter()
            .filter(|c| c.index.is_some())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Physical column positions (in the file) of the given column names;
    /// `None` for a column the segment does not have (added later).
    pub(crate) fn positions(&self, names: &[&str]) -> Vec<Option<usize>> {
        names
            .iter()
            .map(|n| self.meta.columns.iter().position(|c| c.name == *n))
            .collect()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst) {
            // The last reader is gone; a failure leaves an orphan that the
            // next open removes.
            let _ = self.vfs.remove(&self.path);
        }
    }
}

impl Mapped {
    fn parse(buffer: Buffer, ipc_len: u64, path: &Path) -> Result<Mapped> {
        let ipc_len = to_usize(ipc_len, path, "IPC length")?;
        let corrupt = |what: String| Error::corrupt(path, what);
        let ipc = buffer
            .get(..ipc_len)
            .ok_or_else(|| corrupt("IPC region past end of file".into()))?;
        let end = ipc.len();
        if end < 10 {
            return Err(corrupt("IPC region too short".into()));
        }
        let mut trailer = [0u8; 10];
        trailer.copy_from_slice(&ipc[end - 10..end]);
        let footer_len =
            read_footer_length(trailer).map_err(|e| corrupt(format!("IPC trailer: {e}")))?;
        let fstart = (end - 10)
            .checked_sub(footer_len)
            .ok_or_else(|| corrupt("IPC footer length out of range".into()))?;
        let footer = root_as_footer(&ipc[fstart..end - 10])
            .map_err(|e| corrupt(format!("IPC footer: {e}")))?;
        let schema = Arc::new(fb_to_schema(
            footer
                .schema()
                .ok_or_else(|| corrupt("IPC footer has no schema".into()))?,
        ));
        let dictionaries = footer
            .dictionaries()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        let batches = footer
            .recordBatches()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        let version = footer.version();
        Ok(Mapped {
            buffer,
            schema,
            version,
            dictionaries,
            batches,
        })
    }

    fn block(&self, block: &Block, path: &Path) -> Result<Buffer> {
        let start = usize::try_from(block.offset()).ok();
        let len = usize::try_from(block.metaDataLength())
            .ok()
            .zip(usize::try_from(block.bodyLength()).ok());
        match (start, len) {
            (Some(s), Some((m, b)))
                if s.checked_add(m + b).is_some_and(|e| e <= self.buffer.len()) =>
            {
                Ok(self.buffer.slice_with_length(s, m + b))
            }
            _ => Err(Error::corrupt(path, "IPC block lies outside the file")),
        }
    }
}
