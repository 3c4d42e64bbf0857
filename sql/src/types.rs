//! SQL types and the Arrow types Tessera stores them as.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo};

use crate::error::{Result, SqlError};

/// Field metadata key marking a text column that holds JSON.
pub const JSON_METADATA: &str = "tessera.json";
/// Field metadata key holding the declared length of `VARCHAR(n)` / `CHAR(n)`.
pub const MAX_LENGTH_METADATA: &str = "tessera.max_length";

/// The Arrow type of a SQL column type, and whether it is JSON.
pub fn arrow_type(t: &ast::DataType) -> Result<(DataType, bool)> {
    use ast::DataType as T;
    let dt = match t {
        T::Boolean | T::Bool => DataType::Boolean,
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::BigInt(_) | T::Int8(_) => DataType::Int64,
        T::Real | T::Float4 => DataType::Float32,
        T::DoublePrecision | T::Double(_) | T::Float8 | T::Float64 => DataType::Float64,
        T::Float(p) => match p {
            ast::ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        T::Numeric(info) | T::Decimal(info) | T::Dec(info) => {
            let (p, s) = match info {
                ExactNumberInfo::None => (38, 10),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            let p = u8::try_from(p).ok().filter(|p| (1..=38).contains(p));
            let s = i8::try_from(s).ok().filter(|s| *s >= 0);
            match (p, s) {
                (Some(p), Some(s)) if s <= p as i8 => DataType::Decimal128(p, s),
                _ => {
                    return Err(SqlError::UnsupportedType(format!(
                        "{t} (precision 1 to 38, scale 0 to precision)"
                    )));
                }
            }
        }
        T::Text
        | T::Varchar(_)
        | T::CharVarying(_)
        | T::Char(_)
        | T::Character(_)
        | T::String(_)
        | T::Uuid => DataType::Utf8,
        T::JSON | T::JSONB => return Ok((DataType::Utf8, true)),
        T::Date => DataType::Date32,
        T::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            _ => DataType::Timestamp(TimeUnit::Microsecond, None),
        },
        T::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _))
        | T::Array(ast::ArrayElemTypeDef::AngleBracket(inner)) => match arrow_type(inner)? {
            (DataType::Utf8, false) => {
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
            }
            _ => {
                return Err(SqlError::UnsupportedType(format!(
                    "{t} (arrays of TEXT only)"
                )));
            }
        },
        other => return Err(SqlError::UnsupportedType(other.to_string())),
    };
    Ok((dt, false))
}

/// The declared length of a `VARCHAR(n)` or `CHAR(n)` type.
fn declared_length(t: &ast::DataType) -> Option<u64> {
    use ast::DataType as T;
    match t {
        T::Varchar(Some(l))
        | T::CharVarying(Some(l))
        | T::Char(Some(l))
        | T::Character(Some(l)) => match l {
            ast::CharacterLength::IntegerLength { length, .. } => Some(*length),
            ast::CharacterLength::Max => None,
        },
        _ => None,
    }
}

/// A column definition as an Arrow field.
pub fn field(name: &str, t: &ast::DataType, nullable: bool) -> Result<Field> {
    let (dt, json) = arrow_type(t)?;
    let mut meta = std::collections::HashMap::new();
    if json {
        meta.insert(JSON_METADATA.to_string(), "true".to_string());
    }
    if let Some(n) = declared_length(t) {
        if n == 0 {
            return Err(SqlError::InvalidParameter(format!(
                "length for type {t} must be at least 1"
            )));
        }
        meta.insert(MAX_LENGTH_METADATA.to_string(), n.to_string());
    }
    Ok(Field::new(name, dt, nullable).with_metadata(meta))
}

/// The declared maximum length (in characters) of a text column.
pub fn max_length(f: &Field) -> Option<usize> {
    f.metadata()
        .get(MAX_LENGTH_METADATA)
        .and_then(|n| n.parse().ok())
}

/// Checks every `VARCHAR(n)` column of `batch` (which has `schema`'s
/// columns). `first_row` numbers the batch's first row in the statement's
/// input (1-based) for the message.
pub fn check_lengths(batch: &RecordBatch, schema: &Schema, first_row: u64) -> Result<()> {
    for (i, f) in schema.fields().iter().enumerate() {
        let (Some(max), Some(col)) = (max_length(f), batch.columns().get(i)) else {
            continue;
        };
        let Some(strings) = col.as_string_opt::<i32>() else {
            continue;
        };
        // Bytes bound characters from above: only long strings are counted.
        for (row, v) in strings.iter().enumerate() {
            if let Some(v) = v
                && v.len() > max
                && v.chars().count() > max
            {
                return Err(SqlError::StringTooLong(format!(
                    "value too long for type character varying({max}) in column \"{}\" (row {} of the input)",
                    f.name(),
                    first_row + row as u64
                )));
            }
        }
    }
    Ok(())
}

/// Casts a column computed by a query to a table column's type, with
/// PostgreSQL's error classes: a value out of the type's range is 22003, a
/// value that does not parse 22P02.
pub fn cast_to(col: &ArrayRef, f: &Field) -> Result<ArrayRef> {
    if col.data_type() == f.data_type() {
        return Ok(Arc::clone(col));
    }
    let opts = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow::compute::cast_with_options(col, f.data_type(), &opts).map_err(|e| {
        let msg = e.to_string();
        let numeric_target = f.data_type().is_numeric();
        let overflow = msg.contains("too large")
            || msg.contains("overflow")
            || msg.contains("Overflow")
            || (numeric_target && col.data_type().is_numeric());
        if overflow {
            SqlError::NumericOutOfRange(format!(
                "value out of range for column \"{}\" of type {}: {msg}",
                f.name(),
                sql_name(f.data_type())
            ))
        } else {
            SqlError::InvalidText(format!("column \"{}\": {msg}", f.name()))
        }
    })
}

/// The SQL name of a stored Arrow type, for messages.
pub fn sql_name(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Utf8 => "text".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::List(_) => "text[]".into(),
        other => other.to_string(),
    }
}

/// A batch of `schema` from `columns`, keeping `rows` even with no columns.
pub fn batch_with_rows(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> Result<RecordBatch> {
    let opts = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &opts,
    )?)
}
