//! Junk detection for a full run: which strong values are seen with too
//! many distinct strong values of other kinds.

use hashbrown::hash_map::HashMap;

use super::{IdentityGraph, JunkReason, KindValue, Prepared};

/// Counts the distinct strong values each strong value appears with.
#[derive(Debug, Default)]
pub struct JunkDetector {
    ids: HashMap<(u8, String), u32>,
    pairs: Vec<(u32, u32)>,
    /// Deduplicate the pairs when there are this many.
    compact_at: usize,
    /// The record being observed, prepared, and its values' numbers
    /// (kept to reuse their buffers).
    scratch: Prepared,
    vals: Vec<u32>,
}

impl JunkDetector {
    /// Takes one record into account.
    pub fn observe(&mut self, graph: &IdentityGraph, raw: &[(usize, &str)]) {
        let scratch = &mut self.scratch;
        scratch.clear();
        graph.preparer().strong_only().push(raw, None, scratch);
        let (values, _, _) = scratch.record(0);
        self.vals.clear();
        for v in values {
            let text = scratch.text(v);
            let n = match self.ids.get(&KindValue(v.kind, text)) {
                Some(n) => *n,
                None => {
                    let n = self.ids.len() as u32;
                    self.ids.insert((v.kind, text.to_string()), n);
                    n
                }
            };
            self.vals.push(n);
        }
        for (i, a) in self.vals.iter().enumerate() {
            for b in &self.vals[i + 1..] {
                self.pairs.push((*a, *b));
                self.pairs.push((*b, *a));
            }
        }
        self.keep_bounded();
    }

    /// Keeps memory bounded by the distinct pairs (twice at most).
    fn keep_bounded(&mut self) {
        if self.pairs.len() > self.compact_at.max(1 << 24) {
            self.pairs.sort_unstable();
            self.pairs.dedup();
            self.compact_at = 2 * self.pairs.len();
        }
    }

    /// Adds what `later` observed, as if its records had been observed by
    /// this detector after its own: values new to this one are numbered in
    /// the order `later` first saw them, so splitting the records in two
    /// ordered halves and merging gives the same detector as one pass.
    pub fn merge(&mut self, later: JunkDetector) {
        let mut theirs: Vec<((u8, String), u32)> = later.ids.into_iter().collect();
        theirs.sort_unstable_by_key(|(_, n)| *n);
        let mut map = vec![0u32; theirs.len()];
        for (key, n) in theirs {
            let next = self.ids.len() as u32;
            map[n as usize] = *self.ids.entry(key).or_insert(next);
        }
        self.pairs.extend(
            later
                .pairs
                .into_iter()
                .map(|(a, b)| (map[a as usize], map[b as usize])),
        );
        self.keep_bounded();
    }

    /// Marks the values linked to more than `max_links` others as junk in
    /// `graph`; returns how many.
    pub fn apply(mut self, graph: &mut IdentityGraph) -> usize {
        let Some(max) = graph.config.max_links else {
            return 0;
        };
        self.pairs.sort_unstable();
        self.pairs.dedup();
        let mut degree = vec![0u32; self.ids.len()];
        for (a, _) in &self.pairs {
            degree[*a as usize] += 1;
        }
        let mut found: Vec<((u8, String), u32)> = self
            .ids
            .into_iter()
            .filter(|(_, n)| degree[*n as usize] > max)
            .collect();
        // In first-seen order, so the log is the same on every run.
        found.sort_by_key(|(_, n)| *n);
        let marked = found.len();
        for ((k, v), _) in found {
            graph.mark_junk(k, v, JunkReason::TooManyLinks);
        }
        marked
    }
}
