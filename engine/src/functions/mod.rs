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

/// What a function returns rows as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// One value per row.
    Scalar,
    /// One value per group.
    Aggregate,
    /// Rows (`SELECT * FROM f(…)`).
    Table,
}

/// One signature of one of Tessera's functions, as a client's catalog
/// (`pg_proc`, psql's `\df`) lists it.
#[derive(Debug, Clone, Copy)]
pub struct FunctionInfo {
    /// Its name.
    pub name: &'static str,
    /// Scalar, aggregate or table.
    pub kind: FunctionKind,
    /// Argument names and PostgreSQL type names (`pg_type.typname`).
    pub arguments: &'static [(&'static str, &'static str)],
    /// The result's PostgreSQL type name (`record` for a table function).
    pub result: &'static str,
    /// Same arguments, same result (PostgreSQL's `provolatile`: `i`), or
    /// the same within a statement (`s`), or neither (`v`).
    pub volatility: char,
    /// What it does, in one line.
    pub description: &'static str,
}

const fn info(
    name: &'static str,
    kind: FunctionKind,
    arguments: &'static [(&'static str, &'static str)],
    result: &'static str,
    volatility: char,
    description: &'static str,
) -> FunctionInfo {
    FunctionInfo {
        name,
        kind,
        arguments,
        result,
        volatility,
        description,
    }
}

/// Every signature of the functions [`register`] adds (the engine's tests
/// check that each is registered).
pub const FUNCTIONS: &[FunctionInfo] = {
    use FunctionKind::{Aggregate, Scalar, Table};
    &[
        info(
            "unify",
            Scalar,
            &[("kind", "text"), ("value", "text")],
            "int8",
            'v',
            "the profile an identifier resolves to (the only profile space)",
        ),
        info(
            "unify",
            Scalar,
            &[("space", "text"), ("kind", "text"), ("value", "text")],
            "int8",
            'v',
            "the profile an identifier resolves to in a profile space",
        ),
        info(
            "unify_current",
            Scalar,
            &[("space", "text"), ("profile_id", "int8")],
            "int8",
            'v',
            "the live profile a retired profile id was merged into",
        ),
        info(
            "unify_explain",
            Table,
            &[("space", "text"), ("kind", "text"), ("value", "text")],
            "record",
            'v',
            "the chain of identifiers and merges that put an identifier in its profile",
        ),
        info(
            "unify_stats",
            Table,
            &[("space", "text")],
            "record",
            'v',
            "unification quality: records, profiles, merge rate, junk values, completeness",
        ),
        info(
            "most_recent",
            Aggregate,
            &[("value", "anyelement"), ("ts", "timestamptz")],
            "anyelement",
            'i',
            "the value with the latest time",
        ),
        info(
            "most_frequent",
            Aggregate,
            &[("value", "anyelement")],
            "anyelement",
            'i',
            "the commonest value",
        ),
        info(
            "first_by_priority",
            Aggregate,
            &[
                ("value", "anyelement"),
                ("source", "text"),
                ("priority", "text"),
            ],
            "anyelement",
            'i',
            "the value from the highest-priority source",
        ),
        info(
            "in_segment",
            Scalar,
            &[("profile_id", "int8"), ("name", "text")],
            "bool",
            's',
            "whether a profile is a member of a segment",
        ),
        info(
            "segment_count",
            Scalar,
            &[("expression", "text")],
            "int8",
            'v',
            "the size of a set expression over segments",
        ),
        info(
            "segment_count",
            Scalar,
            &[("expression", "text"), ("purpose", "text")],
            "int8",
            'v',
            "the size of a set expression over segments, consenting members only",
        ),
        info(
            "has_consent",
            Scalar,
            &[("profile_id", "int8"), ("purpose", "text")],
            "bool",
            'v',
            "whether a profile's latest decision for a purpose is a grant",
        ),
        info(
            "has_consent",
            Scalar,
            &[
                ("profile_id", "int8"),
                ("purpose", "text"),
                ("space", "text"),
            ],
            "bool",
            'v',
            "whether a profile's latest decision for a purpose is a grant, in a profile space",
        ),
        info(
            "segment",
            Table,
            &[("name", "text")],
            "record",
            's',
            "a segment's members with their profile columns",
        ),
        info(
            "segment",
            Table,
            &[("name", "text"), ("purpose", "text")],
            "record",
            's',
            "a segment's members consenting to a purpose",
        ),
        info(
            "segment_history",
            Table,
            &[("name", "text")],
            "record",
            's',
            "a segment's size at every refresh",
        ),
        info(
            "segment_changes",
            Table,
            &[("name", "text"), ("since", "int8")],
            "record",
            's',
            "who entered and exited a segment since a version",
        ),
        info(
            "segment_changes",
            Table,
            &[("name", "text"), ("since", "timestamptz")],
            "record",
            's',
            "who entered and exited a segment since a time",
        ),
        info(
            "segment_overlap",
            Table,
            &[("a", "text"), ("b", "text")],
            "record",
            's',
            "the profiles only in a, in both, only in b",
        ),
        info(
            "segment_sample",
            Table,
            &[("name", "text"), ("fraction", "float8"), ("seed", "int8")],
            "record",
            's',
            "a deterministic random subset of a segment's members",
        ),
    ]
};

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

#[cfg(test)]
mod tests {
    use super::{FUNCTIONS, FunctionKind};
    use tessera_sql::datafusion::execution::FunctionRegistry;
    use tessera_sql::datafusion::logical_expr::Volatility;

    #[test]
    fn every_listed_function_is_registered_as_listed() {
        let db = crate::Database::open_in_memory().unwrap();
        let ctx = db.engine().context();
        let letter = |v: Volatility| match v {
            Volatility::Immutable => 'i',
            Volatility::Stable => 's',
            Volatility::Volatile => 'v',
        };
        for f in FUNCTIONS {
            let volatility = match f.kind {
                FunctionKind::Scalar => ctx.udf(f.name).unwrap().signature().volatility,
                FunctionKind::Aggregate => ctx.udaf(f.name).unwrap().signature().volatility,
                FunctionKind::Table => {
                    assert!(ctx.table_function(f.name).is_ok(), "{}", f.name);
                    continue;
                }
            };
            assert_eq!(letter(volatility), f.volatility, "{}", f.name);
        }
    }
}
