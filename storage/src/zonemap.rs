//! Per-column zone maps: minimum, maximum and null count of a segment's column.
//!
//! A scan skips a whole segment when its zone maps prove that no row can
//! satisfy the predicate (see [`Predicate::may_match`](crate::Predicate::may_match)).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::{max, max_boolean, max_string, min, min_boolean, min_string};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
};
use serde::{Deserialize, Serialize};

use crate::value::Value;

/// Strings longer than this are not kept whole as bounds: the minimum is
/// truncated (a prefix is still a lower bound), the maximum dropped.
pub const MAX_STRING_BOUND: usize = 64;

/// Statistics of one column of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ColumnStats {
    /// Smallest non-null value, if known.
    pub min: Option<Value>,
    /// Largest non-null value, if known.
    pub max: Option<Value>,
    /// Number of null rows.
    pub null_count: u64,
    /// Number of rows.
    pub row_count: u64,
}

impl ColumnStats {
    /// Computes the statistics of a whole column.
    pub fn compute(array: &ArrayRef) -> Self {
        Self::bounded_by(array, array)
    }

    /// [`Self::compute`] for a column whose distinct non-null values are
    /// `values` (its dictionary): the bounds are taken over those instead
    /// of over every row (a string comparison a row otherwise).
    pub fn compute_with_values(array: &ArrayRef, values: &ArrayRef) -> Self {
        Self::bounded_by(array, values)
    }

    fn bounded_by(array: &ArrayRef, values: &ArrayRef) -> Self {
        let (min, max) = bounds(values.as_ref()).unwrap_or((None, None));
        ColumnStats {
            min,
            max,
            null_count: array.null_count() as u64,
            row_count: array.len() as u64,
        }
    }

    /// Whether every row of the column is null.
    pub fn all_null(&self) -> bool {
        self.null_count == self.row_count
    }
}

fn bounds(a: &dyn Array) -> Option<(Option<Value>, Option<Value>)> {
    macro_rules! prim {
        ($t:ty, $wrap:expr) => {{
            let p = a.as_primitive::<$t>();
            Some((min(p).map($wrap), max(p).map($wrap)))
        }};
    }
    let int = |v: i64| Value::Int(v);
    match a.data_type() {
        DataType::Boolean => {
            let b = a.as_boolean();
            Some((
                min_boolean(b).map(Value::Bool),
                max_boolean(b).map(Value::Bool),
            ))
        }
        DataType::Int8 => prim!(Int8Type, |v: i8| int(i64::from(v))),
        DataType::Int16 => prim!(Int16Type, |v: i16| int(i64::from(v))),
        DataType::Int32 => prim!(Int32Type, |v: i32| int(i64::from(v))),
        DataType::Int64 => prim!(Int64Type, int),
        DataType::UInt8 => prim!(UInt8Type, |v: u8| int(i64::from(v))),
        DataType::UInt16 => prim!(UInt16Type, |v: u16| int(i64::from(v))),
        DataType::UInt32 => prim!(UInt32Type, |v: u32| int(i64::from(v))),
        DataType::Date32 => prim!(Date32Type, |v: i32| int(i64::from(v))),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, int),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, int),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, int),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType, int),
        DataType::Float32 | DataType::Float64 => {
            // NaN sorts above every number in SQL; bounds with NaN present are
            // kept conservative by leaving the maximum unknown.
            let (lo, hi, nan) = float_bounds(a);
            Some((
                lo.map(Value::Float),
                if nan { None } else { hi.map(Value::Float) },
            ))
        }
        DataType::Decimal128(_, _) => prim!(Decimal128Type, Value::Decimal),
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            let lo = min_string(s).map(|v| Value::Str(truncate(v).to_string()));
            let hi = max_string(s)
                .filter(|v| v.len() <= MAX_STRING_BOUND)
                .map(|v| Value::Str(v.into()));
            Some((lo, hi))
        }
        _ => None,
    }
}

fn float_bounds(a: &dyn Array) -> (Option<f64>, Option<f64>, bool) {
    let values: Box<dyn Iterator<Item = Option<f64>>> = match a.data_type() {
        DataType::Float32 => Box::new(
            a.as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(f64::from)),
        ),
        _ => Box::new(a.as_primitive::<Float64Type>().iter()),
    };
    let (mut lo, mut hi, mut nan) = (None::<f64>, None::<f64>, false);
    for v in values.flatten() {
        if v.is_nan() {
            nan = true;
            continue;
        }
        // total_cmp, as Arrow's comparison kernels order floats (-0.0 < +0.0).
        lo = Some(lo.map_or(v, |l| if v.total_cmp(&l).is_lt() { v } else { l }));
        hi = Some(hi.map_or(v, |h| if v.total_cmp(&h).is_gt() { v } else { h }));
    }
    (lo, hi, nan)
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_STRING_BOUND {
        return s;
    }
    let mut end = MAX_STRING_BOUND;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
