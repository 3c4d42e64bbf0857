//! `tessera serve` for the wire tests that need a server in a process of its
//! own (its memory measured apart, SIGTERM): the same `serve::run` as the
//! `tessera` binary, with `--db PATH [--listen ADDR] [--memory-limit-mb N]`.
//! (Cargo builds a package's binaries only for that package's tests, so the
//! tests cannot rely on `target/…/tessera` being there.)

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use tessera_server::serve::{self, FileConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut db = None;
    let mut config = FileConfig::default();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--db", Some(v)) => db = Some(std::path::PathBuf::from(v)),
            ("--listen", Some(v)) => config.listen = v.parse().ok(),
            ("--memory-limit-mb", Some(v)) => config.memory_limit_mb = v.parse().ok(),
            (other, _) => {
                eprintln!("serve-child: unknown argument {other}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(db) = db else {
        eprintln!("serve-child: --db PATH");
        return ExitCode::FAILURE;
    };
    match serve::run(&db, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR:  {e}");
            ExitCode::FAILURE
        }
    }
}
