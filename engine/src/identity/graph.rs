//! The identity graph: identifier values linked by the records they appear
//! in, kept as an incremental union-find whose components are profiles.
//!
//! ## How one record is resolved ([`IdentityGraph::add_record`])
//!
//! 1. Each raw identifier is normalised ([`Normalizer`]); empty, malformed,
//!    built-in junk, blocklisted and detected-junk values are dropped.
//! 2. The rest are ordered by their kind's priority (the order of
//!    [`GraphConfig::kinds`]); the first is the record's *anchor*. If the
//!    anchor value is new, it starts a profile with the next id.
//! 3. Every other value is linked to the anchor's profile unless that would
//!    break a rule, in which case the link is dropped (and counted):
//!    - **limits**: a profile holds at most `limit` distinct values of a kind
//!      (`customer_id.limit = 1`: two customer ids never share a profile);
//!    - **weak kinds** (devices): a weak value never joins two profiles that
//!      both hold strong identifiers; it attaches records to a person, it does
//!      not merge people (a family tablet does not make one customer of a
//!      household).
//!
//!    A new value whose link is dropped starts its own profile.
//! 4. When two profiles merge, the older (smaller) id survives; the other
//!    is retired, and the merge is appended to the lineage.
//!
//! A record's profile is that of its anchor value, looked up now
//! ([`IdentityGraph::resolve`]): it follows merges, so it is always current.
//!
//! Links are applied in arrival order; with limits, a different order can
//! drop a different link (as in every deterministic CDP). Re-running over
//! the same rows in the same order gives the same ids.
//!
//! ## Junk values
//!
//! Besides the built-in list and the user's blocklist, a value that is seen
//! with more than `max_links` distinct strong values of other kinds is junk
//! (`test@shop.com` typed at a till for every walk-in customer). A full run
//! counts these links first ([`IdentityGraph::detect_junk`]); appended rows
//! are checked as they come: a value whose links are refused `max_links`
//! times becomes junk from then on.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_map::HashMap;

use super::normalize::{Normalizer, Region};

mod delta;
mod erase;
mod junk;
mod prepared;

use delta::Mark;
pub use delta::{GraphDelta, NewNode};
pub use erase::ErasedProfile;
pub use junk::JunkDetector;
use prepared::Value;
pub use prepared::{PrepareRules, Prepared, Preparer};

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A profile id: dense, never reused, never changing meaning.
pub type ProfileId = u64;

/// One kind of identifier (`email`, `phone`, `customer_id`, `device_id`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KindSpec {
    /// Its name in UNIFY.
    pub name: String,
    /// How its values are normalised.
    pub normalizer: Normalizer,
    /// How many distinct values of the kind one profile may hold.
    pub limit: Option<u32>,
    /// Whether a value of the kind identifies a person on its own (weak
    /// kinds, devices, only attach records to profiles).
    pub strong: bool,
}

/// How identifiers are matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GraphConfig {
    /// The kinds, highest priority first.
    pub kinds: Vec<KindSpec>,
    /// The region national phone numbers belong to.
    pub region: Region,
    /// Normalised values that identify nobody, per kind index.
    pub blocklist: Vec<(usize, String)>,
    /// Junk detection: a value linked to more distinct strong values of
    /// other kinds than this is junk. `None` turns detection off.
    pub max_links: Option<u32>,
}

/// Why a value was excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JunkReason {
    /// On the user's blocklist.
    Blocklist,
    /// Linked to too many distinct strong identifiers.
    TooManyLinks,
}

/// A merge in the lineage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Merge {
    /// The profile retired by the merge.
    pub merged: ProfileId,
    /// The profile that absorbed it (the older one).
    pub survivor: ProfileId,
    /// The kind of the value that linked them.
    pub kind: usize,
    /// The value that linked them (normalised).
    pub value: String,
    /// Sequence number of the record that caused the merge.
    pub record: u64,
    /// When it happened (microseconds since the Unix epoch).
    pub at: i64,
}

/// Counters of what resolution did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GraphStats {
    /// Records resolved.
    pub records: u64,
    /// Records without a single usable identifier.
    pub records_without_identifier: u64,
    /// Raw values dropped as empty, malformed or built-in junk.
    pub values_unusable: u64,
    /// Links dropped because a limit would have been broken.
    pub links_dropped_limit: u64,
    /// Links dropped because a weak value would have merged two people.
    pub links_dropped_weak: u64,
    /// Merges of two profiles.
    pub merges: u64,
    /// When the graph last changed (microseconds since the Unix epoch).
    pub updated_at: Option<i64>,
}

