//! Printing results and errors for a person at a terminal.

use tessera_engine::{EngineError, QueryOutput};
use tessera_sql::copy::Step;

/// Rows as an aligned table, followed by the row count; statements without
/// rows print their command tag.
pub fn table(out: &QueryOutput) -> String {
    if out.schema.fields().is_empty() {
        return out.tag.clone();
    }
    let rows = out.row_count();
    let body = match tessera_engine::pretty(&out.schema, &out.batches) {
        Ok(t) => t,
        Err(e) => format!("(cannot display the rows: {e})"),
    };
    format!("{body}\n({rows} row{})", if rows == 1 { "" } else { "s" })
}

/// An error as psql shows it: `ERROR:  <message>` with its SQLSTATE.
pub fn error(e: &EngineError) -> String {
    format!("ERROR:  {e}\nSQLSTATE: {}", e.sqlstate())
}

/// A progress bar on standard error for each `COPY` of `db` (files read,
/// rows written), when standard error is a terminal.
pub fn show_progress(db: &tessera_engine::Database) {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return;
    }
    db.engine().set_progress(Some(std::sync::Arc::new(
        |step: Step, done: u64, total: u64| {
            eprint!("\r{}", progress_line(step, done, total));
            if done >= total {
                eprintln!();
            }
        },
    )));
}

/// One state of the progress bar.
fn progress_line(step: Step, done: u64, total: u64) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(100).min(100);
    let bar = "#".repeat((pct / 4) as usize);
    match step {
        Step::Read => format!(
            "loading [{bar:<25}] {pct:>3}%  {:.1} of {:.1} MB",
            done as f64 / 1e6,
            total as f64 / 1e6
        ),
        Step::Written => format!("writing [{bar:<25}] {pct:>3}%  {done} of {total} rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_share_done() {
        assert_eq!(
            progress_line(Step::Written, 500, 1000),
            "writing [############             ]  50%  500 of 1000 rows"
        );
        assert!(progress_line(Step::Written, 0, 0).contains("100%"));
        assert!(progress_line(Step::Read, 2_000_000, 4_000_000).starts_with("loading [#"));
    }
}
