//! A profile space at run time: its identity graph in memory, the log that
//! makes it durable, and the hook on each of its sources.
//!
//! ## Durability
//!
//! The graph's changes are logged, as [`GraphDelta`]s, in the table
//! `<space>$graph` (`seq BIGINT, delta BYTEA`): a full `UNIFY` writes the
//! whole graph there, and every write to a source appends the delta it
//! caused *in the same atomic commit* as the rows ([`SourceHook`]). Opening
//! the database replays the log in `seq` order ([`Space::restore`]); the
//! sources are not read again.
//!
//! ## Profile ids in the sources
//!
//! Each source has a generated `profile_id` column: the profile its record
//! joined when it was resolved. Profiles merge later; a read maps the
//! stored id to its survivor through [`Space::current`], so the column is
//! always current without rewriting a row.
//!
//! ## Concurrency
//!
//! One write statement at a time per space (the writer token, held from
//! [`TableHook::begin_write`] to the commit). Readers of the sources see the
//! merges of committed writes only. A write that fails after changing the
//! graph leaves it stale; it is rebuilt from the log before its next use.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};
use tessera_sql::SqlError;
use tessera_sql::datafusion::arrow::array::{
    ArrayRef, AsArray, BinaryBuilder, Int64Array, RecordBatch,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use tessera_sql::hook::{HookWrite, TableHook, WriteKind};
use tessera_sql::storage::{ScanOptions, Store};

use crate::appended::Appended;
use crate::error::{EngineError, Result};
use crate::identity::graph::{GraphDelta, IdentityGraph, Merge, ProfileId};
use crate::unify::{PROFILE_ID, UnifySpec, resolve_batch, time_column};
pub use tessera_sql::hook::ReadOnlyHook;

/// Format of a log entry (the first field of every `delta`): 2 appends
/// the erased profiles after the delta; format 1 (without them) is still
/// read.
const LOG_FORMAT: u32 = 2;

/// Graph changes per log row (a full run writes the graph in chunks).
pub const LOG_CHUNK: usize = 1 << 16;

/// One row of the log: a format number, the delta, then (format 2) the
/// profiles it erases.
#[derive(serde::Serialize)]
struct LogEntry<'a> {
    format: u32,
    delta: &'a GraphDelta,
    erased: &'a [ProfileId],
}

/// Decodes a log row (format 1 or 2).
fn decode_entry(bytes: &[u8]) -> std::result::Result<GraphDelta, String> {
    let (format, rest) =
        postcard::take_from_bytes::<u32>(bytes).map_err(|e| format!("no format: {e}"))?;
    let (mut delta, rest) =
        postcard::take_from_bytes::<GraphDelta>(rest).map_err(|e| e.to_string())?;
    match format {
        1 => {}
        2 => {
            delta.erased = postcard::from_bytes(rest).map_err(|e| e.to_string())?;
        }
        other => return Err(format!("format {other} is not one this version reads")),
    }
    Ok(delta)
}

/// The columns of the log table.
pub fn log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("delta", DataType::Binary, false),
    ]))
}

/// Bytes of log entries per batch: a `BYTEA` column holds at most 2 GiB
/// (32-bit offsets), and the whole graph of a large space is more.
const LOG_BATCH_BYTES: usize = 256 << 20;

/// Encodes `delta` as log rows numbered from `first_seq`, in batches of
/// at most 256 MiB (one entry larger than that gets a batch of
/// its own).
pub fn log_rows(delta: GraphDelta, first_seq: i64) -> Result<Vec<RecordBatch>> {
    encode_log(delta, first_seq, LOG_CHUNK, LOG_BATCH_BYTES)
}

