//! Table statistics for DataFusion's optimizer, from the storage engine's
//! zone maps.
//!
//! What is exact and what is not:
//! - the row count is exact for a scan without a predicate or limit (live
//!   rows, deletions subtracted), an upper bound otherwise;
//! - min/max come from zone maps, which still count deleted rows: they are
//!   valid bounds, never the exact extremes, so they are reported `Inexact`
//!   (DataFusion answers `min()`/`max()` from exact statistics without a
//!   scan, which would be wrong after a delete);
//! - null counts include deleted rows: `Inexact` as well.

use arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::stats::{ColumnStatistics, Precision, Statistics};
use tessera_storage::{TableStats, Value};

/// DataFusion statistics of a scan returning `schema` (a projection of the
/// table), from the table's statistics. `narrowed` is true when a predicate
/// or limit may drop rows.
pub fn scan_statistics(
    table: &Schema,
    stats: &TableStats,
    schema: &Schema,
    narrowed: bool,
) -> Statistics {
    let rows = usize::try_from(stats.rows).unwrap_or(usize::MAX);
    let num_rows = if narrowed {
        Precision::Inexact(rows)
    } else {
        Precision::Exact(rows)
    };
    let column_statistics = schema
        .fields()
        .iter()
        .map(|f| {
            let Some(cs) = table
                .index_of(f.name())
                .ok()
                .and_then(|i| stats.columns.get(i))
            else {
                return ColumnStatistics::new_unknown();
            };
            let bound = |v: &Option<Value>| {
                v.as_ref()
                    .and_then(|v| scalar(v, f.data_type()))
                    .map_or(Precision::Absent, Precision::Inexact)
            };
            ColumnStatistics {
                null_count: Precision::Inexact(
                    usize::try_from(cs.null_count).unwrap_or(usize::MAX),
                ),
                min_value: bound(&cs.min),
                max_value: bound(&cs.max),
                ..ColumnStatistics::new_unknown()
            }
        })
        .collect();
    Statistics {
        num_rows,
        total_byte_size: Precision::Absent,
        column_statistics,
    }
}

/// A zone-map value as a DataFusion scalar of the column's type.
pub fn scalar(v: &Value, dt: &DataType) -> Option<ScalarValue> {
    Some(match (v, dt) {
        (Value::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (Value::Int(i), DataType::Int16) => ScalarValue::Int16(Some(i16::try_from(*i).ok()?)),
        (Value::Int(i), DataType::Int32) => ScalarValue::Int32(Some(i32::try_from(*i).ok()?)),
        (Value::Int(i), DataType::Int64) => ScalarValue::Int64(Some(*i)),
        (Value::Int(i), DataType::Date32) => ScalarValue::Date32(Some(i32::try_from(*i).ok()?)),
        (Value::Int(i), DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, tz)) => {
            ScalarValue::TimestampMicrosecond(Some(*i), tz.clone())
        }
        (Value::Float(x), DataType::Float32) => ScalarValue::Float32(Some(*x as f32)),
        (Value::Float(x), DataType::Float64) => ScalarValue::Float64(Some(*x)),
        (Value::Decimal(d), DataType::Decimal128(p, s)) => {
            ScalarValue::Decimal128(Some(*d), *p, *s)
        }
        (Value::Str(s), DataType::Utf8) => ScalarValue::Utf8(Some(s.clone())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_follow_the_column_type() {
        assert_eq!(
            scalar(&Value::Int(7), &DataType::Int16),
            Some(ScalarValue::Int16(Some(7)))
        );
        assert_eq!(scalar(&Value::Int(70_000), &DataType::Int16), None);
        assert_eq!(
            scalar(&Value::Decimal(1990), &DataType::Decimal128(10, 2)),
            Some(ScalarValue::Decimal128(Some(1990), 10, 2))
        );
        assert_eq!(scalar(&Value::Str("a".into()), &DataType::Int64), None);
    }
}
