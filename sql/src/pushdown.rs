//! Which filters go down into the storage engine.
//!
//! A DataFusion filter that is a comparison of a column with a literal, an
//! `IN` list of literals, `IS [NOT] NULL`, or an `AND` / `OR` / `NOT` of such
//! filters, becomes a storage [`Predicate`]. The storage engine prunes
//! segments by zone maps, selects rows through bitmap indexes, and evaluates
//! the predicate exactly on what remains, with SQL's three-valued logic: so
//! the pushdown is reported as `Exact` and DataFusion drops its own filter.
//! Anything else stays with DataFusion (`Unsupported`).

use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use tessera_storage::{CmpOp, Predicate, Value};

/// Translates a filter into a storage predicate, or `None` when it cannot be
/// answered exactly by the storage engine.
pub fn to_predicate(expr: &Expr, schema: &Schema) -> Option<Predicate> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => Some(Predicate::And(vec![
            to_predicate(left, schema)?,
            to_predicate(right, schema)?,
        ])),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(Predicate::Or(vec![
            to_predicate(left, schema)?,
            to_predicate(right, schema)?,
        ])),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let cmp = cmp_op(*op)?;
            match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => compare(schema, &c.name, cmp, v),
                (Expr::Literal(v, _), Expr::Column(c)) => compare(schema, &c.name, flip(cmp), v),
                _ => None,
            }
        }
        Expr::Not(inner) => Some(Predicate::Not(Box::new(to_predicate(inner, schema)?))),
        // A boolean column used as a condition is `col = true` (same three values).
        Expr::Column(c)
            if schema
                .field_with_name(&c.name)
                .is_ok_and(|f| *f.data_type() == DataType::Boolean) =>
        {
            Some(Predicate::cmp(c.name.clone(), CmpOp::Eq, Value::Bool(true)))
        }
        Expr::IsNull(inner) => match inner.as_ref() {
            Expr::Column(c) if schema.index_of(&c.name).is_ok() => {
                Some(Predicate::IsNull(c.name.clone()))
            }
            _ => None,
        },
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Column(c) if schema.index_of(&c.name).is_ok() => {
                Some(Predicate::IsNotNull(c.name.clone()))
            }
            _ => None,
        },
        Expr::InList(list) => {
            let Expr::Column(c) = list.expr.as_ref() else {
                return None;
            };
            let dt = schema.field_with_name(&c.name).ok()?.data_type();
            let mut values = Vec::with_capacity(list.list.len());
            for item in &list.list {
                let Expr::Literal(v, _) = item else {
                    return None;
                };
                values.push(value(v, dt)?);
            }
            let p = Predicate::InList {
                column: c.name.clone(),
                values,
            };
            Some(if list.negated {
                Predicate::Not(Box::new(p))
            } else {
                p
            })
        }
        Expr::Between(b) => {
            let Expr::Column(c) = b.expr.as_ref() else {
                return None;
            };
            let (Expr::Literal(lo, _), Expr::Literal(hi, _)) = (b.low.as_ref(), b.high.as_ref())
            else {
                return None;
            };
            let p = Predicate::And(vec![
                compare(schema, &c.name, CmpOp::GtEq, lo)?,
                compare(schema, &c.name, CmpOp::LtEq, hi)?,
            ]);
            Some(if b.negated {
                Predicate::Not(Box::new(p))
            } else {
                p
            })
        }
        _ => None,
    }
}

fn cmp_op(op: Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::NotEq => CmpOp::NotEq,
        Operator::Lt => CmpOp::Lt,
        Operator::LtEq => CmpOp::LtEq,
        Operator::Gt => CmpOp::Gt,
        Operator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

/// `lit op col` is `col flip(op) lit`.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

fn compare(schema: &Schema, column: &str, op: CmpOp, v: &ScalarValue) -> Option<Predicate> {
    let dt = schema.field_with_name(column).ok()?.data_type();
    Some(Predicate::cmp(column, op, value(v, dt)?))
}

/// A literal as a storage value in the column's physical representation, or
/// `None` when the two types do not line up exactly (DataFusion then filters).
fn value(v: &ScalarValue, column: &DataType) -> Option<Value> {
    use ScalarValue as S;
    if v.is_null() {
        return Some(Value::Null);
    }
    let out = match (v, column) {
        (S::Boolean(Some(b)), DataType::Boolean) => Value::Bool(*b),
        (S::Int8(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::Int16(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::Int32(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::Int64(Some(x)), c) if c.is_integer() => Value::Int(*x),
        (S::UInt8(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::UInt16(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::UInt32(Some(x)), c) if c.is_integer() => Value::Int(i64::from(*x)),
        (S::Float32(Some(x)), DataType::Float32 | DataType::Float64) => Value::Float(f64::from(*x)),
        (S::Float64(Some(x)), DataType::Float64) => Value::Float(*x),
        (S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)), DataType::Utf8) => {
            Value::Str(s.clone())
        }
        (S::Date32(Some(d)), DataType::Date32) => Value::Int(i64::from(*d)),
        (S::Decimal128(Some(x), _, s), DataType::Decimal128(_, cs)) if s == cs => {
            Value::Decimal(*x)
        }
        (S::TimestampMicrosecond(Some(t), tz), DataType::Timestamp(TimeUnit::Microsecond, ctz))
            if tz.is_some() == ctz.is_some() =>
        {
            Value::Int(*t)
        }
        (S::TimestampMillisecond(Some(t), tz), DataType::Timestamp(TimeUnit::Millisecond, ctz))
            if tz.is_some() == ctz.is_some() =>
        {
            Value::Int(*t)
        }
        (S::TimestampSecond(Some(t), tz), DataType::Timestamp(TimeUnit::Second, ctz))
            if tz.is_some() == ctz.is_some() =>
        {
            Value::Int(*t)
        }
        (S::TimestampNanosecond(Some(t), tz), DataType::Timestamp(TimeUnit::Nanosecond, ctz))
            if tz.is_some() == ctz.is_some() =>
        {
            Value::Int(*t)
        }
        _ => return None,
    };
    Some(out)
}
