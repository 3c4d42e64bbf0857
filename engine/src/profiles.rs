//! The tables a profile space shows: `space` (one row per profile),
//! `space_identifiers`, `space_merges` and `space_junk` (the values
//! excluded as identifying nobody, each with its reason). They are read from the space's
//! graph when a query scans them, so they are always current; nothing of
//! them is stored besides the graph's log.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tessera_sql::datafusion::arrow::array::{
    ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tessera_sql::datafusion::catalog::{Session, TableProvider};
use tessera_sql::datafusion::datasource::TableType;
use tessera_sql::datafusion::datasource::memory::MemorySourceConfig;
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::datafusion::logical_expr::Expr;
use tessera_sql::datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::identity::graph::{IdentityGraph, ProfileId};
use crate::space::Space;

/// Which of a space's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileTableKind {
    /// `space`: one row per live profile.
    Profiles,
    /// `space_identifiers`: one row per identifier value.
    Identifiers,
    /// `space_merges`: the merge lineage.
    Merges,
    /// `space_junk`: the values excluded as identifying nobody, and why.
    Junk,
}

impl ProfileTableKind {
    /// Every kind, with the suffix of its table's name.
    pub const ALL: [(ProfileTableKind, &'static str); 4] = [
        (ProfileTableKind::Profiles, ""),
        (ProfileTableKind::Identifiers, "_identifiers"),
        (ProfileTableKind::Merges, "_merges"),
        (ProfileTableKind::Junk, "_junk"),
    ];
}

/// One of a space's tables as DataFusion sees it.
#[derive(Debug)]
pub struct ProfileTable {
    space: Arc<Space>,
    kind: ProfileTableKind,
    schema: SchemaRef,
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

impl ProfileTable {
    /// The table `kind` of `space`.
    pub fn new(space: Arc<Space>, kind: ProfileTableKind) -> Self {
        let schema = match kind {
            ProfileTableKind::Profiles => {
                let mut fields = vec![
                    Field::new("profile_id", DataType::Int64, false),
                    Field::new("first_seen", timestamp(), true),
                    Field::new("last_seen", timestamp(), true),
                    Field::new("records", DataType::Int64, false),
                ];
                for s in &space.spec.sources {
                    fields.push(Field::new(
                        format!("{}_records", s.label),
                        DataType::Int64,
                        false,
                    ));
                }
                fields.push(Field::new(
                    "identifiers",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    true,
                ));
                fields
            }
            ProfileTableKind::Identifiers => vec![
                Field::new("profile_id", DataType::Int64, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
                Field::new("first_seen", timestamp(), true),
                Field::new("last_seen", timestamp(), true),
                Field::new("records", DataType::Int64, false),
            ],
            ProfileTableKind::Junk => vec![
                Field::new("kind", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
            ],
            ProfileTableKind::Merges => vec![
                Field::new("merged_profile", DataType::Int64, false),
                Field::new("surviving_profile", DataType::Int64, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
                Field::new("record", DataType::Int64, false),
                Field::new("merged_at", timestamp(), false),
            ],
        };
        Self {
            space,
            kind,
            schema: Arc::new(Schema::new(schema)),
        }
    }

    /// The table's rows as of now.
    pub fn rows(&self) -> Result<RecordBatch> {
        let st = self.space.state()?;
        let g = &st.graph;
        let columns = match self.kind {
            ProfileTableKind::Profiles => profiles(g),
            ProfileTableKind::Identifiers => identifiers(g),
            ProfileTableKind::Merges => merges(g),
            ProfileTableKind::Junk => junk(g),
        };
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The rows of the profile table (kind `Profiles`) for the live
    /// profiles among `ids` only, in id order: what a segment's members
    /// read, without building every profile's row.
    pub fn profile_rows_for(&self, ids: &roaring::RoaringBitmap) -> Result<RecordBatch> {
        let st = self.space.state()?;
        let g = &st.graph;
        let live: Vec<ProfileId> = ids
            .iter()
            .map(ProfileId::from)
            .filter(|p| g.is_live(*p))
            .collect();
        let held = live
            .iter()
            .map(|p| {
                g.profile_values(*p)
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", kind_name(g, k)))
                    .collect()
            })
            .collect();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            profile_columns(g, &live, held),
        )?)
    }
}

fn kind_name(g: &IdentityGraph, k: usize) -> &str {
    g.config().kinds.get(k).map_or("?", |k| k.name.as_str())
}

fn profiles(g: &IdentityGraph) -> Vec<ArrayRef> {
    let ids: Vec<ProfileId> = g.live_profile_ids().collect();
    let mut by_profile: HashMap<ProfileId, Vec<String>> = HashMap::with_capacity(ids.len());
    let mut rows: Vec<_> = g.identifier_details().collect();
    rows.sort_by(|a, b| (a.profile, a.kind, a.value).cmp(&(b.profile, b.kind, b.value)));
    for r in rows {
        by_profile.entry(r.profile).or_default().push(format!(
            "{}:{}",
            kind_name(g, r.kind),
            r.value
        ));
    }
    let held = ids
        .iter()
        .map(|p| by_profile.remove(p).unwrap_or_default())
        .collect();
    profile_columns(g, &ids, held)
}

/// The profile table's columns for `ids`, each holding `held[i]`.
fn profile_columns(g: &IdentityGraph, ids: &[ProfileId], held: Vec<Vec<String>>) -> Vec<ArrayRef> {
    let seen: Vec<(Option<i64>, Option<i64>)> = ids.iter().map(|p| g.profile_seen(*p)).collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.iter().map(|p| *p as i64))),
        Arc::new(TimestampMicrosecondArray::from(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            seen.iter().map(|s| s.1).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.iter()
                .map(|p| g.profile_records(*p).iter().sum::<u64>() as i64),
        )),
    ];
    for i in 0..g.sources() {
        columns
            .push(Arc::new(Int64Array::from_iter_values(ids.iter().map(
                |p| g.profile_records(*p).get(i).copied().unwrap_or(0) as i64,
            ))));
    }
    let mut list = ListBuilder::new(StringBuilder::new());
    for values in &held {
        for v in values {
            list.values().append_value(v);
        }
        list.append(true);
    }
    columns.push(Arc::new(list.finish()));
    columns
}

fn identifiers(g: &IdentityGraph) -> Vec<ArrayRef> {
    let mut rows: Vec<_> = g.identifier_details().collect();
    rows.sort_by(|a, b| (a.profile, a.kind, a.value).cmp(&(b.profile, b.kind, b.value)));
    vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.profile as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| kind_name(g, r.kind)),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.value))),
        Arc::new(TimestampMicrosecondArray::from(
            rows.iter().map(|r| r.first_seen).collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            rows.iter().map(|r| r.last_seen).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.records as i64),
        )),
    ]
}

