//! Scalar values as the storage engine knows them: zone-map bounds, index
//! keys and predicate operands.
//!
//! A [`Value`] is in the column's physical representation: dates are days
//! since the epoch, timestamps are ticks of the column's unit, decimals are
//! unscaled integers at the column's scale. The SQL layer converts literals.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int8Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt8Array,
    UInt16Array, UInt32Array, UInt64Array, new_null_array,
};
use arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A scalar value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer, date (days) or timestamp (ticks).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// An unscaled decimal at the column's scale.
    Decimal(i128),
    /// A string.
    Str(String),
}

impl Value {
    /// Orders two values of the same kind; `None` across kinds or for NULL.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => Some(a.total_cmp(b)),
            (Value::Int(a), Value::Float(b)) => Some((*a as f64).total_cmp(b)),
            (Value::Float(a), Value::Int(b)) => Some(a.total_cmp(&(*b as f64))),
            (Value::Decimal(a), Value::Decimal(b)) => Some(a.cmp(b)),
            (Value::Str(a), Value::Str(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        }
    }

    /// Whether this is SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A one-element array of `data_type` holding this value, for comparison
    /// kernels. `Ok(None)` when the value cannot be represented in that type
    /// (an integer out of an `INT2` column's range, a fraction for an integer
    /// column): the caller then compares in a wider type.
    pub fn to_array(&self, data_type: &DataType) -> Result<Option<ArrayRef>> {
        let arr: ArrayRef = match (self, data_type) {
            (Value::Null, dt) => new_null_array(dt, 1),
            (Value::Bool(b), DataType::Boolean) => Arc::new(BooleanArray::from(vec![*b])),
            (Value::Int(i), dt) => match int_array(*i, dt) {
                Some(a) => a,
                None if dt.is_integer() || is_temporal_int(dt) => return Ok(None),
                None if matches!(dt, DataType::Float32 | DataType::Float64) => {
                    return Value::Float(*i as f64).to_array(dt);
                }
                None => return Err(mismatch(self, dt)),
            },
            (Value::Float(f), DataType::Float64) => Arc::new(Float64Array::from(vec![*f])),
            (Value::Float(f), DataType::Float32) => {
                let narrowed = *f as f32;
                if f64::from(narrowed) != *f {
                    return Ok(None);
                }
                Arc::new(Float32Array::from(vec![narrowed]))
            }
            (Value::Float(_), dt) if dt.is_integer() => return Ok(None),
            (Value::Decimal(d), DataType::Decimal128(p, s)) => Arc::new(
                Decimal128Array::from(vec![*d])
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| {
                        Error::SchemaMismatch(format!("decimal {d} does not fit {data_type}: {e}"))
                    })?,
            ),
            (Value::Str(s), DataType::Utf8) => Arc::new(StringArray::from(vec![s.as_str()])),
            _ => return Err(mismatch(self, data_type)),
        };
        Ok(Some(arr))
    }

    /// Reads row `i` of `array` as a value (NULL when the row is null).
    pub fn from_array(array: &dyn Array, i: usize) -> Option<Value> {
        if array.is_null(i) {
            return Some(Value::Null);
        }
        let any = array.as_any();
        macro_rules! int {
            ($t:ty) => {
                any.downcast_ref::<$t>()
                    .map(|a| Value::Int(i64::from(a.value(i))))
            };
        }
        match array.data_type() {
            DataType::Boolean => any
                .downcast_ref::<BooleanArray>()
                .map(|a| Value::Bool(a.value(i))),
            DataType::Int8 => int!(Int8Array),
            DataType::Int16 => int!(Int16Array),
            DataType::Int32 => int!(Int32Array),
            DataType::Int64 => int!(Int64Array),
            DataType::UInt8 => int!(UInt8Array),
            DataType::UInt16 => int!(UInt16Array),
            DataType::UInt32 => int!(UInt32Array),
            DataType::UInt64 => any
                .downcast_ref::<UInt64Array>()
                .and_then(|a| i64::try_from(a.value(i)).ok().map(Value::Int)),
            DataType::Date32 => int!(Date32Array),
            DataType::Timestamp(TimeUnit::Second, _) => int!(TimestampSecondArray),
            DataType::Timestamp(TimeUnit::Millisecond, _) => int!(TimestampMillisecondArray),
            DataType::Timestamp(TimeUnit::Microsecond, _) => int!(TimestampMicrosecondArray),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => int!(TimestampNanosecondArray),
            DataType::Float32 => any
                .downcast_ref::<Float32Array>()
                .map(|a| Value::Float(f64::from(a.value(i)))),
            DataType::Float64 => any
                .downcast_ref::<Float64Array>()
                .map(|a| Value::Float(a.value(i))),
            DataType::Decimal128(_, _) => any
                .downcast_ref::<Decimal128Array>()
                .map(|a| Value::Decimal(a.value(i))),
            DataType::Utf8 => any
                .downcast_ref::<StringArray>()
                .map(|a| Value::Str(a.value(i).into())),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

fn mismatch(v: &Value, dt: &DataType) -> Error {
    Error::SchemaMismatch(format!("cannot compare a column of type {dt} with {v}"))
}

/// Integer-backed temporal types (compared through their tick count).
pub(crate) fn is_temporal_int(dt: &DataType) -> bool {
    matches!(dt, DataType::Date32 | DataType::Timestamp(_, _))
}

fn int_array(i: i64, dt: &DataType) -> Option<ArrayRef> {
    Some(match dt {
        DataType::Int8 => Arc::new(Int8Array::from(vec![i8::try_from(i).ok()?])),
        DataType::Int16 => Arc::new(Int16Array::from(vec![i16::try_from(i).ok()?])),
        DataType::Int32 => Arc::new(Int32Array::from(vec![i32::try_from(i).ok()?])),
        DataType::Int64 => Arc::new(Int64Array::from(vec![i])),
        DataType::UInt8 => Arc::new(UInt8Array::from(vec![u8::try_from(i).ok()?])),
        DataType::UInt16 => Arc::new(UInt16Array::from(vec![u16::try_from(i).ok()?])),
        DataType::UInt32 => Arc::new(UInt32Array::from(vec![u32::try_from(i).ok()?])),
        DataType::UInt64 => Arc::new(UInt64Array::from(vec![u64::try_from(i).ok()?])),
        DataType::Date32 => Arc::new(Date32Array::from(vec![i32::try_from(i).ok()?])),
        DataType::Timestamp(unit, tz) => {
            let a: ArrayRef = match unit {
                TimeUnit::Second => Arc::new(TimestampSecondArray::from(vec![i])),
                TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(vec![i])),
                TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(vec![i])),
                TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(vec![i])),
            };
            match tz {
                None => a,
                Some(tz) => {
                    arrow::compute::cast(&a, &DataType::Timestamp(*unit, Some(Arc::clone(tz))))
                        .ok()?
                }
            }
        }
        _ => return None,
    })
}