/// [`log_rows`] with `chunk` changes per entry and `max_bytes` per batch.
fn encode_log(
    delta: GraphDelta,
    first_seq: i64,
    chunk: usize,
    max_bytes: usize,
) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut seqs = Vec::new();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut bytes_in_batch = 0usize;
    let finish = |seqs: &mut Vec<i64>, blobs: &mut Vec<Vec<u8>>| -> Result<RecordBatch> {
        // Sized up front: grown blob by blob, a batch of a large graph's
        // log was copied several times over and page-faulted in each time.
        let bytes = blobs.iter().map(Vec::len).sum();
        let mut values = BinaryBuilder::with_capacity(blobs.len(), bytes);
        for b in blobs.iter() {
            values.append_value(b);
        }
        let batch = RecordBatch::try_new(
            log_schema(),
            vec![
                Arc::new(Int64Array::from(std::mem::take(seqs))),
                Arc::new(values.finish()),
            ],
        )?;
        blobs.clear();
        Ok(batch)
    };
    let chunks = delta.split(chunk);
    let encode = |chunks: &[GraphDelta]| -> Result<Vec<Vec<u8>>> {
        chunks
            .iter()
            .map(|chunk| {
                postcard::to_allocvec(&LogEntry {
                    format: LOG_FORMAT,
                    delta: chunk,
                    erased: &chunk.erased,
                })
                .map_err(|e| {
                    EngineError::InvalidOption(format!("a graph change cannot be encoded: {e}"))
                })
            })
            .collect()
    };
    // A whole graph's log (a full UNIFY) is encoded on two threads.
    let (first, second) = chunks.split_at(chunks.len() / 2);
    let encoded = if first.is_empty() {
        encode(second)?
    } else {
        let (first, second) = std::thread::scope(|scope| {
            let later = scope.spawn(|| encode(second));
            (encode(first), later.join())
        });
        let mut encoded = first?;
        encoded.extend(second.map_err(|_| {
            EngineError::Io(std::io::Error::other("encoding the graph log panicked"))
        })??);
        encoded
    };
    for (i, bytes) in encoded.into_iter().enumerate() {
        if !blobs.is_empty() && bytes_in_batch + bytes.len() > max_bytes {
            batches.push(finish(&mut seqs, &mut blobs)?);
            bytes_in_batch = 0;
        }
        bytes_in_batch += bytes.len();
        seqs.push(first_seq + i as i64);
        blobs.push(bytes);
    }
    if !blobs.is_empty() || batches.is_empty() {
        batches.push(finish(&mut seqs, &mut blobs)?);
    }
    Ok(batches)
}

