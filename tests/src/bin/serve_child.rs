//! `tessera serve` for the wire tests that need a server in a process of its
//! own (its memory measured apart, SIGTERM): the same `serve::run` as the
//! `tessera` binary, with `--db PATH [--listen ADDR] [--memory-limit-mb N]`.
//! (Cargo builds a package's binaries only for that package's tests, so the
//! tests cannot rely on `target/…/tessera` being there.)
//!
//! With `SERVE_CHILD_WATCH_STDIN=1` it exits as soon as its standard input
//! closes: the tests that start a server hold the other end, so a test
//! that panics, or a test process that is killed, never leaves a server
//! behind (one that would keep the pipe of the CI's log open and the CI
//! waiting on it).

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use tessera_server::serve::{self, FileConfig};

fn main() -> ExitCode {
    if std::env::var_os("SERVE_CHILD_WATCH_STDIN").is_some_and(|v| v == "1") {
        std::thread::spawn(|| {
            use std::io::Read;
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            eprintln!("serve-child: standard input closed, the test is gone; exiting");
            std::process::exit(3);
        });
    }
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
