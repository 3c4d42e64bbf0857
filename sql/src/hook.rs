//! Table hooks: how the layers above take part in a table's reads and writes.
//!
//! The engine attaches a [`TableHook`] to a table (UNIFY to each of its
//! sources). A hook
//! - names *generated columns*, which writers never supply: `INSERT` without
//!   a column list and `COPY … FROM` without one expect the other columns;
//! - fills them on every write (`INSERT`, `UPDATE`, `COPY … FROM`,
//!   [`SqlEngine::append`](crate::SqlEngine::append)) through a
//!   [`HookWrite`], which may add rows to other tables *in the same atomic
//!   commit* (UNIFY's graph log);
//! - may map stored values as they are read (a profile id to the profile
//!   that absorbed it since); filters on a mapped column are evaluated after
//!   the mapping, never pushed into the storage engine.
//!
//! A [`MappedFilter`] may still translate a filter over a mapped column
//! into a predicate on the stored values (`in_segment(profile_id, …)`).
//!
//! A [`HookWrite`] lives for one statement: [`TableHook::begin_write`],
//! then [`HookWrite::rows`] for each batch, [`HookWrite::finish`] for the
//! extra rows, the commit, and [`HookWrite::committed`]. Dropped without
//! `committed` (an error anywhere, a cancelled statement), it is aborted.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use parking_lot::RwLock;

use crate::error::{Result, SqlError};
use tessera_storage::Predicate;

/// What the layers above do on a table's reads and writes.
#[async_trait]
pub trait TableHook: Send + Sync + fmt::Debug {
    /// What the table is to the layer above, for messages ("a source of
    /// profile space customers").
    fn owner(&self) -> String;

    /// Columns this hook fills on every write.
    fn generated_columns(&self) -> Vec<String>;

    /// Columns whose stored values [`TableHook::map_read`] changes.
    fn mapped_columns(&self) -> Vec<String>;

    /// Maps the mapped columns of a batch read from the table (it holds the
    /// columns a scan asked for, by name).
    fn map_read(&self, batch: RecordBatch) -> Result<RecordBatch>;

    /// Starts one write statement to `table` (storage name), which does
    /// `kind` to its rows. Waits while another write statement holds what
    /// this one needs.
    async fn begin_write(&self, table: &str, kind: WriteKind) -> Result<Box<dyn HookWrite>>;

    /// Whether the table's rows are Tessera's alone (an audit log, a graph
    /// log): users may neither write them nor give them a retention.
    fn read_only(&self) -> bool {
        false
    }
}

/// What a write statement does to a table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Only adds rows (`INSERT`, `COPY … FROM`, the append API): every
    /// batch [`HookWrite::rows`] sees is a new row.
    Append,
    /// Deletes rows (`DELETE`), and adds their new versions (`UPDATE`).
    Rewrite,
}

/// One write statement's part in a hook; see the module documentation.
pub trait HookWrite: Send {
    /// Fills the generated columns of rows about to be written (the batch
    /// has every column of the table, the generated ones NULL).
    fn rows(&mut self, batch: RecordBatch) -> Result<RecordBatch>;

    /// Rows to append to other tables (storage names) in the same commit.
    fn finish(&mut self) -> Result<Vec<(String, RecordBatch)>>;

    /// The commit is durable.
    fn committed(self: Box<Self>);
}

/// Filters over a mapped column that the layer above can still answer in
/// the storage engine, by translating them to a predicate on the *stored*
/// values (`in_segment(profile_id, 'vip')`: the stored id is one of those
/// that map to a member).
pub trait MappedFilter: Send + Sync + fmt::Debug {
    /// A storage predicate on the stored values of `table` (storage name)
    /// exactly equivalent to `filter` (its columns unqualified), if known.
    fn predicate(&self, table: &str, filter: &datafusion::logical_expr::Expr) -> Option<Predicate>;
}

/// The hooks of an engine's tables, by storage name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hooks {
    inner: Arc<RwLock<HashMap<String, Arc<dyn TableHook>>>>,
    mapped_filter: Arc<RwLock<Option<Arc<dyn MappedFilter>>>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.inner.read().keys().cloned().collect();
        f.debug_struct("Hooks").field("tables", &names).finish()
    }
}

impl Hooks {
    /// The hook of `table`, if it has one.
    pub fn get(&self, table: &str) -> Option<Arc<dyn TableHook>> {
        self.inner.read().get(table).cloned()
    }

    /// Attaches (`Some`) or detaches (`None`) the hook of `table`.
    pub fn set(&self, table: &str, hook: Option<Arc<dyn TableHook>>) {
        let mut map = self.inner.write();
        match hook {
            Some(h) => {
                map.insert(table.to_string(), h);
            }
            None => {
                map.remove(table);
            }
        }
    }

    /// Installs the translator of filters over mapped columns.
    pub fn set_mapped_filter(&self, f: Arc<dyn MappedFilter>) {
        *self.mapped_filter.write() = Some(f);
    }

    /// The translator of filters over mapped columns, if one is installed.
    pub fn mapped_filter(&self) -> Option<Arc<dyn MappedFilter>> {
        self.mapped_filter.read().clone()
    }

    /// The generated columns of `table` (none without a hook).
    pub fn generated(&self, table: &str) -> Vec<String> {
        self.get(table)
            .map(|h| h.generated_columns())
            .unwrap_or_default()
    }
}

/// The hook on a table only Tessera writes (a space's graph log, its
/// segment memberships): users may read it, not change it.
#[derive(Debug)]
pub struct ReadOnlyHook {
    owner: String,
}

impl ReadOnlyHook {
    /// A hook saying the table is `owner` ("the identity-graph log of …").
    pub fn new(owner: String) -> Self {
        Self { owner }
    }
}

#[async_trait]
impl TableHook for ReadOnlyHook {
    fn owner(&self) -> String {
        self.owner.clone()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn generated_columns(&self) -> Vec<String> {
        Vec::new()
    }

    fn mapped_columns(&self) -> Vec<String> {
        Vec::new()
    }

    fn map_read(&self, batch: RecordBatch) -> crate::error::Result<RecordBatch> {
        Ok(batch)
    }

    async fn begin_write(
        &self,
        table: &str,
        _kind: WriteKind,
    ) -> crate::error::Result<Box<dyn HookWrite>> {
        Err(SqlError::ReadOnly(format!(
            "permission denied: \"{table}\" is {}; only Tessera writes it",
            self.owner
        )))
    }
}
