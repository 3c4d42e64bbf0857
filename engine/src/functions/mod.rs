//! Tessera's SQL functions over profile spaces, registered into the SQL
//! layer's session when a database opens:
//!
//! | function | kind | what it returns |
//! |---|---|---|
//! | `unify(kind, value)`, `unify(space, kind, value)` | scalar | the profile an identifier resolves to ([`resolve`]) |
//! | `unify_current(space, profile_id)` | scalar | the profile a retired id was merged into (itself when live) |
//! | `unify_explain(space, kind, value)` | table | how that identifier came to be in its profile ([`explain`]) |
//! | `unify_stats(space)` | table | the quality of a space's unification ([`stats`]) |
//! | `most_recent(value, ts)` | aggregate | the value with the latest time ([`golden`]) |
//! | `most_frequent(value)` | aggregate | the commonest value |
//! | `first_by_priority(value, source, 'a,b,…')` | aggregate | the value of the highest-priority source |
//! | `in_segment`, `segment_count`, `segment`, `segment_history`, `segment_changes`, `segment_overlap`, `segment_sample` | | see [`segment`] |

/// `PartialEq`, `Eq` and `Hash` for a function that holds a database's
/// state behind an `Arc` (`$field`): two are equal when they share it.
#[macro_export]
#[doc(hidden)]
macro_rules! udf_identity {
    ($t:ident, $name:literal) => {
        $crate::udf_identity!($t, $name, cx.segments);
    };
    ($t:ident, $name:literal, $($field:ident).+) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                std::sync::Arc::ptr_eq(&self.$($field).+, &other.$($field).+)
            }
        }

        impl Eq for $t {}

        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                $name.hash(state);
            }
        }
    };
}

pub mod consent;
pub mod explain;
pub mod golden;
pub mod resolve;
pub mod segment;
pub mod stats;

use std::sync::Arc;

use tessera_sql::datafusion::common::ScalarValue;
use tessera_sql::datafusion::error::{DataFusionError, Result as DfResult};
use tessera_sql::datafusion::logical_expr::{AggregateUDF, Expr, ScalarUDF};
use tessera_sql::{SqlEngine, SqlError};

use crate::privacy::consent::Consents;
use crate::segments::Segments;
use crate::space::Space;
use crate::spaces::Spaces;

/// Registers every function of this module into `engine`'s session, and
/// the `segments` table (unless a table of that name exists).
pub fn register(
    engine: &SqlEngine,
    spaces: &Arc<Spaces>,
    segments: &Arc<Segments>,
    consents: &Arc<Consents>,
) {
    let ctx = engine.context();
    let cx = segment::Context::new(
        Arc::clone(spaces),
        Arc::clone(segments),
        Arc::clone(consents),
        engine.pii().clone(),
    );
    ctx.register_udf(ScalarUDF::from(segment::InSegment::new(cx.clone())));
    engine
        .hooks()
        .set_mapped_filter(Arc::new(segment::InSegmentFilter::new(cx.clone())));
    ctx.register_udf(ScalarUDF::from(segment::SegmentCount::new(cx.clone())));
    ctx.register_udf(ScalarUDF::from(consent::HasConsent::new(
        Arc::clone(spaces),
        Arc::clone(consents),
    )));
    engine.register_table_function(
        "segment",
        Arc::new(segment::SegmentMembers(cx.clone())),
        &["name", "purpose"],
    );
    engine.register_table_function(
        "segment_history",
        Arc::new(segment::SegmentHistory(cx.clone())),
        &["name"],
    );
    engine.register_table_function(
        "segment_changes",
        Arc::new(segment::SegmentChanges(cx.clone())),
        &["name", "since"],
    );
    engine.register_table_function(
        "segment_overlap",
        Arc::new(segment::SegmentOverlap(cx.clone())),
        &["a", "b"],
    );
    engine.register_table_function(
        "segment_sample",
        Arc::new(segment::SegmentSample(cx.clone())),
        &["name", "fraction", "seed"],
    );
    if !segments.all().is_empty() {
        provide_segments_table(engine, &cx);
    }
    // They answer from a value: not for readers to whom values are masked.
    for probe in ["unify", "unify_current", "unify_explain"] {
        engine.pii().mark_probe(probe);
    }
    ctx.register_udf(ScalarUDF::from(resolve::Unify::new(Arc::clone(spaces))));
    ctx.register_udf(ScalarUDF::from(resolve::UnifyCurrent::new(Arc::clone(
        spaces,
    ))));
    ctx.register_udtf(
        "unify_explain",
        Arc::new(explain::UnifyExplain::new(Arc::clone(spaces))),
    );
    ctx.register_udtf(
        "unify_stats",
        Arc::new(stats::UnifyStats::new(Arc::clone(spaces))),
    );
    ctx.register_udaf(AggregateUDF::from(golden::PickFunction::most_recent()));
    ctx.register_udaf(AggregateUDF::from(golden::MostFrequent::new()));
    ctx.register_udaf(AggregateUDF::from(golden::PickFunction::first_by_priority()));
}

