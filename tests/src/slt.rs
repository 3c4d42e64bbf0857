//! A sqllogictest driver for Tessera: each `.slt` file runs against a fresh
//! database in a temporary directory. Besides SQL, a file may say `REOPEN`
//! (as a statement) to close the database and open it again, which is how
//! persistence is tested.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use tessera_engine::{Database, EngineError};

/// The error a statement returned, with its SQLSTATE.
#[derive(Debug)]
pub struct SltError(pub EngineError);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.sqlstate(), self.0)
    }
}

impl std::error::Error for SltError {}

/// One database under test.
#[derive(Debug)]
pub struct TesseraSlt {
    dir: PathBuf,
    db: Option<Database>,
}

impl TesseraSlt {
    /// A fresh database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            db: Some(Database::open(dir)?),
        })
    }
}

fn column_type(dt: &DataType) -> DefaultColumnType {
    match dt {
        d if d.is_integer() => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| {
                        let s = f.value(r).to_string();
                        if s.is_empty() {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

impl sqllogictest::DB for TesseraSlt {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        if sql.trim().eq_ignore_ascii_case("REOPEN") {
            self.db = None;
            self.db = Some(Database::open(&self.dir).map_err(SltError)?);
            return Ok(DBOutput::StatementComplete(0));
        }
        let db = self.db.as_ref().expect("database is open");
        let mut outputs = db.execute(sql).map_err(SltError)?;
        let Some(out) = outputs.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        let is_query = out.tag.starts_with("SELECT")
            || out.tag.starts_with("EXPLAIN")
            || out.tag.starts_with("SHOW")
            || out.tag.starts_with("VERIFY")
            || out.tag == "COMPACT";
        if is_query && !out.schema.fields().is_empty() {
            let types = out
                .schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect();
            Ok(DBOutput::Rows {
                types,
                rows: rows(&out.batches),
            })
        } else {
            let n = out
                .tag
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Ok(DBOutput::StatementComplete(n))
        }
    }

    fn engine_name(&self) -> &str {
        "tessera"
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        Some(err.0.sqlstate().to_string())
    }
}
