//! Retention: how long a table keeps its rows.
//!
//! ```sql
//! ALTER TABLE web_events SET (retention = '13 months', retention_column = occurred_at);
//! ALTER TABLE web_events SET (retention = 'none');   -- keep everything again
//! ```
//!
//! A row whose `retention_column` is older than now minus the retention is
//! expired by the next `COMPACT` of the table (or of the database): deleted,
//! then purged from the files by that same compaction. Rows whose column is
//! NULL are kept. The setting is kept in the catalog under
//! `retention:<schema.table>` (postcard: format `u32` = 1, the interval as
//! written, the column).

use chrono::{DateTime, Months, Utc};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, SqlOption, Value};

use crate::error::{Result, SqlError};

/// Catalog key prefix of retention settings.
pub(crate) const KEY_PREFIX: &str = "retention:";
const FORMAT: u32 = 1;

/// A table's retention.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// The interval as written (`13 months`).
    pub interval: String,
    /// The column whose age counts (a timestamp or a date).
    pub column: String,
}

/// What an `ALTER TABLE … SET (…)` asks of retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// `None`: remove the setting.
    pub interval: Option<String>,
    pub column: Option<String>,
}

fn option_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Null => Some("none".into()),
            _ => None,
        },
        Expr::Identifier(i) if i.quote_style.is_some() => Some(i.value.clone()),
        Expr::Identifier(i) => Some(i.value.to_lowercase()),
        _ => None,
    }
}

/// The retention options of a `SET (…)` list; `None` when it has none
/// (another kind of `SET (…)`), an error for a list that mixes them with
/// others or gives them badly.
pub(crate) fn change(options: &[SqlOption]) -> Result<Option<Change>> {
    let mut c = Change {
        interval: None,
        column: None,
    };
    let mut any = false;
    for o in options {
        let SqlOption::KeyValue { key, value } = o else {
            return Err(SqlError::Unsupported(format!("ALTER TABLE … SET ({o})")));
        };
        let text = option_text(value).ok_or_else(|| {
            SqlError::InvalidParameter(format!("{} must be a quoted value, got {value}", key.value))
        })?;
        match key.value.to_lowercase().as_str() {
            "retention" => {
                any = true;
                c.interval = (!text.eq_ignore_ascii_case("none")).then_some(text);
            }
            "retention_column" => {
                any = true;
                c.column = Some(text);
            }
            other => {
                return Err(SqlError::Unsupported(format!(
                    "table option \"{other}\" (Tessera's table options: retention, retention_column)"
                )));
            }
        }
    }
    Ok(any.then_some(c))
}

/// The interval `text` as months, days and nanoseconds; it must be positive.
pub(crate) fn interval(text: &str) -> Result<IntervalMonthDayNano> {
    let bad = || {
        SqlError::InvalidParameter(format!(
            "invalid retention \"{text}\": give a positive interval such as '13 months', '90 days' or '1 year'"
        ))
    };
    let v = ScalarValue::Utf8(Some(text.to_string()))
        .cast_to(&DataType::Interval(
            datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
        ))
        .map_err(|_| bad())?;
    let ScalarValue::IntervalMonthDayNano(Some(i)) = v else {
        return Err(bad());
    };
    let parts = [i64::from(i.months), i64::from(i.days), i.nanoseconds];
    if parts.iter().any(|p| *p < 0) || parts.iter().all(|p| *p == 0) {
        return Err(bad());
    }
    Ok(i)
}

/// Whether a column of this type can carry a retention.
pub(crate) fn fits(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

impl Retention {
    /// The oldest value kept at `now`, in the physical representation of
    /// a column of type `t` (its ticks or days): rows below it expire.
    pub fn cutoff(&self, t: &DataType, now: DateTime<Utc>) -> Result<i64> {
        let i = interval(&self.interval)?;
        let months = u32::try_from(i.months).unwrap_or(0);
        let out_of_range = || {
            SqlError::InvalidParameter(format!(
                "retention \"{}\" reaches before the year 1",
                self.interval
            ))
        };
        let at = now
            .checked_sub_months(Months::new(months))
            .and_then(|d| d.checked_sub_signed(chrono::Duration::days(i64::from(i.days))))
            .and_then(|d| d.checked_sub_signed(chrono::Duration::nanoseconds(i.nanoseconds)))
            .ok_or_else(out_of_range)?;
        Ok(match t {
            DataType::Timestamp(TimeUnit::Second, _) => at.timestamp(),
            DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => {
                at.timestamp_millis()
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => at.timestamp_micros(),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                at.timestamp_nanos_opt().ok_or_else(out_of_range)?
            }
            DataType::Date32 => at.timestamp().div_euclid(86_400),
            other => {
                return Err(SqlError::DatatypeMismatch(format!(
                    "retention column \"{}\" is {other}, it must be a timestamp or a date",
                    self.column
                )));
            }
        })
    }

    /// The rows past the retention at `now`, for a column of type `t`.
    pub fn expired(&self, t: &DataType, now: DateTime<Utc>) -> Result<tessera_storage::Predicate> {
        Ok(tessera_storage::Predicate::Compare {
            column: self.column.clone(),
            op: tessera_storage::CmpOp::Lt,
            value: tessera_storage::Value::Int(self.cutoff(t, now)?),
        })
    }

    /// [`Retention::expired`] now.
    pub fn expired_now(&self, t: &DataType) -> Result<tessera_storage::Predicate> {
        self.expired(t, Utc::now())
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(&(FORMAT, self)).map_err(|e| {
            SqlError::InvalidParameter(format!("the retention cannot be encoded: {e}"))
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Retention> {
        match postcard::from_bytes::<(u32, Retention)>(bytes) {
            Ok((FORMAT, r)) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_cut_in_the_columns_unit() {
        let r = Retention {
            interval: "13 months".into(),
            column: "ts".into(),
        };
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let want = DateTime::parse_from_rfc3339("2025-10-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            r.cutoff(&DataType::Timestamp(TimeUnit::Microsecond, None), now)
                .unwrap(),
            want.timestamp_micros()
        );
        assert_eq!(
            r.cutoff(&DataType::Date32, now).unwrap(),
            want.timestamp() / 86_400
        );
        for ok in ["90 days", "1 year", "36 hours", "2 weeks"] {
            assert!(interval(ok).is_ok(), "{ok}");
        }
        for bad in ["", "soon", "-3 days", "0 days"] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }
}
