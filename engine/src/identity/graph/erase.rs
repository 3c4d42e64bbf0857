//! Erasing a person from the graph ([`IdentityGraph::erase_profile`]).
//!
//! A profile's values cannot simply be removed: node numbers are what the
//! union-find, the log's counters and the lineage refer to. So an erased
//! value keeps its node but loses its text (its bytes in the arena are
//! overwritten, its span emptied) and leaves the index: no record can find
//! it again. The profile id is never reused; it is neither live nor
//! retired but erased. Merges that involved the person keep their profile
//! numbers (replay needs them) but lose the value that caused them, and
//! the lineage table no longer shows them. A log snapshot
//! ([`IdentityGraph::full_delta`]) writes erased values as empty strings,
//! which no normaliser ever produces.

use super::{IdentityGraph, NodeSeen, ProfileId, Span, entry_node, slot_hash};

/// What erasing a profile took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedProfile {
    /// The profile.
    pub profile: ProfileId,
    /// Its id and every retired id merged into it: the ids its records
    /// carry in the sources.
    pub ids: Vec<ProfileId>,
    /// Its values (kind, normalised value), as they were.
    pub values: Vec<(usize, String)>,
    /// Per value: the records that carried it, the person's and others'
    /// (a record whose link to the value was refused counts too).
    pub records: Vec<u32>,
}

impl IdentityGraph {
    /// Whether node `n`'s value was erased.
    pub(super) fn is_erased_node(&self, n: u32) -> bool {
        self.spans.get(n as usize).is_some_and(|s| s.1 == 0)
    }

    /// Whether profile `p` was erased.
    pub fn is_erased(&self, p: ProfileId) -> bool {
        self.erased.contains(&p)
    }

    /// The erased profiles, in id order.
    pub fn erased_profiles(&self) -> Vec<ProfileId> {
        let mut v: Vec<ProfileId> = self.erased.iter().copied().collect();
        v.sort_unstable();
        v
    }

    /// Every id that resolves to `p` (itself and the ids merged into it).
    pub fn ids_of(&self, p: ProfileId) -> Vec<ProfileId> {
        let mut ids: Vec<ProfileId> = self
            .retired
            .keys()
            .copied()
            .filter(|r| self.survivor(*r) == p)
            .collect();
        ids.push(p);
        ids.sort_unstable();
        ids
    }

    /// Erases live profile `p`: blanks its values, drops them from the
    /// index, clears its counters and the values of the merges it took part
    /// in. Logged by the next delta. Errors if `p` is not live.
    pub fn erase_profile(&mut self, p: ProfileId) -> Result<ErasedProfile, String> {
        let root = usize::try_from(p)
            .ok()
            .and_then(|i| self.roots.get(i).copied())
            .filter(|_| !self.retired.contains_key(&p) && !self.erased.contains(&p))
            .ok_or_else(|| format!("profile {p} is not a live profile"))?;
        let root = self.find(root);
        let ids = self.ids_of(p);
        let mut values = Vec::new();
        let mut records = Vec::new();
        let mut members = vec![root];
        let mut n = self.ring[root as usize];
        while n != root {
            members.push(n);
            n = self.ring[n as usize];
        }
        members.sort_unstable();
        for n in members {
            if self.is_erased_node(n) {
                continue;
            }
            let kind = self.kinds[n as usize];
            let (start, len) = self.spans[n as usize];
            let (start, end) = (start as usize, (start + len) as usize);
            let value = self.arena[start..end].to_string();
            let h = self.hash(kind, &value);
            if let Ok(entry) = self.index.find_entry(slot_hash(h), |&e| entry_node(e) == n) {
                entry.remove();
            }
            // Not left in memory either.
            self.arena
                .replace_range(start..end, &"\0".repeat(end - start));
            self.spans[n as usize] = (start as u32, 0);
            let i = n as usize;
            records.push(self.node_seen[i].records);
            self.node_seen[i] = NodeSeen::NEVER;
            self.refused.remove(&n);
            values.push((usize::from(kind), value));
        }
        for id in &ids {
            let i = *id as usize;
            let s = self.sources;
            if let Some(r) = self.prof_records.get_mut(i * s..(i + 1) * s) {
                r.fill(0);
            }
            if let Some(t) = self.prof_span.get_mut(i) {
                *t = Span::NONE;
            }
        }
        for m in &mut self.merges {
            if ids.binary_search(&m.survivor).is_ok() || ids.binary_search(&m.merged).is_ok() {
                m.value.clear();
                m.record = 0;
            }
        }
        self.erased.insert(p);
        self.mark.erased.push(p);
        Ok(ErasedProfile {
            profile: p,
            ids,
            values,
            records,
        })
    }

