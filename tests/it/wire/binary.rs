//! The server in a process of its own (`serve-child`, which runs the same
//! `serve::run` as `tessera serve`): first start, restart, graceful
//! shutdown, the memory limit, and its memory while streaming.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{rss, runtime, sqlstate};

/// A running `serve-child`. Its standard input is a pipe this struct holds
/// (the server exits when it closes), and dropping it kills a server that
/// `stop` has not stopped: a failing test leaves no process behind.
struct Child {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn serve(db: &std::path::Path, password: Option<&str>) -> (Child, u16, Vec<String>) {
    serve_with(db, password, &[])
}

fn serve_with(
    db: &std::path::Path,
    password: Option<&str>,
    args: &[&str],
) -> (Child, u16, Vec<String>) {
    start(command(db, password, args))
}

/// `serve-child` for `db`, without a key unless the caller adds one.
fn command(db: &std::path::Path, password: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serve-child"));
    cmd.args(["--db"])
        .arg(db)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("TESSERA_KEY")
        .env_remove("TESSERA_KEY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match password {
        Some(p) => cmd.env("TESSERA_PASSWORD", p),
        None => cmd.env_remove("TESSERA_PASSWORD"),
    };
    cmd
}

/// Starts the server and waits for its address.
fn start(mut cmd: Command) -> (Child, u16, Vec<String>) {
    // The server exits when this pipe closes (see `Child`).
    cmd.stdin(Stdio::piped())
        .env("SERVE_CHILD_WATCH_STDIN", "1");
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address");
        seen.push(line.clone());
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    (Child { child, lines: rx }, port, seen)
}

/// A client of the server on `port` as `tessera`.
async fn client(
    port: u16,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conninfo =
        format!("host=127.0.0.1 port={port} user=tessera password={password} dbname=tessera");
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn connect(port: u16, password: &str) -> Result<(), String> {
    runtime().block_on(async {
        match client(port, password).await {
            Ok(client) => client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS kept (x BIGINT); INSERT INTO kept VALUES (1)",
                )
                .await
                .map_err(|e| sqlstate(&e)),
            Err(e) => Err(sqlstate(&e)),
        }
    })
}

fn stop(mut c: Child) -> Vec<String> {
    // SIGTERM: in-flight work ends, the database closes, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Not `wait`, which would close the server's standard input first.
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = c.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the server did not stop within 2 minutes of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    c.lines.try_iter().collect()
}

#[test]
fn first_start_generates_a_password_once_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let (child, port, seen) = serve(&db, None);
    let line = seen
        .iter()
        .find(|l| l.contains("with password: "))
        .expect("the generated password is printed");
    let password = line
        .rsplit("with password: ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(password.len(), 24);
    connect(port, &password).unwrap();
    assert_eq!(connect(port, "not-it"), Err("28P01".to_string()));
    let tail = stop(child);
    assert!(
        tail.iter().any(|l| l.contains("database closed cleanly")),
        "{tail:?}"
    );
    // The second start keeps the role (no new password) and the data.
    let (child, port, seen) = serve(&db, Some("ignored-now"));
    assert!(!seen.iter().any(|l| l.contains("password")), "{seen:?}");
    connect(port, &password).unwrap();
    stop(child);
    let db = tessera_engine::Database::open(&db).unwrap();
    let b = db.sql("SELECT count(*) FROM kept").unwrap();
    assert_eq!(
        tessera_engine::engine_arrow::util::display::array_value_to_string(b[0].column(0), 0)
            .unwrap(),
        "2"
    );
}

#[test]
fn an_encrypted_database_is_served_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let with_key = || {
        let mut cmd = command(&db, Some("pw"), &[]);
        cmd.env("TESSERA_KEY", "4e".repeat(32));
        cmd
    };
    let (child, port, _) = start(with_key());
    connect(port, "pw").unwrap();
    // COPY FROM STDIN gathers its input in memory, never in a plaintext
    // file of the database's directory.
    runtime().block_on(async {
        use futures::SinkExt;
        let c = client(port, "pw").await.unwrap();
        c.batch_execute("CREATE TABLE copied (email TEXT)")
            .await
            .unwrap();
        let sink = c
            .copy_in::<_, bytes::Bytes>("COPY copied FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"spooled.marker@example.org\n"))
            .await
            .unwrap();
        let spooled = |dir: &std::path::Path| {
            std::fs::read_dir(dir).unwrap().flatten().any(|e| {
                std::fs::read(e.path()).is_ok_and(|b| b.windows(14).any(|w| w == b"spooled.marker"))
            })
        };
        let started = std::time::Instant::now();
        while !spooled(std::path::Path::new("/dev/shm")) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "spool not in /dev/shm"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!spooled(&db), "plaintext input in the database's directory");
        assert_eq!(sink.finish().await.unwrap(), 1);
    });
    stop(child);
    let current = std::fs::read(db.join("CURRENT")).unwrap();
    assert!(current.starts_with(b"TSRENC01"), "{current:?}");
    // Without the key the server does not start, and says why.
    let out = command(&db, Some("pw"), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is encrypted"), "{err}");
    // With it, the data is there.
    let (child, port, _) = start(with_key());
    connect(port, "pw").unwrap();
    stop(child);
    let key = tessera_engine::Key::from_hex(&"4e".repeat(32)).unwrap();
    let db = tessera_engine::Database::open_encrypted(&db, key, Default::default()).unwrap();
    let b = db.sql("SELECT count(*) FROM kept").unwrap();
    assert_eq!(
        tessera_engine::engine_arrow::util::display::array_value_to_string(b[0].column(0), 0)
            .unwrap(),
        "2"
    );
}

#[test]
fn a_query_over_the_memory_limit_is_53200_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (child, port, _) = serve_with(
        &dir.path().join("db"),
        Some("pw"),
        &["--memory-limit-mb", "2"],
    );
    runtime().block_on(async {
        let c = client(port, "pw").await.unwrap();
        c.batch_execute(
            "CREATE TABLE t (id BIGINT, label TEXT);
             INSERT INTO t SELECT value, 'a label long enough to take memory ' || value FROM generate_series(1, 300000)",
        )
        .await
        .unwrap();
        // A sort of ~10 MiB of strings cannot fit in 2 MiB.
        let e = c
            .simple_query("SELECT label, id FROM t ORDER BY label DESC")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "53200", "{e}");
        let n: i64 = c
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 300_000);
    });
    stop(child);
}

