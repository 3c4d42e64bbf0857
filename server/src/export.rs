//! `tessera export-segment`: a segment's members, or what changed since a
//! version, written to a file for a marketing tool (CSV, NDJSON or Parquet).
//!
//! A full export writes `segment('name')`: every member with the columns of
//! the space's profile table. A delta export (`--changes-since V`) writes
//! `segment_changes('name', V)` (`profile_id`, `change`, `at`, `version`)
//! joined with the profile table, so a sync job sends only who entered and
//! who exited since the version it last sent.

use std::path::Path;

use tessera_engine::Database;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Rows written.
    pub rows: u64,
    /// The segment's version exported.
    pub version: i64,
}

/// The file format: given, or from the file's extension.
fn format(to: &Path, given: Option<&str>) -> tessera_engine::Result<&'static str> {
    let ext = to
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    match given
        .map(str::to_lowercase)
        .as_deref()
        .unwrap_or(ext.as_str())
    {
        "csv" => Ok("csv"),
        "json" | "ndjson" | "jsonl" => Ok("json"),
        "parquet" => Ok("parquet"),
        other => Err(tessera_engine::EngineError::InvalidOption(format!(
            "cannot tell the export format from \"{other}\": use --format csv, ndjson or parquet"
        ))),
    }
}

fn quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// Exports segment `name` of `db` to `to`: every member, or with
/// `changes_since` the profiles that entered or exited since that version
/// (0: since the beginning).
pub fn run(
    db: &Database,
    name: &str,
    to: &Path,
    changes_since: Option<i64>,
    given_format: Option<&str>,
) -> tessera_engine::Result<Exported> {
    let fmt = format(to, given_format)?;
    let n = quote(name);
    let info = db.sql(&format!(
        "SELECT space, version FROM segments WHERE name = '{n}'"
    ));
    let (space, version) = match info {
        Ok(b) if b.iter().map(|b| b.num_rows()).sum::<usize>() == 1 => {
            let b = &b[0];
            let space =
                tessera_engine::engine_arrow::util::display::array_value_to_string(b.column(0), 0)?;
            let version =
                tessera_engine::engine_arrow::util::display::array_value_to_string(b.column(1), 0)?
                    .parse::<i64>()
                    .unwrap_or(0);
            (space, version)
        }
        _ => {
            return Err(tessera_engine::EngineError::UndefinedObject(format!(
                "segment \"{name}\" does not exist"
            )));
        }
    };
    let query = match changes_since {
        None => format!("SELECT * FROM segment('{n}') ORDER BY profile_id"),
        Some(v) => format!(
            "SELECT * FROM segment_changes('{n}', {v}) ch LEFT JOIN {space} p USING (profile_id) \
             ORDER BY ch.change, profile_id"
        ),
    };
    let out = db.execute(&format!(
        "COPY ({query}) TO '{}' WITH (FORMAT {fmt}{})",
        quote(&to.display().to_string()),
        if fmt == "csv" { ", HEADER true" } else { "" }
    ))?;
    let rows = out
        .last()
        .and_then(|o| o.tag.strip_prefix("COPY "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(Exported { rows, version })
}
