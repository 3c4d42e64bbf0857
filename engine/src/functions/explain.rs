//! `unify_explain(space, kind, value)`: how an identifier came to be in
//! its profile. The first row is the profile the value joined when it was
//! first seen; each next row a merge that carried that profile into an
//! older one, with the identifier that linked them, the record that
//! brought it and when.
//!
//! ```sql
//! SELECT * FROM unify_explain('customers', 'email', 'guest@shop.fr');
//! ```

use std::sync::Arc;

use tessera_sql::datafusion::arrow::array::{
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tessera_sql::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use tessera_sql::datafusion::error::Result as DfResult;

use super::{invalid, kind_index, literal_text, space_named};
use crate::spaces::Spaces;

/// The `unify_explain` table function.
#[derive(Debug)]
pub struct UnifyExplain {
    spaces: Arc<Spaces>,
}

impl UnifyExplain {
    /// Over the spaces of one database.
    pub fn new(spaces: Arc<Spaces>) -> Self {
        Self { spaces }
    }
}

impl TableFunctionImpl for UnifyExplain {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let [space, kind, value] = args.exprs() else {
            return Err(invalid(
                "unify_explain takes (space, kind, value)".to_string(),
            ));
        };
        let space = space_named(&self.spaces, &literal_text("unify_explain", space)?)?;
        let kind = literal_text("unify_explain", kind)?;
        let raw = literal_text("unify_explain", value)?;
        let k = kind_index(&space, &kind)?;
        let cfg = &space.spec.config;
        let normalized = cfg.kinds[k].normalizer.apply(&raw, cfg.region);

        let mut step = Vec::new();
        let mut from: Vec<Option<i64>> = Vec::new();
        let mut to = Vec::new();
        let mut via_kind = Vec::new();
        let mut via_value = Vec::new();
        let mut record: Vec<Option<i64>> = Vec::new();
        let mut at: Vec<Option<i64>> = Vec::new();
        if let Some(n) = &normalized {
            let st = space.state().map_err(crate::EngineError::into_datafusion)?;
            let g = &st.graph;
            if let Some((born, chain)) = g.explain(k, n) {
                step.push(0i64);
                from.push(None);
                to.push(born as i64);
                via_kind.push(cfg.kinds[k].name.clone());
                via_value.push(n.clone());
                record.push(None);
                at.push(None);
                for (i, m) in chain.into_iter().enumerate() {
                    step.push(i as i64 + 1);
                    from.push(Some(m.merged as i64));
                    to.push(m.survivor as i64);
                    via_kind.push(cfg.kinds.get(m.kind).map_or("?".into(), |k| k.name.clone()));
                    via_value.push(m.value.clone());
                    record.push(Some(m.record as i64));
                    at.push(Some(m.at));
                }
            }
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("step", DataType::Int64, false),
            Field::new("from_profile", DataType::Int64, true),
            Field::new("to_profile", DataType::Int64, false),
            Field::new("via_kind", DataType::Utf8, false),
            Field::new("via_value", DataType::Utf8, false),
            Field::new("record", DataType::Int64, true),
            Field::new("merged_at", ts, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(step)),
                Arc::new(Int64Array::from(from)),
                Arc::new(Int64Array::from(to)),
                Arc::new(StringArray::from(via_kind)),
                Arc::new(StringArray::from(via_value)),
                Arc::new(Int64Array::from(record)),
                Arc::new(TimestampMicrosecondArray::from(at)),
            ],
        )?;
        super::call_table("unify_explain", args.exprs(), batch)
    }
}