    /// Whether a merge involved an erased person (the lineage hides it).
    pub fn merge_erased(&self, m: &super::Merge) -> bool {
        self.erased.contains(&self.survivor(m.survivor))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GraphConfig, IdentityGraph, KindSpec};
    use crate::identity::normalize::{Normalizer, Region};

    fn graph() -> IdentityGraph {
        let kind = |name: &str, normalizer, limit, strong| KindSpec {
            name: name.into(),
            normalizer,
            limit,
            strong,
        };
        IdentityGraph::new(
            GraphConfig {
                kinds: vec![
                    kind("customer_id", Normalizer::Trim, Some(1), true),
                    kind("email", Normalizer::Email, Some(3), true),
                    kind("device_id", Normalizer::Trim, None, false),
                ],
                region: Region::default(),
                blocklist: Vec::new(),
                max_links: None,
            },
            1,
        )
    }

    #[test]
    fn an_erased_profile_leaves_no_value_and_replays() {
        let mut g = graph();
        let marie = g.add_record(&[(0, "C1"), (1, "marie@example.com")], 0, Some(1));
        let paul = g.add_record(&[(0, "C2"), (1, "paul@example.com")], 0, Some(2));
        // A device first seen alone, then linked to Marie: a merge.
        let dev = g.add_record(&[(2, "dev-9")], 0, Some(3));
        g.add_record(&[(1, "marie@example.com"), (2, "dev-9")], 0, Some(4));
        let (marie, paul, dev) = (marie.unwrap(), paul.unwrap(), dev.unwrap());
        assert_eq!(g.survivor(dev), marie);
        let mut replayed = IdentityGraph::new(g.config().clone(), 1);
        replayed.apply_delta(&g.take_delta()).unwrap();

        let gone = g.erase_profile(marie).unwrap();
        assert_eq!(gone.ids, vec![marie, dev]);
        assert_eq!(gone.values.len(), 3);
        assert!(g.erase_profile(marie).is_err(), "erased twice");
        assert!(g.erase_profile(dev).is_err(), "a retired id is not live");
        assert_eq!(g.profile_of(1, "marie@example.com"), None);
        assert_eq!(g.live_profile_ids().collect::<Vec<_>>(), vec![paul]);
        assert!(g.identifiers().all(|(_, v, _)| !v.contains("marie")));
        assert!(g.merges().iter().all(|m| m.value.is_empty()));

        // The delta replays the erasure; a snapshot holds no trace of it.
        replayed.apply_delta(&g.take_delta()).unwrap();
        assert_eq!(replayed.profile_of(1, "marie@example.com"), None);
        assert_eq!(replayed.live_profiles(), 1);
        let snapshot = g.full_delta();
        let text = format!("{snapshot:?}");
        assert!(!text.contains("marie") && !text.contains("dev-9"), "{text}");
        let mut fresh = IdentityGraph::new(g.config().clone(), 1);
        fresh.apply_delta(&snapshot).unwrap();
        assert_eq!(fresh.live_profile_ids().collect::<Vec<_>>(), vec![paul]);
        assert!(fresh.is_erased(marie));

        // Marie's email arriving again starts a new profile (ingestion
        // suppresses it before it gets here).
        let again = g.add_record(&[(1, "marie@example.com")], 0, None).unwrap();
        assert!(again > paul);
    }

    #[test]
    fn each_profile_ring_holds_exactly_its_values() {
        let mut g = graph();
        let mut x: u64 = 7;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for _ in 0..5000 {
            let (c, e, d) = (next(900), next(1200), next(300));
            let raw = [
                (0, format!("C{c}")),
                (1, format!("p{e}@example.com")),
                (2, format!("dev-{d}")),
            ];
            let keep = next(7) as usize;
            let rec: Vec<(usize, &str)> = raw
                .iter()
                .enumerate()
                .filter(|(i, _)| keep & (1 << i) != 0 || keep == 0)
                .map(|(_, (k, v))| (*k, v.as_str()))
                .collect();
            g.add_record(&rec, 0, None);
        }
        assert!(!g.merges().is_empty());
        let mut replayed = IdentityGraph::new(g.config().clone(), 1);
        replayed.apply_delta(&g.full_delta()).unwrap();
        for graph in [&g, &replayed] {
            for n in 0..graph.parent.len() as u32 {
                let root = graph.find_const(n);
                let mut ring = vec![n];
                let mut m = graph.ring[n as usize];
                while m != n {
                    ring.push(m);
                    m = graph.ring[m as usize];
                }
                assert!(ring.iter().all(|m| graph.find_const(*m) == root));
                let size = (0..graph.parent.len() as u32)
                    .filter(|m| graph.find_const(*m) == root)
                    .count();
                assert_eq!(ring.len(), size, "value {n}");
            }
        }
    }
}
