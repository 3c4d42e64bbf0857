//! Arrow batches to the wire, as they are produced.
//!
//! Rows are encoded by arrow-pg (text or binary per column, as the client
//! asked) one batch at a time: a query's result is never gathered in
//! memory, and the socket's backpressure slows the query down. Between
//! batches, and while a batch is being computed, the stream watches the
//! session's cancel signal and its statement timeout: a cancel stops the
//! query (its DataFusion stream is dropped), not only its planning.

use std::sync::Arc;
use std::time::Instant;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use tessera_engine::{QueryStream, SqlError};
use tessera_sql::datafusion::arrow::array::{ArrayRef, RecordBatch};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tessera_sql::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::WireError;
use super::session::Session;

/// The wire description of a result's columns.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    arrow_schema_to_pg_fields(schema, format, None)
}

/// Timestamps with a zone, moved to the session's `TimeZone` so they are
/// rendered there (as PostgreSQL renders timestamptz).
fn in_zone(batch: RecordBatch, tz: &str) -> Result<RecordBatch, WireError> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(z)) if z.as_ref() != tz))
    {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match f.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                let to = DataType::Timestamp(*unit, Some(tz.into()));
                cols.push(
                    tessera_sql::datafusion::arrow::compute::cast(c, &to)
                        .map_err(|e| WireError::Internal(e.to_string()))?,
                );
                fields.push(Field::new(f.name(), to, f.is_nullable()));
            }
            _ => {
                cols.push(Arc::clone(c));
                fields.push(f.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| WireError::Internal(e.to_string()))
}

fn pg_error(e: WireError) -> PgWireError {
    e.into()
}

/// The next batch of `stream`, unless the session is cancelled or its
/// deadline passes first.
pub async fn next_batch(
    stream: &mut tessera_sql::datafusion::physical_plan::SendableRecordBatchStream,
    session: &Session,
    deadline: Option<(Instant, std::time::Duration)>,
) -> Option<Result<RecordBatch, WireError>> {
    match session
        .interruptible(deadline, async { Ok(stream.next().await) })
        .await
    {
        Ok(Some(b)) => Some(b.map_err(|e| WireError::from(SqlError::from(e)))),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// A query's rows as a pgwire response, encoded batch by batch.
pub fn query_response(
    out: QueryStream,
    format: &Format,
    session: Arc<Session>,
    deadline: Option<(Instant, std::time::Duration)>,
    tag: &str,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields(&out.schema, format)?);
    let tz = session.get("timezone").unwrap_or_else(|_| "UTC".into());
    let rows = rows(out.stream, Arc::clone(&fields), session, deadline, tz);
    let mut response = QueryResponse::new(fields, rows);
    response.set_command_tag(tag);
    Ok(response)
}

fn rows(
    stream: tessera_sql::datafusion::physical_plan::SendableRecordBatchStream,
    fields: Arc<Vec<FieldInfo>>,
    session: Arc<Session>,
    deadline: Option<(Instant, std::time::Duration)>,
    tz: String,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send {
    futures::stream::unfold(Some(stream), move |state| {
        let session = Arc::clone(&session);
        let fields = Arc::clone(&fields);
        let tz = tz.clone();
        async move {
            let mut stream = state?;
            let item: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> =
                match next_batch(&mut stream, &session, deadline).await? {
                    Ok(batch) => match in_zone(batch, &tz) {
                        Ok(batch) => encode_recordbatch(fields, batch),
                        Err(e) => return Some((error_rows(e), None)),
                    },
                    Err(e) => return Some((error_rows(e), None)),
                };
            Some((futures::stream::iter(item), Some(stream)))
        }
    })
    .flatten()
}

fn error_rows(
    e: WireError,
) -> futures::stream::Iter<Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync>> {
    let it: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> =
        Box::new(std::iter::once(Err(pg_error(e))));
    futures::stream::iter(it)
}

/// How `COPY … TO STDOUT` writes rows.
#[derive(Debug, Clone)]
pub struct CopyText {
    /// CSV (else PostgreSQL's text format).
    pub csv: bool,
    /// Field separator.
    pub delimiter: u8,
    /// NULL marker.
    pub null: String,
    /// A first line with the column names (CSV).
    pub header: bool,
}

impl CopyText {
    fn field(&self, out: &mut Vec<u8>, value: &str) {
        if self.csv {
            let d = self.delimiter as char;
            let needs = value.is_empty()
                || value == self.null
                || value.contains([d, '"', '\n', '\r'])
                || value.starts_with(' ')
                || value.ends_with(' ');
            if needs {
                out.push(b'"');
                out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            } else {
                out.extend_from_slice(value.as_bytes());
            }
        } else {
            for b in value.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' if self.delimiter == b'\t' => out.extend_from_slice(b"\\t"),
                    b if b == self.delimiter => {
                        out.push(b'\\');
                        out.push(b);
                    }
                    b => out.push(b),
                }
            }
        }
    }

    /// The header line.
    pub fn header_line(&self, schema: &SchemaRef) -> Bytes {
        let mut line = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if i > 0 {
                line.push(self.delimiter);
            }
            self.field(&mut line, f.name());
        }
        line.push(b'\n');
        Bytes::from(line)
    }

    /// One line per row of `batch`.
    pub fn lines(&self, batch: &RecordBatch) -> Result<Vec<Bytes>, WireError> {
        let batch = tessera_sql::copy::arrays_as_text(batch)?;
        let options = FormatOptions::default().with_null("");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WireError::Internal(e.to_string()))?;
        let mut lines = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut line = Vec::with_capacity(64);
            for (i, (col, fmt)) in batch.columns().iter().zip(&formatters).enumerate() {
                if i > 0 {
                    line.push(self.delimiter);
                }
                if col.is_null(row) {
                    line.extend_from_slice(self.null.as_bytes());
                } else {
                    self.field(&mut line, &fmt.value(row).to_string());
                }
            }
            line.push(b'\n');
            lines.push(Bytes::from(line));
        }
        Ok(lines)
    }
}

