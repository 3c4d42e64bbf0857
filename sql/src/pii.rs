//! PII columns: tagged with `ALTER TABLE t ALTER COLUMN c SET PII`, masked
//! for readers without the `pii_reader` privilege, and every unmasked read
//! recorded.
//!
//! ## A read of a table with PII columns ([`TesseraTable::scan`](crate::provider::TesseraTable))
//!
//! 1. The session says who reads ([`PiiAccess`], set by the server for each
//!    connection from its role; an embedding program without one is the
//!    database's owner and reads everything).
//! 2. A reader without `pii_reader` gets each PII column masked: a keyed
//!    hash of the value, `pii_` and 16 hex digits for text, a 63-bit number
//!    for integers. The key is the database's own (32 random bytes in its
//!    catalog), so the same value masks the same way in every table and
//!    every query: joins, `GROUP BY` and `count(DISTINCT …)` still work,
//!    and the value cannot be looked up elsewhere. Filters on a masked
//!    column are evaluated on the masked values (never pushed down to the
//!    stored ones), and its statistics are hidden from the planner.
//! 3. A reader with it (or a superuser, or the owner) reads the values, and
//!    when the scan ends a row is appended to `pii_reads`: who, when, which
//!    table and columns, how many rows.
//!
//! Tags are kept in the catalog under `pii:columns:<schema.table>`
//! (postcard: format `u32` = 1, the column names), the key under
//! `pii:key`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int64Array, LargeStringArray, RecordBatch,
    StringArray, StringViewArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use tessera_storage::{Store, TableOptions};

use crate::error::{Result, SqlError};

/// Catalog key of the masking key.
pub(crate) const KEY: &str = "pii:key";
/// Catalog key prefix of a table's PII columns.
pub(crate) const TAG_PREFIX: &str = "pii:columns:";
const FORMAT: u32 = 1;
/// The audit of unmasked reads.
pub const AUDIT_TABLE: &str = "public.pii_reads";

/// Who reads, as a session's configuration says (`SessionConfig`
/// extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiAccess {
    /// Reads PII unmasked (`pii_reader`, a superuser).
    pub reader: bool,
    /// The role, for the audit.
    pub user: String,
}

impl PiiAccess {
    /// The embedding program: reads everything, recorded as `owner`.
    pub fn owner() -> Self {
        Self {
            reader: true,
            user: "owner".into(),
        }
    }
}

tokio::task_local! {
    /// Who runs the statement this task runs, when its session's
    /// configuration cannot say (statements the server runs through the
    /// shared engine on a role's behalf).
    pub static STATEMENT_ACCESS: PiiAccess;
}

/// Who reads: the session's configuration, else the statement's task, else
/// the owner (`None`).
pub fn access_of(config: Option<Arc<PiiAccess>>) -> Option<PiiAccess> {
    config
        .map(|a| (*a).clone())
        .or_else(|| STATEMENT_ACCESS.try_with(Clone::clone).ok())
}

#[derive(Debug, Default)]
struct State {
    key: Option<[u8; 32]>,
    columns: HashMap<String, BTreeSet<String>>,
    /// Functions that answer from an identifier's value (`unify`, …).
    probes: BTreeSet<String>,
}

/// The PII columns of an engine's tables and the masking key. Cheap to
/// clone (shared).
#[derive(Debug, Clone, Default)]
pub struct PiiTags {
    inner: Arc<RwLock<State>>,
}

impl PiiTags {
    /// From the catalog's extensions.
    pub(crate) fn load(extensions: &[(String, Vec<u8>)]) -> Self {
        let mut st = State::default();
        for (k, v) in extensions {
            if k == KEY {
                st.key = <[u8; 32]>::try_from(v.as_slice()).ok();
            } else if let Some(table) = k.strip_prefix(TAG_PREFIX)
                && let Ok((FORMAT, cols)) = postcard::from_bytes::<(u32, Vec<String>)>(v)
            {
                st.columns
                    .insert(table.to_string(), cols.into_iter().collect());
            }
        }
        Self {
            inner: Arc::new(RwLock::new(st)),
        }
    }

    /// Marks `function` as answering from a value given to it: while any
    /// column is tagged, a reader without `pii_reader` may not call it
    /// (it would tell whether a masked value is known).
    pub fn mark_probe(&self, function: &str) {
        self.inner.write().probes.insert(function.to_lowercase());
    }

