//! Incremental `ON COMMIT` refresh: the members a row-level definition
//! gains from the rows appended since its last refresh, without reading
//! the rest of the table.
//!
//! A definition qualifies when it is a filter over one source of its space
//! that looks at each row alone:
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
//! The new rows are the ones [`crate::appended`] kept for the statements
//! since the segment's version; the definition's plan runs over them with
//! the source's scan replaced by a table of those rows. When one of those
//! statements did more than append (or its rows were not kept), the
//! refresh is a full one.
//!
//! A definition that reads the clock (`now()`, `current_date`, …) gains its
//! new members incrementally too, but members whose rows leave a sliding
//! window are noticed only by a full run: the scheduler runs one at least
//! every [`CLOCK_FULL_REFRESH`].

use std::sync::Arc;
use std::time::Duration;

use tessera_sql::SqlEngine;
use tessera_sql::datafusion::arrow::array::RecordBatch;
use tessera_sql::datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use tessera_sql::datafusion::datasource::{MemTable, provider_as_source};
use tessera_sql::datafusion::logical_expr::{
    Distinct, Expr, LogicalPlan, TableScan, TableScanBuilder,
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

/// A definition that can be refreshed from appended rows.
#[derive(Debug)]
pub struct RowPlan {
    /// The source it reads, by position in the space's definition.
    pub source: usize,
    /// Its plan, over the source's table.
    plan: LogicalPlan,
    /// Whether it reads the clock.
    pub reads_clock: bool,
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
    let scan = shape(&plan, &mut reads_clock)?;
    let table = storage_name(scan);
    if engine.retentions().iter().any(|(t, _)| *t == table) {
        return None;
    }
    let source = space.spec.sources.iter().position(|s| s.table == table)?;
    Some(RowPlan {
        source,
        plan,
        reads_clock,
    })
}

/// The scan under an accepted plan: a projection whose first column is
/// `profile_id`, over filters and aliases of one table scan.
fn shape<'a>(plan: &'a LogicalPlan, reads_clock: &mut bool) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::Distinct(Distinct::All(input)) => shape(input, reads_clock),
        LogicalPlan::Sort(s) if s.fetch.is_none() => shape(&s.input, reads_clock),
        LogicalPlan::Projection(p) => {
            let first = p.expr.first()?;
            let first = match first {
                Expr::Alias(a) => a.expr.as_ref(),
                e => e,
            };
            if !matches!(first, Expr::Column(c) if c.name == PROFILE_ID) {
                return None;
            }
            for e in &p.expr {
                row_level(e, reads_clock, true)?;
            }
            below_projection(&p.input, reads_clock)
        }
        _ => None,
    }
}

fn below_projection<'a>(plan: &'a LogicalPlan, reads_clock: &mut bool) -> Option<&'a TableScan> {
    match plan {
        LogicalPlan::Filter(f) => {
            row_level(&f.predicate, reads_clock, false)?;
            below_projection(&f.input, reads_clock)
        }
        LogicalPlan::SubqueryAlias(a) => below_projection(&a.input, reads_clock),
        LogicalPlan::TableScan(t) if t.fetch.is_none() && t.filters.is_empty() => Some(t),
        _ => None,
    }
}

/// `Some` when `e` depends on its row alone (and, unless `may_read_id`,
/// not on the row's profile id); notes whether it reads the clock.
fn row_level(e: &Expr, reads_clock: &mut bool, may_read_id: bool) -> Option<()> {
    if e.is_volatile() {
        return None;
    }
    let mut ok = true;
    let _ = e.apply(|e| {
        match e {
            Expr::ScalarSubquery(_)
            | Expr::InSubquery(_)
            | Expr::Exists(_)
            | Expr::AggregateFunction(_)
            | Expr::WindowFunction(_)
            | Expr::OuterReferenceColumn(..) => ok = false,
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
    let replaced = plan
        .plan
        .clone()
        .transform_up(|node| match node {
            LogicalPlan::TableScan(scan) => {
                let schema = scan.source.schema();
                // The kept rows have the stored columns; the scan's schema
                // may differ in nullability or metadata only.
                let rows = rows
                    .iter()
                    .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let table = MemTable::try_new(schema, vec![rows])?;
                let replaced = TableScanBuilder::new(
                    scan.table_name.clone(),
                    provider_as_source(Arc::new(table)),
                )
                .with_projection(scan.projection.clone())
                .with_filters(scan.filters.clone())
                .with_fetch(scan.fetch)
                .build()?;
                Ok(Transformed::yes(LogicalPlan::TableScan(replaced)))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(tessera_sql::SqlError::from)?
        .data;
    let out = engine.stream_plan(engine.context(), replaced).await?;
    use futures::TryStreamExt;
    let batches: Vec<RecordBatch> = out
        .stream
        .try_collect()
        .await
        .map_err(tessera_sql::SqlError::from)?;
    Ok(batches)
}
