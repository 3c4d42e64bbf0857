//! The tables a profile space shows: `space` (one row per profile),
//! `space_identifiers`, `space_merges` and `space_junk` (the values
//! excluded as identifying nobody, each with its reason). They are read from the space's
//! graph when a query scans them, so they are always current; nothing of
//! them is stored besides the graph's log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
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
    /// The engine's PII tags: the values of a kind some source reads from
    /// a PII column are masked for readers without `pii_reader`.
    pii: Option<tessera_sql::pii::PiiTags>,
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
            pii: None,
        }
    }

    /// Masks the values of PII kinds by `tags` (see [`ProfileTable::mask`]).
    pub fn with_pii(mut self, tags: tessera_sql::pii::PiiTags) -> Self {
        self.pii = Some(tags);
        self
    }

    /// The names of the kinds some source reads from a PII column, and the
    /// masking key; `None` when nothing is to be masked.
    fn pii_kinds(&self) -> Option<(HashSet<String>, [u8; 32])> {
        let tags = self.pii.as_ref()?;
        let key = tags.key()?;
        let spec = &self.space.spec;
        let mut kinds = HashSet::new();
        for s in &spec.sources {
            let cols = tags.columns(&s.table);
            for (k, c) in &s.columns {
                if cols.contains(c)
                    && let Some(kind) = spec.config.kinds.get(*k)
                {
                    kinds.insert(kind.name.clone());
                }
            }
        }
        (!kinds.is_empty()).then_some((kinds, key))
    }

    /// `batch` (rows of this table) with the values of PII kinds masked:
    /// the `value` column of the identifier, merge and junk tables, and
    /// the `kind:value` entries of the profile table's `identifiers`.
    pub fn mask(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some((kinds, key)) = self.pii_kinds() else {
            return Ok(batch);
        };
        let mut columns = batch.columns().to_vec();
        let schema = batch.schema();
        if let (Ok(k), Ok(v)) = (schema.index_of("kind"), schema.index_of("value")) {
            let kind = columns[k].as_string::<i32>().clone();
            let value = columns[v].as_string::<i32>().clone();
            let masked: StringArray = (0..value.len())
                .map(|i| {
                    (!value.is_null(i)).then(|| {
                        if kinds.contains(kind.value(i)) {
                            tessera_sql::pii::mask_text(&key, value.value(i))
                        } else {
                            value.value(i).to_string()
                        }
                    })
                })
                .collect();
            columns[v] = Arc::new(masked);
        }
        if let Ok(l) = schema.index_of("identifiers") {
            let list = columns[l].as_list::<i32>().clone();
            let mut out = ListBuilder::new(StringBuilder::new());
            for i in 0..list.len() {
                if list.is_null(i) {
                    out.append(false);
                    continue;
                }
                let entries = list.value(i);
                let entries = entries.as_string::<i32>();
                for e in entries.iter().flatten() {
                    match e.split_once(':') {
                        Some((k, v)) if kinds.contains(k) => out
                            .values()
                            .append_value(format!("{k}:{}", tessera_sql::pii::mask_text(&key, v))),
                        _ => out.values().append_value(e),
                    }
                }
                out.append(true);
            }
            columns[l] = Arc::new(out.finish());
        }
        Ok(RecordBatch::try_new(schema, columns)?)
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
    /// The rows as a reader without `pii_reader` sees them.
    fn mask_pii(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        Ok(batch)
    }
}

impl ComputedRows for ProfileTable {
    fn columns(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn mask_pii(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        self.mask(batch)
            .map_err(crate::EngineError::into_datafusion)
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut batch = self.0.compute_projected(projection.map(Vec::as_slice))?;
        // A reader without pii_reader sees the values of PII kinds masked.
        let access = tessera_sql::pii::access_of(
            state
                .config()
                .get_extension::<tessera_sql::pii::PiiAccess>(),
        );
        if access.is_some_and(|a| !a.reader) {
            batch = self.0.mask_pii(batch)?;
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.0.columns(),
            projection.cloned(),
        )?)
    }
}

/// Rows computed once (a table function's call), masked at scan as the
/// profile table they come from.
#[derive(Debug)]
pub struct Fixed {
    /// The rows.
    pub batch: RecordBatch,
    /// The table they are rows of.
    pub source: ProfileTable,
}

impl ComputedRows for Fixed {
    fn columns(&self) -> SchemaRef {
        self.batch.schema()
    }

    fn compute(&self) -> DfResult<RecordBatch> {
        Ok(self.batch.clone())
    }

    fn mask_pii(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        self.source
            .mask(batch)
            .map_err(crate::EngineError::into_datafusion)
    }
}
