//! # Tessera's storage engine
//!
//! Durable, columnar, memory-mapped storage for tables of customer data. This
//! crate knows nothing of SQL; the `tessera-sql` crate puts DataFusion on top
//! of [`Store`], [`Snapshot`] and [`TableSnapshot::scan`].
//!
//! ## A request, from append to mapped segment
//!
//! 1. [`Store::append`] checks the batch against the table's
//!    [`TableMeta`], encodes it as an Arrow IPC stream, and queues a log
//!    record ([`wal::WalOp::Append`]) naming the in-memory segment and row it
//!    lands at.
//! 2. Group commit (`commit.rs`): the first committer to find no leader writes
//!    every queued record to the WAL (`wal.rs`) with one fsync, then applies them,
//!    in sequence order, to a new immutable `Version` (`version.rs`).
//!    The append returns only now: durable and visible.
//! 3. A [`Snapshot`] is an `Arc` of one `Version`; [`TableSnapshot::scan`]
//!    plans partitions: in-memory segments, and on-disk segments that the
//!    [`Predicate`] cannot rule out by their zone maps ([`ColumnStats`]),
//!    with rows selected through roaring-bitmap indexes ([`index::select`]).
//! 4. When a table's in-memory rows pass a threshold, a checkpoint
//!    (`store.rs`) rotates the log, writes each sealed in-memory segment
//!    as a segment file ([`segment`]: Arrow IPC + indexes + zone maps +
//!    checksummed footer; temporary file, fsync, rename, directory fsync),
//!    persists changed deletion vectors ([`dv`]), publishes a new
//!    [`manifest`] through `CURRENT`, and deletes the log files it no longer needs.
//! 5. Reading a segment verifies its data checksum with ordinary reads, then
//!    maps the file read-only (`mmap.rs`, the only `unsafe` in the crate);
//!    the Arrow arrays of a batch point straight into the mapping.
//! 6. Deletes ([`Store::delete_where`], [`WriteGuard::commit`]) log row
//!    positions; [`Store::compact`] rewrites segments without the deleted
//!    rows, so the data is gone from every file.
//!
//! All file I/O goes through [`Vfs`]; [`sim::SimVfs`] simulates crashes and
//! failing disks for the tests. A database created with a [`Key`]
//! (`Options::encryption`) has every file sealed with AES-256-GCM by
//! [`EncryptedVfs`] on its way through (`crypt/`); its segments are then
//! decrypted into memory instead of mapped. The byte layouts of every file are in
//! `docs/storage.md`.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use tessera_storage::{Predicate, ScanOptions, Store, TableOptions, Value};
//!
//! # fn main() -> tessera_storage::Result<()> {
//! let dir = std::env::temp_dir().join(format!("tessera-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let store = Store::open(&dir)?;
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("id", DataType::Int64, false),
//!     Field::new("channel", DataType::Utf8, true),
//! ]));
//! store.create_table("events", schema.clone(), TableOptions::default())?;
//! let batch = RecordBatch::try_new(schema, vec![
//!     Arc::new(Int64Array::from(vec![1, 2, 3])),
//!     Arc::new(StringArray::from(vec!["web", "app", "web"])),
//! ]).unwrap();
//! store.append("events", &batch)?;
//! store.checkpoint()?; // now in a memory-mapped segment with a bitmap index on `channel`
//!
//! let scan = store.table("events")?.scan(&ScanOptions {
//!     predicate: Some(Predicate::eq("channel", Value::Str("web".into()))),
//!     ..ScanOptions::default()
//! })?;
//! assert_eq!(scan.report.index_lookups.len(), 1);
//! let rows: usize = scan.collect()?.iter().map(|b| b.num_rows()).sum();
//! assert_eq!(rows, 2);
//! # drop(store); std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod appender;
mod bulk;
mod codec;
mod commit;
mod crypt;
pub mod dv;
mod error;
mod grep;
mod idset;
pub mod index;
mod io;
pub mod manifest;
mod mmap;
mod predicate;
mod scan;
pub mod segment;
mod side;
pub mod sim;
mod store;
mod table;
mod value;
mod verify;
mod version;
pub mod wal;
mod zonemap;

pub use bulk::{BulkLoad, LoadTarget};
pub use crypt::{EncryptedVfs, KEY_CHECK_FILE, Key};
pub use error::{Error, Result};
pub use grep::{FindReport, Found};
pub use idset::{BatchKey, IdSet, MASK_CACHE_MAX_BITS};
pub use io::{DirLock, OsVfs, Vfs, WritableFile};
pub use predicate::{CmpOp, Predicate};
pub use scan::{
    PartitionIter, ROW_ID_COLUMN, ScanOptions, ScanPartition, ScanReport, Snapshot, TableScan,
    TableSnapshot, TableStats, VersionToken, split_row_id,
};
pub use side::SIDE_DIR;
pub use store::{CompactionReport, Mutation, Options, Store, WriteGuard};
pub use table::{TableMeta, TableOptions};
pub use value::Value;
pub use verify::{Problem, VerifyReport};
pub use zonemap::ColumnStats;
