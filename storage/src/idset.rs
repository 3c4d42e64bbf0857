//! Sets of ids for [`Predicate::InSet`](crate::Predicate::InSet): `column
//! IN set` where the set is a roaring bitmap of non-negative integers (the
//! layer above uses it for the members of an audience, thousands to
//! millions of profile ids).
//!
//! Evaluating it on a batch probes each row's value. A roaring probe is a
//! binary search among containers then within one; a plain bitset of the
//! set's range is one load and a shift, so when that range is small enough
//! ([`DENSE_MAX_BITS`]) the set builds one, once, on first use.
//!
//! The probe is the cost of a query filtering by a set (about 1.8 ns a row
//! on one core here: the bit of each row found and packed), and the same
//! set is evaluated again and again over the same rows: a dashboard or an
//! export asks `in_segment` of one audience over one table many times
//! between refreshes. A set and a segment file are both immutable, so the
//! answer for one batch of one file never changes while the set lives: the
//! set keeps it ([`IdSet::evaluate_at`], keyed by [`BatchKey`]), within a
//! budget shared by every set of the process ([`MASK_CACHE_MAX_BITS`]).
//! A refreshed audience is a new set, with nothing kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, PrimitiveArray};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};
use roaring::RoaringBitmap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::index::ColumnIndex;
use crate::value::Value;
use crate::zonemap::ColumnStats;

/// Largest range a bitset is built for (2^28 bits: 32 MiB).
pub const DENSE_MAX_BITS: u64 = 1 << 28;

/// Most bits of answers kept by all sets of the process together (256
/// MiB): past it, a set evaluates without keeping what it found.
pub const MASK_CACHE_MAX_BITS: u64 = 1 << 31;

/// Bits kept by every set's [`MaskCache`] now.
static MASK_CACHE_BITS: AtomicU64 = AtomicU64::new(0);

/// Names one batch of one segment file: the file is immutable, so whatever
/// a set answers for the batch's rows holds as long as the set does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The segment's id (never reused in a store).
    pub segment: u64,
    /// The batch's position in the segment.
    pub batch: u32,
}

/// The answers a set gave, per column and batch, and the bits they take.
#[derive(Default)]
struct MaskCache {
    masks: parking_lot::Mutex<HashMap<String, HashMap<BatchKey, BooleanBuffer>>>,
    bits: AtomicU64,
}

impl MaskCache {
    fn get(&self, column: &str, at: BatchKey) -> Option<BooleanBuffer> {
        self.masks.lock().get(column)?.get(&at).cloned()
    }

    /// Keeps `bits` if the process-wide budget has room.
    fn put(&self, column: &str, at: BatchKey, bits: &BooleanBuffer) {
        let n = bits.len() as u64;
        let reserved = MASK_CACHE_BITS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            (used + n <= MASK_CACHE_MAX_BITS).then_some(used + n)
        });
        if reserved.is_err() {
            return;
        }
        let mut masks = self.masks.lock();
        let slot = masks.entry(column.to_string()).or_default();
        if slot.insert(at, bits.clone()).is_some() {
            // Another thread answered the same batch first: one copy kept.
            MASK_CACHE_BITS.fetch_sub(n, Ordering::SeqCst);
        } else {
            self.bits.fetch_add(n, Ordering::SeqCst);
        }
    }
}

impl Drop for MaskCache {
    fn drop(&mut self) {
        MASK_CACHE_BITS.fetch_sub(*self.bits.get_mut(), Ordering::SeqCst);
    }
}

/// An immutable set of ids, cheap to clone.
#[derive(Clone)]
pub struct IdSet {
    ids: Arc<RoaringBitmap>,
    dense: Arc<OnceLock<Option<Vec<u64>>>>,
    masks: Arc<MaskCache>,
}

impl IdSet {
    /// The set of `ids`.
    pub fn new(ids: Arc<RoaringBitmap>) -> Self {
        Self {
            ids,
            dense: Arc::new(OnceLock::new()),
            masks: Arc::default(),
        }
    }

