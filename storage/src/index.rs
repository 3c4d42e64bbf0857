//! Roaring-bitmap indexes: for one column of one segment, each distinct value
//! maps to the bitmap of the row positions holding it, plus a bitmap of the
//! null rows.
//!
//! [`select`] turns a [`Predicate`] into the set of rows it can be TRUE on,
//! using the indexes it can and saying whether the answer is exact. It keeps
//! SQL's three-valued logic: every indexed sub-predicate yields both the rows
//! where it is TRUE and the rows where it is UNKNOWN, so `NOT` stays correct
//! in the presence of NULLs.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, Int32Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Int64Type};
use hashbrown::HashMap;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::codec::{from_postcard, to_postcard};
use crate::error::{Error, Result};
use crate::predicate::{CmpOp, Predicate};
use crate::value::{Value, is_temporal_int};

/// Columns with at most this many distinct values in a segment are indexed
/// without being asked.
pub const AUTO_INDEX_MAX_DISTINCT: usize = 256;

/// The distinct keys of an index, sorted ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IndexKeys {
    /// Boolean column.
    Bool(Vec<bool>),
    /// Integer, date or timestamp column (by tick count).
    Int(Vec<i64>),
    /// String column.
    Str(Vec<String>),
}

impl IndexKeys {
    fn len(&self) -> usize {
        match self {
            IndexKeys::Bool(k) => k.len(),
            IndexKeys::Int(k) => k.len(),
            IndexKeys::Str(k) => k.len(),
        }
    }

    /// The half-open range of key positions `[lo, hi)` satisfying `key op value`,
    /// or `None` when the value is not of the keys' kind.
    fn range(&self, op: CmpOp, value: &Value) -> Option<(usize, usize, Option<usize>)> {
        fn bounds<T: Ord + ?Sized, K: std::borrow::Borrow<T>>(
            keys: &[K],
            v: &T,
            op: CmpOp,
        ) -> (usize, usize, Option<usize>) {
            let first_ge = keys.partition_point(|k| k.borrow() < v);
            let first_gt = keys.partition_point(|k| k.borrow() <= v);
            let n = keys.len();
            match op {
                CmpOp::Eq => (first_ge, first_gt, None),
                // Everything but the equal keys: [0, first_ge) ∪ [first_gt, n).
                CmpOp::NotEq => (0, n, (first_ge < first_gt).then_some(first_ge)),
                CmpOp::Lt => (0, first_ge, None),
                CmpOp::LtEq => (0, first_gt, None),
                CmpOp::Gt => (first_gt, n, None),
                CmpOp::GtEq => (first_ge, n, None),
            }
        }
        match (self, value) {
            (IndexKeys::Bool(k), Value::Bool(v)) => Some(bounds(k, v, op)),
            (IndexKeys::Int(k), Value::Int(v)) => Some(bounds(k, v, op)),
            (IndexKeys::Str(k), Value::Str(v)) => Some(bounds::<str, String>(k, v.as_str(), op)),
            _ => None,
        }
    }
}

/// The bitmap index of one column of one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnIndex {
    rows: u32,
    keys: IndexKeys,
    bitmaps: Vec<RoaringBitmap>,
    nulls: RoaringBitmap,
}

#[derive(Serialize, Deserialize)]
struct IndexOnDisk {
    rows: u32,
    nulls: Vec<u8>,
    keys: IndexKeys,
    bitmaps: Vec<Vec<u8>>,
}

impl ColumnIndex {
    /// Whether a column of this type can carry a bitmap index.
    pub fn supports(data_type: &DataType) -> bool {
        (data_type.is_integer() && *data_type != DataType::UInt64)
            || is_temporal_int(data_type)
            || matches!(data_type, DataType::Boolean | DataType::Utf8)
    }

