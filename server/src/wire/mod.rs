//! `tessera serve`: the PostgreSQL wire protocol over a [`Database`].
//!
//! pgwire reads and writes the protocol's messages; this module decides
//! what they mean. [`scram`] admits a connection (TLS policy, SCRAM-SHA-256
//! against [`roles`], the connection limit) and gives it a
//! [`session::Session`]; [`handler`] runs its statements, simple or
//! extended, through Tessera's own parser, so `UNIFY` and `CREATE SEGMENT`
//! travel the same path as `SELECT`; [`encode`] turns Arrow batches into
//! rows as they stream, checking for a cancel between batches;
//! [`functions`] adds what clients ask of PostgreSQL's catalog beyond
//! `datafusion-pg-catalog`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use pgwire::api::auth::ServerParameterProvider;
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::startup::SecretKey;
use tessera_engine::{Database, EngineError};

pub mod catalog;
pub mod encode;
pub mod functions;
pub mod handler;
pub mod roles;
pub mod scram;
pub mod search_path;
pub mod session;

use session::Session;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (loopback unless told otherwise).
    pub listen: SocketAddr,
    /// TLS certificate chain and private key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse connections that do not use TLS.
    pub require_tls: bool,
    /// Connections served at once; more are refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// Default statement timeout of every session.
    pub statement_timeout: Option<Duration>,
    /// Directories server-side `COPY … FROM/TO 'path'` may use (superusers
    /// only); empty: none.
    pub copy_dirs: Vec<PathBuf>,
    /// The superuser created on a database without roles.
    pub admin_user: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            tls: None,
            require_tls: false,
            max_connections: 100,
            statement_timeout: None,
            copy_dirs: Vec::new(),
            admin_user: "tessera".to_string(),
        }
    }
}

/// The server's errors, each with its SQLSTATE.
#[derive(Debug)]
pub enum WireError {
    /// From the database.
    Engine(EngineError),
    /// Not allowed to this role (42501).
    Permission(String),
    /// A setting, cursor or prepared statement that does not exist (42704,
    /// 34000 for cursors).
    UndefinedObject(String),
    /// A cursor that does not exist (34000).
    UndefinedCursor(String),
    /// A value out of its domain (22023).
    InvalidParameter(String),
    /// A setting that cannot be changed (55P02).
    CantChange(String),
    /// Not supported by Tessera (0A000).
    Unsupported(String),
    /// Cancelled by the client (57014).
    Cancelled,
    /// Ran past `statement_timeout` (57014).
    Timeout(Duration),
    /// Network or file trouble (58030).
    Io(std::io::Error),
    /// A bug (XX000).
    Internal(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Engine(e) => write!(f, "{e}"),
            WireError::Permission(m)
            | WireError::UndefinedObject(m)
            | WireError::UndefinedCursor(m)
            | WireError::InvalidParameter(m)
            | WireError::CantChange(m)
            | WireError::Unsupported(m)
            | WireError::Internal(m) => f.write_str(m),
            WireError::Cancelled => f.write_str("canceling statement due to user request"),
            WireError::Timeout(d) => write!(
                f,
                "canceling statement due to statement timeout ({} ms)",
                d.as_millis()
            ),
            WireError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl WireError {
    /// The SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WireError::Engine(e) => e.sqlstate(),
            WireError::Permission(_) => "42501",
            WireError::UndefinedObject(_) => "42704",
            WireError::UndefinedCursor(_) => "34000",
            WireError::InvalidParameter(_) => "22023",
            WireError::CantChange(_) => "55P02",
            WireError::Unsupported(_) => "0A000",
            WireError::Cancelled | WireError::Timeout(_) => "57014",
            WireError::Io(_) => "58030",
            WireError::Internal(_) => "XX000",
        }
    }
}

impl From<EngineError> for WireError {
    fn from(e: EngineError) -> Self {
        WireError::Engine(e)
    }
}

impl From<tessera_engine::SqlError> for WireError {
    fn from(e: tessera_engine::SqlError) -> Self {
        WireError::Engine(e.into())
    }
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e)
    }
}

impl From<WireError> for PgWireError {
    fn from(e: WireError) -> Self {
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            e.sqlstate().to_string(),
            e.to_string(),
        )))
    }
}

/// An error that ends the connection.
pub fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.to_string(),
    )))
}

/// A place among `max_connections`, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sessions by (process id, secret key), for cancel requests.
#[derive(Debug, Default)]
pub struct Sessions {
    by_key: Mutex<HashMap<(i32, Bytes), Weak<Session>>>,
}

/// Removes a session from [`Sessions`] when its connection ends.
#[derive(Debug)]
pub struct SessionEntry {
    sessions: Weak<Sessions>,
    key: (i32, Bytes),
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        if let Some(s) = self.sessions.upgrade() {
            s.by_key.lock().remove(&self.key);
        }
    }
}

