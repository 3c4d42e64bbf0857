//! Pairwise precision, recall and F1 of a clustering against the truth,
//! computed from cluster contingency counts (never by enumerating pairs):
//! with n(c, t) the records in predicted cluster c and true entity t,
//!
//! - true positives  TP = Σ C(n(c, t), 2)
//! - predicted pairs    = Σ C(n(c), 2)
//! - true pairs         = Σ C(n(t), 2)
//!
//! precision = TP / predicted pairs, recall = TP / true pairs. A record
//! without a profile is a cluster of its own.

use hashbrown::HashMap;

/// The quality of a clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct PairwiseQuality {
    /// Records compared.
    pub records: u64,
    /// Pairs in the same predicted cluster and the same true entity.
    pub true_positives: u128,
    /// Pairs in the same predicted cluster.
    pub predicted_pairs: u128,
    /// Pairs of the same true entity.
    pub true_pairs: u128,
    /// TP / predicted pairs (1 when nothing is predicted together).
    pub precision: f64,
    /// TP / true pairs (1 when no two records belong together).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// True entities whose records are spread over more than one cluster.
    pub split_entities: u64,
    /// Predicted clusters holding records of more than one true entity.
    pub over_merged_clusters: u64,
}

fn pairs(n: u64) -> u128 {
    u128::from(n) * u128::from(n.saturating_sub(1)) / 2
}

/// Compares `(predicted cluster, true entity)` per record. `None` as the
/// prediction makes the record a singleton.
pub fn pairwise(records: impl IntoIterator<Item = (Option<u64>, u64)>) -> PairwiseQuality {
    let mut cell: HashMap<(u64, u64), u64> = HashMap::new();
    let mut unplaced: HashMap<u64, u64> = HashMap::new();
    let mut n = 0u64;
    let mut entity_size: HashMap<u64, u64> = HashMap::new();
    for (pred, truth) in records {
        n += 1;
        *entity_size.entry(truth).or_default() += 1;
        match pred {
            Some(p) => *cell.entry((p, truth)).or_default() += 1,
            None => *unplaced.entry(truth).or_default() += 1,
        }
    }
    let mut cluster_size: HashMap<u64, u64> = HashMap::new();
    let mut cluster_entities: HashMap<u64, u64> = HashMap::new();
    let mut entity_clusters: HashMap<u64, u64> = HashMap::new();
    let mut tp = 0u128;
    for ((p, t), c) in &cell {
        tp += pairs(*c);
        *cluster_size.entry(*p).or_default() += c;
        *cluster_entities.entry(*p).or_default() += 1;
        *entity_clusters.entry(*t).or_default() += 1;
    }
    let predicted: u128 = cluster_size.values().map(|c| pairs(*c)).sum();
    let truth: u128 = entity_size.values().map(|c| pairs(*c)).sum();
    let precision = if predicted == 0 {
        1.0
    } else {
        tp as f64 / predicted as f64
    };
    let recall = if truth == 0 {
        1.0
    } else {
        tp as f64 / truth as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    // A record without a profile is a cluster of its own.
    let split_entities = entity_size
        .keys()
        .filter(|t| {
            entity_clusters.get(*t).copied().unwrap_or(0) + unplaced.get(*t).copied().unwrap_or(0)
                > 1
        })
        .count() as u64;
    PairwiseQuality {
        records: n,
        true_positives: tp,
        predicted_pairs: predicted,
        true_pairs: truth,
        precision,
        recall,
        f1,
        split_entities,
        over_merged_clusters: cluster_entities.values().filter(|e| **e > 1).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_imperfect_clusterings() {
        let q = pairwise([(Some(1), 10), (Some(1), 10), (Some(2), 20)]);
        assert_eq!((q.precision, q.recall, q.f1), (1.0, 1.0, 1.0));
        // One entity split in two: recall 1/3 of its 3 pairs.
        let q = pairwise([(Some(1), 10), (Some(1), 10), (Some(2), 10)]);
        assert_eq!(q.true_pairs, 3);
        assert_eq!(q.true_positives, 1);
        assert_eq!(q.precision, 1.0);
        assert!((q.recall - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(q.split_entities, 1);
        // Two entities merged: precision 1/3.
        let q = pairwise([(Some(1), 10), (Some(1), 10), (Some(1), 20)]);
        assert!((q.precision - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(q.over_merged_clusters, 1);
        // A record without a profile is a singleton: the pair is missed.
        let q = pairwise([(Some(1), 10), (None, 10)]);
        assert_eq!((q.true_positives, q.true_pairs), (0, 1));
        assert_eq!(q.split_entities, 1);
    }
}
