//! The streaming step: a large result sent over the PostgreSQL wire
//! protocol to psql, by the same server `tessera serve` runs, here in the
//! bench's own process (so its peak memory shows whether the result was
//! held whole).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use tessera_engine::{Database, EngineError, Result};

use super::{Measure, memory, report};
use crate::serve::network_runtime;
use crate::wire::roles::{Roles, generate_password};
use crate::wire::{ServeConfig, Server};

/// The result streamed: every web event, every column.
pub const QUERY: &str = "SELECT * FROM web_events";

/// Whether psql is there to be the client.
pub fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn wire_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Io(std::io::Error::other(format!("the wire server: {e}")))
}

/// Serves `db` on a loopback port and times psql reading [`QUERY`] whole
/// and printing it into a pipe this process drains (counting the rows),
/// `runs` times after a warm-up: through a cursor (`FETCH_COUNT`, as psql
/// pages a large SELECT) and as `COPY … TO STDOUT`.
pub fn measure(db: &Database, runs: usize) -> Result<Vec<Measure>> {
    let rt = network_runtime().map_err(wire_error)?;
    let config = ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServeConfig::default()
    };
    let mut user = config.admin_user.clone();
    let (server, password) = rt
        .block_on(Server::bind(db, config, None))
        .map_err(wire_error)?;
    // A database served before has roles: the step logs in as a superuser
    // of its own, removed when it is done.
    let roles = Roles::new(db);
    let (password, temporary) = match password {
        Some(p) => (p, None),
        None => {
            let name = format!("tessera_bench_{}", generate_password().to_lowercase());
            let password = generate_password();
            roles.put_superuser(&name, &password).map_err(wire_error)?;
            user = name.clone();
            (password, Some(name))
        }
    };
    let measured = stream(&rt, server, &user, &password, runs);
    if let Some(name) = temporary {
        roles.remove(&name).map_err(wire_error)?;
    }
    measured
}

fn stream(
    rt: &tokio::runtime::Runtime,
    server: Server,
    user: &str,
    password: &str,
    runs: usize,
) -> Result<Vec<Measure>> {
    let addr = server.addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.run(async {
        let _ = stopped.await;
    }));
    // Each run: the seconds until psql has printed the last row, and the
    // rows it printed (one line each: unaligned, no header or footer).
    let psql = |extra: &[&str]| -> Result<(f64, u64)> {
        use std::io::Read;
        let started = Instant::now();
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(["-U", user, "-d", "tessera"])
            .args(extra)
            .env("PGPASSWORD", password)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| wire_error(format!("cannot run psql: {e}")))?;
        let mut lines = 0u64;
        if let Some(mut out) = child.stdout.take() {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = out.read(&mut buf).map_err(wire_error)?;
                if n == 0 {
                    break;
                }
                lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| wire_error(format!("psql: {e}")))?;
        if !out.status.success() {
            return Err(wire_error(String::from_utf8_lossy(&out.stderr)));
        }
        Ok((started.elapsed().as_secs_f64(), lines))
    };
    let copy = format!("COPY ({QUERY}) TO STDOUT");
    let mut measures = Vec::new();
    for (name, args) in [
        (
            "stream_select_psql",
            vec!["-v", "FETCH_COUNT=100000", "-c", QUERY],
        ),
        ("stream_copy_psql", vec!["-c", copy.as_str()]),
    ] {
        memory::reset_peak();
        let result = (0..=runs.max(1))
            .map(|_| psql(&args))
            .collect::<Result<Vec<(f64, u64)>>>();
        let runs = match result {
            Ok(mut r) => r.split_off(1),
            Err(e) => {
                let _ = stop.send(());
                return Err(e);
            }
        };
        let times: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let received = runs.last().map_or(0, |r| r.1);
        let seconds = report::median(&times);
        measures.push(Measure {
            name: name.into(),
            seconds,
            runs: times,
            rows: received,
            answer: format!(
                "{received} rows, {:.0} rows/s",
                received as f64 / seconds.max(1e-9)
            ),
            peak_rss_bytes: memory::peak_rss(),
        });
    }
    let _ = stop.send(());
    rt.block_on(serving)
        .map_err(wire_error)?
        .map_err(wire_error)?;
    Ok(measures)
}
