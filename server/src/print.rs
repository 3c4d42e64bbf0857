//! Printing results and errors for a person at a terminal.

use tessera_engine::{EngineError, QueryOutput};

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
