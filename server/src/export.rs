//! `tessera export-segment`: a segment's members, or what changed since a
//! version, written to a file for a marketing tool (CSV, NDJSON or Parquet).
//!
//! A full export writes `segment('name')`: every member with the columns of
//! the space's profile table. A delta export (`--changes-since V`) writes
//! `segment_changes('name', V)` (`profile_id`, `change`, `at`, `version`)
//! joined with the profile table, so a sync job sends only who entered and
//! who exited since the version it last sent.
//!
//! With `--purpose p` only the profiles consenting to `p` are written
//! (`segment('name', purpose => 'p')`; in a delta, the entered ones: an
//! exit is always sent, so the tool stops addressing the person), and the
//! export says how many were left out.

use std::path::Path;

use tessera_engine::Database;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Rows written.
    pub rows: u64,
    /// The segment's version exported.
    pub version: i64,
    /// With a purpose: the members (or entered profiles) left out for
    /// lack of consent to it.
    pub left_out: Option<u64>,
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
    purpose: Option<&str>,
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
    let p = purpose.map(quote);
    let consents = |id: &str| match &p {
        Some(p) => format!("has_consent({id}, '{p}', '{}')", quote(&space)),
        None => "true".to_string(),
    };
    let (query, left_out) = match changes_since {
        None => (
            match &p {
                Some(p) => format!("SELECT * FROM segment('{n}', '{p}') ORDER BY profile_id"),
                None => format!("SELECT * FROM segment('{n}') ORDER BY profile_id"),
            },
            p.as_ref()
                .map(|p| format!("SELECT segment_count('{n}') - segment_count('{n}', '{p}')")),
        ),
        Some(v) => (
            format!(
                "SELECT * FROM segment_changes('{n}', {v}) ch LEFT JOIN {space} p USING (profile_id) \
                 WHERE ch.change = 'exited' OR {} ORDER BY ch.change, profile_id",
                consents("ch.profile_id")
            ),
            p.as_ref().map(|_| {
                format!(
                    "SELECT count(*) FROM segment_changes('{n}', {v}) \
                     WHERE change = 'entered' AND NOT {}",
                    consents("profile_id")
                )
            }),
        ),
    };
    let left_out = match left_out {
        Some(q) => Some(count(&db.sql(&q)?)?),
        None => None,
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
    Ok(Exported {
        rows,
        version,
        left_out,
    })
}

/// The one number a counting query returns.
fn count(
    batches: &[tessera_engine::engine_arrow::array::RecordBatch],
) -> tessera_engine::Result<u64> {
    let text = match batches.iter().find(|b| b.num_rows() > 0) {
        Some(b) => {
            tessera_engine::engine_arrow::util::display::array_value_to_string(b.column(0), 0)?
        }
        None => "0".into(),
    };
    Ok(text.parse().unwrap_or(0))
}
