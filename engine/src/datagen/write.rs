//! Writing generated data to files: one CSV and/or one Parquet file per
//! table, each written to a temporary name and renamed when complete.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use tessera_sql::datafusion::arrow::csv;
use tessera_sql::datafusion::parquet::arrow::ArrowWriter;

use super::{GenOptions, Generator, TABLES, schema};
use crate::error::{EngineError, Result};

/// Which files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// `TABLE.csv` with a header.
    pub csv: bool,
    /// `TABLE.parquet`.
    pub parquet: bool,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// (table, rows), in [`TABLES`] order.
    pub rows: Vec<(&'static str, u64)>,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

struct Sinks {
    csv: Option<csv::Writer<BufWriter<File>>>,
    parquet: Option<ArrowWriter<BufWriter<File>>>,
    rows: u64,
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(path)?))
}

fn io(e: impl std::fmt::Display) -> EngineError {
    EngineError::Io(std::io::Error::other(e.to_string()))
}

/// Generates `opts` into directory `dir` (created if missing); calls
/// `progress(persons done)` after each chunk.
pub fn write_dataset(
    opts: &GenOptions,
    dir: &Path,
    formats: Formats,
    mut progress: impl FnMut(u64),
) -> Result<Written> {
    std::fs::create_dir_all(dir)?;
    let tmp = |t: &str, ext: &str| dir.join(format!(".{t}.{ext}.tmp"));
    let mut sinks = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let schema = schema(t).ok_or_else(|| io(format!("no schema for {t}")))?;
        sinks.push(Sinks {
            csv: if formats.csv {
                Some(
                    csv::WriterBuilder::new()
                        .with_header(true)
                        .build(create(&tmp(t, "csv"))?),
                )
            } else {
                None
            },
            parquet: if formats.parquet {
                Some(ArrowWriter::try_new(create(&tmp(t, "parquet"))?, schema, None).map_err(io)?)
            } else {
                None
            },
            rows: 0,
        });
    }
    let mut done = 0;
    let chunk_persons = opts.chunk_persons.max(2);
    for chunk in Generator::new(opts.clone()) {
        for (t, batch) in &chunk.tables {
            let Some(i) = TABLES.iter().position(|x| x == t) else {
                continue;
            };
            let s = &mut sinks[i];
            if let Some(w) = &mut s.csv {
                w.write(batch)?;
            }
            if let Some(w) = &mut s.parquet {
                w.write(batch).map_err(io)?;
            }
            s.rows += batch.num_rows() as u64;
        }
        done = (done + chunk_persons).min(opts.persons);
        progress(done);
    }
    let mut written = Written::default();
    let load = dir.join("load.sql");
    std::fs::write(&load, load_script(dir, formats))?;
    written.files.push(load);
    for (t, s) in TABLES.iter().zip(sinks) {
        if let Some(w) = s.csv {
            let mut inner = w.into_inner();
            std::io::Write::flush(&mut inner)?;
            drop(inner);
            let path = dir.join(format!("{t}.csv"));
            std::fs::rename(tmp(t, "csv"), &path)?;
            written.files.push(path);
        }
        if let Some(w) = s.parquet {
            w.close().map_err(io)?;
            let path = dir.join(format!("{t}.parquet"));
            std::fs::rename(tmp(t, "parquet"), &path)?;
            written.files.push(path);
        }
        written.rows.push((t, s.rows));
    }
    Ok(written)
}

/// `CREATE TABLE` for a generated table, in Tessera's SQL.
pub fn ddl(table: &str) -> Option<String> {
    let schema = schema(table)?;
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{} {}{}",
                f.name(),
                tessera_sql::types::sql_name(f.data_type()).to_uppercase(),
                if f.is_nullable() { "" } else { " NOT NULL" }
            )
        })
        .collect();
    Some(format!("CREATE TABLE {table} ({})", cols.join(", ")))
}

/// A script that creates the tables and loads the files written (Parquet
/// when there is Parquet, else CSV).
fn load_script(dir: &Path, formats: Formats) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out =
        String::from("-- Written by tessera gen: creates the tables and loads the files.\n");
    for t in TABLES {
        if let Some(d) = ddl(t) {
            out.push_str(&d);
            out.push_str(";\n");
        }
        let (file, opts) = if formats.parquet {
            (format!("{t}.parquet"), "FORMAT parquet")
        } else {
            (format!("{t}.csv"), "FORMAT csv, HEADER true")
        };
        out.push_str(&format!(
            "COPY {t} FROM '{}' WITH ({opts});\n",
            abs.join(file).display()
        ));
    }
    out
}
