//! What changed in a graph, to be logged and replayed: [`GraphDelta`],
//! [`IdentityGraph::take_delta`] and [`IdentityGraph::apply_delta`].

use super::{GraphStats, IdentityGraph, JunkReason, Merge, NodeSeen, ProfileId, Span, now_micros};

/// Where the last delta ended, and what changed in place since.
#[derive(Debug, Clone, Default)]
pub(super) struct Mark {
    pub(super) nodes: usize,
    pub(super) merges: usize,
    pub(super) junk: usize,
    pub(super) erased: Vec<ProfileId>,
    dirty_nodes: Vec<u32>,
    node_dirty: Vec<bool>,
    dirty_profiles: Vec<ProfileId>,
    profile_dirty: Vec<bool>,
}

impl Mark {
    pub(super) fn node(&mut self, n: u32) {
        let i = n as usize;
        if self.node_dirty.len() <= i {
            self.node_dirty.resize(i + 1, false);
        }
        if !self.node_dirty[i] {
            self.node_dirty[i] = true;
            self.dirty_nodes.push(n);
        }
    }

    pub(super) fn profile(&mut self, p: ProfileId) {
        let i = p as usize;
        if self.profile_dirty.len() <= i {
            self.profile_dirty.resize(i + 1, false);
        }
        if !self.profile_dirty[i] {
            self.profile_dirty[i] = true;
            self.dirty_profiles.push(p);
        }
    }
}

/// A value first seen in a delta: its kind, normalised value and the
/// profile it joined (a new id starts a profile).
pub type NewNode = (u8, String, ProfileId);

/// A value's counters: (value index, records, first seen, last seen,
/// refused links).
pub type NodeStat = (u32, u32, i64, i64, u32);

/// A profile's counters: (profile, records per source, first seen, last
/// seen).
pub type ProfileStat = (ProfileId, Vec<u64>, i64, i64);

/// Everything that changed in a graph between two points: replayed in
/// order by [`IdentityGraph::apply_delta`], the deltas since the graph was
/// empty rebuild it exactly. Chunks of one delta ([`GraphDelta::split`])
/// replay like the whole.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GraphDelta {
    /// New values, in creation order.
    pub nodes: Vec<NewNode>,
    /// New merges, in order.
    pub merges: Vec<Merge>,
    /// Values newly marked junk.
    pub junk: Vec<(u8, String, JunkReason)>,
    /// Values whose counters changed: (value index, records, first seen,
    /// last seen, refused links), absolute.
    pub node_stats: Vec<NodeStat>,
    /// Live profiles whose counters changed: (profile, records per source,
    /// first seen, last seen), absolute.
    pub profile_stats: Vec<ProfileStat>,
    /// The graph's counters after the delta (`None` in all but the last
    /// chunk of a split delta).
    pub stats: Option<GraphStats>,
    /// Profiles erased (`ERASE PROFILE`), applied last. Not part of the
    /// struct's encoding: the log writes it after the rest (log format 2),
    /// so that format-1 rows still decode.
    #[serde(skip)]
    pub erased: Vec<ProfileId>,
}

impl GraphDelta {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.merges.is_empty()
            && self.junk.is_empty()
            && self.node_stats.is_empty()
            && self.profile_stats.is_empty()
            && self.stats.is_none()
            && self.erased.is_empty()
    }

    /// Cuts the delta into chunks of at most `items` entries each that,
    /// replayed in order, do what the whole does.
    pub fn split(self, items: usize) -> Vec<GraphDelta> {
        let items = items.max(1);
        let total = self.nodes.len()
            + self.merges.len()
            + self.junk.len()
            + self.node_stats.len()
            + self.profile_stats.len()
            + self.erased.len();
        if total <= items {
            return vec![self];
        }
        let mut out = Vec::new();
        fn chunks<T>(v: Vec<T>, n: usize) -> Vec<Vec<T>> {
            let mut out = Vec::new();
            let mut it = v.into_iter().peekable();
            while it.peek().is_some() {
                out.push(it.by_ref().take(n).collect());
            }
            out
        }
        for nodes in chunks(self.nodes, items) {
            out.push(GraphDelta {
                nodes,
                ..GraphDelta::default()
            });
        }
        for merges in chunks(self.merges, items) {
            out.push(GraphDelta {
                merges,
                ..GraphDelta::default()
            });
        }
        for junk in chunks(self.junk, items) {
            out.push(GraphDelta {
                junk,
                ..GraphDelta::default()
            });
        }
        for node_stats in chunks(self.node_stats, items) {
            out.push(GraphDelta {
                node_stats,
                ..GraphDelta::default()
            });
        }
        for profile_stats in chunks(self.profile_stats, items) {
            out.push(GraphDelta {
                profile_stats,
                ..GraphDelta::default()
            });
        }
        out.push(GraphDelta {
            stats: self.stats,
            erased: self.erased,
            ..GraphDelta::default()
        });
        out
    }
}

