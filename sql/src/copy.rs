//! `COPY`: loading files into tables and writing tables or queries to files.
//!
//! ```text
//! COPY table [ ( column [, …] ) ] FROM 'file' [ [ WITH ] ( option [, …] ) ]
//! COPY { table [ ( column [, …] ) ] | ( query ) } TO 'file' [ [ WITH ] ( option [, …] ) ]
//!
//! option: FORMAT { csv | text | json | parquet } | HEADER [ boolean ]
//!       | DELIMITER 'c' | NULL 'marker' | QUOTE 'c' | ESCAPE 'c'
//! ```
//! Without `FORMAT`, the file's extension decides (`.csv`, `.json`/`.ndjson`/
//! `.jsonl`, `.parquet`), else PostgreSQL's tab-separated text format.
//!
//! A load is atomic: rows are parsed into the table's types, written to new
//! segment files, and published in one manifest version
//! ([`Store::bulk_load`](tessera_storage::Store::bulk_load)); the first bad
//! value aborts it with SQLSTATE 22P02 and a message naming the line and
//! column, and nothing of the file is kept.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{CopyLegacyOption, CopyOption};

use crate::error::{Result, SqlError};

/// Rows parsed per batch.
const BATCH_ROWS: usize = 64 * 1024;

/// File formats `COPY` reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values (RFC 4180 quoting).
    Csv,
    /// PostgreSQL's text format: tab-separated, `\N` for NULL.
    Text,
    /// Newline-delimited JSON, one object per line.
    Json,
    /// Apache Parquet.
    Parquet,
}

/// The options of one `COPY`.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// File format.
    pub format: Format,
    /// First line holds column names (CSV, text).
    pub header: bool,
    /// Field separator.
    pub delimiter: u8,
    /// Quote character (CSV).
    pub quote: u8,
    /// Escape character (CSV).
    pub escape: Option<u8>,
    /// The marker for NULL (CSV: empty; text: `\N`).
    pub null: String,
}

fn byte(c: char, what: &str) -> Result<u8> {
    u8::try_from(u32::from(c))
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| {
            SqlError::InvalidParameter(format!("COPY {what} must be a single ASCII character"))
        })
}

impl CopyOptions {
    /// Reads the options of a `COPY` statement for `path`.
    pub fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption], path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let mut format = match ext.as_deref() {
            Some("csv") => Format::Csv,
            Some("json" | "ndjson" | "jsonl") => Format::Json,
            Some("parquet") => Format::Parquet,
            _ => Format::Text,
        };
        let (mut header, mut delimiter, mut quote, mut escape, mut null) =
            (None, None, b'"', None, None);
        for o in options {
            match o {
                CopyOption::Format(f) => {
                    format = match f.value.to_ascii_lowercase().as_str() {
                        "csv" => Format::Csv,
                        "text" => Format::Text,
                        "json" | "ndjson" => Format::Json,
                        "parquet" => Format::Parquet,
                        other => {
                            return Err(SqlError::InvalidParameter(format!(
                                "COPY format \"{other}\" is not known; use csv, text, json or parquet"
                            )));
                        }
                    }
                }
                CopyOption::Header(h) => header = Some(*h),
                CopyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyOption::Quote(c) => quote = byte(*c, "quote")?,
                CopyOption::Escape(c) => escape = Some(byte(*c, "escape")?),
                CopyOption::Null(n) => null = Some(n.clone()),
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(SqlError::Unsupported(format!("COPY option {other}"))),
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Csv(_) => format = Format::Csv,
                CopyLegacyOption::Delimiter(c) => delimiter = Some(byte(*c, "delimiter")?),
                CopyLegacyOption::Null(n) => null = Some(n.clone()),
                other => return Err(SqlError::Unsupported(format!("COPY option {other}"))),
            }
        }
        let text = format == Format::Text;
        Ok(CopyOptions {
            format,
            header: header.unwrap_or(false),
            delimiter: delimiter.unwrap_or(if text { b'\t' } else { b',' }),
            quote,
            escape,
            null: null.unwrap_or_else(|| if text { "\\N".into() } else { String::new() }),
        })
    }
}

/// What a [`Progress`] report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `COPY … FROM`: bytes of the file read, of its size.
    Read,
    /// `COPY … TO`: rows written, of the rows to write.
    Written,
}