fn junk(g: &IdentityGraph) -> Vec<ArrayRef> {
    use crate::identity::graph::JunkReason;
    let j = g.junk();
    vec![
        Arc::new(StringArray::from_iter_values(
            j.iter().map(|(k, _, _)| kind_name(g, *k)),
        )),
        Arc::new(StringArray::from_iter_values(
            j.iter().map(|(_, v, _)| v.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(j.iter().map(
            |(_, _, r)| match r {
                JunkReason::Blocklist => "blocklist",
                JunkReason::TooManyLinks => "linked to too many distinct identifiers (max_links)",
            },
        ))),
    ]
}

fn merges(g: &IdentityGraph) -> Vec<ArrayRef> {
    // The lineage of an erased person is gone with them.
    let m: Vec<_> = g.merges().iter().filter(|m| !g.merge_erased(m)).collect();
    vec![
        Arc::new(Int64Array::from_iter_values(
            m.iter().map(|r| r.merged as i64),
        )),
        Arc::new(Int64Array::from_iter_values(
            m.iter().map(|r| r.survivor as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            m.iter().map(|r| kind_name(g, r.kind)),
        )),
        Arc::new(StringArray::from_iter_values(
            m.iter().map(|r| r.value.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            m.iter().map(|r| r.record as i64),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            m.iter().map(|r| r.at),
        )),
    ]
}

/// A table the engine computes when a query scans it (a space's tables,
/// `segments`): its columns and its rows as of now.
pub trait ComputedRows: std::fmt::Debug + Send + Sync + 'static {
    /// The columns.
    fn columns(&self) -> SchemaRef;
    /// The rows, as of now.
    fn compute(&self) -> DfResult<RecordBatch>;
    /// The rows, where only the columns of `projection` (all with `None`)
    /// need real values: the others may be left empty.
    fn compute_projected(&self, projection: Option<&[usize]>) -> DfResult<RecordBatch> {
        let _ = projection;
        self.compute()
    }
}

impl ComputedRows for ProfileTable {
    fn columns(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn compute(&self) -> DfResult<RecordBatch> {
        self.rows().map_err(crate::EngineError::into_datafusion)
    }

    /// `SELECT count(*) FROM customers WHERE …` does not build every
    /// profile's identifier list (the costly column).
    fn compute_projected(&self, projection: Option<&[usize]>) -> DfResult<RecordBatch> {
        let list = self.schema.fields().len() - 1;
        match (self.kind, projection) {
            (ProfileTableKind::Profiles, Some(p)) if !p.contains(&list) => {
                let st = self
                    .space
                    .state()
                    .map_err(crate::EngineError::into_datafusion)?;
                let ids: Vec<ProfileId> = st.graph.live_profile_ids().collect();
                let empty = vec![Vec::new(); ids.len()];
                Ok(RecordBatch::try_new(
                    Arc::clone(&self.schema),
                    profile_columns(&st.graph, &ids, empty),
                )?)
            }
            _ => self.compute(),
        }
    }
}

/// A [`ComputedRows`] as DataFusion sees it: a view whose one batch is
/// built when a query scans it.
#[derive(Debug)]
pub struct Computed<T>(pub T);

#[async_trait]
impl<T: ComputedRows> TableProvider for Computed<T> {
    fn schema(&self) -> SchemaRef {
        self.0.columns()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![
                self.0.compute_projected(projection.map(Vec::as_slice))?,
            ]],
            self.0.columns(),
            projection.cloned(),
        )?)
    }
}