    /// Refuses `stmt` for a reader without `pii_reader` if it calls a
    /// function marked with [`PiiTags::mark_probe`]. Checked before
    /// planning: a table function runs while the query is planned.
    pub(crate) fn check_probes(
        &self,
        stmt: &datafusion::sql::sqlparser::ast::Statement,
        access: Option<&PiiAccess>,
    ) -> Result<()> {
        use datafusion::sql::sqlparser::ast::{Expr, visit_expressions, visit_relations};
        use std::ops::ControlFlow;
        if access.is_none_or(|a| a.reader) || !self.any() {
            return Ok(());
        }
        let st = self.inner.read();
        let last = |n: &datafusion::sql::sqlparser::ast::ObjectName| {
            n.0.last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_lowercase())
                .unwrap_or_default()
        };
        let mut found = visit_expressions(stmt, |e| match e {
            Expr::Function(f) if st.probes.contains(&last(&f.name)) => {
                ControlFlow::Break(last(&f.name))
            }
            _ => ControlFlow::Continue(()),
        });
        if found.is_continue() {
            found = visit_relations(stmt, |r| {
                if st.probes.contains(&last(r)) {
                    ControlFlow::Break(last(r))
                } else {
                    ControlFlow::Continue(())
                }
            });
        }
        match found {
            ControlFlow::Break(f) => Err(SqlError::ReadOnly(format!(
                "permission denied: {f}() answers from identifier values, which this database masks for roles without pii_reader"
            ))),
            ControlFlow::Continue(()) => Ok(()),
        }
    }

    /// Whether any column of any table is tagged.
    pub fn any(&self) -> bool {
        !self.inner.read().columns.is_empty()
    }

    /// The PII columns of `table` (storage name).
    pub fn columns(&self, table: &str) -> BTreeSet<String> {
        self.inner
            .read()
            .columns
            .get(table)
            .cloned()
            .unwrap_or_default()
    }

    /// The masking key (none before the first column is tagged).
    pub fn key(&self) -> Option<[u8; 32]> {
        self.inner.read().key
    }

    pub(crate) fn set_key(&self, key: [u8; 32]) {
        self.inner.write().key = Some(key);
    }

    /// Records `table`'s tags; returns the catalog entry to store.
    pub(crate) fn set(&self, table: &str, cols: BTreeSet<String>) -> Result<Option<Vec<u8>>> {
        let entry = if cols.is_empty() {
            None
        } else {
            let list: Vec<&String> = cols.iter().collect();
            Some(postcard::to_allocvec(&(FORMAT, list)).map_err(|e| {
                SqlError::InvalidParameter(format!("the PII tags cannot be encoded: {e}"))
            })?)
        };
        let mut st = self.inner.write();
        if cols.is_empty() {
            st.columns.remove(table);
        } else {
            st.columns.insert(table.to_string(), cols);
        }
        Ok(entry)
    }
}

/// Whether a column of this type can be masked.
pub(crate) fn maskable(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Int64 => true,
        DataType::Dictionary(_, v) => maskable(v),
        _ => false,
    }
}

fn digest(key: &[u8; 32], value: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update([0u8]);
    h.update(value);
    h.finalize().into()
}

/// The masked form of a text value, written into `out` (20 ASCII bytes).
fn mask_into(key: &[u8; 32], value: &str, out: &mut [u8; 20]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest(key, value.as_bytes());
    out[..4].copy_from_slice(b"pii_");
    for (i, b) in d[..8].iter().enumerate() {
        out[4 + 2 * i] = HEX[usize::from(b >> 4)];
        out[5 + 2 * i] = HEX[usize::from(b & 15)];
    }
}

