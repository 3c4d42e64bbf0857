//! Crash test: a child process appends batches of known content and reports
//! each acknowledged one; the parent kills it with SIGKILL at random moments,
//! reopens, and checks that every acknowledged batch is present whole, that
//! no batch is present in part, and that `verify` finds nothing wrong.
//!
//! `TESSERA_CRASH_ITERATIONS` sets the number of kills (default 50).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tessera_storage::{Key, Options, OsVfs, Store};
use tessera_tests::{BATCH_ROWS, batch_counts};

#[test]
fn acknowledged_batches_survive_sigkill() {
    let iterations: usize = tessera_tests::env_or("TESSERA_CRASH_ITERATIONS", 50);
    sigkill_loop(iterations, None);
}

#[test]
fn acknowledged_batches_of_an_encrypted_database_survive_sigkill() {
    let iterations: usize = tessera_tests::env_or("TESSERA_CRASH_ITERATIONS", 50);
    sigkill_loop(iterations.div_ceil(2), Some(&"c3".repeat(32)));
}

fn sigkill_loop(iterations: usize, key: Option<&str>) {
    let options = Options {
        encryption: key.map(|k| Key::from_hex(k).unwrap()),
        ..Options::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut rng = StdRng::seed_from_u64(0x7e55e7a);
    let mut acked_total = std::collections::BTreeSet::new();
    let mut next = 0i64;
    for it in 0..iterations {
        let mut args = vec![db.as_os_str().to_owned(), next.to_string().into()];
        args.extend(key.map(Into::into));
        let acked = kill_child_after(&args, Duration::from_millis(rng.random_range(1..120)), it);
        acked_total.extend(acked.iter().copied());

        let store = Store::open_with(&db, options.clone(), Arc::new(OsVfs))
            .unwrap_or_else(|e| panic!("iteration {it}: reopen failed: {e}"));
        let counts = batch_counts(&store, "log");
        for k in &acked_total {
            assert_eq!(
                counts.get(k),
                Some(&BATCH_ROWS),
                "iteration {it}: acknowledged batch {k} is missing or partial"
            );
        }
        for (k, n) in &counts {
            assert_eq!(
                *n, BATCH_ROWS,
                "iteration {it}: batch {k} is present in part ({n} rows)"
            );
        }
        let report = store.verify().unwrap();
        assert!(
            report.is_ok(),
            "iteration {it}: verify found {:?}",
            report.problems
        );
        next = counts.keys().next_back().map_or(0, |k| k + 1).max(next);
    }
    assert!(
        acked_total.len() > iterations,
        "the children acknowledged work ({} batches)",
        acked_total.len()
    );
}

/// Starts `crash-child` with `args`, waits until it says `ready`, lets it
/// work for `run`, kills it with SIGKILL (no destructor, no flush, no
/// goodbye), and returns the numbers it acknowledged (`ack <n>` lines).
pub(crate) fn kill_child_after(args: &[OsString], run: Duration, it: usize) -> Vec<i64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-child"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    // Wait until the child has opened the database, then let it run.
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if l == "ready" => break,
            Ok(_) => {}
            Err(e) => panic!("iteration {it}: child did not start: {e}"),
        }
    }
    std::thread::sleep(run);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    reader.join().unwrap();
    rx.try_iter()
        .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.parse().ok()))
        .collect()
}
