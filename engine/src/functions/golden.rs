//! Aggregates that pick a profile's "golden record" attributes from the
//! records of its sources, so that a 360° view is an ordinary view:
//!
//! - `most_recent(value, ts)`: the value of the latest `ts` (non-NULL
//!   values only; ties go to the greater value; rows without a time count
//!   only when no row has one);
//! - `most_frequent(value)`: the commonest non-NULL value (ties go to the
//!   smaller value);
//! - `first_by_priority(value, source, 'crm_contacts,orders,…')`: the value
//!   from the source listed first (sources not listed come last; ties go to
//!   the smaller value).
//!
//! Every tie is broken by the value itself, so the result does not depend
//! on the order rows arrive in (two cores, several segments).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use tessera_sql::datafusion::arrow::array::{Array, ArrayRef, AsArray};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use tessera_sql::datafusion::common::ScalarValue;
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use tessera_sql::datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

/// Keeps `candidate` if it beats `best` by (key, then value) — greater key
/// wins when `greater` is set, smaller otherwise; a tie on the key goes to
/// the greater value for `most_recent`, to the smaller one elsewhere.
fn better(
    candidate: &(ScalarValue, ScalarValue),
    best: &Option<(ScalarValue, ScalarValue)>,
    greater_key: bool,
    greater_value: bool,
) -> bool {
    let Some(best) = best else { return true };
    let by_key = candidate.0.partial_cmp(&best.0).unwrap_or(Ordering::Equal);
    let by_key = if greater_key {
        by_key
    } else {
        by_key.reverse()
    };
    match by_key {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => {
            let by_value = candidate.1.partial_cmp(&best.1).unwrap_or(Ordering::Equal);
            if greater_value {
                by_value == Ordering::Greater
            } else {
                by_value == Ordering::Less
            }
        }
    }
}

/// A (key, value) pick: the best key wins. Shared by `most_recent` (key:
/// time, greatest wins) and `first_by_priority` (key: rank, smallest wins).
#[derive(Debug)]
struct Pick {
    value_type: DataType,
    key_type: DataType,
    greater_key: bool,
    greater_value: bool,
    best: Option<(ScalarValue, ScalarValue)>,
    /// `most_recent`: the pick among rows without a time.
    untimed: Option<ScalarValue>,
    /// `first_by_priority`: the listed sources, once read.
    priorities: Option<Vec<String>>,
}

impl Pick {
    fn offer(&mut self, key: ScalarValue, value: ScalarValue) {
        if value.is_null() {
            return;
        }
        if key.is_null() {
            let replace = self.untimed.as_ref().is_none_or(|u| {
                let o = value.partial_cmp(u).unwrap_or(Ordering::Equal);
                if self.greater_value {
                    o == Ordering::Greater
                } else {
                    o == Ordering::Less
                }
            });
            if replace {
                self.untimed = Some(value);
            }
            return;
        }
        let c = (key, value);
        if better(&c, &self.best, self.greater_key, self.greater_value) {
            self.best = Some(c);
        }
    }

    fn result(&self) -> DfResult<ScalarValue> {
        match (&self.best, &self.untimed) {
            (Some((_, v)), _) => Ok(v.clone()),
            (None, Some(v)) => Ok(v.clone()),
            (None, None) => ScalarValue::try_from(&self.value_type),
        }
    }

    fn state(&self) -> DfResult<Vec<ScalarValue>> {
        Ok(match &self.best {
            Some((k, v)) => vec![v.clone(), k.clone()],
            None => vec![
                self.untimed
                    .clone()
                    .map_or_else(|| ScalarValue::try_from(&self.value_type), Ok)?,
                ScalarValue::try_from(&self.key_type)?,
            ],
        })
    }

    fn merge(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (values, keys) = (&states[0], &states[1]);
        for i in 0..values.len() {
            self.offer(
                ScalarValue::try_from_array(keys, i)?,
                ScalarValue::try_from_array(values, i)?,
            );
        }
        Ok(())
    }
}

/// The rank of `source` in `priorities` (unlisted sources last).
fn rank(priorities: &[String], source: &str) -> i64 {
    let s = source.trim().to_lowercase();
    priorities
        .iter()
        .position(|p| *p == s)
        .unwrap_or(priorities.len()) as i64
}

#[derive(Debug)]
struct PickAccumulator {
    pick: Pick,
    by_priority: bool,
}