/// Reports how far a `COPY` has come: (what, done, total).
pub type Progress = Arc<dyn Fn(Step, u64, u64) + Send + Sync>;

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| SqlError::File {
        path: path.to_path_buf(),
        source: e,
    })
}

fn parse_error(path: &Path, e: impl std::fmt::Display) -> SqlError {
    SqlError::InvalidText(format!("COPY from {}: {e}", path.display()))
}

fn not_parquet(path: &Path, e: impl std::fmt::Display) -> SqlError {
    SqlError::BadFileFormat(format!(
        "COPY from {}: not a readable Parquet file: {e}",
        path.display()
    ))
}

/// Reads `path` as batches of `file_schema` (the columns named in the COPY,
/// in the table's types, all nullable: NOT NULL is checked by [`widen`] with
/// a proper message), reporting progress.
pub fn read(
    path: &Path,
    opts: &CopyOptions,
    file_schema: SchemaRef,
    progress: Option<Progress>,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch>> + Send>> {
    let file_schema = Arc::new(Schema::new(
        file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let file = open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let counter = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: file,
        read: Arc::clone(&counter),
    };
    let report = move || {
        if let Some(p) = &progress {
            p(Step::Read, counter.load(Ordering::Relaxed), size);
        }
    };
    let path_buf = path.to_path_buf();
    match opts.format {
        Format::Csv | Format::Text => {
            let null = regex::Regex::new(&format!("^{}$", regex::escape(&opts.null)))
                .map_err(|e| SqlError::InvalidParameter(format!("COPY NULL marker: {e}")))?;
            let mut fmt = arrow::csv::reader::Format::default()
                .with_header(opts.header)
                .with_delimiter(opts.delimiter)
                .with_quote(opts.quote)
                .with_null_regex(null);
            if let Some(e) = opts.escape {
                fmt = fmt.with_escape(e);
            }
            // NUMERIC columns are read as text and converted here, so that a
            // value that does not fit is reported with its line (Arrow's
            // parser reports decimal overflow without one).
            let read_schema = Arc::new(Schema::new(
                file_schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Decimal128(..) => {
                            f.as_ref().clone().with_data_type(DataType::Utf8)
                        }
                        _ => f.as_ref().clone(),
                    })
                    .collect::<Vec<_>>(),
            ));
            let csv = arrow::csv::ReaderBuilder::new(Arc::clone(&read_schema))
                .with_format(fmt)
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::with_capacity(1 << 20, reader))
                .map_err(|e| parse_error(&path_buf, e))?;
            let header = usize::from(opts.header);
            let names: Vec<String> = file_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let mut rows_before = 0u64;
            Ok(Box::new(csv.map(move |b| {
                report();
                let b = b.map_err(|e| csv_error(&path_buf, &names, header, e))?;
                let first_line = rows_before + header as u64 + 1;
                rows_before += b.num_rows() as u64;
                decimals_from_text(b, &file_schema, &path_buf, first_line)
            })))
        }
        Format::Json => {
            let json = arrow::json::ReaderBuilder::new(Arc::clone(&file_schema))
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::with_capacity(1 << 20, reader))
                .map_err(|e| parse_error(&path_buf, e))?;
            Ok(Box::new(json.map(move |b| {
                report();
                b.map_err(|e| json_error(&path_buf, &file_schema, e))
            })))
        }
        Format::Parquet => {
            let file = open(path)?;
            let builder =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    file,
                )
                .map_err(|e| not_parquet(&path_buf, e))?;
            let reader = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| not_parquet(&path_buf, e))?;
            Ok(Box::new(reader.map(move |b| {
                report();
                let b = b.map_err(|e| not_parquet(&path_buf, e))?;
                reshape(&b, &file_schema, &path_buf)
            })))
        }
    }
}

