//! `ARCHIVE`: rows past their table's retention move to Parquet files kept
//! with the database, queryable as `archive.<table>`, and still covered by
//! `ERASE PROFILE`.
//!
//! ## An archive, step by step ([`archive`])
//!
//! 1. Under the store's write lock, the rows of the table whose retention
//!    column is older than now minus the retention are read (with their
//!    row ids) from one snapshot.
//! 2. They are written to one Parquet file (Snappy-compressed) under
//!    `<db>/archive/<schema.table>/`, durably (temporary name, fsync,
//!    rename).
//! 3. One commit deletes them from the table and lists the file in
//!    `archive_files` (file, source, rows, archived_at). A crash before
//!    the commit leaves an unlisted file, removed at the next open; after
//!    it, the rows are in the archive and not in the table. Never both.
//! 4. The table is compacted at once, so the rows leave its files.
//!
//! `archive.<table>` reads every listed file of the table (its current
//! columns: a column added since reads NULL), with `profile_id` mapped to
//! the current profile as the table's own reads are. `ERASE PROFILE`
//! rewrites each archive file holding the person's rows without them (a
//! new file listed in the erasure's own commit; the old file removed right
//! after), so the purge of an archive is immediate.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array, new_null_array,
};
use tessera_sql::datafusion::arrow::compute::{cast, filter_record_batch};
use tessera_sql::datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type,
};
use tessera_sql::datafusion::catalog::streaming::StreamingTable;
use tessera_sql::datafusion::execution::TaskContext;
use tessera_sql::datafusion::parquet::arrow::ArrowWriter;
use tessera_sql::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_sql::datafusion::parquet::basic::Compression;
use tessera_sql::datafusion::parquet::file::properties::WriterProperties;
use tessera_sql::datafusion::physical_plan::SendableRecordBatchStream;
use tessera_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tessera_sql::datafusion::physical_plan::streaming::PartitionStream;
use tessera_sql::hook::Hooks;
use tessera_sql::parser::Archive;
use tessera_sql::storage::{Mutation, ROW_ID_COLUMN, ScanOptions, Snapshot, Store, TableOptions};
use tessera_sql::{QueryOutput, SqlEngine, SqlError};

use crate::error::{EngineError, Result};
use crate::identity::graph::now_micros;
use crate::space::ReadOnlyHook;
use crate::unify::{PROFILE_ID, storage_name};

/// The list of live archive files.
pub const FILES_TABLE: &str = "public.archive_files";
/// The schema archived tables are read in.
const SCHEMA: &str = "archive";

fn files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new(
            "archived_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]))
}

/// One listed archive file.
#[derive(Debug, Clone)]
struct Listed {
    row_id: u64,
    file: String,
    source: String,
}

