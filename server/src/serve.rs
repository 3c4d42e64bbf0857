//! `tessera serve`: settings from a TOML file and flags, the first
//! superuser, and the server's life until SIGINT or SIGTERM.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tessera_engine::EngineOptions;

use crate::wire::{ServeConfig, Server, WireError};

/// The settings of `tessera serve` (`--config tessera.toml`, same names as
/// the flags with `_` for `-`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:5433"`.
    pub listen: Option<std::net::SocketAddr>,
    /// `tls_cert = "server.crt"`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "server.key"`.
    pub tls_key: Option<PathBuf>,
    /// `require_tls = true`.
    pub require_tls: Option<bool>,
    /// `max_connections = 100`.
    pub max_connections: Option<usize>,
    /// `statement_timeout_ms = 60000`.
    pub statement_timeout_ms: Option<u64>,
    /// `copy_dirs = ["/srv/imports"]`.
    pub copy_dirs: Option<Vec<PathBuf>>,
    /// `admin_user = "tessera"`.
    pub admin_user: Option<String>,
    /// `memory_limit_mb = 4096`.
    pub memory_limit_mb: Option<usize>,
    /// `key_file = "/etc/tessera/db.key"`: the key of an encrypted database.
    pub key_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads a TOML file.
    pub fn read(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Takes every setting `other` gives.
    pub fn merge(&mut self, other: FileConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            listen,
            tls_cert,
            tls_key,
            require_tls,
            max_connections,
            statement_timeout_ms,
            copy_dirs,
            admin_user,
            memory_limit_mb,
            key_file
        );
    }

    fn serve_config(self) -> Result<ServeConfig, WireError> {
        let d = ServeConfig::default();
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(WireError::InvalidParameter(
                    "TLS needs both a certificate (--tls-cert) and a key (--tls-key)".into(),
                ));
            }
        };
        Ok(ServeConfig {
            listen: self.listen.unwrap_or(d.listen),
            tls,
            require_tls: self.require_tls.unwrap_or(false),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            statement_timeout: self
                .statement_timeout_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            copy_dirs: self.copy_dirs.unwrap_or_default(),
            admin_user: self.admin_user.unwrap_or(d.admin_user),
        })
    }
}

/// Opens the database and serves it until SIGINT or SIGTERM.
pub fn run(db_path: &Path, file: FileConfig) -> Result<(), WireError> {
    let options = EngineOptions {
        memory_limit: file.memory_limit_mb.map(|mb| mb << 20),
        ..EngineOptions::default()
    };
    let key_file = file.key_file.clone();
    let config = file.serve_config()?;
    let db = crate::keys::open(db_path, key_file.as_deref(), options)?;
    let password = std::env::var("TESSERA_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let admin = config.admin_user.clone();
    // Sockets and cancel requests get threads of their own: a query that
    // keeps the database's threads busy cannot delay them.
    let network = network_runtime()?;
    network.block_on(async {
        let (server, generated) = Server::bind(&db, config, password).await?;
        if let Some(p) = generated {
            println!("created superuser \"{admin}\" with password: {p}");
            println!("(shown once; set TESSERA_PASSWORD before the first start to choose it)");
        }
        println!("listening on {}", server.addr);
        println!(
            "connect: psql -h {} -p {} -U {admin} -d tessera",
            server.addr.ip(),
            server.addr.port()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        server.run(shutdown_signal()).await
    })?;
    println!("server stopped; database closed cleanly");
    Ok(())
}

/// The runtime of the server's sockets (the database's runtime runs the
/// statements).
pub fn network_runtime() -> Result<tokio::runtime::Runtime, WireError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tessera-net")
        // Planning a client's catalog query (psql's `\dp`: arrays of
        // subqueries in CASEs) recurses deeper than tokio's 2 MiB allow.
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()
        .map_err(WireError::Io)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