/// Shows the `segments` table (once a database has segments, and unless a
/// table of that name exists: a user's own `segments` keeps its name).
pub fn provide_segments_table(engine: &SqlEngine, cx: &segment::Context) {
    let name = format!("{}.segments", tessera_sql::DEFAULT_SCHEMA);
    if !engine.name_taken(&name) {
        let cx = cx.clone();
        // Registering in an existing schema cannot fail.
        let _ = engine.provide_table(
            &name,
            Some(Arc::new(crate::profiles::Computed(
                segment::SegmentsTable::new(cx),
            ))),
        );
    }
}

/// The table a table-function call returns. Its schema carries the call
/// (`tessera.call` metadata): DataFusion names every scan of a table
/// function `name()` whatever its arguments, and without this two calls
/// with different arguments in one query (`SELECT (SELECT count(*) FROM
/// segment('a')), (SELECT count(*) FROM segment('b'))`) compare equal and
/// are merged by common-subexpression elimination.
fn call_table(
    function: &str,
    args: &[Expr],
    batch: tessera_sql::datafusion::arrow::array::RecordBatch,
) -> DfResult<Arc<dyn tessera_sql::datafusion::catalog::TableProvider>> {
    let batch = call_batch(function, args, batch)?;
    Ok(Arc::new(
        tessera_sql::datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])?,
    ))
}

/// `batch` with the call in its schema's metadata (see [`call_table`]).
fn call_batch(
    function: &str,
    args: &[Expr],
    batch: tessera_sql::datafusion::arrow::array::RecordBatch,
) -> DfResult<tessera_sql::datafusion::arrow::array::RecordBatch> {
    let call = format!(
        "{function}({})",
        args.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let schema = Arc::new(
        batch
            .schema()
            .as_ref()
            .clone()
            .with_metadata([("tessera.call".to_string(), call)].into_iter().collect()),
    );
    Ok(batch.with_schema(schema)?)
}

/// The text of a literal argument of a table function.
fn literal_text(function: &str, e: &Expr) -> DfResult<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        Expr::Literal(v, _) if !v.is_null() => Ok(v.to_string()),
        other => Err(invalid(format!(
            "{function}: arguments are literals, got {other}"
        ))),
    }
}

fn invalid(message: String) -> DataFusionError {
    SqlError::InvalidParameter(message).into_datafusion()
}

/// The space named `name` (`space` or `schema.space`).
fn space_named(spaces: &Spaces, name: &str) -> DfResult<Arc<Space>> {
    let lower = name.trim().to_lowercase();
    let storage = if lower.contains('.') {
        lower
    } else {
        format!("{}.{lower}", tessera_sql::DEFAULT_SCHEMA)
    };
    spaces.get(&storage).ok_or_else(|| {
        SqlError::UndefinedObject(format!(
            "profile space \"{name}\" does not exist (UNIFY defines one)"
        ))
        .into_datafusion()
    })
}

/// The index of kind `kind` in `space`.
fn kind_index(space: &Space, kind: &str) -> DfResult<usize> {
    space
        .spec
        .kind_index(kind)
        .map_err(crate::EngineError::into_datafusion)
}
