//! `tessera bench`: the customer-data workload on a generated profile set,
//! measured the way a team choosing an engine would measure it.
//!
//! One run: generate the data (`tessera gen`, or reuse its folder), load
//! every source from CSV into a scratch database and from Parquet into the
//! database kept for the rest, UNIFY, append 10 000 new rows to each source,
//! create and refresh the typical segments, count a set expression on the
//! bitmaps, probe `in_segment` per row, run the ten typical queries of
//! `benches/workload/tessera/` (each the median of several runs after a
//! warm-up), and stream every web event to psql over the wire (when psql
//! is installed). Each step records its time and the process's peak memory.

pub mod memory;
pub mod report;
pub mod stream;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tessera_engine::datagen::{self, Formats, GenOptions, Generator};
use tessera_engine::engine_arrow::array::RecordBatch;
use tessera_engine::engine_arrow::util::display::array_value_to_string;
use tessera_engine::{Database, EngineError, EngineOptions, Key, Result};

use crate::keys::open_with_key;

pub use report::{Measure, Report};

/// Rows appended to each source by the incremental step.
pub const APPEND_ROWS: usize = 10_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Persons to generate.
    pub persons: u64,
    /// Generator seed.
    pub seed: u64,
    /// Folder for the generated data (unless `data` is given) and the databases.
    pub work: PathBuf,
    /// A folder written by `tessera gen` to reuse.
    pub data: Option<PathBuf>,
    /// Timed runs of each query, after one warm-up.
    pub runs: usize,
    /// Encrypt the databases at rest with this key (what encryption costs
    /// the workload).
    pub key: Option<Key>,
    /// Stream a large result to psql over the wire at the end (when psql
    /// is installed).
    pub stream: bool,
    /// Generate and load CSV as well as Parquet (without: Parquet only,
    /// about half the disk, and no CSV load measured).
    pub csv: bool,
}

/// Progress: (step just started, steps done, steps in all).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Steps before the queries: gen, load csv, load parquet, unify, segments,
/// append, refresh, segment_count, in_segment; then the queries, and the
/// streaming over the wire.
const STEPS: usize = 9 + workload::QUERIES.len() + 1;

