//! A process for the crash test: opens the database given as first argument,
//! appends batches of the `log` table from the batch number given as second
//! argument on, checkpointing and compacting now and then, and prints
//! `ack <n>` after each append returns. A third argument is the hex key of
//! an encrypted database. The parent kills it with SIGKILL.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::sync::Arc;

use tessera_storage::{Key, Options, OsVfs, Store, TableOptions};
use tessera_tests::{log_batch, log_schema};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    let mut next: i64 = args[2].parse().unwrap();
    let opts = Options {
        flush_threshold_batches: 7,
        compaction_min_small_segments: 3,
        encryption: args.get(3).map(|hex| Key::from_hex(hex).unwrap()),
        ..Options::default()
    };
    let store = Store::open_with(dir, opts, Arc::new(OsVfs)).unwrap();
    if store.table("log").is_err() {
        store
            .create_table("log", log_schema(), TableOptions::default())
            .unwrap();
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    loop {
        store.append("log", &log_batch(next)).unwrap();
        writeln!(out, "ack {next}").unwrap();
        out.flush().unwrap();
        if next % 11 == 0 {
            store.checkpoint().unwrap();
        }
        if next % 29 == 0 {
            store.compact().unwrap();
        }
        next += 1;
    }
}