/// Converts the text columns read for NUMERIC columns; a value that does
/// not parse is 22P02, one that does not fit the precision 22003, each
/// naming its line (`first_line` is the batch's first row's line).
fn decimals_from_text(
    batch: RecordBatch,
    target: &SchemaRef,
    path: &Path,
    first_line: u64,
) -> Result<RecordBatch> {
    if !target
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Decimal128(..)))
    {
        return Ok(batch);
    }
    let mut cols = batch.columns().to_vec();
    for (i, f) in target.fields().iter().enumerate() {
        if !matches!(f.data_type(), DataType::Decimal128(..)) {
            continue;
        }
        let text = &cols[i];
        let dec = arrow::compute::cast(text, f.data_type())?;
        if dec.null_count() > text.null_count()
            && let Some(strings) = text.as_string_opt::<i32>()
            && let Some(row) = (0..dec.len()).find(|r| dec.is_null(*r) && text.is_valid(*r))
        {
            let value = strings.value(row);
            let where_ = format!(
                "COPY from {}, line {}, column \"{}\"",
                path.display(),
                first_line + row as u64,
                f.name()
            );
            let numeric = value.trim().parse::<f64>().is_ok_and(f64::is_finite);
            return Err(if numeric {
                SqlError::NumericOutOfRange(format!(
                    "{where_}: numeric field overflow: '{value}' does not fit {}",
                    crate::types::sql_name(f.data_type())
                ))
            } else {
                SqlError::InvalidText(format!(
                    "{where_}: invalid input syntax for type numeric: '{value}'"
                ))
            });
        }
        cols[i] = dec;
    }
    crate::types::batch_with_rows(target, cols, batch.num_rows())
}