/// The masked form of a text value: `pii_` and 16 hex digits.
pub fn mask_text(key: &[u8; 32], value: &str) -> String {
    let mut buf = [0u8; 20];
    mask_into(key, value, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Masks every value of a text array into a builder (no allocation per
/// value).
fn mask_strings<'a>(
    key: &[u8; 32],
    values: impl Iterator<Item = Option<&'a str>>,
    n: usize,
) -> StringArray {
    let mut b = arrow::array::StringBuilder::with_capacity(n, n * 20);
    let mut buf = [0u8; 20];
    for v in values {
        match v {
            Some(v) => {
                mask_into(key, v, &mut buf);
                // The buffer is ASCII.
                b.append_value(std::str::from_utf8(&buf).unwrap_or_default());
            }
            None => b.append_null(),
        }
    }
    b.finish()
}

fn mask_int(key: &[u8; 32], value: i64) -> i64 {
    let d = digest(key, value.to_string().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 1) as i64
}

/// `array` with every value masked (NULLs stay NULL), of the same type.
pub fn mask_array(key: &[u8; 32], array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Utf8 => Arc::new(mask_strings(
            key,
            array.as_string::<i32>().iter(),
            array.len(),
        )),
        DataType::LargeUtf8 => Arc::new(
            array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(|v| mask_text(key, v)))
                .collect::<LargeStringArray>(),
        ),
        DataType::Utf8View => Arc::new(StringViewArray::from(&mask_strings(
            key,
            array.as_string_view().iter(),
            array.len(),
        ))),
        DataType::Int64 => Arc::new(
            array
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|v| v.map(|v| mask_int(key, v)))
                .collect::<Int64Array>(),
        ),
        DataType::Dictionary(k, _) if **k == DataType::Int32 => {
            let d: &DictionaryArray<arrow::datatypes::Int32Type> = array.as_dictionary();
            let values = mask_array(key, d.values())?;
            Arc::new(DictionaryArray::try_new(d.keys().clone(), values)?)
        }
        DataType::Dictionary(k, _) if **k == DataType::UInt32 => {
            let d: &DictionaryArray<arrow::datatypes::UInt32Type> = array.as_dictionary();
            let values = mask_array(key, d.values())?;
            Arc::new(DictionaryArray::try_new(d.keys().clone(), values)?)
        }
        other => {
            return Err(SqlError::Unsupported(format!(
                "masking a column of type {other}"
            )));
        }
    })
}

/// What a scan does to PII: mask some columns, or record an unmasked read.
#[derive(Debug)]
pub(crate) enum Guard {
    /// Mask these columns (indices in the scanned batches).
    Mask { key: [u8; 32], columns: Vec<usize> },
    /// Count rows; the read is recorded when the scan is dropped.
    Audit(Arc<Audit>),
}

impl Guard {
    /// Applies to one batch read.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        match self {
            Guard::Mask { key, columns } => {
                let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
                for i in columns {
                    if let Some(a) = arrays.get_mut(*i) {
                        *a = mask_array(key, a)?;
                    }
                }
                Ok(RecordBatch::try_new(batch.schema(), arrays)?)
            }
            Guard::Audit(a) => {
                a.executed.store(true, Ordering::Relaxed);
                a.rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Ok(batch)
            }
        }
    }
}

/// One unmasked read of PII columns, appended to [`AUDIT_TABLE`] when the
/// scan that made it is dropped.
#[derive(Debug)]
pub(crate) struct Audit {
    pub store: Store,
    pub user: String,
    pub table: String,
    pub columns: Vec<String>,
    pub rows: AtomicU64,
    pub executed: AtomicBool,
}

pub(crate) fn audit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "read_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("role", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

/// Creates the audit table if it does not exist.
pub(crate) fn ensure_audit(store: &Store) -> Result<bool> {
    if store.table(AUDIT_TABLE).is_ok() {
        return Ok(false);
    }
    store.create_table(AUDIT_TABLE, audit_schema(), TableOptions::default())?;
    Ok(true)
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.executed.load(Ordering::Relaxed) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let batch = RecordBatch::try_new(
            audit_schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![now])),
                Arc::new(StringArray::from(vec![self.user.as_str()])),
                Arc::new(StringArray::from(vec![self.table.as_str()])),
                Arc::new(StringArray::from(vec![self.columns.join(",")])),
                Arc::new(Int64Array::from(vec![
                    self.rows.load(Ordering::Relaxed) as i64
                ])),
            ],
        );
        // A failure cannot reach the reader any more (its rows are read);
        // it is left to the storage engine's background error.
        if let Ok(b) = batch {
            let _ = self.store.append(AUDIT_TABLE, &b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_stable_keyed_and_keep_types_and_nulls() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        assert_eq!(
            mask_text(&k1, "marie@example.com"),
            mask_text(&k1, "marie@example.com")
        );
        assert_ne!(
            mask_text(&k1, "marie@example.com"),
            mask_text(&k2, "marie@example.com")
        );
        assert_ne!(mask_text(&k1, "a"), mask_text(&k1, "b"));
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("x")]));
        let m = mask_array(&k1, &a).unwrap();
        let m = m.as_string::<i32>();
        assert!(m.is_null(1) && m.value(0) == m.value(2) && m.value(0).starts_with("pii_"));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![Some(33612345678), None]));
        let m = mask_array(&k1, &i).unwrap();
        assert_eq!(m.data_type(), &DataType::Int64);
        assert!(m.as_primitive::<arrow::datatypes::Int64Type>().value(0) >= 0);
    }
}