/// The live archive files, as of `snapshot`.
fn listed(snapshot: &Snapshot) -> Result<Vec<Listed>> {
    let Ok(t) = snapshot.table(FILES_TABLE) else {
        return Ok(Vec::new());
    };
    let scan = t.scan(&ScanOptions {
        projection: Some(vec!["file".into(), "source".into()]),
        row_ids: true,
        ..ScanOptions::default()
    })?;
    let mut out = Vec::new();
    for b in scan.collect()? {
        let file = b.column(0).as_string::<i32>();
        let source = b.column(1).as_string::<i32>();
        let ids = b
            .column_by_name(ROW_ID_COLUMN)
            .map(|c| c.as_primitive::<UInt64Type>().clone())
            .unwrap_or_else(|| UInt64Array::from(Vec::<u64>::new()));
        for i in 0..b.num_rows() {
            out.push(Listed {
                row_id: ids.value(i),
                file: file.value(i).to_string(),
                source: source.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// The name a source's archive is read under: `archive.web_events` for
/// `public.web_events`, `archive.crm_contacts` for `crm.contacts`.
pub fn archive_name(source: &str) -> String {
    match source.split_once('.') {
        Some((s, t)) if s == tessera_sql::DEFAULT_SCHEMA => format!("{SCHEMA}.{t}"),
        Some((s, t)) => format!("{SCHEMA}.{s}_{t}"),
        None => format!("{SCHEMA}.{source}"),
    }
}

/// The tables (storage names) with archived rows.
pub fn archived_sources(engine: &SqlEngine) -> Result<HashSet<String>> {
    Ok(listed(&engine.store().snapshot())?
        .into_iter()
        .map(|l| l.source)
        .collect())
}

/// At open: protects the list, removes files no commit listed (a crash
/// between writing a file and its commit), and provides `archive.*`.
pub fn open(engine: &SqlEngine) -> Result<()> {
    let store = engine.store();
    if store.table(FILES_TABLE).is_err() {
        return Ok(());
    }
    protect(engine);
    let live = listed(&store.snapshot())?;
    let names: HashSet<&str> = live.iter().map(|l| l.file.as_str()).collect();
    for folder in store.list_side_files("")? {
        // Something else than a folder of archive files is not ours.
        let Ok(files) = store.list_side_files(&folder) else {
            continue;
        };
        for f in files {
            let rel = format!("{folder}/{f}");
            if !names.contains(rel.as_str()) {
                store.remove_side_file(&rel)?;
            }
        }
    }
    let sources: HashSet<&str> = live.iter().map(|l| l.source.as_str()).collect();
    for s in sources {
        provide(engine, s)?;
    }
    Ok(())
}

fn protect(engine: &SqlEngine) {
    engine.hooks().set(
        FILES_TABLE,
        Some(Arc::new(ReadOnlyHook::new(
            "the list of archive files".to_string(),
        ))),
    );
}

/// The schema `archive` and the list, created on the first archive.
async fn ensure(engine: &SqlEngine) -> Result<()> {
    if engine.store().table(FILES_TABLE).is_err() {
        if engine.name_taken(FILES_TABLE) {
            return Err(EngineError::DuplicateObject(format!(
                "a table or view named \"{FILES_TABLE}\" exists; ARCHIVE lists its files under \
                 that name: rename yours first"
            )));
        }
        engine
            .store()
            .create_table(FILES_TABLE, files_schema(), TableOptions::default())?;
        engine.refresh_table(FILES_TABLE)?;
    }
    protect(engine);
    engine
        .execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .await?;
    Ok(())
}

/// Opens archive file `file`: its schema and a reader of its batches (a
/// file that is not Parquet is a corrupt archive).
fn open_file(
    store: &Store,
    file: &str,
) -> Result<(
    SchemaRef,
    tessera_sql::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReader,
)> {
    let corrupt = |e: tessera_sql::datafusion::parquet::errors::ParquetError| {
        EngineError::corrupt_table(file, e.to_string())
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(store.read_side_file(file)?))
            .map_err(corrupt)?;
    let schema = Arc::clone(builder.schema());
    Ok((schema, builder.build().map_err(corrupt)?))
}

/// Reads one archive file, shaped to `schema` (columns by name; missing
/// ones NULL), its `profile_id` mapped by the source's hook.
fn read_file(
    store: &Store,
    hooks: &Hooks,
    source: &str,
    file: &str,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let (_, reader) = open_file(store, file)?;
    let hook = hooks.get(source);
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match b.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
                Some(c) => cast(c, f.data_type()),
                None => Ok(new_null_array(f.data_type(), b.num_rows())),
            })
            .collect::<Result<_, _>>()?;
        let shaped = RecordBatch::try_new(Arc::clone(schema), columns)?;
        out.push(match &hook {
            Some(h) => h.map_read(shaped)?,
            None => shaped,
        });
    }
    Ok(out)
}

/// One archive file as a partition of `archive.<table>`.
#[derive(Debug)]
struct FilePartition {
    store: Store,
    hooks: Hooks,
    source: String,
    file: String,
    schema: SchemaRef,
}

impl PartitionStream for FilePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (store, hooks, source, file, schema) = (
            self.store.clone(),
            self.hooks.clone(),
            self.source.clone(),
            self.file.clone(),
            Arc::clone(&self.schema),
        );
        let batches = futures::stream::once(async move {
            let items: Vec<_> = match read_file(&store, &hooks, &source, &file, &schema) {
                Ok(b) => b.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e.into_datafusion())],
            };
            futures::stream::iter(items)
        })
        .flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// (Re)provides `archive.<table>` over the listed files of `source`.
