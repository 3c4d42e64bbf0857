//! SQL types and the Arrow types Tessera stores them as.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ExactNumberInfo};

use crate::error::{Result, SqlError};

/// Field metadata key marking a text column that holds JSON.
pub const JSON_METADATA: &str = "tessera.json";

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

/// A column definition as an Arrow field.
pub fn field(name: &str, t: &ast::DataType, nullable: bool) -> Result<Field> {
    let (dt, json) = arrow_type(t)?;
    let f = Field::new(name, dt, nullable);
    Ok(if json {
        f.with_metadata([(JSON_METADATA.to_string(), "true".to_string())].into())
    } else {
        f
    })
}