/// Parquet columns matched to the target columns by name and cast to their
/// types (a value that does not fit is an error, never a silent NULL).
fn reshape(batch: &RecordBatch, target: &SchemaRef, path: &Path) -> Result<RecordBatch> {
    // Every column is looked for before any is converted: a missing column
    // is reported as such, not as a type error of another.
    let found = target
        .fields()
        .iter()
        .map(|f| {
            batch.column_by_name(f.name()).ok_or_else(|| {
                SqlError::UndefinedColumn(format!(
                    "COPY from {}: the file has no column \"{}\"",
                    path.display(),
                    f.name()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cols = found
        .into_iter()
        .zip(target.fields())
        .map(|(col, f)| crate::types::cast_to(col, f))
        .collect::<Result<Vec<ArrayRef>>>()?;
    crate::types::batch_with_rows(target, cols, batch.num_rows())
}

/// Names the file line (counting the header) and the column of a CSV
/// parse error; arrow reports a 0-based column and the data row.
fn csv_error(
    path: &Path,
    names: &[String],
    header: usize,
    e: arrow::error::ArrowError,
) -> SqlError {
    let msg = e.to_string();
    let re =
        regex::Regex::new(r"parsing value '(.*)' as type '(.*)' for column (\d+) at line (\d+)");
    if let Ok(re) = re
        && let Some(c) = re.captures(&msg)
    {
        let col: usize = c[3].parse().unwrap_or(usize::MAX);
        let line: usize = c[4].parse().unwrap_or(0) + header;
        let name = names
            .get(col)
            .map_or_else(|| format!("{}", col + 1), |n| format!("\"{n}\""));
        return SqlError::InvalidText(format!(
            "COPY from {}, line {line}, column {name}: invalid value '{}' for type {}",
            path.display(),
            &c[1],
            &c[2]
        ));
    }
    parse_error(path, msg)
}

/// Finds the first line of a JSON file that does not decode, to name it.
fn json_error(path: &Path, schema: &SchemaRef, e: arrow::error::ArrowError) -> SqlError {
    let Ok(file) = File::open(path) else {
        return parse_error(path, e);
    };
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let one = arrow::json::ReaderBuilder::new(Arc::clone(schema))
            .build(line.as_bytes())
            .and_then(|mut r| r.next().transpose());
        if let Err(le) = one {
            return SqlError::InvalidText(format!(
                "COPY from {}, line {}: {le}",
                path.display(),
                i + 1
            ));
        }
    }
    parse_error(path, e)
}

/// Widens batches of the COPY's columns to all of the table's columns (the
/// others NULL, which a NOT NULL column refuses).
/// `first_row` numbers the batch's first row in the input (1-based), for
/// messages.
pub fn widen(
    batch: RecordBatch,
    table: &SchemaRef,
    table_name: &str,
    first_row: u64,
) -> Result<RecordBatch> {
    for f in table.fields().iter().filter(|f| !f.is_nullable()) {
        let nulls = batch
            .column_by_name(f.name())
            .map_or(batch.num_rows(), |c| c.null_count());
        if nulls > 0 {
            return Err(SqlError::Storage(
                tessera_storage::Error::NotNullViolation {
                    table: table_name.to_string(),
                    column: f.name().clone(),
                },
            ));
        }
    }
    let cols: Vec<ArrayRef> = table
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => Arc::clone(c),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    let out = crate::types::batch_with_rows(table, cols, batch.num_rows())?;
    crate::types::check_lengths(&out, table, first_row)?;
    Ok(out)
}

/// List columns (TEXT[]) as PostgreSQL writes arrays in CSV and text:
/// `{a,"b c",NULL}` (elements quoted when they hold a delimiter, a quote,
/// a backslash, white space or are empty; NULL unquoted).
pub fn arrays_as_text(batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{AsArray, StringBuilder};
    use arrow::datatypes::{DataType, Field};
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::List(_)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let DataType::List(_) = f.data_type() else {
            fields.push(f.as_ref().clone());
            cols.push(Arc::clone(c));
            continue;
        };
        let list = c.as_list::<i32>();
        let mut out = StringBuilder::new();
        for i in 0..list.len() {
            if list.is_null(i) {
                out.append_null();
                continue;
            }
            let items = arrow::compute::cast(&list.value(i), &DataType::Utf8)?;
            let items = items.as_string::<i32>();
            let mut text = String::from("{");
            for j in 0..items.len() {
                if j > 0 {
                    text.push(',');
                }
                if items.is_null(j) {
                    text.push_str("NULL");
                    continue;
                }
                let v = items.value(j);
                let plain = !v.is_empty()
                    && !v.eq_ignore_ascii_case("null")
                    && !v
                        .chars()
                        .any(|ch| matches!(ch, ',' | '"' | '\\' | '{' | '}') || ch.is_whitespace());
                if plain {
                    text.push_str(v);
                } else {
                    text.push('"');
                    text.push_str(&v.replace('\\', "\\\\").replace('"', "\\\""));
                    text.push('"');
                }
            }
            text.push('}');
            out.append_value(text);
        }
        fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
        cols.push(Arc::new(out.finish()));
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        cols,
    )?)
}

/// Writes batches to `path` (through a temporary file renamed into place),
/// reporting the rows written.
pub fn write(
    path: &Path,
    opts: &CopyOptions,
    schema: &Schema,
    batches: &[RecordBatch],
    progress: Option<Progress>,
) -> Result<u64> {
    let total: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let report = |rows: u64| {
        if let Some(p) = &progress {
            p(Step::Written, rows, total);
        }
    };
    report(0);
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let file = File::create(&tmp).map_err(|e| SqlError::File {
        path: tmp.clone(),
        source: e,
    })?;
    let mut rows = 0u64;
    let io = |e: arrow::error::ArrowError| {
        SqlError::InvalidText(format!("COPY to {}: {e}", path.display()))
    };
    match opts.format {
        Format::Csv | Format::Text => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(opts.header)
                .with_delimiter(opts.delimiter)
                .with_quote(opts.quote)
                .with_null(opts.null.clone())
                .build(std::io::BufWriter::new(file));
            for b in batches {
                w.write(&arrays_as_text(b)?).map_err(io)?;
                rows += b.num_rows() as u64;
                report(rows);
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(std::io::BufWriter::new(file));
            for b in batches {
                w.write(b).map_err(io)?;
                rows += b.num_rows() as u64;
                report(rows);
            }
            w.finish().map_err(io)?;
        }
        Format::Parquet => {
            let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(
                file,
                Arc::new(schema.clone()),
                None,
            )
            .map_err(|e| SqlError::InvalidText(format!("COPY to {}: {e}", path.display())))?;
            for b in batches {
                w.write(b).map_err(|e| {
                    SqlError::InvalidText(format!("COPY to {}: {e}", path.display()))
                })?;
                rows += b.num_rows() as u64;
                report(rows);
            }
            w.close()
                .map_err(|e| SqlError::InvalidText(format!("COPY to {}: {e}", path.display())))?;
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| SqlError::File {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(rows)
}