fn provide(engine: &SqlEngine, source: &str) -> Result<()> {
    let store = engine.store();
    let files: Vec<String> = listed(&store.snapshot())?
        .into_iter()
        .filter(|l| l.source == source)
        .map(|l| l.file)
        .collect();
    let schema = match store.table(source) {
        Ok(t) => t.schema(),
        // The table was dropped: its archive keeps the first file's columns.
        Err(_) => match files.first() {
            Some(f) => open_file(store, f)?.0,
            None => return Ok(()),
        },
    };
    let partitions: Vec<Arc<dyn PartitionStream>> = files
        .into_iter()
        .map(|file| {
            Arc::new(FilePartition {
                store: store.clone(),
                hooks: engine.hooks().clone(),
                source: source.to_string(),
                file,
                schema: Arc::clone(&schema),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let table = StreamingTable::try_new(schema, partitions).map_err(SqlError::from)?;
    engine.provide_table(&archive_name(source), Some(Arc::new(table)))?;
    Ok(())
}

fn parquet(batches: &[RecordBatch], schema: SchemaRef) -> Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let fail = |e: tessera_sql::datafusion::parquet::errors::ParquetError| {
        EngineError::InvalidOption(format!("the archive file cannot be written: {e}"))
    };
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(fail)?;
    for b in batches {
        w.write(b).map_err(fail)?;
    }
    w.into_inner().map_err(fail)
}

fn without_row_ids(b: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..b.num_columns())
        .filter(|i| b.schema().field(*i).name() != ROW_ID_COLUMN)
        .collect();
    Ok(b.project(&keep)?)
}

fn file_row(file: &str, source: &str, rows: i64, at: i64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        files_schema(),
        vec![
            Arc::new(StringArray::from(vec![file])),
            Arc::new(StringArray::from(vec![source])),
            Arc::new(Int64Array::from(vec![rows])),
            Arc::new(TimestampMicrosecondArray::from(vec![at])),
        ],
    )?)
}

/// `ARCHIVE [table]`.
pub async fn archive(engine: &SqlEngine, stmt: &Archive) -> Result<QueryOutput> {
    let only = match &stmt.table {
        Some(t) => {
            let name = storage_name(t)?;
            if engine.store().table(&name).is_err() {
                return Err(EngineError::Sql(SqlError::UndefinedTable(format!(
                    "relation \"{t}\" does not exist"
                ))));
            }
            Some(name)
        }
        None => None,
    };
    let retentions: Vec<_> = engine
        .retentions()
        .into_iter()
        .filter(|(t, _)| only.as_ref().is_none_or(|o| o == t))
        .collect();
    if let Some(t) = &only
        && retentions.is_empty()
    {
        return Err(EngineError::Sql(SqlError::NotInPrerequisiteState(format!(
            "{t} has no retention: ALTER TABLE {t} SET (retention = '13 months', retention_column = …) first"
        ))));
    }
    let mut tables = Vec::new();
    let mut counts = Vec::new();
    let mut files = Vec::new();
    for (table, r) in retentions {
        ensure(engine).await?;
        let (n, file) = archive_table(engine, &table, &r)?;
        tables.push(archive_name(&table));
        counts.push(n as i64);
        files.push(file);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("archive", DataType::Utf8, false),
        Field::new("rows_archived", DataType::Int64, false),
        Field::new("file", DataType::Utf8, true),
    ]));
    let total: i64 = counts.iter().sum();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(tables)),
            Arc::new(Int64Array::from(counts)),
            Arc::new(StringArray::from(files)),
        ],
    )?;
    Ok(QueryOutput {
        schema,
        batches: vec![batch],
        tag: format!("ARCHIVE {total}"),
    })
}

