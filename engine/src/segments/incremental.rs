//! Incremental `ON COMMIT` refresh: a segment's members after rows were
//! appended, computed from those rows (and, for a definition per profile,
//! from the rows of the profiles they touched) without reading the rest of
//! the table.
//!
//! Two shapes of definition qualify. A **filter** over one source of its
//! space that looks at each row alone ([`Incremental::Rows`]):
//!
//! ```sql
//! SELECT profile_id FROM orders WHERE amount > 100 AND channel = 'app'
//! ```
//!
//! — one table scan under filters, one projection whose first column is
//! the source's `profile_id`, optionally `DISTINCT` or `ORDER BY`; no join,
//! aggregate, window, `LIMIT`, subquery or volatile function, no condition
//! on `profile_id` (a merge changes it for rows already there), and no
//! retention on the table (a row may arrive already expired). For such a
//! definition the members are `{ current(profile of r) : r satisfies it }`,
//! a union over rows: the old members (mapped through merges since) plus
//! the members of the new rows alone is exactly what a full run gives.
//!
//! An **aggregate per profile** ([`Incremental::Groups`]):
//!
//! ```sql
//! SELECT profile_id FROM orders WHERE status = 'paid'
//! GROUP BY profile_id HAVING sum(amount) > 1000
//! ```
//!
//! — the same scan and filters (which may read `profile_id`), one
//! aggregation whose grouping keys include `profile_id`, a `HAVING` over its
//! results, and the projection of `profile_id` first. Whether a profile is
//! a member depends on its own rows only, so an append can change it only
//! for the profiles its rows belong to: those *touched*. A merge is no
//! exception: it is caused by an appended row, and the surviving profile is
//! that row's. The new members are the old ones (mapped through merges)
//! outside the touched profiles, plus the definition's answer over the rows
//! of the touched profiles alone — every row they have, old and new, read
//! through a filter on the stored profile ids that the scan answers with a
//! bitmap probe ([`crate::functions::segment::InProfiles`]). The touched
//! profiles are those of the rows appended to *any* source of the space: a
//! CRM row that merges two profiles changes the orders of the survivor.
//!
//! The new rows are the ones [`crate::appended`] kept for the statements
//! since the segment's version; a filter's plan runs over them with the
//! source's scan replaced by a table of those rows. When one of those
//! statements did more than append (or its rows were not kept), the
//! refresh is a full one.
//!
//! A definition that reads the clock (`now()`, `current_date`, …) is
//! refreshed incrementally too, but members whose rows leave a sliding
//! window are noticed only by a full run: the scheduler runs one at least
//! every [`CLOCK_FULL_REFRESH`].

use std::sync::Arc;
use std::time::Duration;

use roaring::RoaringBitmap;
use tessera_sql::SqlEngine;
use tessera_sql::datafusion::arrow::array::{AsArray, RecordBatch};
use tessera_sql::datafusion::arrow::datatypes::Int64Type;
use tessera_sql::datafusion::common::Column;
use tessera_sql::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use tessera_sql::datafusion::datasource::{MemTable, provider_as_source};
use tessera_sql::datafusion::logical_expr::{
    Distinct, Expr, Filter, LogicalPlan, TableScan, TableScanBuilder,
};
use tessera_sql::datafusion::sql::sqlparser::ast;

use crate::appended::Appended;
use crate::error::Result;
use crate::space::Space;
use crate::unify::PROFILE_ID;

/// How often, at least, a clock-reading `ON COMMIT` segment is recomputed
/// in full (for the members whose rows left its window).
pub const CLOCK_FULL_REFRESH: Duration = Duration::from_secs(60);

/// Functions whose value depends on when a statement runs.
const CLOCK_FUNCTIONS: &[&str] = &[
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "today",
];

/// How a qualifying definition is refreshed from appended rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremental {
    /// A filter over rows: the members of the new rows are added.
    Rows,
    /// An aggregate per profile: the profiles the new rows touched are
    /// recomputed over all their rows.
    Groups,
}

/// A definition that can be refreshed from appended rows.
#[derive(Debug)]
pub struct RowPlan {
    /// The source it reads, by position in the space's definition.
    pub source: usize,
    /// Its plan, over the source's table.
    plan: LogicalPlan,
    /// Whether it reads the clock.
    pub reads_clock: bool,
    /// How it is refreshed.
    pub kind: Incremental,
}

