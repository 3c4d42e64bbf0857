//! The rows recent write statements appended to a space's sources, kept in
//! memory so that an `ON COMMIT` segment can be refreshed from them alone
//! (see [`crate::segments::incremental`]).
//!
//! Every committed write statement to a space's sources gets a number
//! (the space's write count after it). A statement that only appended rows
//! leaves its rows here under its number, as they were stored (profile ids
//! as resolved then); a statement that deleted or updated rows, erased a
//! person, or appended more than [`STATEMENT_LIMIT`] bytes leaves nothing.
//! A reader asks for every statement after the one it last saw: any gap
//! means "recompute from the tables". Nothing is kept while no segment
//! wants it, and what every reader has seen is forgotten.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tessera_sql::datafusion::arrow::array::RecordBatch;

/// Most bytes of rows one statement may leave; a larger load is not kept.
pub const STATEMENT_LIMIT: usize = 64 << 20;
/// Most bytes kept for all statements together; the oldest go first.
pub const TOTAL_LIMIT: usize = 256 << 20;

/// The rows one write statement appended to one source.
#[derive(Debug)]
pub struct Appended {
    /// The source's position in the space's definition.
    pub source: usize,
    /// The rows, with every column of the source as stored.
    pub rows: Vec<RecordBatch>,
    bytes: usize,
}

impl Appended {
    /// No rows yet, for source `source`.
    pub fn new(source: usize) -> Self {
        Self {
            source,
            rows: Vec::new(),
            bytes: 0,
        }
    }

    /// Keeps `batch`; `false` once the statement's rows pass
    /// [`STATEMENT_LIMIT`] bytes (they are then not to be kept at all).
    pub fn push(&mut self, batch: RecordBatch) -> bool {
        self.bytes += batch.get_array_memory_size();
        self.rows.push(batch);
        self.bytes <= STATEMENT_LIMIT
    }
}

/// The write count of a space and the appends of its recent statements.
#[derive(Debug, Default)]
pub struct Recent {
    /// Tells this count from another space object's (a re-run `UNIFY`
    /// replaces the space): unique in the process.
    epoch: u64,
    /// Whether a reader wants appends kept.
    wanted: AtomicBool,
    /// Write statements committed since the space was opened (plus one).
    count: AtomicU64,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// (statement number, its appends), ascending.
    entries: VecDeque<(u64, Arc<Appended>)>,
    bytes: usize,
}

impl Recent {
    /// A count starting at `first`, nothing kept.
    pub fn starting_at(first: u64) -> Self {
        static EPOCHS: AtomicU64 = AtomicU64::new(1);
        Self {
            epoch: EPOCHS.fetch_add(1, Ordering::SeqCst),
            count: AtomicU64::new(first),
            ..Self::default()
        }
    }

    /// Which count this is (see [`Recent::since`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Write statements committed so far (plus the starting count).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether appends are being kept.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::SeqCst)
    }

    /// Keeps appends from now on (`true`) or stops and forgets them.
    pub fn set_wanted(&self, wanted: bool) {
        self.wanted.store(wanted, Ordering::SeqCst);
        if !wanted {
            let mut k = self.kept.lock();
            k.entries.clear();
            k.bytes = 0;
        }
    }

    /// A write statement committed, having appended `appended` (`None`: it
    /// did something else, or its rows were not kept). Returns its number.
    pub fn committed(&self, appended: Option<Appended>) -> u64 {
        let mut k = self.kept.lock();
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(a) = appended.filter(|_| self.wanted()) {
            k.bytes += a.bytes;
            k.entries.push_back((n, Arc::new(a)));
            while k.bytes > TOTAL_LIMIT {
                match k.entries.pop_front() {
                    Some((_, old)) => k.bytes -= old.bytes,
                    None => break,
                }
            }
        }
        n
    }

    /// The appends of every statement after number `seen` of count
    /// `epoch`, with the number of the last; `None` when one of them is not
    /// kept (it did more than append, or was forgotten), or `seen` counts
    /// another space object's statements.
    pub fn since(&self, epoch: u64, seen: u64) -> Option<(u64, Vec<Arc<Appended>>)> {
        let k = self.kept.lock();
        let upto = self.count();
        if epoch != self.epoch || seen > upto {
            return None;
        }
        let wanted: Vec<Arc<Appended>> = k
            .entries
            .iter()
            .filter(|(n, _)| *n > seen)
            .map(|(_, a)| Arc::clone(a))
            .collect();
        (wanted.len() as u64 == upto - seen).then_some((upto, wanted))
    }

    /// Forgets the appends of statements up to number `seen` (every
    /// reader has them).
    pub fn forget_through(&self, seen: u64) {
        let mut k = self.kept.lock();
        while k.entries.front().is_some_and(|(n, _)| *n <= seen) {
            if let Some((_, old)) = k.entries.pop_front() {
                k.bytes -= old.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(source: usize) -> Option<Appended> {
        let mut a = Appended::new(source);
        assert!(a.push(RecordBatch::new_empty(Arc::new(
            tessera_sql::datafusion::arrow::datatypes::Schema::empty(),
        ))));
        Some(a)
    }

    #[test]
    fn a_gap_or_an_unwanted_statement_means_recompute() {
        let r = Recent::starting_at(1);
        // Not wanted: committed, not kept.
        assert_eq!(r.committed(rows(0)), 2);
        assert!(r.since(r.epoch(), 1).is_none());
        assert_eq!(
            r.since(r.epoch(), 2).map(|(n, a)| (n, a.len())),
            Some((2, 0))
        );
        r.set_wanted(true);
        r.committed(rows(0));
        r.committed(rows(1));
        let (upto, got) = r.since(r.epoch(), 2).expect("kept");
        assert_eq!((upto, got.len(), got[1].source), (4, 2, 1));
        // A statement that deleted rows leaves a gap.
        r.committed(None);
        assert!(r.since(r.epoch(), 2).is_none());
        assert!(r.since(r.epoch(), 4).is_none());
        assert_eq!(
            r.since(r.epoch(), 5).map(|(n, a)| (n, a.len())),
            Some((5, 0))
        );
        r.forget_through(3);
        assert!(r.since(r.epoch(), 2).is_none(), "forgotten");
        // Another space object's numbers are not these.
        assert!(r.since(r.epoch(), 9).is_none());
        assert!(r.since(Recent::starting_at(1).epoch(), 5).is_none());
    }
}
