//! Group commit: many appenders, one fsync.
//!
//! A committer encodes its record, takes a log sequence number and queues it.
//! If no leader is writing, it becomes the leader: it takes the whole queue,
//! writes it to the WAL with one `fsync`, applies it to the in-memory version
//! in LSN order and wakes the others. Everyone queued meanwhile waits, and the
//! next of them to wake leads the next round. A commit returns only after its
//! record is durable and visible to readers.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use roaring::RoaringBitmap;

use crate::wal::WalWriter;

/// A change to the in-memory version, applied once its record is durable.
#[derive(Debug)]
pub(crate) enum Apply {
    Append {
        table: u64,
        segment: u64,
        first_row: u64,
        batch: RecordBatch,
    },
    Delete {
        table: u64,
        segment: u64,
        rows: RoaringBitmap,
    },
}

/// A record waiting for the leader.
#[derive(Debug)]
pub(crate) struct Pending {
    pub lsn: u64,
    pub bytes: Vec<u8>,
    pub ops: Vec<Apply>,
}

/// State shared by committers, under one mutex.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    pub next_lsn: u64,
    pub durable_lsn: u64,
    pub leader: bool,
    pub queue: Vec<Pending>,
    pub wal: Option<WalWriter>,
    pub poisoned: Option<String>,
    /// Per table id: the in-memory segment receiving appends and the rows
    /// reserved in it so far.
    pub active: HashMap<u64, (u64, u64)>,
}