/// `COPY … TO STDOUT`: a query's rows as CopyData messages, one per row,
/// produced batch by batch.
pub fn copy_out(
    out: QueryStream,
    text: CopyText,
    session: Arc<Session>,
    deadline: Option<(Instant, std::time::Duration)>,
) -> impl Stream<Item = PgWireResult<CopyData>> + Send {
    let header = text.header.then(|| text.header_line(&out.schema));
    let head = futures::stream::iter(header.map(|h| Ok(CopyData::new(h))));
    let body = futures::stream::unfold(Some(out.stream), move |state| {
        let session = Arc::clone(&session);
        let text = text.clone();
        async move {
            let mut stream = state?;
            let lines: Vec<PgWireResult<CopyData>> =
                match next_batch(&mut stream, &session, deadline).await? {
                    Ok(batch) => match text.lines(&batch) {
                        Ok(lines) => lines.into_iter().map(|l| Ok(CopyData::new(l))).collect(),
                        Err(e) => return Some((vec![Err(pg_error(e))], None)),
                    },
                    Err(e) => return Some((vec![Err(pg_error(e))], None)),
                };
            Some((lines, Some(stream)))
        }
    })
    .flat_map(futures::stream::iter);
    head.chain(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_csv_escaping() {
        let text = CopyText {
            csv: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
        };
        let mut out = Vec::new();
        text.field(&mut out, "a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
        let csv = CopyText {
            csv: true,
            delimiter: b',',
            null: String::new(),
            header: true,
        };
        let mut out = Vec::new();
        csv.field(&mut out, "say \"hi\", then");
        assert_eq!(out, b"\"say \"\"hi\"\", then\"");
        let mut out = Vec::new();
        csv.field(&mut out, "");
        assert_eq!(out, b"\"\"");
    }
}