/// The row plan of query `q` over `space`, if the definition qualifies.
pub async fn row_plan(engine: &SqlEngine, space: &Space, q: &ast::Query) -> Option<RowPlan> {
    let stmt = ast::Statement::Query(Box::new(q.clone()));
    let plan = tessera_sql::pii::STATEMENT_ACCESS
        .scope(
            tessera_sql::pii::PiiAccess::owner(),
            engine.plan_in(engine.context(), stmt),
        )
        .await
        .ok()?;
    let mut reads_clock = false;
    let (scan, kind) = shape(&plan, &mut reads_clock)?;
    let table = storage_name(scan);
    if engine.retentions().iter().any(|(t, _)| *t == table) {
        return None;
    }
    let source = space.spec.sources.iter().position(|s| s.table == table)?;
    Some(RowPlan {
        source,
        plan,
        reads_clock,
        kind,
    })
}

/// The scan under an accepted plan and how the plan is refreshed: a
/// projection whose first column is `profile_id`, over filters and aliases
/// of one table scan, or over a `HAVING` and an aggregation by profile.
fn shape<'a>(
    plan: &'a LogicalPlan,
    reads_clock: &mut bool,
) -> Option<(&'a TableScan, Incremental)> {
    match plan {
        LogicalPlan::Distinct(Distinct::All(input)) => shape(input, reads_clock),
        LogicalPlan::Sort(s) if s.fetch.is_none() => shape(&s.input, reads_clock),
        LogicalPlan::Projection(p) => {
            let first = p.expr.first()?;
            let first = match first {
                Expr::Alias(a) => a.expr.as_ref(),
                e => e,
            };
            if !is_profile_id(first) {
                return None;
            }
            if let Some(scan) = grouped(&p.input, reads_clock) {
                for e in &p.expr {
                    group_level(e, reads_clock)?;
                }
                return Some((scan, Incremental::Groups));
            }
            for e in &p.expr {
                row_level(e, reads_clock, true)?;
            }
            Some((
                below_projection(&p.input, reads_clock, false)?,
                Incremental::Rows,
            ))
        }
        _ => None,
    }
}

fn is_profile_id(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == PROFILE_ID)
}

/// The scan under `HAVING` filters over an aggregation whose keys include
/// `profile_id`, with per-row filters under it (which may read the id: a
/// merge touches the profile whose rows it renumbers).
fn grouped<'a>(plan: &'a LogicalPlan, reads_clock: &mut bool) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::Filter(f) => {
            group_level(&f.predicate, reads_clock)?;
            grouped(&f.input, reads_clock)
        }
        LogicalPlan::Aggregate(a) => {
            if !a.group_expr.iter().any(is_profile_id) {
                return None;
            }
            for e in &a.group_expr {
                row_level(e, reads_clock, true)?;
            }
            for e in &a.aggr_expr {
                group_level(e, reads_clock)?;
            }
            below_projection(&a.input, reads_clock, true)
        }
        _ => None,
    }
}

fn below_projection<'a>(
    plan: &'a LogicalPlan,
    reads_clock: &mut bool,
    may_read_id: bool,
) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::Filter(f) => {
            row_level(&f.predicate, reads_clock, may_read_id)?;
            below_projection(&f.input, reads_clock, may_read_id)
        }
        LogicalPlan::SubqueryAlias(a) => below_projection(&a.input, reads_clock, may_read_id),
        LogicalPlan::TableScan(t) if t.fetch.is_none() && t.filters.is_empty() => Some(t),
        _ => None,
    }
}

/// `Some` when `e` depends on its row alone (and, unless `may_read_id`,
/// not on the row's profile id); notes whether it reads the clock.
fn row_level(e: &Expr, reads_clock: &mut bool, may_read_id: bool) -> Option<()> {
    level(e, reads_clock, may_read_id, false)
}

/// `Some` when `e` depends on one group's rows alone: an aggregate or an
/// expression over aggregates and keys, without subqueries or windows.
fn group_level(e: &Expr, reads_clock: &mut bool) -> Option<()> {
    level(e, reads_clock, true, true)
}