#[test]
fn a_large_result_streams_through_both_protocols_in_bounded_memory() {
    use futures::StreamExt;
    const ROWS: i64 = 1_500_000;
    let dir = tempfile::tempdir().unwrap();
    let (child, port, _) = serve_with(&dir.path().join("db"), Some("pw"), &[]);
    let pid = child.child.id();
    runtime().block_on(async {
        let c = client(port, "pw").await.unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE wide (id BIGINT NOT NULL, payload TEXT);
             INSERT INTO wide SELECT value, repeat('x', 150) || value FROM generate_series(1, {ROWS});
             COMPACT wide"
        ))
        .await
        .unwrap();
        // COMPACT first writes the inserted rows out and merges the small
        // segments now, not in the background while the rows stream: a
        // merge gathers a whole segment of rows (up to ~170 MB here) before
        // writing it, which is the store's memory, not the stream's.
        // The result is about 250 MB on the wire; the server must never
        // hold it whole, neither for the extended protocol's Execute (which
        // pgwire itself would gather) nor for a simple query.
        for extended in [true, false] {
            let before = rss(pid);
            let mut peak = before;
            let mut n = 0i64;
            if extended {
                let stream = c
                    .query_raw("SELECT id, payload FROM wide", Vec::<i64>::new())
                    .await
                    .unwrap();
                futures::pin_mut!(stream);
                while let Some(row) = stream.next().await {
                    row.unwrap();
                    n += 1;
                    if n % 50_000 == 0 {
                        peak = peak.max(rss(pid));
                    }
                }
            } else {
                let stream = c
                    .simple_query_raw("SELECT id, payload FROM wide")
                    .await
                    .unwrap();
                futures::pin_mut!(stream);
                while let Some(m) = stream.next().await {
                    if let tokio_postgres::SimpleQueryMessage::Row(_) = m.unwrap() {
                        n += 1;
                        if n % 50_000 == 0 {
                            peak = peak.max(rss(pid));
                        }
                    }
                }
            }
            assert_eq!(n, ROWS);
            assert!(
                peak < before + (100 << 20),
                "extended: {extended}: the server grew from {} to {} MiB",
                before >> 20,
                peak >> 20
            );
        }
    });
    stop(child);
}
