//! Table metadata: name, Arrow schema and storage options.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a table is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// Columns that always get a bitmap index, whatever their cardinality
    /// (`CREATE INDEX` adds to this list).
    pub indexed_columns: Vec<String>,
    /// Index low-cardinality columns (at most
    /// [`AUTO_INDEX_MAX_DISTINCT`](crate::index::AUTO_INDEX_MAX_DISTINCT)
    /// distinct values in a segment) without being asked.
    pub auto_index: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            indexed_columns: Vec::new(),
            auto_index: true,
        }
    }
}

/// A table's identity, schema and options.
#[derive(Debug, Clone)]
pub struct TableMeta {
    /// Stable id, never reused.
    pub id: u64,
    /// Name (unique in the store).
    pub name: String,
    /// The columns, in order.
    pub schema: SchemaRef,
    /// Storage options.
    pub options: TableOptions,
}

impl TableMeta {
    /// Checks that `batch` has exactly the table's columns and types, and no
    /// NULL in a NOT NULL column.
    pub fn check_batch(&self, batch: &RecordBatch) -> Result<()> {
        let want = self.schema.fields();
        let got = batch.schema_ref().fields();
        if want.len() != got.len() {
            return Err(Error::SchemaMismatch(format!(
                "table \"{}\" has {} columns, the batch has {}",
                self.name,
                want.len(),
                got.len()
            )));
        }
        for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
            if w.name() != g.name() || w.data_type() != g.data_type() {
                return Err(Error::SchemaMismatch(format!(
                    "column {} of table \"{}\" is \"{}\" {}, the batch has \"{}\" {}",
                    i + 1,
                    self.name,
                    w.name(),
                    w.data_type(),
                    g.name(),
                    g.data_type()
                )));
            }
            if !w.is_nullable() && batch.column(i).null_count() > 0 {
                return Err(Error::NotNullViolation {
                    table: self.name.clone(),
                    column: w.name().clone(),
                });
            }
        }
        Ok(())
    }
}

/// Encodes a schema as an Arrow IPC stream holding only the schema message.
pub(crate) fn schema_to_ipc(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, schema)
        .map_err(|e| Error::InvalidInput(format!("cannot encode schema: {e}")))?;
    w.finish()
        .map_err(|e| Error::InvalidInput(format!("cannot encode schema: {e}")))?;
    drop(w);
    Ok(out)
}

/// Decodes a schema written by [`schema_to_ipc`].
pub(crate) fn schema_from_ipc(bytes: &[u8], path: &std::path::Path) -> Result<SchemaRef> {
    let reader = StreamReader::try_new(bytes, None)
        .map_err(|e| Error::corrupt(path, format!("cannot decode table schema: {e}")))?;
    Ok(Arc::clone(&reader.schema()))
}