impl Sessions {
    /// Registers a session; it stays until the entry is dropped.
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: &SecretKey,
        session: &Arc<Session>,
    ) -> SessionEntry {
        let key = (pid, secret.to_bytes());
        self.by_key
            .lock()
            .insert(key.clone(), Arc::downgrade(session));
        SessionEntry {
            sessions: Arc::downgrade(self),
            key,
        }
    }

    /// The session a cancel request names.
    pub fn find(&self, pid: i32, secret: &SecretKey) -> Option<Arc<Session>> {
        self.by_key
            .lock()
            .get(&(pid, secret.to_bytes()))
            .and_then(Weak::upgrade)
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The database.
    pub db: Database,
    /// The configuration.
    pub config: ServeConfig,
    /// Roles and their verifiers.
    pub roles: roles::Roles,
    /// For pgwire's cancel of a statement being planned.
    pub connections: Arc<ConnectionManager>,
    /// For Tessera's cancel of a statement streaming rows.
    pub sessions: Arc<Sessions>,
    open: Arc<AtomicUsize>,
    mock_secret: [u8; 32],
    pids: pgwire::api::RandomPidSecretKeyGenerator,
}

impl Shared {
    /// Sets up the server's shared state over `db`: the PostgreSQL catalog
    /// and functions clients expect.
    pub fn new(db: &Database, config: ServeConfig) -> Result<Arc<Shared>, WireError> {
        functions::register_database(db)?;
        Ok(Arc::new(Shared {
            db: db.clone(),
            roles: roles::Roles::new(db),
            config,
            connections: Arc::new(ConnectionManager::new()),
            sessions: Arc::new(Sessions::default()),
            open: Arc::new(AtomicUsize::new(0)),
            mock_secret: rand::random(),
            pids: pgwire::api::RandomPidSecretKeyGenerator::default(),
        }))
    }

    /// Takes a connection place, or `None` when all are taken.
    pub fn connection_slot(&self) -> Option<ConnectionSlot> {
        let taken = self.open.fetch_add(1, Ordering::SeqCst);
        let slot = ConnectionSlot(Arc::clone(&self.open));
        (taken < self.config.max_connections).then_some(slot)
    }

    /// The generator of process ids and cancel keys.
    pub fn pids(&self) -> &pgwire::api::RandomPidSecretKeyGenerator {
        &self.pids
    }
}

impl ServerParameterProvider for Shared {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let session = client.session_extensions().get::<Arc<Session>>()?;
        let mut params = HashMap::new();
        for name in [
            "server_version",
            "server_encoding",
            "client_encoding",
            "DateStyle",
            "TimeZone",
            "integer_datetimes",
            "IntervalStyle",
            "standard_conforming_strings",
            "application_name",
            "is_superuser",
            "session_authorization",
            "default_transaction_read_only",
        ] {
            if let Ok(v) = session.get(name) {
                params.insert(name.to_string(), v);
            }
        }
        params.insert("in_hot_standby".into(), "off".into());
        Some(params)
    }
}

/// pgwire's handler set: one startup handler per connection, one query
/// handler shared by all.
#[derive(Debug)]
pub struct Handlers {
    shared: Arc<Shared>,
    handler: Arc<handler::Handler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(scram::Startup::new(Arc::clone(&self.shared)))
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.handler)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.handler)
    }
}

/// Loads the TLS certificate chain and key; any failure is an error (the
/// server never falls back to plaintext).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<pgwire::tokio::TlsAcceptor, WireError> {
    use pgwire::tokio::tokio_rustls::rustls;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            WireError::InvalidParameter(format!(
                "cannot read the TLS certificate {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(WireError::InvalidParameter(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        WireError::InvalidParameter(format!("cannot read the TLS key {}: {e}", key.display()))
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| WireError::InvalidParameter(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| WireError::InvalidParameter(format!("TLS certificate and key do not fit: {e}")))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listener and prepares the database (catalog, first
    /// superuser). Returns the server and, when it created the first
    /// superuser with a generated password, that password, to be shown once.
    pub async fn bind(
        db: &Database,
        config: ServeConfig,
        admin_password: Option<String>,
    ) -> Result<(Server, Option<String>), WireError> {
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None if config.require_tls => {
                return Err(WireError::InvalidParameter(
                    "--require-tls needs --tls-cert and --tls-key".into(),
                ));
            }
            None => None,
        };
        let generated = admin_password.is_none();
        let shared = Shared::new(db, config)?;
        let created = shared
            .roles
            .bootstrap(&shared.config.admin_user, admin_password)?;
        let listener = tokio::net::TcpListener::bind(shared.config.listen).await?;
        let addr = listener.local_addr()?;
        Ok((
            Server {
                addr,
                listener,
                shared,
                tls,
            },
            created.filter(|_| generated),
        ))
    }

    /// Serves connections until `shutdown` completes; then stops accepting,
    /// cancels what runs, and waits for every connection to end.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), WireError> {
        let handlers = Arc::new(Handlers {
            handler: Arc::new(handler::Handler::new(Arc::clone(&self.shared))),
            shared: Arc::clone(&self.shared),
        });
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, _) = match accepted {
                        Ok(s) => s,
                        // A client that vanished before accept: keep serving.
                        Err(_) => continue,
                    };
                    let handlers = Arc::clone(&handlers);
                    let tls = self.tls.clone();
                    tasks.spawn(async move {
                        let _ = pgwire::tokio::process_socket(socket, tls, handlers).await;
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(self.listener);
        // In-flight statements are cancelled; connections then end.
        for s in self.shared.sessions.by_key.lock().values() {
            if let Some(s) = s.upgrade() {
                s.cancel();
            }
        }
        let grace = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => { tasks.abort_all(); }
                next = tasks.join_next() => if next.is_none() { break },
            }
        }
        self.shared.db.flush()?;
        Ok(())
    }
}