impl IdentityGraph {
    /// Everything that changed since the last call (or since the graph was
    /// made), to be logged; see [`GraphDelta`].
    pub fn take_delta(&mut self) -> GraphDelta {
        self.stats.updated_at = Some(now_micros());
        let mark = std::mem::take(&mut self.mark);
        let nodes = (mark.nodes..self.parent.len())
            .map(|n| {
                let n32 = n as u32;
                // The profile the value joined when it was first seen:
                // replay attaches it there before this delta's merges.
                (self.kinds[n], self.value(n32).to_string(), self.born[n])
            })
            .collect();
        let merges = self.merges[mark.merges..].to_vec();
        let junk = self.junk_log[mark.junk..].to_vec();
        let mut dirty_nodes = mark.dirty_nodes;
        dirty_nodes.sort_unstable();
        let node_stats = dirty_nodes.into_iter().map(|n| self.node_stat(n)).collect();
        let mut dirty_profiles = mark.dirty_profiles;
        dirty_profiles.sort_unstable();
        let profile_stats = dirty_profiles
            .into_iter()
            .filter(|p| !self.retired.contains_key(p) && !self.erased.contains(p))
            .map(|p| self.profile_stat(p))
            .collect();
        let erased = mark.erased;
        self.mark = Mark {
            nodes: self.parent.len(),
            merges: self.merges.len(),
            junk: self.junk_log.len(),
            ..Mark::default()
        };
        GraphDelta {
            nodes,
            merges,
            junk,
            node_stats,
            profile_stats,
            stats: Some(self.stats.clone()),
            erased,
        }
    }

    /// Replays a delta taken from a graph of the same configuration.
    pub fn apply_delta(&mut self, d: &GraphDelta) -> Result<(), String> {
        for (k, v, p) in &d.nodes {
            if usize::from(*k) >= self.config.kinds.len() {
                return Err(format!("a value of unknown kind {k}"));
            }
            let h = self.hash(*k, v);
            if self.lookup_hashed(*k, v, h).is_some() {
                return Err(format!("the value {v:?} is logged twice"));
            }
            let next = self.roots.len() as ProfileId;
            if *p == next {
                self.new_profile(*k, v, h);
            } else {
                let root = usize::try_from(*p)
                    .ok()
                    .and_then(|i| self.roots.get(i).copied())
                    .ok_or_else(|| format!("the value {v:?} joins unknown profile {p}"))?;
                let root = self.find(root);
                let node = self.insert_hashed(*k, v, h);
                self.attach(node, root);
            }
        }
        for m in &d.merges {
            let root_of = |g: &Self, p: ProfileId| {
                usize::try_from(p)
                    .ok()
                    .and_then(|i| g.roots.get(i).copied())
                    .filter(|_| !g.retired.contains_key(&p))
                    .ok_or_else(|| format!("a merge names profile {p}, which is not live"))
            };
            let (a, b) = (root_of(self, m.survivor)?, root_of(self, m.merged)?);
            let (a, b) = (self.find(a), self.find(b));
            if a == b {
                return Err(format!(
                    "profiles {} and {} are merged twice",
                    m.survivor, m.merged
                ));
            }
            let kind = u8::try_from(m.kind).map_err(|_| "a merge of unknown kind".to_string())?;
            self.union(a, b, kind, &m.value, m.record);
            if let Some(last) = self.merges.last_mut() {
                last.at = m.at;
            }
        }
        for (k, v, r) in &d.junk {
            self.mark_junk(*k, v.clone(), *r);
        }
        for (n, records, first, last, refused) in &d.node_stats {
            let i = *n as usize;
            if i >= self.parent.len() {
                return Err(format!("counters of unknown value {n}"));
            }
            self.node_seen[i] = NodeSeen {
                records: *records,
                span: Span {
                    first: *first,
                    last: *last,
                },
            };
            if *refused > 0 {
                self.refused.insert(*n, *refused);
            }
        }
        for (p, records, first, last) in &d.profile_stats {
            let i = usize::try_from(*p).unwrap_or(usize::MAX);
            if i >= self.prof_span.len() || records.len() != self.sources {
                return Err(format!("counters of unknown profile {p}"));
            }
            self.prof_records[i * self.sources..(i + 1) * self.sources].copy_from_slice(records);
            self.prof_span[i] = Span {
                first: *first,
                last: *last,
            };
        }
        if let Some(s) = &d.stats {
            self.stats = s.clone();
        }
        for p in &d.erased {
            if !self.erased.contains(p) {
                self.erase_profile(*p)?;
            }
        }
        // What replay changed is logged already.
        self.mark = Mark {
            nodes: self.parent.len(),
            merges: self.merges.len(),
            junk: self.junk_log.len(),
            ..Mark::default()
        };
        Ok(())
    }

    /// A value's counters as a delta logs them.
    fn node_stat(&self, n: u32) -> NodeStat {
        let i = n as usize;
        (
            n,
            self.node_seen[i].records,
            self.node_seen[i].span.first,
            self.node_seen[i].span.last,
            self.refused.get(&n).copied().unwrap_or(0),
        )
    }

    /// A profile's counters as a delta logs them.
    fn profile_stat(&self, p: ProfileId) -> ProfileStat {
        let i = p as usize;
        let n = self.sources;
        (
            p,
            self.prof_records[i * n..(i + 1) * n].to_vec(),
            self.prof_span[i].first,
            self.prof_span[i].last,
        )
    }

    /// The whole graph as one delta: replayed into an empty graph of the
    /// same configuration, it rebuilds this one (a snapshot, to compact a
    /// log of many deltas into one).
    pub fn full_delta(&self) -> GraphDelta {
        let nodes = (0..self.parent.len())
            .map(|n| {
                (
                    self.kinds[n],
                    self.value(n as u32).to_string(),
                    self.born[n],
                )
            })
            .collect();
        let node_stats = (0..self.parent.len() as u32)
            .map(|n| self.node_stat(n))
            .collect();
        let profile_stats = self
            .live_profile_ids()
            .map(|p| self.profile_stat(p))
            .collect();
        GraphDelta {
            nodes,
            merges: self.merges.clone(),
            junk: self.junk_log.clone(),
            node_stats,
            profile_stats,
            stats: Some(self.stats.clone()),
            erased: self.erased_profiles(),
        }
    }
}