fn level(e: &Expr, reads_clock: &mut bool, may_read_id: bool, aggregates: bool) -> Option<()> {
    if e.is_volatile() {
        return None;
    }
    let mut ok = true;
    let _ = e.apply(|e| {
        match e {
            Expr::ScalarSubquery(_)
            | Expr::InSubquery(_)
            | Expr::Exists(_)
            | Expr::GroupingSet(_)
            | Expr::WindowFunction(_)
            | Expr::OuterReferenceColumn(..) => ok = false,
            Expr::AggregateFunction(_) if !aggregates => ok = false,
            Expr::Column(c) if c.name == PROFILE_ID && !may_read_id => ok = false,
            Expr::ScalarFunction(f) if CLOCK_FUNCTIONS.contains(&f.name()) => *reads_clock = true,
            _ => {}
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    ok.then_some(())
}

/// A scan's table as a storage name (`schema.table`).
fn storage_name(scan: &TableScan) -> String {
    let t = &scan.table_name;
    format!(
        "{}.{}",
        t.schema().unwrap_or(tessera_sql::DEFAULT_SCHEMA),
        t.table()
    )
}

/// The rows of `appended` that went to the plan's source.
pub fn rows_for(plan: &RowPlan, appended: &[Arc<Appended>]) -> Vec<RecordBatch> {
    appended
        .iter()
        .filter(|a| a.source == plan.source)
        .flat_map(|a| a.rows.iter().cloned())
        .collect()
}

/// Runs the plan over `rows` instead of its table: the output a full run
/// would add for them.
pub async fn run_over(
    engine: &SqlEngine,
    plan: &RowPlan,
    rows: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let replaced = with_scan(plan, |scan| {
        let schema = scan.source.schema();
        // The kept rows have the stored columns; the scan's schema may
        // differ in nullability or metadata only.
        let rows = rows
            .iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let table = MemTable::try_new(schema, vec![rows])?;
        let replaced =
            TableScanBuilder::new(scan.table_name.clone(), provider_as_source(Arc::new(table)))
                .with_projection(scan.projection.clone())
                .with_filters(scan.filters.clone())
                .with_fetch(scan.fetch)
                .build()?;
        Ok(LogicalPlan::TableScan(replaced))
    })?;
    collect(engine, replaced).await
}

/// The profiles (current ids) of the rows `appended` to any source of
/// `space`: those an aggregate per profile is recomputed for. `None` (then
/// the refresh is full) when kept rows lack their ids or hold one the space
/// does not know.
pub fn touched(space: &Space, appended: &[Arc<Appended>]) -> Option<RoaringBitmap> {
    let created = space.profiles_created();
    let mut out = RoaringBitmap::new();
    for batch in appended.iter().flat_map(|a| a.rows.iter()) {
        let ids = batch.column_by_name(PROFILE_ID)?;
        let ids = ids.as_primitive_opt::<Int64Type>()?;
        for id in ids.iter().flatten() {
            let id = u64::try_from(id).ok().filter(|id| *id < created)?;
            out.insert(u32::try_from(space.current(id)).ok()?);
        }
    }
    Some(out)
}

/// Runs the plan over the rows that `only(profile_id)` keeps, a filter
/// placed right over its table's scan (and pushed into it): for an
/// aggregate per profile, the groups of those profiles as a full run
/// computes them.
pub async fn run_for(
    engine: &SqlEngine,
    plan: &RowPlan,
    only: impl Fn(Expr) -> Expr,
) -> Result<Vec<RecordBatch>> {
    let restricted = with_scan(plan, |scan| {
        let id = Expr::Column(Column::new(Some(scan.table_name.clone()), PROFILE_ID));
        let scan = Arc::new(LogicalPlan::TableScan(scan));
        Ok(LogicalPlan::Filter(Filter::try_new(only(id), scan)?))
    })?;
    collect(engine, restricted).await
}

/// The plan with its table's scan replaced by `f(scan)`.
fn with_scan(
    plan: &RowPlan,
    f: impl Fn(TableScan) -> tessera_sql::datafusion::error::Result<LogicalPlan>,
) -> Result<LogicalPlan> {
    let replaced = plan
        .plan
        .clone()
        .transform_up(|node| match node {
            LogicalPlan::TableScan(scan) => f(scan).map(Transformed::yes),
            other => Ok(Transformed::no(other)),
        })
        .map_err(tessera_sql::SqlError::from)?;
    Ok(replaced.data)
}

/// Every row of `plan`, read as the database's owner (a segment is the
/// database's own, whoever's write triggered the refresh).
async fn collect(engine: &SqlEngine, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    use futures::TryStreamExt;
    let run = async {
        let out = engine.stream_plan(engine.context(), plan).await?;
        let batches: Vec<RecordBatch> = out
            .stream
            .try_collect()
            .await
            .map_err(tessera_sql::SqlError::from)?;
        Ok(batches)
    };
    tessera_sql::pii::STATEMENT_ACCESS
        .scope(tessera_sql::pii::PiiAccess::owner(), run)
        .await
}
