//! The suppression list: after `ERASE PROFILE`, the person's identifiers
//! are kept only as keyed hashes, and a record arriving later that carries
//! one of them (a replayed CSV, a late event) is dropped before it is
//! resolved or stored, and counted in the audit log.
//!
//! A hash is SHA-256 over the database's 32-byte secret salt, the kind's
//! name, a zero byte and the normalised value, in hexadecimal. Without the
//! salt the list cannot be matched against a list of known emails.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tessera_sql::datafusion::arrow::array::{BooleanArray, RecordBatch};
use tessera_sql::datafusion::arrow::compute::filter_record_batch;

use crate::error::Result;
use crate::identity::graph::IdentityGraph;
use crate::unify::{SourceSpec, for_each_row};

/// The keyed hash of a normalised identifier of kind `kind`.
pub fn hash(salt: &[u8; 32], kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(kind.as_bytes());
    h.update([0u8]);
    h.update(value.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The suppressed identifiers of one profile space.
#[derive(Debug, Clone)]
pub struct Suppressions {
    salt: [u8; 32],
    /// (kind name, hash) -> the erasure request that suppressed it.
    hashes: HashMap<(String, String), String>,
}

impl Suppressions {
    /// An empty list under `salt`.
    pub fn new(salt: [u8; 32]) -> Self {
        Self {
            salt,
            hashes: HashMap::new(),
        }
    }

    /// Suppresses a hash for `request`.
    pub fn insert(&mut self, kind: String, hash: String, request: String) {
        self.hashes.insert((kind, hash), request);
    }

    /// Ends the suppressions of `request`.
    pub fn lift(&mut self, request: &str) {
        self.hashes.retain(|_, r| r != request);
    }

    /// Whether nothing is suppressed.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The request that suppressed normalised value `value` of `kind`.
    pub fn request_of(&self, kind: &str, value: &str) -> Option<&str> {
        self.hashes
            .get(&(kind.to_string(), hash(&self.salt, kind, value)))
            .map(String::as_str)
    }

    /// `batch` (rows of `source`) without the rows that carry a suppressed
    /// identifier, and how many were dropped per request.
    pub fn filter(
        &self,
        graph: &IdentityGraph,
        batch: RecordBatch,
        source: &SourceSpec,
    ) -> Result<(RecordBatch, HashMap<String, u64>)> {
        let mut dropped: HashMap<String, u64> = HashMap::new();
        let mut keep = Vec::with_capacity(batch.num_rows());
        let kinds = &graph.config().kinds;
        for_each_row(&batch, source, None, |raw, _| {
            let hit = graph.normalize(raw).into_iter().find_map(|(k, v)| {
                kinds
                    .get(usize::from(k))
                    .and_then(|spec| self.request_of(&spec.name, &v))
            });
            match hit {
                Some(request) => {
                    *dropped.entry(request.to_string()).or_default() += 1;
                    keep.push(false);
                }
                None => keep.push(true),
            }
        })?;
        if dropped.is_empty() {
            return Ok((batch, dropped));
        }
        let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        Ok((kept, dropped))
    }
}

/// A space's list, shared with its source hooks.
pub type SharedSuppressions = Arc<parking_lot::RwLock<Option<Suppressions>>>;

#[cfg(test)]
mod tests {
    use super::hash;

    #[test]
    fn hashes_are_keyed_and_separate_kinds() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let h = hash(&a, "email", "marie@example.com");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash(&a, "email", "marie@example.com"));
        assert_ne!(h, hash(&b, "email", "marie@example.com"));
        assert_ne!(hash(&a, "email", "x"), hash(&a, "emai", "lx"));
    }
}
