//! Sets of ids for [`Predicate::InSet`](crate::Predicate::InSet): `column
//! IN set` where the set is a roaring bitmap of non-negative integers (the
//! layer above uses it for the members of an audience, thousands to
//! millions of profile ids).
//!
//! Evaluating it on a batch probes each row's value. A roaring probe is a
//! binary search among containers then within one; a plain bitset of the
//! set's range is one load and a shift, so when that range is small enough
//! ([`DENSE_MAX_BITS`]) the set builds one, once, on first use.

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use roaring::RoaringBitmap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::index::ColumnIndex;
use crate::value::Value;
use crate::zonemap::ColumnStats;

/// Largest range a bitset is built for (2^28 bits: 32 MiB).
pub const DENSE_MAX_BITS: u64 = 1 << 28;

/// An immutable set of ids, cheap to clone.
#[derive(Clone)]
pub struct IdSet {
    ids: Arc<RoaringBitmap>,
    dense: Arc<OnceLock<Option<Vec<u64>>>>,
}

impl IdSet {
    /// The set of `ids`.
    pub fn new(ids: Arc<RoaringBitmap>) -> Self {
        Self {
            ids,
            dense: Arc::new(OnceLock::new()),
        }
    }

    /// Its ids.
    pub fn ids(&self) -> &RoaringBitmap {
        &self.ids
    }

    /// The bitset of `[0, max]`, if small enough.
    fn dense(&self) -> Option<&[u64]> {
        self.dense
            .get_or_init(|| {
                let max = u64::from(self.ids.max()?);
                if max >= DENSE_MAX_BITS {
                    return None;
                }
                let mut words = vec![0u64; (max / 64 + 1) as usize];
                for id in self.ids.iter() {
                    words[(id / 64) as usize] |= 1 << (id % 64);
                }
                Some(words)
            })
            .as_deref()
    }

    /// Whether each value of `column` is in the set (NULL stays NULL).
    pub fn evaluate(&self, column: &ArrayRef) -> Result<BooleanArray> {
        let wide;
        let col = match column.data_type() {
            DataType::Int64 => column,
            t if t.is_integer() => {
                wide = cast(column, &DataType::Int64)
                    .map_err(|e| Error::InvalidInput(format!("cannot evaluate predicate: {e}")))?;
                &wide
            }
            other => {
                return Err(Error::SchemaMismatch(format!(
                    "a set of ids is compared with integers, not {other}"
                )));
            }
        };
        let col = col.as_primitive::<Int64Type>();
        let values = col.values();
        let bits = match self.dense() {
            Some(words) => {
                // 64 rows per output word, without a branch per row: a
                // value past the set (a negative one wraps there) reads no
                // word.
                let mut out = Vec::with_capacity(values.len().div_ceil(64));
                for chunk in values.chunks(64) {
                    let mut packed = 0u64;
                    for (j, v) in chunk.iter().enumerate() {
                        let v = *v as u64;
                        let word = words.get((v / 64) as usize).copied().unwrap_or(0);
                        packed |= ((word >> (v % 64)) & 1) << j;
                    }
                    out.push(packed);
                }
                BooleanBuffer::new(Buffer::from_vec(out), 0, values.len())
            }
            None => BooleanBuffer::collect_bool(values.len(), |i| {
                u32::try_from(values[i]).is_ok_and(|v| self.ids.contains(v))
            }),
        };
        Ok(BooleanArray::new(bits, col.nulls().cloned()))
    }

    /// Whether a segment whose column has these statistics may hold a row
    /// in the set (`want`) or a non-null row out of it (`!want`).
    pub fn may_be(&self, want: bool, s: &ColumnStats) -> bool {
        if s.all_null() {
            return false;
        }
        let (Some(Value::Int(lo)), Some(Value::Int(hi))) = (&s.min, &s.max) else {
            return true;
        };
        let clamp = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        if *hi < 0 {
            return !want;
        }
        let inside = self.ids.range_cardinality(clamp(*lo)..=clamp(*hi));
        if want {
            inside > 0
        } else {
            // Every value of the range in the set: no row can be out of it.
            *lo < 0 || *hi > i64::from(u32::MAX) || inside < (hi - lo + 1) as u64
        }
    }

    /// The rows of an indexed column whose value is in the set: each
    /// member looked up among the keys, or each key in the set, whichever
    /// is fewer.
    pub fn select(&self, index: &ColumnIndex) -> Option<RoaringBitmap> {
        index.matching_ids(&self.ids)
    }
}

impl fmt::Debug for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdSet({} ids)", self.ids.len())
    }
}

impl PartialEq for IdSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids) || self.ids == other.ids
    }
}

/// Serialised as the portable roaring format.
impl Serialize for IdSet {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut bytes = Vec::with_capacity(self.ids.serialized_size());
        self.ids
            .serialize_into(&mut bytes)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for IdSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::de::Deserialize::deserialize(d)?;
        let ids = RoaringBitmap::deserialize_from(&bytes[..]).map_err(serde::de::Error::custom)?;
        Ok(IdSet::new(Arc::new(ids)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn dense_and_sparse_probes_agree_with_sql() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3),
            None,
            Some(-1),
            Some(7),
            Some(1 << 40),
            Some(64),
            Some(65),
        ]));
        for ids in [
            RoaringBitmap::from_iter([3u32, 64, 1000]),
            RoaringBitmap::from_iter([3u32, 64, u32::MAX]),
        ] {
            let set = IdSet::new(Arc::new(ids));
            let got = set.evaluate(&values).unwrap();
            let want = BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(false),
                Some(false),
                Some(true),
                Some(false),
            ]);
            assert_eq!(got, want);
        }
        let set = IdSet::new(Arc::new(RoaringBitmap::from_iter([10u32, 11, 12])));
        let stats = |lo: i64, hi: i64| ColumnStats {
            min: Some(Value::Int(lo)),
            max: Some(Value::Int(hi)),
            null_count: 0,
            row_count: 5,
        };
        assert!(!set.may_be(true, &stats(0, 9)));
        assert!(set.may_be(true, &stats(12, 20)));
        assert!(!set.may_be(true, &stats(-5, -1)));
        assert!(
            !set.may_be(false, &stats(10, 12)),
            "every value is in the set"
        );
        assert!(set.may_be(false, &stats(10, 13)));
        let bytes = postcard::to_allocvec(&set).unwrap();
        let back: IdSet = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, set);
    }
}
