//! Records prepared for resolution: their identifiers normalised, filtered,
//! deduplicated, ordered by priority and hashed, away from the graph.
//!
//! Preparing is most of a record's cost and needs nothing the graph changes
//! as it resolves, except the values it marks junk along the way. A full
//! `UNIFY` therefore prepares batches on one thread ([`PrepareRules`], a
//! copy of what preparation reads) while another resolves the previous one
//! ([`IdentityGraph::add_prepared`]); a value marked junk after its batch
//! was prepared is dropped at resolution, so the result is that of one
//! thread doing both, record after record.

use std::hash::BuildHasher;

use hashbrown::hash_map::HashMap;

use super::{IdentityGraph, JunkReason, KindSpec, KindValue};
use crate::identity::normalize::Region;

/// One usable value of a prepared record: its kind, where its normalised
/// text is in [`Prepared`]'s buffer, and the hash the graph's index keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Value {
    pub(super) kind: u8,
    /// Offsets in the batch's text, which may pass 4 GiB when values are
    /// huge: kept as `usize`.
    start: usize,
    len: usize,
    pub(super) hash: u32,
}

/// A batch of prepared records.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    text: String,
    values: Vec<Value>,
    /// Per record: the end of its values in `values`, and how many of its
    /// non-empty raw values were unusable.
    records: Vec<(u32, u32)>,
    /// Per record: its time.
    times: Vec<Option<i64>>,
    /// How many values the junk filter knew of (the graph's junk log, which
    /// only grows): resolution filters again when the graph knows more.
    junk_seen: usize,
}

impl Prepared {
    /// Empties it for another batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.values.clear();
        self.records.clear();
        self.times.clear();
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Record `i`: its values, its unusable count and its time.
    pub(super) fn record(&self, i: usize) -> (&[Value], u32, Option<i64>) {
        let start = match i.checked_sub(1) {
            Some(p) => self.records[p].0 as usize,
            None => 0,
        };
        let (end, unusable) = self.records[i];
        (&self.values[start..end as usize], unusable, self.times[i])
    }

    /// A value's normalised text.
    pub(super) fn text(&self, v: &Value) -> &str {
        &self.text[v.start..v.start + v.len]
    }

    /// Whether a value that was not junk when this was prepared may be now.
    pub(super) fn junk_seen(&self) -> usize {
        self.junk_seen
    }
}

/// What preparation reads of a graph, owned: a copy taken before a run
/// hands resolution to another thread.
#[derive(Debug, Clone)]
pub struct PrepareRules {
    kinds: Vec<KindSpec>,
    region: Region,
    junk: HashMap<(u8, String), JunkReason>,
    hasher: hashbrown::DefaultHashBuilder,
    junk_seen: usize,
}

impl PrepareRules {
    /// A preparer of every usable identifier.
    pub fn preparer(&self) -> Preparer<'_> {
        Preparer {
            kinds: &self.kinds,
            region: self.region,
            junk: &self.junk,
            hasher: &self.hasher,
            junk_seen: self.junk_seen,
            strong_only: false,
        }
    }
}

/// Prepares records against a graph's rules ([`IdentityGraph::preparer`]
/// or [`PrepareRules::preparer`]).
#[derive(Debug, Clone, Copy)]
pub struct Preparer<'a> {
    kinds: &'a [KindSpec],
    region: Region,
    junk: &'a HashMap<(u8, String), JunkReason>,
    hasher: &'a hashbrown::DefaultHashBuilder,
    junk_seen: usize,
    strong_only: bool,
}

impl Preparer<'_> {
    /// The same, keeping only strong identifiers (junk detection).
    pub fn strong_only(self) -> Self {
        Self {
            strong_only: true,
            ..self
        }
    }

    /// Appends a record with these raw identifiers (kind index, raw text)
    /// seen at `time` to `out`: its usable values, highest priority first,
    /// without duplicates.
    pub fn push(&self, raw: &[(usize, &str)], time: Option<i64>, out: &mut Prepared) {
        if out.records.is_empty() {
            out.junk_seen = self.junk_seen;
        }
        let first = out.values.len();
        for (k, v) in raw {
            let Some(spec) = self.kinds.get(*k) else {
                continue;
            };
            let Ok(kind) = u8::try_from(*k) else {
                continue;
            };
            if self.strong_only && !spec.strong {
                continue;
            }
            let start = out.text.len();
            if !spec.normalizer.apply_into(v, self.region, &mut out.text) {
                continue;
            }
            let norm = &out.text[start..];
            let seen = out.values[first..]
                .iter()
                .any(|o| o.kind == kind && out.text(o) == norm);
            if seen || self.junk.contains_key(&KindValue(kind, norm)) {
                out.text.truncate(start);
                continue;
            }
            let hash = self.hasher.hash_one((kind, norm)) as u32;
            out.values.push(Value {
                kind,
                start,
                len: norm.len(),
                hash,
            });
        }
        // Stable: values of one kind keep their column order.
        out.values[first..].sort_by_key(|v| v.kind);
        let usable = out.values.len() - first;
        let given = raw.iter().filter(|(_, v)| !v.trim().is_empty()).count();
        out.records
            .push((out.values.len() as u32, given.saturating_sub(usable) as u32));
        out.times.push(time);
    }
}

impl IdentityGraph {
    /// A preparer that reads this graph's rules and junk as they are now.
    pub fn preparer(&self) -> Preparer<'_> {
        Preparer {
            kinds: &self.config.kinds,
            region: self.config.region,
            junk: &self.junk,
            hasher: &self.hasher,
            junk_seen: self.junk_log.len(),
            strong_only: false,
        }
    }

    /// A copy of what preparing records reads, for another thread.
    pub fn prepare_rules(&self) -> PrepareRules {
        PrepareRules {
            kinds: self.config.kinds.clone(),
            region: self.config.region,
            junk: self.junk.clone(),
            hasher: self.hasher.clone(),
            junk_seen: self.junk_log.len(),
        }
    }
}
