//! `tessera`: the command line of the Tessera database.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera_engine::{Database, EngineOptions};
use tessera_server::{bench, demo, export, keys, print, serve, shell};

/// The binary's allocator. A full UNIFY allocates and frees millions of
/// small buffers and a few very large ones; glibc's malloc hands the large
/// ones back to the kernel and faults fresh zeroed pages in for the next,
/// which cost a sixth of UNIFY's time at 1 000 000 persons
/// (`docs/benchmarks.md`). An embedding application keeps its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tessera: an embedded analytical database for customer data.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The key of an encrypted database: a file of 64 hexadecimal digits
    /// (or 32 bytes), mode 600. Also TESSERA_KEY_FILE, or TESSERA_KEY with
    /// the digits. A new database given a key is created encrypted.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL: an interactive shell, or the statements given with -c / -f.
    Sql {
        /// The database directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Statements to run, then exit.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// A file of statements to run, then exit.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Check every file of a database: checksums, manifest, log, indexes.
    Verify {
        /// The database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Put an encrypted database under a new key (give the current one with
    /// --key-file, TESSERA_KEY_FILE or TESSERA_KEY). Data files are not
    /// rewritten: only the database's data key is sealed anew.
    Rekey {
        /// The database directory.
        #[arg(long)]
        db: PathBuf,
        /// A file with the new key (64 hexadecimal digits or 32 bytes, mode 600).
        #[arg(long)]
        new_key_file: PathBuf,
    },
    /// Merge small segments and purge deleted rows from every file.
    Compact {
        /// The database directory.
        #[arg(long)]
        db: PathBuf,
    },
    /// Write realistic multi-channel customer data, with the true person of
    /// every row (truth.csv), as CSV and Parquet files.
    Gen {
        /// How many persons.
        #[arg(long, default_value_t = 100_000)]
        persons: u64,
        /// Seed: the same seed writes the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Which files: csv, parquet or both.
        #[arg(long, default_value = "both", value_parser = ["csv", "parquet", "both"])]
        format: String,
    },
    /// Write a segment's members (or who entered and exited since a version)
    /// to a CSV, NDJSON or Parquet file, for a marketing tool.
    ExportSegment {
        /// The segment.
        name: String,
        /// The database directory.
        #[arg(long)]
        db: PathBuf,
        /// The file to write (its extension gives the format unless --format does).
        #[arg(long)]
        to: PathBuf,
        /// Write only the profiles that entered or exited since this version
        /// (0: since the beginning), with a `change` column.
        #[arg(long)]
        changes_since: Option<i64>,
        /// csv, ndjson or parquet.
        #[arg(long)]
        format: Option<String>,
        /// Write only the profiles that consent to this purpose (the
        /// space's consent record, ALTER UNIFY … SET CONSENT), and say how
        /// many were left out.
        #[arg(long)]
        purpose: Option<String>,
    },
    /// Serve the database over the PostgreSQL wire protocol (psql, BI
    /// tools, drivers). On a database without roles, creates the superuser
    /// (password from TESSERA_PASSWORD, or generated and printed once).
    Serve {
        /// The database directory (created if missing).
        #[arg(long)]
        db: PathBuf,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A TOML file with these settings (flags win over it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// TLS certificate chain (PEM).
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Refuse connections without TLS.
        #[arg(long)]
        require_tls: bool,
        /// Connections served at once.
        #[arg(long)]
        max_connections: Option<usize>,
        /// Default statement timeout in milliseconds (0: none).
        #[arg(long)]
        statement_timeout_ms: Option<u64>,
        /// A directory where superusers' server-side COPY may read and write
        /// (repeatable); none by default.
        #[arg(long = "copy-dir")]
        copy_dirs: Vec<PathBuf>,
        /// Name of the superuser created on a database without roles.
        #[arg(long)]
        admin_user: Option<String>,
        /// Query memory limit in MiB; a query past it fails with SQLSTATE
        /// 53200 and the server stays up.
        #[arg(long)]
        memory_limit_mb: Option<usize>,
    },
    /// Measure the customer-data workload on a generated profile set: load
    /// (CSV and Parquet), UNIFY, appends, segment refreshes and counts, and
    /// ten typical queries, each with its time and peak memory.
    Bench {
        /// How many persons to generate.
        #[arg(long, default_value_t = 100_000)]
        persons: u64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder for the generated data and the databases.
        #[arg(long, default_value = "tessera-bench")]
        work: PathBuf,
        /// A folder written by `tessera gen` to reuse instead of generating.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Timed runs of each query, after one warm-up (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Write the report as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run the same workload on other engines after Tessera, in this run,
        /// and print them side by side: duckdb, clickhouse (chDB), postgres
        /// (the streaming rows, from a PostgreSQL server started on
        /// loopback), comma-separated. Needs Tessera's source tree (the
        /// queries and the scripts of benches/) in the current directory,
        /// and python3; DuckDB and chDB are installed into benches' own
        /// virtual environment, PostgreSQL must be installed (Debian's).
        #[arg(long, value_delimiter = ',', value_parser = ["duckdb", "clickhouse", "postgres"])]
        compare: Vec<String>,
        /// Skip the last step, streaming a large result to psql over the
        /// wire.
        #[arg(long)]
        no_stream: bool,
        /// Which files to generate and load: both (CSV and Parquet, each
        /// loaded into a database of its own) or parquet (about half the
        /// disk; no CSV load is measured).
        #[arg(long, default_value = "both", value_parser = ["both", "parquet"])]
        format: String,
        /// Run one step again on the database an earlier run left, and put
        /// it into that run's report (given by --out): stream (the wire
        /// step, e.g. after a run with --no-stream).
        #[arg(long, value_parser = ["stream"], requires = "out", conflicts_with = "compare")]
        only: Option<String>,
    },
    /// Create a database of sample customer data and query it.
    Demo {
        /// Where to create it.
        #[arg(long, default_value = "tessera-demo")]
        db: PathBuf,
        /// How many customers to generate.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
    },
}

fn open(db: &Path, key_file: Option<&Path>) -> Result<Database, ExitCode> {
    keys::open(db, key_file, EngineOptions::default()).map_err(|e| {
        eprintln!("{}", print::error(&e));
        if e.sqlstate() == "28000" {
            eprintln!("HINT:  give the database's key with --key-file FILE, TESSERA_KEY_FILE or TESSERA_KEY");
        }
        ExitCode::FAILURE
    })
}

fn run(cli: Cli) -> Result<(), ExitCode> {
    let mut out = std::io::stdout();
    let key_file = cli.key_file.as_deref();
    match cli.command {
        Command::Sql { db, command, file } => {
            let db = open(&db, key_file)?;
            print::show_progress(&db);
            let script = match (command, file) {
                (Some(c), _) => Some(c),
                (None, Some(f)) => Some(std::fs::read_to_string(&f).map_err(|e| {
                    eprintln!("ERROR:  cannot read {}: {e}", f.display());
                    ExitCode::FAILURE
                })?),
                (None, None) => None,
            };
            match script {
                Some(sql) => {
                    if !shell::run_script(&db, &sql, &mut out) {
                        return Err(ExitCode::FAILURE);
                    }
                }
                None => shell::interactive(&db, &mut out).map_err(|e| {
                    eprintln!("ERROR:  {e}");
                    ExitCode::FAILURE
                })?,
            }
        }
        Command::Verify { db } => {
            let db = open(&db, key_file)?;
            let report = db.verify().map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            println!(
                "checked {} files: {} segments ({} rows), {} bitmap indexes, {} log records",
                report.files_checked,
                report.segments,
                report.rows,
                report.indexes,
                report.wal_records
            );
            for p in &report.problems {
                println!("PROBLEM {p}");
            }
            if !report.is_ok() {
                return Err(ExitCode::from(2));
            }
            println!("no problems found");
        }
        Command::Rekey { db, new_key_file } => {
            let fail = |e: tessera_engine::EngineError| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            };
            let Some(current) = keys::resolve(key_file).map_err(fail)? else {
                eprintln!(
                    "ERROR:  give the database's current key with --key-file, TESSERA_KEY_FILE or TESSERA_KEY"
                );
                return Err(ExitCode::FAILURE);
            };
            let new = tessera_engine::Key::from_file(&new_key_file).map_err(|e| fail(e.into()))?;
            let database = Database::open_encrypted(&db, current.clone(), EngineOptions::default())
                .map_err(fail)?;
            database.rekey(&current, &new).map_err(fail)?;
            println!(
                "{} now opens with the key in {}; the old key no longer does",
                db.display(),
                new_key_file.display()
            );
        }
        Command::Compact { db } => {
            let db = open(&db, key_file)?;
            let r = db.compact().map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            println!(
                "compacted: {} segments rewritten into {}, {} deleted rows purged",
                r.segments_removed, r.segments_written, r.rows_purged
            );
        }
        Command::Gen {
            persons,
            seed,
            out: dir,
            format,
        } => {
            let formats = tessera_engine::datagen::Formats {
                csv: format != "parquet",
                parquet: format != "csv",
            };
            let started = std::time::Instant::now();
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let opts = tessera_engine::datagen::GenOptions::new(persons, seed);
            let written = tessera_engine::datagen::write_dataset(&opts, &dir, formats, |done| {
                if tty {
                    eprint!("\rgenerating: {done} of {persons} persons");
                }
            })
            .map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            if tty {
                eprintln!();
            }
            for (t, n) in &written.rows {
                println!("{t:>16}: {n} rows");
            }
            println!(
                "wrote {} files to {} in {:.1} s (seed {seed}); truth.* gives the person of every row",
                written.files.len(),
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            println!(
                "load them: tessera sql --db DB -f {}",
                dir.join("load.sql").display()
            );
        }
        Command::ExportSegment {
            name,
            db,
            to,
            changes_since,
            format,
            purpose,
        } => {
            let db = open(&db, key_file)?;
            print::show_progress(&db);
            let started = std::time::Instant::now();
            let done = export::run(
                &db,
                &name,
                &to,
                changes_since,
                format.as_deref(),
                purpose.as_deref(),
            )
            .map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            let what = match changes_since {
                Some(v) => format!("changes since version {v}"),
                None => "members".to_string(),
            };
            println!(
                "exported {} {what} of segment {name} (version {}) to {} in {:.2} s",
                done.rows,
                done.version,
                to.display(),
                started.elapsed().as_secs_f64()
            );
            if let (Some(p), Some(n)) = (&purpose, done.left_out) {
                println!("left out {n} without consent to {p}");
            }
        }
        Command::Serve {
            db,
            listen,
            config,
            tls_cert,
            tls_key,
            require_tls,
            max_connections,
            statement_timeout_ms,
            copy_dirs,
            admin_user,
            memory_limit_mb,
        } => {
            let mut file = match &config {
                Some(path) => serve::FileConfig::read(path).map_err(|e| {
                    eprintln!("ERROR:  {e}");
                    ExitCode::FAILURE
                })?,
                None => serve::FileConfig::default(),
            };
            file.merge(serve::FileConfig {
                listen,
                tls_cert,
                tls_key,
                require_tls: require_tls.then_some(true),
                max_connections,
                statement_timeout_ms,
                copy_dirs: (!copy_dirs.is_empty()).then_some(copy_dirs),
                admin_user,
                memory_limit_mb,
                key_file: key_file.map(Path::to_path_buf),
            });
            serve::run(&db, file).map_err(|e| {
                eprintln!("ERROR:  {e}");
                ExitCode::FAILURE
            })?;
        }
        Command::Bench {
            persons,
            seed,
            work,
            data,
            runs,
            out: json,
            compare,
            no_stream,
            format,
            only,
        } => {
            let key = keys::resolve(key_file).map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            let opts = bench::BenchOptions {
                persons,
                seed,
                work,
                data,
                runs,
                key,
                stream: !no_stream,
                csv: format == "both",
            };
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let mut progress = |name: &str, done: usize, total: usize| {
                if tty {
                    let bar = "#".repeat(done * 30 / total.max(1));
                    eprint!("\r\x1b[K[{bar:<30}] {done}/{total} {name}");
                    if done == total {
                        eprintln!();
                    }
                } else if done < total {
                    eprintln!("bench: {name}");
                }
            };
            let report = match (&only, &json) {
                // The only step there is: streaming over the wire, into the
                // report at --out (which it rewrites).
                (Some(_), Some(path)) => bench::rerun_stream(path, opts.key.clone(), runs),
                _ => bench::run(&opts, &mut progress),
            }
            .map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            report.print(&mut out).map_err(|e| {
                eprintln!("ERROR:  {e}");
                ExitCode::FAILURE
            })?;
            if let (Some(_), Some(path)) = (&only, &json) {
                println!("report written to {}", path.display());
                return Ok(());
            }
            let json =
                json.or_else(|| (!compare.is_empty()).then(|| opts.work.join("report.json")));
            if let Some(path) = &json {
                let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                std::fs::write(path, text + "\n").map_err(|e| {
                    eprintln!("ERROR:  cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                })?;
                println!("report written to {}", path.display());
            }
            if let Some(path) = json.filter(|_| !compare.is_empty()) {
                compare_engines(&path, &compare, runs, key_file)?;
            }
        }
        Command::Demo { db, customers } => {
            let key = keys::resolve(key_file).map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            demo::run(&db, customers, key, &mut out).map_err(|e| {
                eprintln!("{}", print::error(&e));
                ExitCode::FAILURE
            })?;
            // At a terminal, offer to serve the demo database right away.
            if std::io::IsTerminal::is_terminal(&std::io::stdin())
                && std::io::IsTerminal::is_terminal(&std::io::stdout())
            {
                print!("\nServe this database now on 127.0.0.1:5433? [y/N] ");
                let _ = std::io::Write::flush(&mut out);
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if answer.trim().eq_ignore_ascii_case("y") {
                    let file = serve::FileConfig {
                        key_file: key_file.map(Path::to_path_buf),
                        ..serve::FileConfig::default()
                    };
                    serve::run(&db, file).map_err(|e| {
                        eprintln!("ERROR:  {e}");
                        ExitCode::FAILURE
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Runs the workload's queries on the other engines (benches/workload/compare.py
/// through benches/duckdb/run.sh, which installs them) beside `report`.
fn compare_engines(
    report: &Path,
    engines: &[String],
    runs: usize,
    key_file: Option<&Path>,
) -> Result<(), ExitCode> {
    let script = Path::new("benches/duckdb/run.sh");
    if !script.exists() {
        eprintln!(
            "ERROR:  --compare runs benches/duckdb/run.sh from Tessera's source tree; run tessera bench from its top folder"
        );
        return Err(ExitCode::FAILURE);
    }
    let me = std::env::current_exe().map_err(|e| {
        eprintln!("ERROR:  cannot find the tessera binary: {e}");
        ExitCode::FAILURE
    })?;
    let names: Vec<&str> = engines
        .iter()
        .filter_map(|e| match e.as_str() {
            "clickhouse" => Some("chdb"),
            "duckdb" => Some("duckdb"),
            _ => None,
        })
        .collect();
    let postgres = engines.iter().any(|e| e == "postgres");
    println!("\nthe same workload on {}:", engines.join(" and "));
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg("workload")
        .arg(report)
        .arg("--tessera")
        .arg(&me)
        .arg(format!("--runs={runs}"))
        .arg(format!("--engines={}", names.join(",")))
        .args(postgres.then_some("--postgres"))
        // The script exports the tables with `tessera sql`: same key.
        .envs(key_file.map(|f| ("TESSERA_KEY_FILE", f)))
        .status()
        .map_err(|e| {
            eprintln!("ERROR:  cannot run {}: {e}", script.display());
            ExitCode::FAILURE
        })?;
    if !status.success() {
        eprintln!("ERROR:  the comparison failed ({status})");
        return Err(ExitCode::FAILURE);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