impl Accumulator for PickAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let v = &values[0];
        if self.by_priority {
            let sources =
                tessera_sql::datafusion::arrow::compute::cast(&values[1], &DataType::Utf8)?;
            let sources = sources.as_string::<i32>();
            let lists = tessera_sql::datafusion::arrow::compute::cast(&values[2], &DataType::Utf8)?;
            let lists = lists.as_string::<i32>();
            for i in 0..v.len() {
                if self.pick.priorities.is_none() && lists.is_valid(i) {
                    self.pick.priorities = Some(
                        lists
                            .value(i)
                            .split(',')
                            .map(|s| s.trim().to_lowercase())
                            .collect(),
                    );
                }
                let list = self.pick.priorities.as_deref().unwrap_or(&[]);
                let r = if sources.is_valid(i) {
                    rank(list, sources.value(i))
                } else {
                    list.len() as i64
                };
                self.pick.offer(
                    ScalarValue::Int64(Some(r)),
                    ScalarValue::try_from_array(v, i)?,
                );
            }
        } else {
            let t = &values[1];
            for i in 0..v.len() {
                self.pick.offer(
                    ScalarValue::try_from_array(t, i)?,
                    ScalarValue::try_from_array(v, i)?,
                );
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.pick.result()
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .pick
                .best
                .as_ref()
                .map_or(0, |(k, v)| k.size() + v.size())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.pick.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.pick.merge(states)
    }
}

/// Which pick: `most_recent` or `first_by_priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PickKind {
    MostRecent,
    FirstByPriority,
}

/// `most_recent(value, ts)` and `first_by_priority(value, source, 'a,b,c')`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PickFunction {
    kind: PickKind,
    signature: Signature,
}

impl PickFunction {
    /// `most_recent(value, ts)`.
    pub fn most_recent() -> Self {
        Self {
            kind: PickKind::MostRecent,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    /// `first_by_priority(value, source, 'a,b,c')`.
    pub fn first_by_priority() -> Self {
        Self {
            kind: PickKind::FirstByPriority,
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PickFunction {
    fn name(&self) -> &str {
        match self.kind {
            PickKind::MostRecent => "most_recent",
            PickKind::FirstByPriority => "first_by_priority",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let key = match self.kind {
            PickKind::MostRecent => {
                Field::new("ts", args.input_fields[1].data_type().clone(), true)
            }
            PickKind::FirstByPriority => Field::new("rank", DataType::Int64, true),
        };
        Ok(vec![
            Arc::new(Field::new(
                "value",
                args.input_fields[0].data_type().clone(),
                true,
            )),
            Arc::new(key),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let by_priority = self.kind == PickKind::FirstByPriority;
        Ok(Box::new(PickAccumulator {
            pick: Pick {
                value_type: acc_args.return_field.data_type().clone(),
                key_type: if by_priority {
                    DataType::Int64
                } else {
                    acc_args.expr_fields[1].data_type().clone()
                },
                // Latest time wins (ties: greater value); first rank wins
                // (ties: smaller value).
                greater_key: !by_priority,
                greater_value: !by_priority,
                best: None,
                untimed: None,
                priorities: None,
            },
            by_priority,
        }))
    }
}

/// `most_frequent(value)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MostFrequent {
    signature: Signature,
}

impl MostFrequent {
    /// The function, ready to register.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for MostFrequent {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for MostFrequent {
    fn name(&self) -> &str {
        "most_frequent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let t = args.input_fields[0].data_type().clone();
        Ok(vec![
            Arc::new(Field::new(
                "values",
                DataType::List(Arc::new(Field::new("item", t, true))),
                true,
            )),
            Arc::new(Field::new(
                "counts",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            )),
        ])
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(Frequencies {
            value_type: acc_args.return_field.data_type().clone(),
            counts: HashMap::new(),
        }))
    }
}

#[derive(Debug)]
struct Frequencies {
    value_type: DataType,
    counts: HashMap<ScalarValue, i64>,
}

impl Accumulator for Frequencies {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let v = &values[0];
        for i in 0..v.len() {
            if v.is_valid(i) {
                *self
                    .counts
                    .entry(ScalarValue::try_from_array(v, i)?)
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        let best = self.counts.iter().max_by(|a, b| {
            a.1.cmp(b.1)
                .then_with(|| b.0.partial_cmp(a.0).unwrap_or(Ordering::Equal))
        });
        match best {
            Some((v, _)) => Ok(v.clone()),
            None => ScalarValue::try_from(&self.value_type),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.size() + std::mem::size_of::<i64>())
                .sum::<usize>()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let (values, counts): (Vec<ScalarValue>, Vec<ScalarValue>) = self
            .counts
            .iter()
            .map(|(v, c)| (v.clone(), ScalarValue::Int64(Some(*c))))
            .unzip();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &self.value_type)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let values = states[0].as_list::<i32>();
        let counts = states[1].as_list::<i32>();
        for row in 0..values.len() {
            if values.is_null(row) || counts.is_null(row) {
                continue;
            }
            let vs = values.value(row);
            let cs = counts.value(row);
            let cs = cs.as_primitive::<tessera_sql::datafusion::arrow::datatypes::Int64Type>();
            for i in 0..vs.len() {
                if vs.is_valid(i) {
                    *self
                        .counts
                        .entry(ScalarValue::try_from_array(&vs, i)?)
                        .or_default() += cs.value(i);
                }
            }
        }
        Ok(())
    }
}