/// The identity graph of one profile space.
#[derive(Debug, Clone)]
pub struct IdentityGraph {
    config: GraphConfig,
    hasher: hashbrown::DefaultHashBuilder,
    /// Interned values: node -> (kind, bytes in `arena`).
    arena: String,
    spans: Vec<(u32, u32)>,
    kinds: Vec<u8>,
    /// Value -> node: each entry packs the low 32 bits of the value's
    /// hash above its node, so that growing the table rehashes from the
    /// entries alone ([`slot_hash`]) instead of reading every value's text
    /// back from the arena.
    index: HashTable<u64>,
    /// Union-find.
    parent: Vec<u32>,
    /// The next value of the same profile: one circular list per component
    /// (a union splices two lists in O(1)), so a profile's values are found
    /// without looking at every value.
    ring: Vec<u32>,
    rank: Vec<u8>,
    /// At a root: its profile.
    profile: Vec<ProfileId>,
    /// Per value: the profile it joined when it was first seen.
    born: Vec<ProfileId>,
    /// At a root: distinct values per kind (stride = number of kinds).
    counts: Vec<u16>,
    /// At a root: how many strong values it holds.
    strong: Vec<u32>,
    /// Profile -> its root node (for live profiles).
    roots: Vec<u32>,
    /// Retired profile -> survivor.
    retired: HashMap<ProfileId, ProfileId>,
    /// Profiles erased (`ERASE PROFILE`): their values are blank and out
    /// of the index, their records gone from the sources.
    erased: hashbrown::HashSet<ProfileId>,
    merges: Vec<Merge>,
    junk: HashMap<(u8, String), JunkReason>,
    /// Values marked junk, in the order they were (for the log).
    junk_log: Vec<(u8, String, JunkReason)>,
    refused: HashMap<u32, u32>,
    stats: GraphStats,
    /// Per value: records that carried it, first and last seen (one
    /// entry, so that counting a record touches one cache line).
    node_seen: Vec<NodeSeen>,
    /// Per profile id (live or retired): records per source (stride
    /// `sources`), first and last seen. A merge moves them to the survivor.
    sources: usize,
    prof_records: Vec<u64>,
    prof_span: Vec<Span>,
    /// What changed since the last [`IdentityGraph::take_delta`].
    mark: Mark,
}

/// "No time": the first-seen of a value or profile never seen with one.
const NO_FIRST: i64 = i64::MAX;
/// "No time": the last-seen counterpart.
const NO_LAST: i64 = i64::MIN;

/// When something was first and last seen ([`NO_FIRST`] / [`NO_LAST`]
/// while never with a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: i64,
    last: i64,
}

impl Span {
    const NONE: Span = Span {
        first: NO_FIRST,
        last: NO_LAST,
    };

    fn add(&mut self, t: i64) {
        self.first = self.first.min(t);
        self.last = self.last.max(t);
    }

    fn absorb(&mut self, other: Span) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// A value's counters: the records that carried it and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeSeen {
    records: u32,
    span: Span,
}

impl NodeSeen {
    const NEVER: NodeSeen = NodeSeen {
        records: 0,
        span: Span::NONE,
    };
}

/// A `(kind, value)` key looked up in a map keyed by `(u8, String)`
/// without allocating a `String`: it hashes as the tuple does (the kind,
/// then the text as `str` hashes it, which is how `String` hashes).
#[derive(Hash)]
struct KindValue<'a>(u8, &'a str);

