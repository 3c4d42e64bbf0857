//! `unify_stats(space)`: one row of figures on a space's unification.
//!
//! | column | meaning |
//! |---|---|
//! | `records` | records resolved (all sources) |
//! | `records_without_identifier` | records with no usable identifier (no profile) |
//! | `profiles` | live profiles |
//! | `merges` | merges so far |
//! | `merge_rate` | 1 − profiles ÷ records with an identifier: the share of records that joined an existing profile |
//! | `singletons` | profiles of one record |
//! | `largest_profile_records` / `largest_profile_values` | the largest profile, in records and in identifier values |
//! | `junk_values` | values excluded as junk (blocklist and detection) |
//! | `links_dropped_limit` / `links_dropped_weak` | links refused by a limit, and by the weak-kind rule |
//! | `with_<kind>` | share of profiles holding at least one value of the kind (completeness) |
//! | `in_<source>` | share of profiles with a record in the source |
//! | `last_update` | when the graph last changed |

use std::collections::HashMap;
use std::sync::Arc;

use tessera_sql::datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tessera_sql::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use tessera_sql::datafusion::error::Result as DfResult;

use super::{invalid, literal_text, space_named};
use crate::identity::graph::ProfileId;
use crate::spaces::Spaces;

/// The `unify_stats` table function.
#[derive(Debug)]
pub struct UnifyStats {
    spaces: Arc<Spaces>,
}

impl UnifyStats {
    /// Over the spaces of one database.
    pub fn new(spaces: Arc<Spaces>) -> Self {
        Self { spaces }
    }
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

impl TableFunctionImpl for UnifyStats {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let [space] = args.exprs() else {
            return Err(invalid("unify_stats takes the space's name".to_string()));
        };
        let space = space_named(&self.spaces, &literal_text("unify_stats", space)?)?;
        let st = space.state().map_err(crate::EngineError::into_datafusion)?;
        let g = &st.graph;
        let stats = g.stats();
        let kinds = &g.config().kinds;
        let profiles: Vec<ProfileId> = g.live_profile_ids().collect();
        let n = profiles.len() as u64;

        let mut values: HashMap<ProfileId, u64> = HashMap::with_capacity(profiles.len());
        let mut has_kind: HashMap<(ProfileId, usize), ()> = HashMap::new();
        for r in g.identifier_details() {
            *values.entry(r.profile).or_default() += 1;
            has_kind.insert((r.profile, r.kind), ());
        }
        let mut with_kind = vec![0u64; kinds.len()];
        for (_, k) in has_kind.keys() {
            with_kind[*k] += 1;
        }
        let mut in_source = vec![0u64; g.sources()];
        let mut singletons = 0u64;
        let mut largest_records = 0u64;
        for p in &profiles {
            let r = g.profile_records(*p);
            let total: u64 = r.iter().sum();
            singletons += u64::from(total == 1);
            largest_records = largest_records.max(total);
            for (i, c) in r.iter().enumerate() {
                in_source[i] += u64::from(*c > 0);
            }
        }
        let with_id = stats.records - stats.records_without_identifier;

        let mut fields = vec![
            Field::new("space", DataType::Utf8, false),
            Field::new("records", DataType::Int64, false),
            Field::new("records_without_identifier", DataType::Int64, false),
            Field::new("profiles", DataType::Int64, false),
            Field::new("merges", DataType::Int64, false),
            Field::new("merge_rate", DataType::Float64, false),
            Field::new("singletons", DataType::Int64, false),
            Field::new("largest_profile_records", DataType::Int64, false),
            Field::new("largest_profile_values", DataType::Int64, false),
            Field::new("junk_values", DataType::Int64, false),
            Field::new("links_dropped_limit", DataType::Int64, false),
            Field::new("links_dropped_weak", DataType::Int64, false),
        ];
        let int = |v: u64| -> ArrayRef { Arc::new(Int64Array::from(vec![v as i64])) };
        let float = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v])) };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![space.spec.name.clone()])),
            int(stats.records),
            int(stats.records_without_identifier),
            int(n),
            int(stats.merges),
            float(1.0 - share(n, with_id.max(n))),
            int(singletons),
            int(largest_records),
            int(values.values().copied().max().unwrap_or(0)),
            int(g.junk().len() as u64),
            int(stats.links_dropped_limit),
            int(stats.links_dropped_weak),
        ];
        for (i, k) in kinds.iter().enumerate() {
            fields.push(Field::new(
                format!("with_{}", k.name),
                DataType::Float64,
                false,
            ));
            columns.push(float(share(with_kind[i], n)));
        }
        for (i, s) in space.spec.sources.iter().enumerate() {
            fields.push(Field::new(
                format!("in_{}", s.label),
                DataType::Float64,
                false,
            ));
            columns.push(float(share(in_source.get(i).copied().unwrap_or(0), n)));
        }
        fields.push(Field::new(
            "last_update",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ));
        columns.push(Arc::new(TimestampMicrosecondArray::from(vec![
            stats.updated_at,
        ])));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        super::call_table("unify_stats", args.exprs(), batch)
    }
}
