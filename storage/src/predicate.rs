//! Predicates the storage engine understands without knowing SQL.
//!
//! The SQL layer translates the filters it can into a [`Predicate`]; the
//! storage engine then uses it three ways: to skip segments whose zone maps
//! rule it out ([`Predicate::may_match`]), to select rows through bitmap
//! indexes ([`crate::index`]), and to evaluate it exactly on a batch
//! ([`Predicate::evaluate`]), with SQL's three-valued logic throughout.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar};
use arrow::compute::kernels::cmp;
use arrow::compute::{and_kleene, cast, is_not_null, is_null, not, or_kleene};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::idset::{BatchKey, IdSet};
use crate::value::{Value, is_temporal_int};
use crate::zonemap::ColumnStats;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CmpOp {
    /// The operator that is true exactly when this one is false (for non-null operands).
    pub fn negate(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::NotEq,
            CmpOp::NotEq => CmpOp::Eq,
            CmpOp::Lt => CmpOp::GtEq,
            CmpOp::LtEq => CmpOp::Gt,
            CmpOp::Gt => CmpOp::LtEq,
            CmpOp::GtEq => CmpOp::Lt,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// A boolean condition over a table's columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Predicate {
    /// `column op value`
    Compare {
        /// Column name.
        column: String,
        /// Operator.
        op: CmpOp,
        /// Right-hand side, in the column's physical representation.
        value: Value,
    },
    /// `column IN (values…)`: `column = v1 OR column = v2 …`, so FALSE
    /// for an empty list.
    InList {
        /// Column name.
        column: String,
        /// The list.
        values: Vec<Value>,
    },
    /// `column IN set`: the column's integer value is one of a set of ids
    /// (NULL for a NULL value).
    InSet {
        /// Column name.
        column: String,
        /// The ids.
        set: IdSet,
    },
    /// `column IS NULL`
    IsNull(String),
    /// `column IS NOT NULL`
    IsNotNull(String),
    /// Conjunction (TRUE when empty).
    And(Vec<Predicate>),
    /// Disjunction (FALSE when empty).
    Or(Vec<Predicate>),
    /// Negation.
    Not(Box<Predicate>),
}

impl Predicate {
    /// `column = value`
    pub fn eq(column: impl Into<String>, value: Value) -> Self {
        Predicate::Compare {
            column: column.into(),
            op: CmpOp::Eq,
            value,
        }
    }

    /// `column op value`
    pub fn cmp(column: impl Into<String>, op: CmpOp, value: Value) -> Self {
        Predicate::Compare {
            column: column.into(),
            op,
            value,
        }
    }

    /// Names of the columns the predicate reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Predicate::Compare { column, .. }
            | Predicate::InList { column, .. }
            | Predicate::InSet { column, .. } => out.push(column),
            Predicate::IsNull(c) | Predicate::IsNotNull(c) => out.push(c),
            Predicate::And(ps) | Predicate::Or(ps) => {
                ps.iter().for_each(|p| p.collect_columns(out))
            }
            Predicate::Not(p) => p.collect_columns(out),
        }
    }

    /// Evaluates the predicate on every row of `batch`, with SQL semantics:
    /// the result is NULL where the predicate is unknown.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        self.evaluate_at(batch, None)
    }

    /// [`Predicate::evaluate`] of `batch` when it is the batch `at` of an
    /// immutable segment file: a set of ids answers from what it kept for
    /// that batch ([`IdSet::evaluate_at`](crate::IdSet::evaluate_at)).
    pub fn evaluate_at(&self, batch: &RecordBatch, at: Option<BatchKey>) -> Result<BooleanArray> {
        let rows = batch.num_rows();
        let out = match self {
            Predicate::Compare { column, op, value } => {
                compare(column_of(batch, column)?, *op, value)?
            }
            Predicate::InList { column, values } => {
                let col = column_of(batch, column)?;
                let mut acc = BooleanArray::from(vec![false; rows]);
                for v in values {
                    acc = or_kleene(&acc, &compare(col, CmpOp::Eq, v)?).map_err(arrow_err)?;
                }
                acc
            }
            Predicate::InSet { column, set } => {
                set.evaluate_at(column_of(batch, column)?, at.map(|k| (column.as_str(), k)))?
            }
            Predicate::IsNull(c) => is_null(column_of(batch, c)?).map_err(arrow_err)?,
            Predicate::IsNotNull(c) => is_not_null(column_of(batch, c)?).map_err(arrow_err)?,
            Predicate::And(ps) => {
                let mut acc = BooleanArray::from(vec![true; rows]);
                for p in ps {
                    acc = and_kleene(&acc, &p.evaluate_at(batch, at)?).map_err(arrow_err)?;
                }
                acc
            }
            Predicate::Or(ps) => {
                let mut acc = BooleanArray::from(vec![false; rows]);
                for p in ps {
                    acc = or_kleene(&acc, &p.evaluate_at(batch, at)?).map_err(arrow_err)?;
                }
                acc
            }
            Predicate::Not(p) => not(&p.evaluate_at(batch, at)?).map_err(arrow_err)?,
        };
        Ok(out)
    }

    /// Whether any row of a segment with these column statistics may satisfy
    /// the predicate. `false` is a proof; `true` only means "cannot tell".
    pub fn may_match(&self, stats: &dyn Fn(&str) -> Option<ColumnStats>) -> bool {
        self.may_be(true, stats)
    }

    /// Whether some row may make the predicate evaluate to `want`.
    fn may_be(&self, want: bool, stats: &dyn Fn(&str) -> Option<ColumnStats>) -> bool {
        match self {
            Predicate::Compare { column, op, value } => {
                let Some(s) = stats(column) else { return true };
                if value.is_null() || s.all_null() {
                    return false;
                }
                let op = if want { *op } else { op.negate() };
                compare_may_be_true(&s, op, value)
            }
            Predicate::InList { column, values } => {
                if values.is_empty() {
                    // An empty list is an empty OR: FALSE on every row.
                    return !want;
                }
                let Some(s) = stats(column) else { return true };
                if s.all_null() {
                    return false;
                }
                if want {
                    values
                        .iter()
                        .any(|v| !v.is_null() && compare_may_be_true(&s, CmpOp::Eq, v))
                } else {
                    // FALSE needs a non-null row differing from every (non-null) item.
                    !values.iter().any(Value::is_null)
                        && values
                            .iter()
                            .all(|v| compare_may_be_true(&s, CmpOp::NotEq, v))
                }
            }
            Predicate::InSet { column, set } => stats(column).is_none_or(|s| set.may_be(want, &s)),
            Predicate::IsNull(c) => stats(c).is_none_or(|s| {
                if want {
                    s.null_count > 0
                } else {
                    s.null_count < s.row_count
                }
            }),
            Predicate::IsNotNull(c) => stats(c).is_none_or(|s| {
                if want {
                    s.null_count < s.row_count
                } else {
                    s.null_count > 0
                }
            }),
            Predicate::And(ps) if want => ps.iter().all(|p| p.may_be(true, stats)),
            Predicate::And(ps) => ps.iter().any(|p| p.may_be(false, stats)),
            Predicate::Or(ps) if want => ps.iter().any(|p| p.may_be(true, stats)),
            Predicate::Or(ps) => ps.iter().all(|p| p.may_be(false, stats)),
            Predicate::Not(p) => p.may_be(!want, stats),
        }
    }
}