/// Where an index entry with these 32 hash bits is placed: spread over 64
/// bits (the table takes its bucket from the low bits and a tag from the
/// top ones), computed again from the entry when the table grows.
fn slot_hash(h: u32) -> u64 {
    u64::from(h).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The hash bits an index entry keeps.
fn entry_hash(e: u64) -> u32 {
    (e >> 32) as u32
}

/// The node an index entry points to.
fn entry_node(e: u64) -> u32 {
    e as u32
}

impl hashbrown::Equivalent<(u8, String)> for KindValue<'_> {
    fn equivalent(&self, key: &(u8, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl IdentityGraph {
    /// An empty graph whose records come from `sources` source tables.
    pub fn new(config: GraphConfig, sources: usize) -> Self {
        let mut junk = HashMap::new();
        for (k, v) in &config.blocklist {
            if let Ok(k) = u8::try_from(*k) {
                junk.insert((k, v.clone()), JunkReason::Blocklist);
            }
        }
        Self {
            config,
            hasher: hashbrown::DefaultHashBuilder::default(),
            arena: String::new(),
            spans: Vec::new(),
            kinds: Vec::new(),
            index: HashTable::new(),
            parent: Vec::new(),
            ring: Vec::new(),
            rank: Vec::new(),
            profile: Vec::new(),
            born: Vec::new(),
            counts: Vec::new(),
            strong: Vec::new(),
            roots: Vec::new(),
            retired: HashMap::new(),
            erased: hashbrown::HashSet::new(),
            merges: Vec::new(),
            junk,
            junk_log: Vec::new(),
            refused: HashMap::new(),
            stats: GraphStats::default(),
            node_seen: Vec::new(),
            sources: sources.max(1),
            prof_records: Vec::new(),
            prof_span: Vec::new(),
            mark: Mark::default(),
        }
    }

    /// Number of source tables.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Its configuration.
    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// What resolution did so far.
    pub fn stats(&self) -> &GraphStats {
        &self.stats
    }

    /// The merge lineage, oldest first.
    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// The excluded values: (kind, value, why), sorted.
    pub fn junk(&self) -> Vec<(usize, String, JunkReason)> {
        let mut v: Vec<_> = self
            .junk
            .iter()
            .map(|((k, s), r)| (usize::from(*k), s.clone(), *r))
            .collect();
        v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        v
    }

    /// Number of distinct identifier values.
    pub fn values(&self) -> usize {
        self.parent.len()
    }

    /// Number of profile ids handed out (live and retired).
    pub fn profiles_created(&self) -> u64 {
        self.roots.len() as u64
    }

    /// Number of live profiles.
    pub fn live_profiles(&self) -> u64 {
        self.roots.len() as u64 - self.retired.len() as u64 - self.erased.len() as u64
    }

    /// The surviving profile of `id` (itself unless merged away).
    pub fn survivor(&self, mut id: ProfileId) -> ProfileId {
        while let Some(s) = self.retired.get(&id) {
            id = *s;
        }
        id
    }

    fn value(&self, node: u32) -> &str {
        let (start, len) = self.spans[node as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    /// The 32 bits of a value's hash that its index entry keeps.
    fn hash(&self, kind: u8, v: &str) -> u32 {
        self.hasher.hash_one((kind, v)) as u32
    }

    fn lookup(&self, kind: u8, v: &str) -> Option<u32> {
        self.lookup_hashed(kind, v, self.hash(kind, v))
    }

    /// [`Self::lookup`] with the value's hash already known ([`Prepared`]).
    fn lookup_hashed(&self, kind: u8, v: &str, h: u32) -> Option<u32> {
        self.index
            .find(slot_hash(h), |&e| {
                let n = entry_node(e);
                self.kinds[n as usize] == kind && self.value(n) == v
            })
            .map(|&e| entry_node(e))
    }

    fn insert_hashed(&mut self, kind: u8, v: &str, h: u32) -> u32 {
        let node = self.parent.len() as u32;
        let start = self.arena.len() as u32;
        self.arena.push_str(v);
        self.spans.push((start, v.len() as u32));
        self.kinds.push(kind);
        self.parent.push(node);
        self.ring.push(node);
        self.rank.push(0);
        self.profile.push(0);
        self.born.push(0);
        self.strong.push(0);
        self.counts
            .extend(std::iter::repeat_n(0, self.config.kinds.len()));
        self.node_seen.push(NodeSeen::NEVER);
        if v.is_empty() {
            // An erased value (replayed from a log): never looked up.
            return node;
        }
        self.index
            .insert_unique(slot_hash(h), (u64::from(h) << 32) | u64::from(node), |&e| {
                slot_hash(entry_hash(e))
            });
        node
    }

    fn find(&mut self, mut n: u32) -> u32 {
        let mut root = n;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        while self.parent[n as usize] != root {
            let next = self.parent[n as usize];
            self.parent[n as usize] = root;
            n = next;
        }
        root
    }

    fn find_const(&self, mut n: u32) -> u32 {
        while self.parent[n as usize] != n {
            n = self.parent[n as usize];
        }
        n
    }

    fn count(&self, root: u32, kind: usize) -> u32 {
        u32::from(self.counts[root as usize * self.config.kinds.len() + kind])
    }

    /// Normalises a record's raw identifiers (kind index, raw text) into
    /// usable values, highest priority first, without duplicates.
    pub fn normalize(&self, raw: &[(usize, &str)]) -> Vec<(u8, String)> {
        let mut p = Prepared::default();
        self.preparer().push(raw, None, &mut p);
        let (values, _, _) = p.record(0);
        values
            .iter()
            .map(|v| (v.kind, p.text(v).to_string()))
            .collect()
    }

    /// The current profile of a record with these raw identifiers, without
    /// changing the graph: its anchor's profile, or `None` when it has no
    /// known usable identifier.
    pub fn resolve(&self, raw: &[(usize, &str)]) -> Option<ProfileId> {
        self.normalize(raw).iter().find_map(|(k, v)| {
            self.lookup(*k, v)
                .map(|n| self.profile[self.find_const(n) as usize])
        })
    }

    /// The profile a normalised value belongs to now.
    pub fn profile_of(&self, kind: usize, normalized: &str) -> Option<ProfileId> {
        let k = u8::try_from(kind).ok()?;
        self.lookup(k, normalized)
            .map(|n| self.profile[self.find_const(n) as usize])
    }

    /// Adds one record of source `source` seen at `time` (microseconds
    /// since the Unix epoch, if the source has a time); returns its profile
    /// (`None` without any usable identifier).
    pub fn add_record(
        &mut self,
        raw: &[(usize, &str)],
        source: usize,
        time: Option<i64>,
    ) -> Option<ProfileId> {
        let mut p = Prepared::default();
        self.preparer().push(raw, time, &mut p);
        self.add_prepared(&p, 0, source)
    }

    /// Adds record `i` of `batch` ([`Preparer::push`]) as a record of
    /// source `source`; returns its profile (`None` without any usable
    /// identifier). Records must be added in the order they were prepared
    /// in for the result to be that of [`Self::add_record`].
    pub fn add_prepared(&mut self, batch: &Prepared, i: usize, source: usize) -> Option<ProfileId> {
        let (values, unusable, time) = batch.record(i);
        let seq = self.stats.records;
        self.stats.records += 1;
        self.stats.values_unusable += u64::from(unusable);
        // Values marked junk since the batch was prepared are dropped now.
        let late: Vec<Value>;
        let values = if batch.junk_seen() == self.junk_log.len() {
            values
        } else {
            late = values
                .iter()
                .filter(|v| !self.junk.contains_key(&KindValue(v.kind, batch.text(v))))
                .copied()
                .collect();
            self.stats.values_unusable += (values.len() - late.len()) as u64;
            &late
        };
        let Some((a, rest)) = values.split_first() else {
            self.stats.records_without_identifier += 1;
            return None;
        };
        let av = batch.text(a);
        let anchor_node = match self.lookup_hashed(a.kind, av, a.hash) {
            Some(n) => n,
            None => self.new_profile(a.kind, av, a.hash),
        };
        self.seen(anchor_node, time);
        let mut anchor = self.find(anchor_node);
        for val in rest {
            let (k, v) = (val.kind, batch.text(val));
            let node = match self.lookup_hashed(k, v, val.hash) {
                Some(n) => {
                    let r = self.find(n);
                    if r != anchor {
                        match self.check(anchor, r, k) {
                            Ok(()) => anchor = self.union(anchor, r, k, v, seq),
                            Err(()) => self.refuse(n, anchor),
                        }
                    }
                    n
                }
                None => {
                    let kind = usize::from(k);
                    let within = self.config.kinds[kind]
                        .limit
                        .is_none_or(|l| self.count(anchor, kind) < l);
                    if within {
                        let node = self.insert_hashed(k, v, val.hash);
                        self.attach(node, anchor);
                        node
                    } else {
                        self.stats.links_dropped_limit += 1;
                        self.new_profile(k, v, val.hash)
                    }
                }
            };
            self.seen(node, time);
        }
        let p = self.profile[anchor as usize];
        let pi = p as usize;
        if let Some(c) = self
            .prof_records
            .get_mut(pi * self.sources + source.min(self.sources - 1))
        {
            *c += 1;
        }
        if let Some(t) = time {
            self.prof_span[pi].add(t);
        }
        self.mark.profile(p);
        Some(p)
    }

    /// Counts a record carrying value `n`, seen at `time`.
    fn seen(&mut self, n: u32, time: Option<i64>) {
        let s = &mut self.node_seen[n as usize];
        s.records = s.records.saturating_add(1);
        if let Some(t) = time {
            s.span.add(t);
        }
        self.mark.node(n);
    }

    fn new_profile(&mut self, kind: u8, v: &str, h: u32) -> u32 {
        let node = self.insert_hashed(kind, v, h);
        let id = self.roots.len() as ProfileId;
        self.roots.push(node);
        self.prof_records
            .extend(std::iter::repeat_n(0, self.sources));
        self.prof_span.push(Span::NONE);
        self.profile[node as usize] = id;
        self.born[node as usize] = id;
        self.tally(node, node);
        node
    }

    /// Counts `node`'s value into root `root`.
    fn tally(&mut self, node: u32, root: u32) {
        let kind = usize::from(self.kinds[node as usize]);
        let stride = self.config.kinds.len();
        let c = &mut self.counts[root as usize * stride + kind];
        *c = c.saturating_add(1);
        if self.config.kinds[kind].strong {
            self.strong[root as usize] += 1;
        }
    }

    fn attach(&mut self, node: u32, root: u32) {
        self.born[node as usize] = self.profile[root as usize];
        self.parent[node as usize] = root;
        self.ring[node as usize] = self.ring[root as usize];
        self.ring[root as usize] = node;
        self.tally(node, root);
    }

    /// Whether roots `a` and `b` may merge through a value of kind `k`.
    fn check(&mut self, a: u32, b: u32, k: u8) -> Result<(), ()> {
        let kind = usize::from(k);
        if !self.config.kinds[kind].strong
            && self.strong[a as usize] > 0
            && self.strong[b as usize] > 0
        {
            self.stats.links_dropped_weak += 1;
            return Err(());
        }
        for (i, spec) in self.config.kinds.iter().enumerate() {
            if let Some(l) = spec.limit
                && self.count(a, i) + self.count(b, i) > l
            {
                self.stats.links_dropped_limit += 1;
                return Err(());
            }
        }
        Ok(())
    }

    /// A refused link counts against the value that tried to link: past
    /// `max_links` refusals it is junk from then on.
    fn refuse(&mut self, node: u32, _anchor: u32) {
        let Some(max) = self.config.max_links else {
            return;
        };
        let c = self.refused.entry(node).or_insert(0);
        *c += 1;
        let over = *c > max;
        self.mark.node(node);
        if over {
            self.mark_junk(
                self.kinds[node as usize],
                self.value(node).to_string(),
                JunkReason::TooManyLinks,
            );
        }
    }

    fn union(&mut self, a: u32, b: u32, k: u8, v: &str, record: u64) -> u32 {
        let (pa, pb) = (self.profile[a as usize], self.profile[b as usize]);
        let (survivor, merged) = if pa <= pb { (pa, pb) } else { (pb, pa) };
        let (root, child) = if self.rank[a as usize] >= self.rank[b as usize] {
            (a, b)
        } else {
            (b, a)
        };
        if self.rank[root as usize] == self.rank[child as usize] {
            self.rank[root as usize] = self.rank[root as usize].saturating_add(1);
        }
        self.parent[child as usize] = root;
        self.ring.swap(child as usize, root as usize);
        let stride = self.config.kinds.len();
        for i in 0..stride {
            let add = self.counts[child as usize * stride + i];
            let c = &mut self.counts[root as usize * stride + i];
            *c = c.saturating_add(add);
        }
        self.strong[root as usize] += self.strong[child as usize];
        self.profile[root as usize] = survivor;
        if let Some(r) = usize::try_from(survivor)
            .ok()
            .and_then(|s| self.roots.get_mut(s))
        {
            *r = root;
        }
        self.retired.insert(merged, survivor);
        self.move_profile_stats(merged, survivor);
        self.merges.push(Merge {
            merged,
            survivor,
            kind: usize::from(k),
            value: v.to_string(),
            record,
            at: now_micros(),
        });
        self.stats.merges += 1;
        root
    }

    /// A merge moves the merged profile's counters to the survivor.
    fn move_profile_stats(&mut self, merged: ProfileId, survivor: ProfileId) {
        let (m, s, n) = (merged as usize, survivor as usize, self.sources);
        if m >= self.prof_span.len() || s >= self.prof_span.len() {
            return;
        }
        for i in 0..n {
            let moved = std::mem::take(&mut self.prof_records[m * n + i]);
            self.prof_records[s * n + i] += moved;
        }
        let moved = std::mem::replace(&mut self.prof_span[m], Span::NONE);
        self.prof_span[s].absorb(moved);
        self.mark.profile(survivor);
    }

    fn mark_junk(&mut self, kind: u8, value: String, reason: JunkReason) {
        if !self.junk.contains_key(&(kind, value.clone())) {
            self.junk.insert((kind, value.clone()), reason);
            self.junk_log.push((kind, value, reason));
        }
    }

    /// A full run's first pass: counts, for every strong value, the distinct
    /// strong values of other kinds it appears with over `records`, and
    /// marks as junk those above `max_links`. Returns how many it marked.
    pub fn detect_junk<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a [(usize, &'a str)]>,
    ) -> usize {
        let mut d = self.junk_detector();
        for r in records {
            d.observe(self, r);
        }
        d.apply(self)
    }

    /// The first pass of a full run, fed record by record
    /// ([`JunkDetector::observe`]) and applied at the end.
    pub fn junk_detector(&self) -> JunkDetector {
        JunkDetector::default()
    }

    /// Every value with its kind and current profile.
    pub fn identifiers(&self) -> impl Iterator<Item = (usize, &str, ProfileId)> + '_ {
        (0..self.parent.len() as u32)
            .filter(|n| !self.is_erased_node(*n))
            .map(move |n| {
                (
                    usize::from(self.kinds[n as usize]),
                    self.value(n),
                    self.profile[self.find_const(n) as usize],
                )
            })
    }

    /// Every value with its kind, current profile, the records that
    /// carried it, and when it was first and last seen.
    pub fn identifier_details(&self) -> impl Iterator<Item = IdentifierRow<'_>> + '_ {
        (0..self.parent.len())
            .filter(|n| !self.is_erased_node(*n as u32))
            .map(move |n| IdentifierRow {
                kind: usize::from(self.kinds[n]),
                value: self.value(n as u32),
                profile: self.profile[self.find_const(n as u32) as usize],
                records: u64::from(self.node_seen[n].records),
                first_seen: seen(self.node_seen[n].span.first, NO_FIRST),
                last_seen: seen(self.node_seen[n].span.last, NO_LAST),
            })
    }

    /// How a value came to be in its profile: the profile it joined when
    /// first seen, then each merge that carried that profile into the next,
    /// up to the current one. `None` for an unknown value.
    pub fn explain(&self, kind: usize, normalized: &str) -> Option<(ProfileId, Vec<&Merge>)> {
        let node = self.lookup(u8::try_from(kind).ok()?, normalized)?;
        let born = self.born[node as usize];
        let mut chain = Vec::new();
        let mut p = born;
        while self.retired.contains_key(&p) {
            let m = self.merges.iter().find(|m| m.merged == p)?;
            chain.push(m);
            p = m.survivor;
        }
        Some((born, chain))
    }

    /// The (kind, value) pairs live profile `p` holds, sorted; empty for a
    /// profile that is not live. Walks the profile's own values only.
    pub fn profile_values(&self, p: ProfileId) -> Vec<(usize, &str)> {
        let Some(root) = usize::try_from(p)
            .ok()
            .and_then(|i| self.roots.get(i).copied())
            .filter(|_| self.is_live(p))
        else {
            return Vec::new();
        };
        let root = self.find_const(root);
        let mut out = Vec::new();
        let mut n = root;
        loop {
            if !self.is_erased_node(n) {
                out.push((usize::from(self.kinds[n as usize]), self.value(n)));
            }
            n = self.ring[n as usize];
            if n == root {
                break;
            }
        }
        out.sort_unstable();
        out
    }

    /// Whether `p` is a live profile (created, neither merged into another
    /// nor erased).
    pub fn is_live(&self, p: ProfileId) -> bool {
        p < self.roots.len() as ProfileId
            && !self.retired.contains_key(&p)
            && !self.erased.contains(&p)
    }

    /// The live profiles, in id order.
    pub fn live_profile_ids(&self) -> impl Iterator<Item = ProfileId> + '_ {
        (0..self.roots.len() as ProfileId)
            .filter(|p| !self.retired.contains_key(p) && !self.erased.contains(p))
    }

    /// Records of profile `p` per source (in source order).
    pub fn profile_records(&self, p: ProfileId) -> &[u64] {
        let i = usize::try_from(p).unwrap_or(usize::MAX);
        self.prof_records
            .get(i * self.sources..(i + 1) * self.sources)
            .unwrap_or(&[])
    }

    /// When profile `p` was first and last seen (its sources' times).
    pub fn profile_seen(&self, p: ProfileId) -> (Option<i64>, Option<i64>) {
        let i = usize::try_from(p).unwrap_or(usize::MAX);
        (
            self.prof_span.get(i).and_then(|s| seen(s.first, NO_FIRST)),
            self.prof_span.get(i).and_then(|s| seen(s.last, NO_LAST)),
        )
    }

    /// The size (in values) of the largest profile.
    pub fn largest_profile(&self) -> usize {
        let mut sizes: HashMap<u32, usize> = HashMap::new();
        for n in 0..self.parent.len() as u32 {
            *sizes.entry(self.find_const(n)).or_default() += 1;
        }
        sizes.values().copied().max().unwrap_or(0)
    }
}

/// One value of the graph (see [`IdentityGraph::identifier_details`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierRow<'a> {
    /// Its kind (index into the configuration's kinds).
    pub kind: usize,
    /// Its normalised value.
    pub value: &'a str,
    /// The profile it belongs to now.
    pub profile: ProfileId,
    /// Records that carried it.
    pub records: u64,
    /// Earliest time of those records.
    pub first_seen: Option<i64>,
    /// Latest time of those records.
    pub last_seen: Option<i64>,
}

fn seen(t: i64, none: i64) -> Option<i64> {
    (t != none).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limits: bool) -> GraphConfig {
        let kind = |name: &str, n, limit, strong| KindSpec {
            name: name.into(),
            normalizer: n,
            limit: if limits { limit } else { None },
            strong,
        };
        GraphConfig {
            kinds: vec![
                kind("customer_id", Normalizer::Trim, Some(1), true),
                kind("email", Normalizer::Email, Some(3), true),
                kind("phone", Normalizer::Phone, Some(2), true),
                kind("device_id", Normalizer::Trim, None, false),
            ],
            region: Region::default(),
            blocklist: vec![(1, "info@shop.fr".into())],
            max_links: Some(5),
        }
    }

    fn add(g: &mut IdentityGraph, raw: &[(usize, &str)]) -> Option<ProfileId> {
        g.add_record(raw, 0, None)
    }

    const C: usize = 0;
    const E: usize = 1;
    const P: usize = 2;
    const D: usize = 3;

    #[test]
    fn records_sharing_a_value_share_a_profile() {
        let mut g = IdentityGraph::new(config(true), 1);
        let a = add(&mut g, &[(C, "42"), (E, "Marie.Dupont@gmail.com")]);
        let b = add(
            &mut g,
            &[
                (E, " mariedupont+promo@googlemail.com"),
                (P, "06 12 34 56 78"),
            ],
        );
        let c = add(&mut g, &[(P, "+33612345678"), (D, "dev-1")]);
        assert_eq!(a, Some(0));
        assert_eq!(b, a);
        assert_eq!(c, a);
        assert_eq!(g.live_profiles(), 1);
        assert_eq!(g.resolve(&[(D, "dev-1")]), Some(0));
        assert_eq!(g.resolve(&[(D, "dev-2")]), None);
        assert_eq!(add(&mut g, &[(E, "N/A"), (P, "0000000000")]), None);
    }

    #[test]
    fn a_merge_keeps_the_older_id_and_is_logged() {
        let mut g = IdentityGraph::new(config(true), 1);
        let marie = add(&mut g, &[(E, "marie@a.fr")]).unwrap();
        let phone = add(&mut g, &[(P, "0612345678")]).unwrap();
        assert_ne!(marie, phone);
        let both = add(&mut g, &[(P, "0612345678"), (E, "marie@a.fr")]).unwrap();
        assert_eq!(both, marie);
        assert_eq!(g.survivor(phone), marie);
        assert_eq!(g.merges().len(), 1);
        assert_eq!(g.merges()[0].merged, phone);
        assert_eq!(g.merges()[0].value, "+33612345678");
        assert_eq!(g.resolve(&[(P, "06 12 34 56 78")]), Some(marie));
    }

    #[test]
    fn limits_and_weak_kinds_prevent_over_merging() {
        let mut g = IdentityGraph::new(config(true), 1);
        let m = add(&mut g, &[(C, "1"), (E, "marie@a.fr")]).unwrap();
        let p = add(&mut g, &[(C, "2"), (E, "paul@a.fr")]).unwrap();
        // Two customer ids never share a profile.
        assert_eq!(add(&mut g, &[(C, "2"), (E, "marie@a.fr")]), Some(p));
        assert_eq!(g.resolve(&[(E, "marie@a.fr")]), Some(m));
        // A shared tablet does not merge the household.
        add(&mut g, &[(D, "tablet"), (E, "marie@a.fr")]);
        assert_eq!(add(&mut g, &[(D, "tablet"), (E, "paul@a.fr")]), Some(p));
        assert_eq!(g.resolve(&[(D, "tablet")]), Some(m));
        assert_eq!(g.live_profiles(), 2);
        assert_eq!(g.stats().links_dropped_weak, 1);
        assert!(g.stats().links_dropped_limit >= 1);
    }

    #[test]
    fn blocklisted_and_detected_junk_link_nobody() {
        let mut g = IdentityGraph::new(config(false), 1);
        let a = add(&mut g, &[(E, "info@shop.fr"), (P, "0611111112")]);
        let b = add(&mut g, &[(E, "info@shop.fr"), (P, "0622222223")]);
        assert_ne!(a, b);
        // A till's placeholder e-mail typed for many customers.
        let records: Vec<Vec<(usize, String)>> = (0..10)
            .map(|i| {
                vec![
                    (E, "walkin@shop.fr".to_string()),
                    (P, format!("07000000{i:02}")),
                ]
            })
            .collect();
        let borrowed: Vec<Vec<(usize, &str)>> = records
            .iter()
            .map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect())
            .collect();
        assert_eq!(g.detect_junk(borrowed.iter().map(Vec::as_slice)), 1);
        let ids: Vec<_> = borrowed.iter().map(|r| add(&mut g, r)).collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert!(
            g.junk().iter().any(|(k, v, r)| *k == E
                && v == "walkin@shop.fr"
                && *r == JunkReason::TooManyLinks)
        );
    }

    #[test]
    fn junk_detection_split_in_two_and_merged_equals_one_pass() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // Shared placeholders among many customers, so several values pass
        // max_links, some seen first late in the records.
        let records: Vec<Vec<(usize, String)>> = (0..400)
            .map(|i| {
                let mut r = vec![(C, format!("c{}", rng.random_range(0..120)))];
                if rng.random_bool(0.7) {
                    let e = match rng.random_range(0..10) {
                        0 => format!("shared{}@shop.fr", rng.random_range(0..3)),
                        _ => format!("p{}@mail.fr", rng.random_range(0..150)),
                    };
                    r.push((E, e));
                }
                if i > 200 && rng.random_bool(0.3) {
                    r.push((P, format!("07{:08}", rng.random_range(0..4))));
                }
                r
            })
            .collect();
        let borrowed: Vec<Vec<(usize, &str)>> = records
            .iter()
            .map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect())
            .collect();
        let mut one = IdentityGraph::new(config(false), 1);
        let found = one.detect_junk(borrowed.iter().map(Vec::as_slice));
        assert!(found >= 3, "{found}");
        let want = one.take_delta().junk;
        for split in [0, 1, 150, 201, 399, 400] {
            let mut two = IdentityGraph::new(config(false), 1);
            let mut first = two.junk_detector();
            let mut second = two.junk_detector();
            for r in &borrowed[..split] {
                first.observe(&two, r);
            }
            for r in &borrowed[split..] {
                second.observe(&two, r);
            }
            first.merge(second);
            assert_eq!(first.apply(&mut two), found, "split at {split}");
            assert_eq!(two.take_delta().junk, want, "split at {split}");
        }
    }

    /// Everything observable of a graph, for comparing two.
    fn state(g: &IdentityGraph) -> String {
        let mut ids: Vec<String> = g.identifier_details().map(|r| format!("{r:?}")).collect();
        ids.sort();
        let profiles: Vec<String> = g
            .live_profile_ids()
            .map(|p| format!("{p}:{:?}:{:?}", g.profile_records(p), g.profile_seen(p)))
            .collect();
        format!(
            "{ids:?}\n{profiles:?}\n{:?}\n{:?}\n{:?}\n{}",
            g.merges(),
            g.junk(),
            g.stats(),
            g.profiles_created()
        )
    }

    #[test]
    fn replaying_the_deltas_rebuilds_the_graph() {
        use rand::{Rng, SeedableRng};
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut cfg = config(seed % 2 == 0);
            cfg.max_links = Some(3);
            let mut g = IdentityGraph::new(cfg.clone(), 3);
            let mut deltas = Vec::new();
            for (raw, source, time) in random_records(&mut rng, 400) {
                g.add_record(&borrow(&raw), source, time);
                if rng.random_bool(0.05) {
                    deltas.push(g.take_delta());
                }
            }
            deltas.push(g.take_delta());
            let mut replayed = IdentityGraph::new(cfg.clone(), 3);
            for d in deltas {
                // Split deltas replay like whole ones.
                for chunk in d.split(7) {
                    replayed.apply_delta(&chunk).unwrap();
                }
            }
            assert_eq!(state(&g), state(&replayed), "seed {seed}");
            // And one snapshot of the whole graph does too.
            let mut from_snapshot = IdentityGraph::new(cfg.clone(), 3);
            for chunk in g.full_delta().split(5) {
                from_snapshot.apply_delta(&chunk).unwrap();
            }
            assert_eq!(state(&g), state(&from_snapshot), "seed {seed}: snapshot");
        }
    }

    type RandomRecord = (Vec<(usize, String)>, usize, Option<i64>);

    /// Records over 60 values per kind, each kind present half the time.
    fn random_records(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<RandomRecord> {
        use rand::Rng;
        (0..n)
            .map(|_| {
                let mut raw: Vec<(usize, String)> = Vec::new();
                for k in [C, E, P, D] {
                    if rng.random_bool(0.5) {
                        let v = rng.random_range(0..60u32);
                        raw.push(match k {
                            C => (k, format!("{v}")),
                            E => (k, format!("p{v}@x.fr")),
                            P => (k, format!("06123450{v:02}")),
                            _ => (k, format!("dev{v}")),
                        });
                    }
                }
                let time = rng
                    .random_bool(0.8)
                    .then(|| rng.random_range(0..1_000_000i64));
                (raw, rng.random_range(0..3usize), time)
            })
            .collect()
    }

    fn borrow(raw: &[(usize, String)]) -> Vec<(usize, &str)> {
        raw.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// A graph's state without the wall-clock time of its merges.
    fn without_merge_times(state: &str) -> String {
        let mut parts = state.split("at: ");
        let mut out = parts.next().unwrap_or_default().to_string();
        for p in parts {
            out.push_str(p.trim_start_matches(|c: char| c.is_ascii_digit()));
        }
        out
    }

    #[test]
    fn records_prepared_ahead_resolve_as_one_by_one() {
        use rand::SeedableRng;
        let mut late_junk = 0;
        for seed in 0..20u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut cfg = config(seed % 2 == 0);
            cfg.max_links = Some(1);
            let records = random_records(&mut rng, 400);
            let mut one_by_one = IdentityGraph::new(cfg.clone(), 3);
            for (raw, source, time) in &records {
                one_by_one.add_record(&borrow(raw), *source, *time);
            }
            // Every batch prepared before any is resolved, as a reader
            // thread running ahead would: junk found while resolving is
            // unknown to the later batches' preparation.
            let mut ahead = IdentityGraph::new(cfg.clone(), 3);
            let rules = ahead.prepare_rules();
            let batches: Vec<(Prepared, Vec<usize>)> = records
                .chunks(50)
                .map(|chunk| {
                    let mut p = Prepared::default();
                    for (raw, _, time) in chunk {
                        rules.preparer().push(&borrow(raw), *time, &mut p);
                    }
                    (p, chunk.iter().map(|r| r.1).collect())
                })
                .collect();
            for (p, sources) in &batches {
                for (i, source) in sources.iter().enumerate() {
                    ahead.add_prepared(p, i, *source);
                }
            }
            assert_eq!(
                without_merge_times(&state(&one_by_one)),
                without_merge_times(&state(&ahead)),
                "seed {seed}"
            );
            late_junk += ahead.junk().len() - cfg.blocklist.len();
        }
        assert!(late_junk > 0, "no value became junk during resolution");
    }
}