    /// Builds the index of a column; `None` when the type is not indexable or
    /// it has more than `max_distinct` distinct values.
    pub fn build(array: &ArrayRef, max_distinct: Option<usize>) -> Option<ColumnIndex> {
        let rows = u32::try_from(array.len()).ok()?;
        let cap = max_distinct.unwrap_or(usize::MAX);
        // Rows are gathered per key in ascending order, then each list
        // becomes a bitmap at once: pushing row by row into a roaring bitmap
        // looks for the last set bit of a dense container on every push.
        let mut nulls: Vec<u32> = Vec::new();
        let (keys, lists) = match array.data_type() {
            DataType::Boolean => {
                let a = array.as_boolean();
                let mut lists: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
                for (i, v) in (0..rows).zip(a.iter()) {
                    match v {
                        Some(b) => lists[usize::from(b)].push(i),
                        None => nulls.push(i),
                    }
                }
                let mut keys = Vec::new();
                let mut out = Vec::new();
                for (b, l) in [false, true].into_iter().zip(lists) {
                    if !l.is_empty() {
                        keys.push(b);
                        out.push(l);
                    }
                }
                (IndexKeys::Bool(keys), out)
            }
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                let entries = group_rows(a.iter(), rows, cap, &mut nulls)?;
                let (k, l): (Vec<_>, Vec<_>) =
                    entries.into_iter().map(|(k, l)| (k.to_string(), l)).unzip();
                (IndexKeys::Str(k), l)
            }
            dt if Self::supports(dt) => {
                let wide = cast(array, &DataType::Int64).ok()?;
                let a = wide.as_primitive::<Int64Type>();
                let entries = group_rows(a.iter(), rows, cap, &mut nulls)?;
                let (k, l): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
                (IndexKeys::Int(k), l)
            }
            _ => return None,
        };
        let bitmaps = lists.into_iter().map(ascending_bitmap).collect();
        let nulls = ascending_bitmap(nulls);
        Some(ColumnIndex {
            rows,
            keys,
            bitmaps,
            nulls,
        })
    }

    /// The column as a dictionary array built from the index (no hashing):
    /// values are the sorted keys, each row's code is its key's position.
    /// `None` unless this is the index of a string column of `len` rows.
    pub(crate) fn to_dictionary(&self, len: usize) -> Option<ArrayRef> {
        let IndexKeys::Str(keys) = &self.keys else {
            return None;
        };
        if len != self.rows as usize {
            return None;
        }
        let mut codes: Vec<Option<i32>> = vec![None; len];
        for (k, bm) in self.bitmaps.iter().enumerate() {
            let code = i32::try_from(k).ok()?;
            for row in bm {
                *codes.get_mut(row as usize)? = Some(code);
            }
        }
        let values = StringArray::from_iter_values(keys.iter());
        let dict = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(codes),
            std::sync::Arc::new(values),
        )
        .ok()?;
        Some(std::sync::Arc::new(dict))
    }

    /// Number of distinct non-null values.
    pub fn distinct(&self) -> usize {
        self.keys.len()
    }

    /// Rows where `column op value` is TRUE; `None` when the value's kind does
    /// not match the index (the caller then scans).
    pub fn matching(&self, op: CmpOp, value: &Value) -> Option<RoaringBitmap> {
        let (lo, hi, skip) = self.keys.range(op, value)?;
        let mut out = RoaringBitmap::new();
        let skip_end = skip.map(|s| {
            // The keys equal to `value` form one run starting at `s`.
            let (_, end, _) = self.keys.range(CmpOp::Eq, value).unwrap_or((s, s, None));
            (s, end)
        });
        for (i, bm) in self.bitmaps.iter().enumerate().take(hi).skip(lo) {
            if let Some((s, e)) = skip_end
                && i >= s
                && i < e
            {
                continue;
            }
            out |= bm;
        }
        Some(out)
    }

    /// Rows whose value is one of `ids`; `None` for a column that does not
    /// hold integers. Each id is looked up among the keys, or each key in
    /// `ids`, whichever is fewer.
    pub fn matching_ids(&self, ids: &RoaringBitmap) -> Option<RoaringBitmap> {
        let IndexKeys::Int(keys) = &self.keys else {
            return None;
        };
        let mut out = RoaringBitmap::new();
        if ids.len() < keys.len() as u64 {
            for id in ids {
                if let Ok(i) = keys.binary_search(&i64::from(id)) {
                    out |= &self.bitmaps[i];
                }
            }
        } else {
            for (k, bm) in keys.iter().zip(&self.bitmaps) {
                if u32::try_from(*k).is_ok_and(|k| ids.contains(k)) {
                    out |= bm;
                }
            }
        }
        Some(out)
    }

    /// Rows where the column is NULL.
    pub fn nulls(&self) -> &RoaringBitmap {
        &self.nulls
    }

    /// Serialises the index (layout in `docs/storage.md`).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut bitmaps = Vec::with_capacity(self.bitmaps.len());
        for bm in &self.bitmaps {
            bitmaps.push(bitmap_bytes(bm)?);
        }
        let disk = IndexOnDisk {
            rows: self.rows,
            nulls: bitmap_bytes(&self.nulls)?,
            keys: self.keys.clone(),
            bitmaps,
        };
        to_postcard(&disk, "bitmap index")
    }

    /// Parses an index written by [`ColumnIndex::encode`].
    pub fn decode(bytes: &[u8], path: &Path) -> Result<ColumnIndex> {
        let disk: IndexOnDisk = from_postcard(bytes, path, "bitmap index")?;
        if disk.keys.len() != disk.bitmaps.len() {
            return Err(Error::corrupt(
                path,
                "bitmap index has a different number of keys and bitmaps",
            ));
        }
        let mut bitmaps = Vec::with_capacity(disk.bitmaps.len());
        for b in &disk.bitmaps {
            bitmaps.push(parse_bitmap(b, path)?);
        }
        let nulls = parse_bitmap(&disk.nulls, path)?;
        for bm in bitmaps.iter().chain(std::iter::once(&nulls)) {
            if bm.max().is_some_and(|m| m >= disk.rows) {
                return Err(Error::corrupt(
                    path,
                    "bitmap index points past the last row",
                ));
            }
        }
        Ok(ColumnIndex {
            rows: disk.rows,
            keys: disk.keys,
            bitmaps,
            nulls,
        })
    }
}

