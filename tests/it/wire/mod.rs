//! The PostgreSQL wire server, driven by real clients over a loopback
//! socket: tokio-postgres (simple and extended protocol, binary results,
//! COPY, cancel, TLS), psql, psycopg, SQLAlchemy, pandas, pgcli, pgjdbc,
//! and the security checks.

mod binary;
mod catalog;
mod jdbc;
mod load;
mod protocol;
mod psql;
mod python;
mod security;

use std::net::SocketAddr;

use tessera_engine::Database;
use tessera_server::wire::{ServeConfig, Server};

/// The first superuser's password in these tests.
pub const PASSWORD: &str = "s3cret-test-password";

/// A server on a free loopback port over a fresh database, stopped (and
/// the database closed) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    db: Option<Database>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
        Self::over(tempfile::tempdir().unwrap(), configure)
    }

    /// The server stopped, its database closed, then both started again
    /// over the same directory (on another port).
    pub fn restart(mut self) -> TestServer {
        self.shutdown();
        drop(self.db.take());
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        Self::over(dir, |_| {})
    }

    fn over(dir: tempfile::TempDir, configure: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let db = Database::open(dir.path().join("db")).unwrap();
        let mut config = ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServeConfig::default()
        };
        configure(&mut config);
        let runtime = tessera_server::serve::network_runtime().unwrap();
        let (server, generated) = runtime
            .block_on(Server::bind(&db, config, Some(PASSWORD.to_string())))
            .unwrap();
        assert!(generated.is_none(), "a given password is not printed");
        let addr = server.addr;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime
                .block_on(server.run(async {
                    let _ = stopped.await;
                }))
                .unwrap();
        });
        TestServer {
            addr,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
            db: Some(db),
        }
    }

    /// A libpq connection string.
    pub fn conninfo(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=tessera",
            self.addr.port()
        )
    }

    /// A tokio-postgres client as the superuser (its connection task runs
    /// on the caller's runtime).
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.connect_as("tessera", PASSWORD).await.unwrap()
    }

    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.conninfo(user, password), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Stops the server and returns its database directory's database.
    pub fn stop(mut self) -> Database {
        self.shutdown();
        self.db.take().unwrap()
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A runtime for a test's client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The SQLSTATE of a client error.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Resident anonymous memory of a process (heap and stacks, not the
/// memory-mapped segment files), in bytes.
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