/// Runs the workload.
pub fn run(opts: &BenchOptions, progress: Progress<'_>) -> Result<Report> {
    let mut done = 0;
    let mut step = |name: &str| {
        progress(name, done, STEPS);
        done += 1;
        memory::reset_peak();
    };
    std::fs::create_dir_all(&opts.work).map_err(|e| io("cannot create the work folder", e))?;

    step("generate data");
    let data = match &opts.data {
        Some(d) => d.clone(),
        None => opts
            .work
            .join(format!("data-{}-s{}", opts.persons, opts.seed)),
    };
    if !data.join("load.sql").exists() {
        datagen::write_dataset(
            &GenOptions::new(opts.persons, opts.seed),
            &data,
            Formats {
                csv: opts.csv,
                parquet: true,
            },
            |_| {},
        )?;
    }
    let data = std::fs::canonicalize(&data).map_err(|e| io("cannot find the data", e))?;
    let mut measures = Vec::new();

    // Loading, from each format, into a database of its own.
    if opts.csv {
        step("load from CSV");
        let scratch = opts.work.join("db-csv");
        measures.push(load(&scratch, &data, "csv", &opts.key)?);
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        step("load from CSV: not asked for");
    }
    step("load from Parquet");
    let db_dir = opts.work.join("db");
    measures.push(load(&db_dir, &data, "parquet", &opts.key)?);
    let db = open_with_key(&db_dir, opts.key.clone(), EngineOptions::default())?;
    let tables = workload::SOURCES
        .iter()
        .map(|t| Ok((t.to_string(), count(&db, t)?)))
        .collect::<Result<Vec<_>>>()?;

    step("UNIFY");
    let mut unify = once(&db, "unify", workload::SETUP_UNIFY)?;
    unify.answer = format!("{} profiles", count(&db, "customers")?);
    measures.push(unify);
    step("create segments");
    let mut segments = once(&db, "create_segments", workload::SETUP_SEGMENTS)?;
    segments.answer = format!("{} segments", count(&db, "segments")?);
    measures.push(segments);

    step("append 10 000 rows per source");
    measures.push(append(&db, opts)?);

    step("refresh segments");
    measures.push(repeated(
        &db,
        "refresh_segments",
        "REFRESH SEGMENTS",
        opts.runs,
    )?);
    step("segment_count");
    measures.push(repeated(
        &db,
        "segment_count",
        workload::SEGMENT_COUNT,
        opts.runs,
    )?);
    step("in_segment");
    measures.push(repeated(
        &db,
        "in_segment",
        workload::IN_SEGMENT,
        opts.runs,
    )?);

    let email = db
        .sql(workload::PICK_EMAIL)?
        .first()
        .filter(|b| b.num_rows() > 0)
        .map(|b| array_value_to_string(b.column(0), 0))
        .transpose()?
        .unwrap_or_default();
    for (name, sql) in workload::QUERIES {
        step(name);
        let looks_up = sql.contains("{email}");
        let sql = sql.replace("{email}", &email.replace('\'', "''"));
        let mut m = repeated(&db, &format!("query:{name}"), &sql, opts.runs)?;
        if looks_up {
            m.answer = format!("{email}: {}", m.answer);
        }
        measures.push(m);
    }
    step("stream over the wire");
    if opts.stream && stream::psql_available() {
        measures.extend(stream::measure(&db, opts.runs)?);
    }
    progress("done", STEPS, STEPS);
    drop(db);
    Ok(Report {
        engine: format!("tessera {}", env!("CARGO_PKG_VERSION")),
        persons: opts.persons,
        seed: opts.seed,
        data: data.display().to_string(),
        database: std::fs::canonicalize(&db_dir)
            .unwrap_or_else(|_| db_dir.clone())
            .display()
            .to_string(),
        tables,
        encrypted: opts.key.is_some(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        database_bytes: dir_size(&db_dir),
        measures,
    })
}

/// Streams over the wire again on the database the report at `path` names
/// (a run with `--no-stream`, or one to measure anew), replaces the
/// report's streaming rows with the new ones and writes it back.
pub fn rerun_stream(path: &Path, key: Option<Key>, runs: usize) -> Result<Report> {
    let bytes = std::fs::read(path)
        .map_err(|e| io(&format!("cannot read the report {}", path.display()), e))?;
    let mut report: Report = serde_json::from_slice(&bytes).map_err(|e| {
        EngineError::InvalidOption(format!(
            "{} is not a report tessera bench wrote: {e}",
            path.display()
        ))
    })?;
    if !stream::psql_available() {
        return Err(EngineError::InvalidOption(
            "the streaming step needs psql (postgresql-client)".into(),
        ));
    }
    let db = open_with_key(Path::new(&report.database), key, EngineOptions::default())?;
    memory::reset_peak();
    let measures = stream::measure(&db, runs)?;
    drop(db);
    report
        .measures
        .retain(|m| !measures.iter().any(|n| n.name == m.name));
    report.measures.extend(measures);
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| EngineError::InvalidOption(format!("cannot write the report: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| io(&format!("cannot write the report {}", path.display()), e))?;
    Ok(report)
}

/// An I/O error, saying what was being done.
fn io(what: &str, e: std::io::Error) -> EngineError {
    EngineError::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Creates the sources in a new database at `dir` and loads them from the
/// generator's `format` files.
fn load(dir: &Path, data: &Path, format: &str, key: &Option<Key>) -> Result<Measure> {
    let _ = std::fs::remove_dir_all(dir);
    let db = open_with_key(dir, key.clone(), EngineOptions::default())?;
    let options = if format == "csv" {
        "FORMAT csv, HEADER true"
    } else {
        "FORMAT parquet"
    };
    let mut script = String::new();
    for t in workload::SOURCES {
        let ddl = datagen::ddl(t).unwrap_or_default();
        let file = data.join(format!("{t}.{format}"));
        let file = file.display().to_string().replace('\'', "''");
        script.push_str(&format!(
            "{ddl};\nCOPY {t} FROM '{file}' WITH ({options});\n"
        ));
    }
    let started = Instant::now();
    db.sql(&script)?;
    db.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let mut rows = 0;
    for t in workload::SOURCES {
        rows += count(&db, t)?;
    }
    Ok(Measure {
        name: format!("load_{format}"),
        seconds,
        runs: vec![seconds],
        rows,
        answer: format!("{rows} rows"),
        peak_rss_bytes: memory::peak_rss(),
    })
}

/// Runs `sql` once and times it.
fn once(db: &Database, name: &str, sql: &str) -> Result<Measure> {
    let started = Instant::now();
    let out = db.sql(sql)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(measure(name, vec![seconds], &out))
}

/// Runs `sql` once to warm up, then `runs` times; the median.
fn repeated(db: &Database, name: &str, sql: &str, runs: usize) -> Result<Measure> {
    let mut out = db.sql(sql)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        out = db.sql(sql)?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(measure(name, times, &out))
}

fn measure(name: &str, runs: Vec<f64>, out: &[RecordBatch]) -> Measure {
    let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
    Measure {
        name: name.to_string(),
        seconds: report::median(&runs),
        runs,
        rows: rows as u64,
        answer: answer(out, rows),
        peak_rss_bytes: memory::peak_rss(),
    }
}

/// A one-row result's values; else its row count.
fn answer(out: &[RecordBatch], rows: usize) -> String {
    match out.iter().find(|b| b.num_rows() > 0) {
        Some(b) if rows == 1 => (0..b.num_columns())
            .map(|c| {
                let v = array_value_to_string(b.column(c), 0).unwrap_or_default();
                format!("{}={v}", b.schema().field(c).name())
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("{rows} rows"),
    }
}

/// Appends [`APPEND_ROWS`] rows of new persons (another seed) to each source,
/// one batch per source, as an application's writes would arrive.
fn append(db: &Database, opts: &BenchOptions) -> Result<Measure> {
    // Enough new persons for 10 000 rows of the rarest source.
    let generator = Generator::new(GenOptions::new(APPEND_ROWS as u64 * 8, opts.seed ^ 0x5eed));
    let mut pending: Vec<(&str, Vec<RecordBatch>, usize)> = workload::SOURCES
        .iter()
        .map(|t| (*t, Vec::new(), 0))
        .collect();
    for chunk in generator {
        for (t, b) in chunk.tables {
            if let Some(p) = pending.iter_mut().find(|p| p.0 == t && p.2 < APPEND_ROWS) {
                let take = (APPEND_ROWS - p.2).min(b.num_rows());
                p.1.push(b.slice(0, take));
                p.2 += take;
            }
        }
        if pending.iter().all(|p| p.2 >= APPEND_ROWS) {
            break;
        }
    }
    let batches: Vec<(&str, RecordBatch)> = pending
        .into_iter()
        .map(|(t, bs, _)| {
            let schema = bs.first().map(RecordBatch::schema).ok_or_else(|| {
                EngineError::Io(std::io::Error::other(format!("no rows generated for {t}")))
            })?;
            Ok((
                t,
                tessera_engine::engine_arrow::compute::concat_batches(&schema, &bs)?,
            ))
        })
        .collect::<Result<_>>()?;
    let rows: usize = batches.iter().map(|(_, b)| b.num_rows()).sum();
    let started = Instant::now();
    for (t, b) in &batches {
        db.append(t, b)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measure {
        name: "append_10k_per_source".into(),
        seconds,
        runs: vec![seconds],
        rows: rows as u64,
        answer: format!("{rows} rows"),
        peak_rss_bytes: memory::peak_rss(),
    })
}

fn count(db: &Database, table: &str) -> Result<u64> {
    let out = db.sql(&format!("SELECT count(*) FROM {table}"))?;
    let n = out
        .first()
        .map(|b| array_value_to_string(b.column(0), 0))
        .transpose()?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(n)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