/// The rows of each distinct value of `values` (row `i` is the `i`-th
/// value), sorted by value, or `None` past `cap` distinct values; NULL rows
/// go to `nulls`.
fn group_rows<K: std::hash::Hash + Eq + Ord>(
    values: impl Iterator<Item = Option<K>>,
    rows: u32,
    cap: usize,
    nulls: &mut Vec<u32>,
) -> Option<Vec<(K, Vec<u32>)>> {
    let mut map: HashMap<K, Vec<u32>> = HashMap::new();
    for (i, v) in (0..rows).zip(values) {
        match v {
            Some(x) => {
                if let Some(list) = map.get_mut(&x) {
                    list.push(i);
                } else if map.len() >= cap {
                    return None;
                } else {
                    map.insert(x, vec![i]);
                }
            }
            None => nulls.push(i),
        }
    }
    let mut entries: Vec<(K, Vec<u32>)> = map.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some(entries)
}

/// The bitmap of `rows`, strictly ascending.
fn ascending_bitmap(rows: Vec<u32>) -> RoaringBitmap {
    RoaringBitmap::from_sorted_iter(rows.iter().copied())
        .unwrap_or_else(|_| rows.into_iter().collect())
}

/// Serialises a bitmap in the portable Roaring format.
pub(crate) fn bitmap_bytes(bm: &RoaringBitmap) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bm.serialized_size());
    bm.serialize_into(&mut out)
        .map_err(|e| Error::InvalidInput(format!("cannot encode bitmap: {e}")))?;
    Ok(out)
}

/// Parses a portable Roaring bitmap, reporting damage as corruption of `path`.
pub(crate) fn parse_bitmap(bytes: &[u8], path: &Path) -> Result<RoaringBitmap> {
    RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| Error::corrupt(path, format!("invalid roaring bitmap: {e}")))
}

/// The rows a predicate selects in one segment, as far as indexes can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// No index applies: every row is a candidate.
    All,
    /// The predicate can only be TRUE on these rows; others must still be checked.
    Candidates(RoaringBitmap),
    /// Exactly the rows where the predicate is TRUE (`t`) and UNKNOWN (`u`).
    Exact {
        /// Rows where it is TRUE.
        t: RoaringBitmap,
        /// Rows where it is UNKNOWN (NULL).
        u: RoaringBitmap,
    },
}

impl Selection {
    /// The candidate rows, or `None` for all rows.
    pub fn rows(&self) -> Option<&RoaringBitmap> {
        match self {
            Selection::All => None,
            Selection::Candidates(c) | Selection::Exact { t: c, .. } => Some(c),
        }
    }

    /// Whether the selection is the exact answer.
    pub fn is_exact(&self) -> bool {
        matches!(self, Selection::Exact { .. })
    }
}

