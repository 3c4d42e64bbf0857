//! # Tessera's SQL layer
//!
//! Apache DataFusion over the storage engine, plus Tessera's own statements.
//!
//! ## A query, from text to mapped segment
//!
//! 1. [`SqlEngine::execute`] splits the text with [`parser::parse`]: Tessera's
//!    statements (`COMPACT`, `VERIFY`, …) get their own AST, everything else
//!    is sqlparser's PostgreSQL AST.
//! 2. DDL that changes what is stored (`CREATE TABLE`, `CREATE INDEX`,
//!    `ALTER TABLE … ADD COLUMN`, `CREATE VIEW`, `CREATE SCHEMA`, `DROP`) is
//!    applied to the [`tessera_storage::Store`] and its persistent catalog
//!    ([`catalog::CatalogState`], kept in the storage manifest).
//! 3. Queries and DML are planned by DataFusion. Each table is a
//!    [`TesseraTable`]; when DataFusion offers it filters,
//!    [`pushdown::to_predicate`] turns those it can into a storage
//!    `Predicate` and reports them `Exact`.
//! 4. [`TesseraTable`]'s `scan` takes a storage snapshot and plans the
//!    segments to read: zone maps prune segments, bitmap indexes select
//!    rows. [`exec::TesseraScanExec`] cuts them into morsels (a batch of a
//!    file each) that one stream per thread takes in turn, as Arrow batches
//!    read zero-copy from the memory-mapped segment files.
//! 5. `INSERT`, `DELETE` and `UPDATE` run in [`provider`]'s `DmlExec`, each
//!    one atomic commit to the storage engine's write-ahead log.
//! 6. Errors carry a PostgreSQL SQLSTATE ([`SqlError::sqlstate`]).

pub mod catalog;
pub mod copy;
mod error;
pub mod exec;
pub mod hook;
mod named;
pub mod parser;
pub mod pii;
pub mod provider;
pub mod pushdown;
pub mod retention;
mod session;
pub mod stats;
pub mod types;

pub use datafusion;
pub use error::{Result, SqlError};
pub use provider::TesseraTable;
pub use session::{
    CATALOG, DEFAULT_SCHEMA, EngineOptions, QueryOutput, QueryStream, SqlEngine, copy_source_query,
};
pub use tessera_storage as storage;