/// Whether some non-null value in `[min, max]` may satisfy `x op value`.
fn compare_may_be_true(s: &ColumnStats, op: CmpOp, value: &Value) -> bool {
    use std::cmp::Ordering::*;
    let lo = s.min.as_ref().and_then(|m| m.compare(value));
    let hi = s.max.as_ref().and_then(|m| m.compare(value));
    match op {
        CmpOp::Eq => lo != Some(Greater) && hi != Some(Less),
        CmpOp::NotEq => !(lo == Some(Equal) && hi == Some(Equal)),
        CmpOp::Lt => lo != Some(Greater) && lo != Some(Equal),
        CmpOp::LtEq => lo != Some(Greater),
        CmpOp::Gt => hi != Some(Less) && hi != Some(Equal),
        CmpOp::GtEq => hi != Some(Less),
    }
}

fn column_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .schema_ref()
        .index_of(name)
        .map(|i| batch.column(i))
        .map_err(|_| Error::InvalidInput(format!("predicate names unknown column \"{name}\"")))
}

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::InvalidInput(format!("cannot evaluate predicate: {e}"))
}

/// `col op value` as a boolean array, widening the column when the value does
/// not fit its type (an `INT2` column compared with 100000).
fn compare(col: &ArrayRef, op: CmpOp, value: &Value) -> Result<BooleanArray> {
    let (col, scalar): (ArrayRef, ArrayRef) = match value.to_array(col.data_type())? {
        Some(s) => (Arc::clone(col), s),
        None => {
            let wide = match value {
                Value::Int(_)
                    if col.data_type().is_integer() || is_temporal_int(col.data_type()) =>
                {
                    DataType::Int64
                }
                _ => DataType::Float64,
            };
            let widened = cast(col, &wide).map_err(arrow_err)?;
            let scalar = value.to_array(&wide)?.ok_or_else(|| {
                Error::SchemaMismatch(format!("cannot compare {} with {value}", col.data_type()))
            })?;
            (widened, scalar)
        }
    };
    let rhs = Scalar::new(scalar);
    let lhs: &dyn arrow::array::Datum = &col;
    let out = match op {
        CmpOp::Eq => cmp::eq(lhs, &rhs),
        CmpOp::NotEq => cmp::neq(lhs, &rhs),
        CmpOp::Lt => cmp::lt(lhs, &rhs),
        CmpOp::LtEq => cmp::lt_eq(lhs, &rhs),
        CmpOp::Gt => cmp::gt(lhs, &rhs),
        CmpOp::GtEq => cmp::gt_eq(lhs, &rhs),
    };
    out.map_err(arrow_err)
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, ps: &[Predicate], sep: &str, empty: &str| {
            if ps.is_empty() {
                return write!(f, "{empty}");
            }
            write!(f, "(")?;
            for (i, p) in ps.iter().enumerate() {
                if i > 0 {
                    write!(f, " {sep} ")?;
                }
                write!(f, "{p}")?;
            }
            write!(f, ")")
        };
        match self {
            Predicate::Compare { column, op, value } => {
                write!(f, "{column} {} {value}", op.symbol())
            }
            Predicate::InList { column, values } => {
                write!(f, "{column} IN (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, ")")
            }
            Predicate::InSet { column, set } => {
                write!(f, "{column} IN <a set of {} ids>", set.ids().len())
            }
            Predicate::IsNull(c) => write!(f, "{c} IS NULL"),
            Predicate::IsNotNull(c) => write!(f, "{c} IS NOT NULL"),
            Predicate::And(ps) => join(f, ps, "AND", "TRUE"),
            Predicate::Or(ps) => join(f, ps, "OR", "FALSE"),
            Predicate::Not(p) => write!(f, "NOT {p}"),
        }
    }
}