/// Selects the rows of a segment of `rows` rows on which `pred` can be TRUE.
/// `index_of` returns the index of a column if it has one; the names of the
/// indexes used are pushed to `used`.
pub fn select(
    pred: &Predicate,
    rows: u32,
    index_of: &dyn Fn(&str) -> Option<Arc<ColumnIndex>>,
    used: &mut Vec<String>,
) -> Selection {
    let all = || {
        let mut b = RoaringBitmap::new();
        b.insert_range(0..rows);
        b
    };
    let mut note = |c: &str| {
        if !used.iter().any(|u| u == c) {
            used.push(c.to_string());
        }
    };
    match pred {
        Predicate::Compare { column, op, value } => {
            let Some(idx) = index_of(column) else {
                return Selection::All;
            };
            if value.is_null() {
                note(column);
                return Selection::Exact {
                    t: RoaringBitmap::new(),
                    u: all(),
                };
            }
            match idx.matching(*op, value) {
                Some(t) => {
                    note(column);
                    Selection::Exact {
                        t,
                        u: idx.nulls().clone(),
                    }
                }
                None => Selection::All,
            }
        }
        Predicate::InList { column, values } => {
            let Some(idx) = index_of(column) else {
                return Selection::All;
            };
            let mut t = RoaringBitmap::new();
            for v in values.iter().filter(|v| !v.is_null()) {
                match idx.matching(CmpOp::Eq, v) {
                    Some(m) => t |= m,
                    None => return Selection::All,
                }
            }
            note(column);
            if values.is_empty() {
                return Selection::Exact {
                    t,
                    u: RoaringBitmap::new(),
                };
            }
            let mut u = idx.nulls().clone();
            if values.iter().any(Value::is_null) {
                u |= all() - &t;
            }
            Selection::Exact { t, u }
        }
        Predicate::InSet { column, set } => {
            let Some(idx) = index_of(column) else {
                return Selection::All;
            };
            match set.select(&idx) {
                Some(t) => {
                    note(column);
                    Selection::Exact {
                        t,
                        u: idx.nulls().clone(),
                    }
                }
                None => Selection::All,
            }
        }
        Predicate::IsNull(c) | Predicate::IsNotNull(c) => {
            let Some(idx) = index_of(c) else {
                return Selection::All;
            };
            note(c);
            let t = if matches!(pred, Predicate::IsNull(_)) {
                idx.nulls().clone()
            } else {
                all() - idx.nulls()
            };
            Selection::Exact {
                t,
                u: RoaringBitmap::new(),
            }
        }
        Predicate::Not(p) => match select(p, rows, index_of, used) {
            Selection::Exact { t, u } => Selection::Exact {
                t: all() - &t - &u,
                u,
            },
            _ => Selection::All,
        },
        Predicate::And(ps) => {
            let parts: Vec<Selection> =
                ps.iter().map(|p| select(p, rows, index_of, used)).collect();
            if parts.iter().all(Selection::is_exact) {
                let mut t = all();
                let mut u = RoaringBitmap::new();
                let mut not_false = all(); // rows where no conjunct is FALSE
                for part in &parts {
                    if let Selection::Exact { t: pt, u: pu } = part {
                        t &= pt;
                        u |= pu;
                        not_false &= pt | pu;
                    }
                }
                u &= &not_false;
                u -= &t;
                return Selection::Exact { t, u };
            }
            let mut acc: Option<RoaringBitmap> = None;
            for part in &parts {
                if let Some(r) = part.rows() {
                    acc = Some(match acc {
                        Some(a) => a & r,
                        None => r.clone(),
                    });
                }
            }
            acc.map_or(Selection::All, Selection::Candidates)
        }
        Predicate::Or(ps) => {
            let parts: Vec<Selection> =
                ps.iter().map(|p| select(p, rows, index_of, used)).collect();
            if parts.iter().any(|p| matches!(p, Selection::All)) {
                return Selection::All;
            }
            let mut t = RoaringBitmap::new();
            for part in &parts {
                if let Some(r) = part.rows() {
                    t |= r;
                }
            }
            if parts.iter().all(Selection::is_exact) {
                let mut u = RoaringBitmap::new();
                for part in &parts {
                    if let Selection::Exact { u: pu, .. } = part {
                        u |= pu;
                    }
                }
                u -= &t;
                return Selection::Exact { t, u };
            }
            Selection::Candidates(t)
        }
    }
}