/// Rows in `batches`.
pub fn rows_in(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The graph and what goes with it, under the space's lock.
#[derive(Debug)]
pub struct SpaceState {
    /// The identity graph.
    pub graph: IdentityGraph,
    /// The graph differs from the log (a write failed): rebuild before use.
    stale: bool,
    /// Sequence number of the next log row.
    next_seq: i64,
}

/// A profile space at run time.
#[derive(Debug)]
pub struct Space {
    /// Its definition.
    pub spec: UnifySpec,
    store: Store,
    state: Mutex<SpaceState>,
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Profile id -> the profile that absorbed it (itself when live), as of
    /// the last committed write.
    survivors: RwLock<Survivors>,
    /// Write statements committed to its sources since it was opened
    /// (starts at 1, so that what depends on writes is redone once after a
    /// restart), and the rows the latest of them appended.
    recent: crate::appended::Recent,
    /// Identifiers of erased people: records carrying one are dropped.
    suppressions: crate::privacy::suppress::SharedSuppressions,
}

/// Where each profile id went, as of the last committed write.
#[derive(Debug, Default)]
struct Survivors {
    /// Profile id -> the profile that absorbed it (itself when live).
    next: Vec<ProfileId>,
    /// Merges it holds (none: every id maps to itself).
    merges: usize,
    /// Profiles erased.
    erased: roaring::RoaringBitmap,
}

impl Space {
    /// A space whose graph was just built (by a full run whose log rows
    /// numbered up to `next_seq`).
    pub fn new(spec: UnifySpec, store: Store, graph: IdentityGraph, next_seq: i64) -> Self {
        let survivors = survivor_table(&graph);
        Space {
            spec,
            store,
            state: Mutex::new(SpaceState {
                graph,
                stale: false,
                next_seq,
            }),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            survivors: RwLock::new(survivors),
            recent: crate::appended::Recent::starting_at(1),
            suppressions: Default::default(),
        }
    }

    /// The space's suppression list (see [`crate::privacy`]).
    pub fn suppressions(&self) -> &crate::privacy::suppress::SharedSuppressions {
        &self.suppressions
    }

    /// Rebuilds a space's graph from its log.
    pub fn restore(spec: UnifySpec, store: Store) -> Result<Self> {
        let (graph, next_seq) = replay(&spec, &store)?;
        Ok(Self::new(spec, store, graph, next_seq))
    }

    /// The store the space lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The storage name of the log table.
    pub fn log_table(spec: &UnifySpec) -> String {
        spec.table("$graph")
    }

    /// The state, rebuilt from the log first if a failed write left it stale.
    pub fn state(&self) -> Result<MutexGuard<'_, SpaceState>> {
        let mut st = self.state.lock();
        if st.stale {
            let (graph, next_seq) = replay(&self.spec, &self.store)?;
            st.graph = graph;
            st.next_seq = next_seq;
            st.stale = false;
            *self.survivors.write() = survivor_table(&st.graph);
        }
        Ok(st)
    }

    /// Waits for the space's writer token (one write statement at a time).
    pub async fn writer_token(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.writer).lock_owned().await
    }

    /// Write statements committed to the sources since the space was opened
    /// (plus one).
    pub fn writes_committed(&self) -> u64 {
        self.recent.count()
    }

    /// The write statements committed and the rows they appended.
    pub fn appended(&self) -> &crate::appended::Recent {
        &self.recent
    }

    /// When the graph last changed (a full run or a write to a source).
    pub fn updated_at(&self) -> Option<i64> {
        self.state.lock().graph.stats().updated_at
    }

    /// Merges committed so far.
    pub fn merges_committed(&self) -> usize {
        self.survivors.read().merges
    }

    /// Profile ids handed out by committed writes.
    pub fn profiles_created(&self) -> u64 {
        self.survivors.read().next.len() as u64
    }

    /// The live profiles as of the last committed write.
    pub fn live_profiles(&self) -> roaring::RoaringBitmap {
        let s = self.survivors.read();
        let live = s
            .next
            .iter()
            .enumerate()
            .filter(|(i, p)| **p == *i as u64)
            .filter_map(|(i, _)| u32::try_from(i).ok());
        // Ascending by construction.
        let mut live = roaring::RoaringBitmap::from_sorted_iter(live).unwrap_or_default();
        live -= &s.erased;
        live
    }

    /// The profiles erased, as of the last committed erasure.
    pub fn erased(&self) -> roaring::RoaringBitmap {
        self.survivors.read().erased.clone()
    }

    /// How many profiles were erased (changes whenever one is).
    pub fn erasures(&self) -> u64 {
        self.survivors.read().erased.len()
    }

    /// An erasure of `profile` is durable.
    pub fn erase_committed(&self, profile: ProfileId) {
        if let Ok(p) = u32::try_from(profile) {
            self.survivors.write().erased.insert(p);
        }
        self.recent.committed(None);
    }

    /// A write that changed the graph failed: rebuild it from the log
    /// before its next use.
    pub fn mark_stale(&self) {
        self.state.lock().stale = true;
    }

    /// The sequence number of the log's next row.
    pub fn next_seq(st: &SpaceState) -> i64 {
        st.next_seq
    }

    /// Takes `rows` sequence numbers of the log.
    pub fn take_seq(st: &mut SpaceState, rows: usize) {
        st.next_seq += rows as i64;
    }

    /// The current profile of a stored profile id.
    pub fn current(&self, id: ProfileId) -> ProfileId {
        follow(&self.survivors.read().next, id)
    }

    /// The stored profile ids that map to one of `members` (current
    /// profiles): the members and every id merged into one of them.
    pub fn stored_ids(&self, members: &roaring::RoaringBitmap) -> roaring::RoaringBitmap {
        let s = self.survivors.read();
        let mut out = members.clone();
        if s.merges == 0 {
            return out;
        }
        for (i, next) in s.next.iter().enumerate() {
            if *next != i as u64
                && let (Ok(i), Ok(p)) = (u32::try_from(i), u32::try_from(follow(&s.next, *next)))
                && members.contains(p)
            {
                out.insert(i);
            }
        }
        out
    }

    /// Maps a column of stored profile ids to current ones.
    pub(crate) fn map_ids(&self, ids: &Int64Array) -> Int64Array {
        let s = self.survivors.read();
        if s.merges == 0 {
            return ids.clone();
        }
        ids.iter()
            .map(|v| v.map(|id| u64::try_from(id).map_or(id, |u| follow(&s.next, u) as i64)))
            .collect()
    }

    fn committed(&self, merges: &[Merge], profiles: u64, appended: Option<Appended>) {
        let mut s = self.survivors.write();
        let n = usize::try_from(profiles).unwrap_or(s.next.len());
        while s.next.len() < n {
            let next = s.next.len() as u64;
            s.next.push(next);
        }
        for m in merges {
            if let Some(slot) = usize::try_from(m.merged)
                .ok()
                .and_then(|i| s.next.get_mut(i))
            {
                *slot = m.survivor;
            }
        }
        s.merges += merges.len();
        drop(s);
        self.recent.committed(appended);
    }

    /// Rewrites the graph's log as one snapshot of the graph (as many rows
    /// as its size needs), in one publication; returns the rows the log
    /// had and has. Writes to the sources wait meanwhile.
    pub async fn compact_log(&self) -> Result<(u64, u64)> {
        let _token = self.writer_token().await;
        let mut st = self.state()?;
        let table = Space::log_table(&self.spec);
        let mut load = self.store.bulk();
        let snapshot = load.snapshot().table(&table)?;
        let before = snapshot.row_count();
        let rows = log_rows(st.graph.full_delta(), 0)?;
        let target = load.replace(&table, log_schema(), &snapshot)?;
        for b in &rows {
            load.push(target, b)?;
        }
        load.publish()?;
        st.next_seq = rows_in(&rows) as i64;
        Ok((before, rows_in(&rows) as u64))
    }

    /// The hook of source number `index`.
    pub fn hook(self: &Arc<Self>, index: usize) -> Result<Arc<SourceHook>> {
        let source = self.spec.sources.get(index).ok_or_else(|| {
            EngineError::UndefinedObject(format!(
                "source {index} of profile space {}",
                self.spec.name
            ))
        })?;
        let schema = self.store.table(&source.table)?.schema();
        Ok(Arc::new(SourceHook {
            space: Arc::clone(self),
            index,
            time: time_column(&schema),
        }))
    }
}

