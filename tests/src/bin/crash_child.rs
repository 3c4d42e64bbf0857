//! A process for the crash test: opens the database given as first argument,
//! appends batches of the `log` table from the batch number given as second
//! argument on, checkpointing and compacting now and then, and prints
//! `ack <n>` after each append returns. A third argument is the hex key of
//! an encrypted database. The parent kills it with SIGKILL.
//!
//! `crash-child DIR segments N`: the same through the engine: a profile
//! space with two `ON COMMIT` segments (one refreshed incrementally, one
//! in full), and INSERT statements of 20 orders from statement N on.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::io::Write;
use std::sync::Arc;

use tessera_storage::{Key, Options, OsVfs, Store, TableOptions};
use tessera_tests::{log_batch, log_schema};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    if args[2] == "segments" {
        segments(dir, args[3].parse().unwrap());
    }
    let next: i64 = args[2].parse().unwrap();
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
    acknowledge_from(next, |n| {
        store.append("log", &log_batch(n)).unwrap();
        if n % 11 == 0 {
            store.checkpoint().unwrap();
        }
        if n % 29 == 0 {
            store.compact().unwrap();
        }
    })
}

/// Says `ready`, then for `next`, `next + 1`, … runs `work` and says
/// `ack <n>` once it has returned; until killed.
fn acknowledge_from(mut next: i64, mut work: impl FnMut(i64)) -> ! {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    loop {
        work(next);
        writeln!(out, "ack {next}").unwrap();
        out.flush().unwrap();
        next += 1;
    }
}

/// Orders of statement `n`: 20 rows, some of guests whose e-mail later
/// merges them with a customer.
fn orders_sql(n: i64) -> String {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            let id = n * 20 + i;
            let (customer, email) = if id % 9 == 0 {
                ("NULL".to_string(), format!("'g{}@y.fr'", id % 40))
            } else if id % 9 == 1 {
                (((id % 40) + 1).to_string(), format!("'g{}@y.fr'", id % 40))
            } else {
                (((id * 7) % 300 + 1).to_string(), "NULL".to_string())
            };
            format!("({id}, {customer}, {email}, {})", (id * 13) % 100)
        })
        .collect();
    format!("INSERT INTO orders VALUES {}", rows.join(", "))
}

fn segments(dir: &str, next: i64) -> ! {
    let db = tessera_engine::Database::open(dir).unwrap();
    if db.sql("SELECT count(*) FROM segments").is_err() {
        db.execute(
            "CREATE TABLE crm (customer_id BIGINT NOT NULL, email TEXT);
             CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT, email TEXT, amount BIGINT);
             INSERT INTO crm SELECT value, 'c' || value || '@x.fr' FROM generate_series(1, 300) AS t(value);
             UNIFY people FROM crm (customer_id, email), orders (customer_id, email);
             CREATE SEGMENT big ON people REFRESH ON COMMIT
               AS SELECT profile_id FROM orders WHERE amount > 50;
             CREATE SEGMENT regular ON people REFRESH ON COMMIT
               AS SELECT profile_id FROM orders GROUP BY profile_id HAVING count(*) >= 3",
        )
        .unwrap();
    }
    acknowledge_from(next, |n| {
        db.sql(&orders_sql(n)).unwrap();
        if n % 7 == 0 {
            db.flush().unwrap();
        }
    })
}