/// Archives the expired rows of one table: (rows, file written).
fn archive_table(
    engine: &SqlEngine,
    table: &str,
    r: &tessera_sql::retention::Retention,
) -> Result<(u64, Option<String>)> {
    let store = engine.store();
    let mut w = store.writer();
    let snapshot = w.snapshot();
    let t = snapshot.table(table)?;
    let schema = t.schema();
    let Ok(field) = schema.field_with_name(&r.column) else {
        return Ok((0, None));
    };
    let batches = t
        .scan(&ScanOptions {
            predicate: Some(r.expired_now(field.data_type())?),
            row_ids: true,
            ..ScanOptions::default()
        })?
        .collect()?;
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for b in &batches {
        if let Some(c) = b.column_by_name(ROW_ID_COLUMN) {
            ids.extend_from_slice(c.as_primitive::<UInt64Type>().values());
        }
        if b.num_rows() > 0 {
            rows.push(without_row_ids(b)?);
        }
    }
    if ids.is_empty() {
        return Ok((0, None));
    }
    let at = now_micros();
    let file = format!("{table}/{at}-{}.parquet", snapshot.manifest_version());
    store.write_side_file(&file, &parquet(&rows, Arc::clone(&schema))?)?;
    let n = ids.len() as u64;
    let mut m = Mutation::new();
    m.delete(table, ids);
    m.append(FILES_TABLE, file_row(&file, table, n as i64, at)?);
    if let Err(e) = w.commit(m) {
        // Unlisted: the next open would remove it anyway.
        let _ = store.remove_side_file(&file);
        return Err(e.into());
    }
    drop(w);
    store.compact_table(table)?;
    provide(engine, table)?;
    Ok((n, Some(file)))
}

/// What an erasure did to the archive.
#[derive(Debug, Default)]
pub struct ArchiveErasure {
    /// (archive name, rows erased) per archived table.
    pub rows: Vec<(String, u64)>,
    /// The erased rows, with the index of their source in the space.
    pub removed: Vec<(usize, RecordBatch)>,
    /// Files replaced: removed once the erasure is committed.
    pub replaced: Vec<String>,
    /// Sources whose `archive.*` table must be provided again.
    pub sources: Vec<String>,
}

/// Rewrites, into `m`, every archive file of `spec`'s sources that holds
/// rows of the profiles `ids` (stored ids, merged ones included).
pub fn erase_rows(
    store: &Store,
    snapshot: &Snapshot,
    spec: &crate::unify::UnifySpec,
    ids: &HashSet<i64>,
    m: &mut Mutation,
) -> Result<ArchiveErasure> {
    let mut out = ArchiveErasure::default();
    for l in listed(snapshot)? {
        let Some(source_index) = spec.sources.iter().position(|s| s.table == l.source) else {
            continue;
        };
        let (schema, reader) = open_file(store, &l.file)?;
        let mut kept = Vec::new();
        let mut gone = 0u64;
        let mut total = 0u64;
        for b in reader {
            let b = b?;
            total += b.num_rows() as u64;
            let Some(pid) = b.column_by_name(PROFILE_ID) else {
                kept.push(b);
                continue;
            };
            let pid = cast(pid, &DataType::Int64)?;
            let pid = pid.as_primitive::<Int64Type>();
            let keep: tessera_sql::datafusion::arrow::array::BooleanArray = pid
                .iter()
                .map(|v| Some(!v.is_some_and(|v| ids.contains(&v))))
                .collect();
            let not = tessera_sql::datafusion::arrow::compute::not(&keep)?;
            let removed = filter_record_batch(&b, &not)?;
            gone += removed.num_rows() as u64;
            if removed.num_rows() > 0 {
                out.removed.push((source_index, removed));
            }
            kept.push(filter_record_batch(&b, &keep)?);
        }
        if gone == 0 {
            continue;
        }
        m.delete(FILES_TABLE, vec![l.row_id]);
        if total > gone {
            let at = now_micros();
            let file = format!("{}/{at}-e{}.parquet", l.source, snapshot.manifest_version());
            store.write_side_file(&file, &parquet(&kept, schema)?)?;
            m.append(
                FILES_TABLE,
                file_row(&file, &l.source, (total - gone) as i64, at)?,
            );
        }
        out.rows.push((archive_name(&l.source), gone));
        out.replaced.push(l.file);
        if !out.sources.contains(&l.source) {
            out.sources.push(l.source);
        }
    }
    Ok(out)
}

/// After an erasure's commit: removes the replaced files and provides the
/// archives again.
pub fn erased(engine: &SqlEngine, done: &ArchiveErasure) -> Result<()> {
    for f in &done.replaced {
        engine.store().remove_side_file(f)?;
    }
    for s in &done.sources {
        provide(engine, s)?;
    }
    Ok(())
}