/// Follows `id` to the profile that absorbed it.
fn follow(s: &[ProfileId], mut id: ProfileId) -> ProfileId {
    // Chains only lead to smaller ids, so this ends.
    while let Some(next) = usize::try_from(id).ok().and_then(|i| s.get(i)) {
        if *next == id {
            break;
        }
        id = *next;
    }
    id
}

fn survivor_table(graph: &IdentityGraph) -> Survivors {
    let mut next: Vec<ProfileId> = (0..graph.profiles_created()).collect();
    for m in graph.merges() {
        if let Some(slot) = usize::try_from(m.merged).ok().and_then(|i| next.get_mut(i)) {
            *slot = m.survivor;
        }
    }
    // Point every id straight at its survivor: reads follow one step.
    for i in 0..next.len() {
        next[i] = follow(&next, next[i]);
    }
    Survivors {
        next,
        merges: graph.merges().len(),
        erased: graph
            .erased_profiles()
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect(),
    }
}

/// Replays the log of `spec`'s space; returns the graph and the next `seq`.
fn replay(spec: &UnifySpec, store: &Store) -> Result<(IdentityGraph, i64)> {
    let table = Space::log_table(spec);
    let scan = store.table(&table)?.scan(&ScanOptions::default())?;
    let mut rows: Vec<(i64, Vec<u8>)> = Vec::new();
    for part in scan.partitions {
        for batch in part {
            let batch = batch?;
            let (Some(seq), Some(delta)) =
                (batch.column_by_name("seq"), batch.column_by_name("delta"))
            else {
                return Err(corrupt(&table, "the log lacks its seq or delta column"));
            };
            let (Some(seq), Some(delta)) = (
                seq.as_primitive_opt::<Int64Type>(),
                delta.as_binary_opt::<i32>(),
            ) else {
                return Err(corrupt(&table, "the log's columns have the wrong types"));
            };
            for i in 0..batch.num_rows() {
                rows.push((seq.value(i), delta.value(i).to_vec()));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    let mut graph = IdentityGraph::new(spec.config.clone(), spec.sources.len());
    let mut next = 0;
    for (seq, bytes) in rows {
        let delta = decode_entry(&bytes)
            .map_err(|e| corrupt(&table, &format!("log row {seq} cannot be decoded: {e}")))?;
        graph
            .apply_delta(&delta)
            .map_err(|e| corrupt(&table, &format!("log row {seq}: {e}")))?;
        next = seq + 1;
    }
    Ok((graph, next))
}

fn corrupt(table: &str, detail: &str) -> EngineError {
    EngineError::corrupt_table(table, format!("identity graph log {table}: {detail}"))
}

/// The hook on one source of a space: fills `profile_id` on every write
/// (resolving the new rows into the graph) and maps it on every read.
#[derive(Debug)]
pub struct SourceHook {
    space: Arc<Space>,
    index: usize,
    time: Option<String>,
}

#[async_trait::async_trait]
impl TableHook for SourceHook {
    fn owner(&self) -> String {
        format!("a source of profile space {}", self.space.spec.name)
    }

    fn generated_columns(&self) -> Vec<String> {
        vec![PROFILE_ID.to_string()]
    }

    fn mapped_columns(&self) -> Vec<String> {
        vec![PROFILE_ID.to_string()]
    }

    fn map_read(&self, batch: RecordBatch) -> tessera_sql::Result<RecordBatch> {
        let Ok(i) = batch.schema().index_of(PROFILE_ID) else {
            return Ok(batch);
        };
        let Some(ids) = batch.column(i).as_primitive_opt::<Int64Type>() else {
            return Ok(batch);
        };
        let mapped: ArrayRef = Arc::new(self.space.map_ids(ids));
        let mut columns = batch.columns().to_vec();
        columns[i] = mapped;
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    async fn begin_write(
        &self,
        _table: &str,
        kind: WriteKind,
    ) -> tessera_sql::Result<Box<dyn HookWrite>> {
        let token = self.space.writer_token().await;
        // Rows are kept for incremental refreshes only while wanted, and
        // only if the statement does nothing but append.
        let keep = (kind == WriteKind::Append && self.space.recent.wanted())
            .then(|| Appended::new(self.index));
        Ok(Box::new(SourceWrite {
            space: Arc::clone(&self.space),
            index: self.index,
            time: self.time.clone(),
            _token: token,
            changed: false,
            merges: Vec::new(),
            profiles: 0,
            done: false,
            suppressed: std::collections::HashMap::new(),
            keep,
        }))
    }
}

/// One write statement to a source.
struct SourceWrite {
    space: Arc<Space>,
    index: usize,
    time: Option<String>,
    _token: tokio::sync::OwnedMutexGuard<()>,
    changed: bool,
    merges: Vec<Merge>,
    profiles: u64,
    done: bool,
    /// Rows dropped as carrying a suppressed identifier, per erasure request.
    suppressed: std::collections::HashMap<String, u64>,
    /// The rows written, as stored, for incremental refreshes (`None`: not
    /// kept, or more than [`crate::appended::STATEMENT_LIMIT`] bytes).
    keep: Option<Appended>,
}

fn sql_error(e: EngineError) -> SqlError {
    match e {
        EngineError::Sql(e) => e,
        other => SqlError::InvalidText(other.to_string()),
    }
}

impl HookWrite for SourceWrite {
    fn rows(&mut self, batch: RecordBatch) -> tessera_sql::Result<RecordBatch> {
        let mut st = self.space.state().map_err(sql_error)?;
        self.changed = true;
        let source = &self.space.spec.sources[self.index];
        let batch = match &*self.space.suppressions.read() {
            Some(list) if !list.is_empty() => {
                let (kept, dropped) = list.filter(&st.graph, batch, source).map_err(sql_error)?;
                for (request, n) in dropped {
                    *self.suppressed.entry(request).or_default() += n;
                }
                kept
            }
            _ => batch,
        };
        let out = resolve_batch(
            &mut st.graph,
            &batch,
            source,
            self.index,
            self.time.as_deref(),
        )
        .map_err(sql_error)?;
        // The batch keeps its own schema (profile_id is one of its columns).
        let out = RecordBatch::try_new(batch.schema(), out.columns().to_vec())?;
        if let Some(kept) = &mut self.keep
            && !kept.push(out.clone())
        {
            self.keep = None;
        }
        Ok(out)
    }

    fn finish(&mut self) -> tessera_sql::Result<Vec<(String, RecordBatch)>> {
        let mut st = self.space.state().map_err(sql_error)?;
        let delta = st.graph.take_delta();
        if !self.changed {
            return Ok(Vec::new());
        }
        self.merges = delta.merges.clone();
        self.profiles = st.graph.profiles_created();
        let rows = log_rows(delta, st.next_seq).map_err(sql_error)?;
        st.next_seq += rows_in(&rows) as i64;
        let log = Space::log_table(&self.space.spec);
        let mut out: Vec<_> = rows.into_iter().map(|b| (log.clone(), b)).collect();
        if !self.suppressed.is_empty() {
            let table = &self.space.spec.sources[self.index].table;
            let events: Vec<crate::privacy::Event> = self
                .suppressed
                .iter()
                .map(|(request, n)| crate::privacy::Event {
                    table: Some(table.clone()),
                    rows: Some(*n as i64),
                    ..crate::privacy::Event::new(request, "suppressed")
                })
                .collect();
            out.push((
                crate::privacy::LOG_TABLE.to_string(),
                crate::privacy::event_rows(&events).map_err(sql_error)?,
            ));
        }
        Ok(out)
    }

    fn committed(mut self: Box<Self>) {
        self.done = true;
        let appended = self.keep.take();
        self.space.committed(&self.merges, self.profiles, appended);
    }
}

impl Drop for SourceWrite {
    fn drop(&mut self) {
        if self.changed && !self.done {
            self.space.mark_stale();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::graph::{GraphConfig, KindSpec};
    use crate::identity::normalize::{Normalizer, Region};

    /// The whole graph of a large space is more than a `BYTEA` column holds
    /// (it overflowed at 10 M persons): the log comes in batches, and the
    /// batches replay into the same graph.
    #[test]
    fn a_large_log_comes_in_batches_that_replay() {
        let config = GraphConfig {
            kinds: vec![KindSpec {
                name: "email".into(),
                normalizer: Normalizer::Email,
                limit: None,
                strong: true,
            }],
            region: Region::default(),
            blocklist: Vec::new(),
            max_links: None,
        };
        let mut g = IdentityGraph::new(config.clone(), 1);
        for i in 0..2_000 {
            let email = format!("person{}@example.com", i % 1_500);
            g.add_record(&[(0, email.as_str())], 0, Some(i));
        }
        let batches = encode_log(g.full_delta(), 5, 100, 4_096).unwrap();
        assert!(batches.len() > 3, "{} batches", batches.len());
        let mut replayed = IdentityGraph::new(config, 1);
        let mut seq = 5;
        for b in &batches {
            let blobs = b.column(1).as_binary::<i32>();
            let bytes: usize = blobs.iter().flatten().map(<[u8]>::len).sum();
            assert!(bytes <= 4_096 || b.num_rows() == 1, "{bytes} bytes");
            for (s, blob) in b
                .column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .zip(blobs.iter())
            {
                assert_eq!(s, Some(seq));
                seq += 1;
                replayed
                    .apply_delta(&decode_entry(blob.unwrap()).unwrap())
                    .unwrap();
            }
        }
        assert_eq!(replayed.live_profiles(), g.live_profiles());
        assert_eq!(replayed.values(), g.values());
        assert_eq!(replayed.stats(), g.stats());
    }
}