    /// Batches whose answers this set keeps (for tests and reports).
    pub fn kept_batches(&self) -> usize {
        self.masks.masks.lock().values().map(HashMap::len).sum()
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
                // Ids taken a thousand at a time: several times faster than
                // one at a time (1 M members at 10 M profiles).
                let mut ids = self.ids.iter();
                let mut buf = [0u32; 1024];
                loop {
                    let got = ids.next_many(&mut buf);
                    if got.is_empty() {
                        break;
                    }
                    for id in got.iter() {
                        if let Some(w) = words.get_mut((id / 64) as usize) {
                            *w |= 1 << (id % 64);
                        }
                    }
                }
                Some(words)
            })
            .as_deref()
    }

    /// Whether each value of `column` is in the set (NULL stays NULL).
    pub fn evaluate(&self, column: &ArrayRef) -> Result<BooleanArray> {
        self.evaluate_at(column, None)
    }

    /// [`IdSet::evaluate`] of the column `at.0` of the batch `at.1` of an
    /// immutable segment file: answered from what the set kept when it
    /// evaluated that batch before, and kept for next time.
    pub fn evaluate_at(
        &self,
        column: &ArrayRef,
        at: Option<(&str, BatchKey)>,
    ) -> Result<BooleanArray> {
        // Only answers over signed integers as stored are kept (a file may
        // store ids narrower than 64 bits; the values are the same): a
        // cast column's answer would depend on the type it is read as,
        // not only on the file.
        let at = at.filter(|_| {
            matches!(
                column.data_type(),
                DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8
            )
        });
        if let Some((name, key)) = at
            && let Some(bits) = self.masks.get(name, key)
            && bits.len() == column.len()
        {
            return Ok(BooleanArray::new(bits, column.nulls().cloned()));
        }
        let out = self.probe(column)?;
        if let Some((name, key)) = at {
            self.masks.put(name, key, out.values());
        }
        Ok(out)
    }

    fn probe(&self, column: &ArrayRef) -> Result<BooleanArray> {
        // Signed integers of any width are probed as they are stored (a
        // file keeps a column of ids below 2^31 as 32-bit integers: half
        // the bytes to read); others are cast to 64 bits first.
        match column.data_type() {
            DataType::Int64 => Ok(self.probe_values(column.as_primitive::<Int64Type>())),
            DataType::Int32 => Ok(self.probe_values(column.as_primitive::<Int32Type>())),
            DataType::Int16 => Ok(self.probe_values(column.as_primitive::<Int16Type>())),
            DataType::Int8 => Ok(self.probe_values(column.as_primitive::<Int8Type>())),
            t if t.is_integer() => {
                let wide = cast(column, &DataType::Int64)
                    .map_err(|e| Error::InvalidInput(format!("cannot evaluate predicate: {e}")))?;
                Ok(self.probe_values(wide.as_primitive::<Int64Type>()))
            }
            other => Err(Error::SchemaMismatch(format!(
                "a set of ids is compared with integers, not {other}"
            ))),
        }
    }

    fn probe_values<T>(&self, col: &PrimitiveArray<T>) -> BooleanArray
    where
        T: ArrowPrimitiveType,
        T::Native: Into<i64>,
    {
        let values = col.values();
        let bits = match self.dense() {
            Some(words) => {
                // 64 rows per output word, without a branch per row: a
                // value past the set (a negative one wraps there) reads no
                // word. Whole words of 64 rows have constant shifts and
                // four independent chains of ORs (10-15 % faster here than
                // one loop over `chunks(64)`).
                let mut out = Vec::with_capacity(values.len().div_ceil(64));
                let mut whole = values.chunks_exact(64);
                for chunk in &mut whole {
                    let mut acc = [0u64; 4];
                    for (j, quad) in chunk.chunks_exact(4).enumerate() {
                        for (l, v) in quad.iter().enumerate() {
                            acc[l] |= dense_bit(words, (*v).into()) << (j * 4 + l);
                        }
                    }
                    out.push(acc[0] | acc[1] | acc[2] | acc[3]);
                }
                let rest = whole.remainder();
                if !rest.is_empty() {
                    let mut packed = 0u64;
                    for (j, v) in rest.iter().enumerate() {
                        packed |= dense_bit(words, (*v).into()) << j;
                    }
                    out.push(packed);
                }
                BooleanBuffer::new(Buffer::from_vec(out), 0, values.len())
            }
            None => BooleanBuffer::collect_bool(values.len(), |i| {
                u32::try_from(values[i].into()).is_ok_and(|v| self.ids.contains(v))
            }),
        };
        BooleanArray::new(bits, col.nulls().cloned())
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

/// Whether `v` is in the bitset `words` (1 or 0).
#[inline(always)]
fn dense_bit(words: &[u64], v: i64) -> u64 {
    let v = v as u64;
    let word = words.get((v / 64) as usize).copied().unwrap_or(0);
    (word >> (v % 64)) & 1
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

    #[test]
    fn the_dense_probe_packs_rows_around_its_64_row_words() {
        let ids = RoaringBitmap::from_iter((0..5000u32).filter(|i| i % 3 == 0 || i % 7 == 1));
        let set = IdSet::new(Arc::new(ids.clone()));
        for len in [1usize, 63, 64, 65, 130, 1000] {
            let values: Vec<i64> = (0..len as i64).map(|i| (i * 7919) % 6000 - 10).collect();
            assert_probe(&set, &ids, values);
        }
    }

    /// `set`'s probe of `values` answers as `ids.contains` each.
    fn assert_probe(set: &IdSet, ids: &RoaringBitmap, values: Vec<i64>) {
        let want: BooleanArray = values
            .iter()
            .map(|v| Some(u32::try_from(*v).is_ok_and(|v| ids.contains(v))))
            .collect();
        let wide: ArrayRef = Arc::new(Int64Array::from(values));
        assert_eq!(set.evaluate(&wide).unwrap(), want, "{} rows", want.len());
        // The values as stored narrower (a file stores ids below 2^31 as
        // 32-bit integers), probed as they are; those that do not fit are
        // NULL (a safe cast), and so is their answer.
        for dt in [DataType::Int32, DataType::Int16, DataType::Int8] {
            let col = cast(&wide, &dt).unwrap();
            let want: BooleanArray = (0..want.len())
                .map(|i| (!col.is_null(i)).then(|| want.value(i)))
                .collect();
            assert_eq!(set.evaluate(&col).unwrap(), want, "{dt}");
        }
    }

    #[test]
    fn the_dense_bitset_holds_every_member_across_containers() {
        // Sparse and dense containers, a run, and the last possible word.
        let mut ids = RoaringBitmap::from_iter((0..3_000_000u32).filter(|i| i % 11 == 3));
        ids.insert_range(70_000..140_000);
        ids.extend((0..200u32).map(|i| 5_000_000 + i * 977));
        ids.insert(6_000_063);
        let set = IdSet::new(Arc::new(ids.clone()));
        let values: Vec<i64> = (0..20_000i64)
            .map(|i| (i * 104_729) % 6_100_000)
            .chain(ids.iter().step_by(97).map(i64::from))
            .chain([6_000_063, 6_000_064, -1, i64::MAX])
            .collect();
        assert_probe(&set, &ids, values);
    }

    #[test]
    fn a_batch_answer_is_kept_per_set_file_batch_and_column() {
        let set = IdSet::new(Arc::new(RoaringBitmap::from_iter([1u32, 5, 9])));
        let at = |segment, batch| BatchKey { segment, batch };
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(2), Some(9)]));
        let want = set.evaluate(&a).unwrap();
        assert_eq!(set.kept_batches(), 0, "no key, nothing kept");
        assert_eq!(set.evaluate_at(&a, Some(("id", at(1, 0)))).unwrap(), want);
        assert_eq!(set.kept_batches(), 1);
        // Answered from what was kept: the same bits, the nulls of the
        // column at hand.
        assert_eq!(set.evaluate_at(&a, Some(("id", at(1, 0)))).unwrap(), want);
        assert_eq!(set.kept_batches(), 1);
        // Another batch, file or column is another answer.
        let b: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), Some(6), None, Some(1)]));
        let want_b = BooleanArray::from(vec![Some(true), Some(false), None, Some(true)]);
        for key in [at(1, 1), at(2, 0)] {
            assert_eq!(set.evaluate_at(&b, Some(("id", key))).unwrap(), want_b);
        }
        assert_eq!(
            set.evaluate_at(&b, Some(("other", at(1, 0)))).unwrap(),
            want_b
        );
        assert_eq!(set.kept_batches(), 4);
        // Another set keeps its own.
        let other = IdSet::new(Arc::new(RoaringBitmap::from_iter([2u32])));
        assert_eq!(
            other.evaluate_at(&a, Some(("id", at(1, 0)))).unwrap(),
            BooleanArray::from(vec![Some(false), None, Some(true), Some(false)])
        );
        // A column stored narrow is kept too (the same values); one read
        // through a cast (unsigned) is not.
        let narrow: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![1, 2]));
        assert_eq!(
            set.evaluate_at(&narrow, Some(("narrow", at(3, 0))))
                .unwrap(),
            BooleanArray::from(vec![true, false])
        );
        assert_eq!(set.kept_batches(), 5);
        let unsigned: ArrayRef = Arc::new(arrow::array::UInt32Array::from(vec![1, 2]));
        set.evaluate_at(&unsigned, Some(("unsigned", at(3, 0))))
            .unwrap();
        assert_eq!(set.kept_batches(), 5);
        // The budget is given back when the sets go.
        let used = MASK_CACHE_BITS.load(Ordering::SeqCst);
        assert!(used >= 16, "{used}");
        drop((set, other));
    }
}
