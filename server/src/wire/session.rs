//! One connection's session: its role, its settings (`SET`, `SHOW`,
//! `RESET`), its DataFusion session (so that `search_path` and `TimeZone`
//! really change name resolution and time rendering), its cursors and the
//! `COPY FROM STDIN` in progress. Nothing here is shared with another
//! connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tessera_engine::SqlError;
use tessera_sql::datafusion::prelude::SessionContext;

use super::roles::Role;
use super::{ConnectionSlot, Shared, WireError};

/// The PostgreSQL version Tessera answers as (psql and drivers choose their
/// catalog queries by it).
pub const PG_VERSION: &str = "16.6";

/// Settings a session starts with, as `SHOW` prints them.
fn defaults(shared: &Shared) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        m.insert(k.to_string(), v.to_string());
    };
    set("application_name", "");
    set("bytea_output", "hex");
    set("client_encoding", "UTF8");
    set("client_min_messages", "notice");
    set("datestyle", "ISO, MDY");
    set("default_transaction_isolation", "read committed");
    set("default_transaction_read_only", "off");
    set("extra_float_digits", "1");
    set("idle_in_transaction_session_timeout", "0");
    set("integer_datetimes", "on");
    set("intervalstyle", "postgres");
    set("lc_messages", "C");
    set("lc_monetary", "C");
    set("lc_numeric", "C");
    set("lc_time", "C");
    set("lock_timeout", "0");
    set("max_identifier_length", "63");
    set("max_index_keys", "32");
    set("search_path", "\"$user\", public");
    set("server_encoding", "UTF8");
    set(
        "server_version",
        &format!("{PG_VERSION} (Tessera {})", env!("CARGO_PKG_VERSION")),
    );
    set("server_version_num", "160006");
    set("standard_conforming_strings", "on");
    set(
        "statement_timeout",
        &shared
            .config
            .statement_timeout
            .map_or("0".to_string(), |d| format!("{}", d.as_millis())),
    );
    set("timezone", "UTC");
    set("transaction_isolation", "read committed");
    set("transaction_read_only", "off");
    m
}

/// The name a setting is kept under (PostgreSQL's names are case-blind;
/// `SHOW transaction isolation level` is the SQL-standard spelling).
pub fn canonical(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        _ => n,
    }
}

/// A row source opened by `DECLARE … CURSOR`.
pub struct Cursor {
    /// Its rows, produced as `FETCH` asks.
    pub stream: tessera_engine::QueryStream,
    /// Rows already read from the stream but not yet fetched.
    pub pending: Option<tessera_sql::datafusion::arrow::array::RecordBatch>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").finish_non_exhaustive()
    }
}

/// A `COPY … FROM STDIN` receiving data.
#[derive(Debug)]
pub struct CopyIn {
    /// The statement.
    pub statement: tessera_sql::datafusion::sql::sqlparser::ast::Statement,
    /// Where the data goes until `CopyDone` (removed when dropped).
    pub spool: tempfile::NamedTempFile,
    /// Bytes received.
    pub bytes: u64,
}

/// One connection's state.
pub struct Session {
    /// The role logged in.
    pub role: Role,
    /// This connection's DataFusion session.
    pub ctx: SessionContext,
    settings: Mutex<BTreeMap<String, String>>,
    defaults: BTreeMap<String, String>,
    cancelled: AtomicBool,
    cancel_notify: tokio::sync::Notify,
    /// Open cursors, by name.
    pub cursors: tokio::sync::Mutex<HashMap<String, Cursor>>,
    /// The `COPY FROM STDIN` in progress.
    pub copy_in: Mutex<Option<CopyIn>>,
    /// Statements of the open transaction block that changed data.
    pub writes_in_block: Mutex<u64>,
    _slot: ConnectionSlot,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role.name)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Sets how the session's queries read PII columns.
    pub fn set_pii_access(&self, access: tessera_sql::pii::PiiAccess) {
        self.ctx
            .state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(access));
    }

    /// A new session for `role`, with the client's startup parameters.
    pub fn new(
        shared: &Arc<Shared>,
        role: Role,
        startup: &HashMap<String, String>,
        slot: ConnectionSlot,
    ) -> Arc<Session> {
        let defaults = defaults(shared);
        let session = Arc::new_cyclic(|me| {
            let ctx = shared.db.engine().new_session();
            ctx.state_ref()
                .write()
                .config_mut()
                .set_extension(Arc::new(role.pii_access()));
            super::functions::register_session(&ctx, std::sync::Weak::clone(me));
            Session {
                role,
                ctx,
                settings: Mutex::new(defaults.clone()),
                defaults,
                cancelled: AtomicBool::new(false),
                cancel_notify: tokio::sync::Notify::new(),
                cursors: tokio::sync::Mutex::new(HashMap::new()),
                copy_in: Mutex::new(None),
                writes_in_block: Mutex::new(0),
                _slot: slot,
            }
        });
        for (k, v) in startup {
            let k = canonical(k);
            if matches!(
                k.as_str(),
                "application_name"
                    | "datestyle"
                    | "timezone"
                    | "search_path"
                    | "extra_float_digits"
            ) {
                let _ = session.set(&k, v);
            }
        }
        session
    }

    /// The value of setting `name`, as `SHOW` prints it.
    pub fn get(&self, name: &str) -> Result<String, WireError> {
        let name = canonical(name);
        match name.as_str() {
            "is_superuser" => Ok(if self.role.superuser { "on" } else { "off" }.into()),
            "session_authorization" => Ok(self.role.name.clone()),
            _ => self.settings.lock().get(&name).cloned().ok_or_else(|| {
                WireError::UndefinedObject(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))
            }),
        }
    }

    /// Whether `name` (canonical) is a setting no `SET` may change.
    pub fn read_only(name: &str) -> bool {
        matches!(
            name,
            "server_version"
                | "server_version_num"
                | "server_encoding"
                | "integer_datetimes"
                | "max_identifier_length"
                | "max_index_keys"
                | "lc_messages"
                | "lc_monetary"
                | "lc_numeric"
                | "lc_time"
        )
    }

    /// Where a setting's value comes from (`pg_settings.source`).
    pub fn source(&self, name: &str) -> &'static str {
        if self.defaults.get(name) == self.settings.lock().get(name) {
            "default"
        } else {
            "session"
        }
    }

    /// Every setting, sorted by name (`SHOW ALL`).
    pub fn all(&self) -> Vec<(String, String)> {
        self.settings
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Changes setting `name` for this session.
    pub fn set(&self, name: &str, value: &str) -> Result<(), WireError> {
        let name = canonical(name);
        let value = match name.as_str() {
            "timezone" => {
                let tz = if value.eq_ignore_ascii_case("local")
                    || value.eq_ignore_ascii_case("default")
                {
                    "UTC".to_string()
                } else {
                    value.to_string()
                };
                check_time_zone(&tz)?;
                self.set_option("datafusion.execution.time_zone", &tz)?;
                tz
            }
            "search_path" => {
                let schemas = search_path(value);
                let first = schemas
                    .iter()
                    .find(|s| {
                        self.ctx
                            .catalog(tessera_sql::CATALOG)
                            .is_some_and(|c| c.schema(s).is_some())
                    })
                    .cloned()
                    .unwrap_or_else(|| tessera_sql::DEFAULT_SCHEMA.to_string());
                self.set_option("datafusion.catalog.default_schema", &first)?;
                value.to_string()
            }
            "statement_timeout" => {
                parse_duration_ms(value)?;
                value.to_string()
            }
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace(['-', '_'], "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(WireError::Unsupported(format!(
                        "client_encoding {value}: Tessera speaks UTF8 only"
                    )));
                }
                "UTF8".to_string()
            }
            "transaction_isolation" | "default_transaction_isolation" => value.to_ascii_lowercase(),
            n if Session::read_only(n) => {
                return Err(WireError::CantChange(format!(
                    "parameter \"{name}\" cannot be changed"
                )));
            }
            n if self.defaults.contains_key(n) || n.contains('.') || TOLERATED.contains(&n) => {
                value.to_string()
            }
            _ => {
                return Err(WireError::UndefinedObject(format!(
                    "unrecognized configuration parameter \"{name}\""
                )));
            }
        };
        self.settings.lock().insert(name, value);
        Ok(())
    }

    /// Puts setting `name` (or with `None`, every setting) back to its
    /// default.
    pub fn reset(&self, name: Option<&str>) -> Result<(), WireError> {
        match name {
            Some(n) => {
                let n = canonical(n);
                let value = self.defaults.get(&n).cloned().unwrap_or_default();
                if self.defaults.contains_key(&n) {
                    self.set(&n, &value)
                } else {
                    self.settings.lock().remove(&n);
                    Ok(())
                }
            }
            None => {
                let defaults = self.defaults.clone();
                for (k, v) in &defaults {
                    if matches!(k.as_str(), "timezone" | "search_path") {
                        self.set(k, v)?;
                    }
                }
                *self.settings.lock() = defaults;
                Ok(())
            }
        }
    }

    /// Qualifies the unqualified table names of `stmt` along this
    /// session's `search_path` ([`super::search_path`]).
    pub fn resolve_names(
        &self,
        stmt: &mut tessera_sql::datafusion::sql::sqlparser::ast::Statement,
    ) {
        let path = search_path(&self.get("search_path").unwrap_or_default());
        super::search_path::qualify(stmt, &path, &super::search_path::SessionCatalog(&self.ctx));
    }

    /// The schema unqualified names resolve to (the first schema of
    /// `search_path` that exists).
    pub fn default_schema(&self) -> String {
        self.ctx
            .state()
            .config_options()
            .catalog
            .default_schema
            .clone()
    }

    /// The session's statement timeout, if any.
    pub fn statement_timeout(&self) -> Option<Duration> {
        let v = self.settings.lock().get("statement_timeout").cloned()?;
        parse_duration_ms(&v).ok().flatten()
    }

    /// Marks the running statement as cancelled (a CancelRequest).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.cancel_notify.notify_waiters();
    }

    /// Completes when the running statement is cancelled (enable it, then
    /// check [`Session::is_cancelled`], to miss no cancel).
    pub fn cancel_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.cancel_notify.notified()
    }

    /// Whether the running statement was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Runs `fut` unless this session's statement is cancelled or
    /// `deadline` (with the timeout it came from) passes first (57014
    /// either way); `fut` is dropped then.
    pub async fn interruptible<T>(
        &self,
        deadline: Option<(std::time::Instant, Duration)>,
        fut: impl std::future::Future<Output = Result<T, WireError>>,
    ) -> Result<T, WireError> {
        let notified = self.cancel_signal();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_cancelled() {
            return Err(WireError::Cancelled);
        }
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = fut => r,
            _ = notified => Err(WireError::Cancelled),
            _ = sleep => Err(WireError::Timeout(deadline.map(|d| d.1).unwrap_or_default())),
        }
    }

    /// Starts a statement: an earlier cancel no longer applies.
    pub fn begin_statement(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    fn set_option(&self, key: &str, value: &str) -> Result<(), WireError> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .set(key, value)
            .map_err(|e| WireError::Engine(SqlError::DataFusion(e).into()))
    }
}

/// Settings clients send that Tessera accepts and keeps without effect.
const TOLERATED: &[&str] = &[
    "geqo",
    "jit",
    "work_mem",
    "row_security",
    "synchronous_commit",
    "enable_seqscan",
    "check_function_bodies",
    "xmloption",
];

/// The schemas of a `search_path` value, in order (`"$user"` skipped).
pub fn search_path(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && *s != "\"$user\"" && *s != "$user")
        .map(|s| {
            if let Some(q) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                q.to_string()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect()
}

fn check_time_zone(tz: &str) -> Result<(), WireError> {
    use tessera_sql::datafusion::arrow::array::timezone::Tz;
    tz.parse::<Tz>().map(|_| ()).map_err(|_| {
        WireError::InvalidParameter(format!(
            "invalid value for parameter \"TimeZone\": \"{tz}\""
        ))
    })
}

/// A duration setting: a number of milliseconds, or with a unit (`5s`,
/// `2min`, `100ms`); `0` means none.
pub fn parse_duration_ms(v: &str) -> Result<Option<Duration>, WireError> {
    let v = v.trim().trim_matches('\'');
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        WireError::InvalidParameter(format!("invalid value for a duration: \"{v}\""))
    })?;
    let scale: u64 = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(WireError::InvalidParameter(format!(
                "invalid unit \"{other}\" for a duration: use ms, s, min or h"
            )));
        }
    };
    let ms = n.checked_mul(scale).ok_or_else(|| {
        WireError::InvalidParameter(format!("the duration \"{v}\" is out of range"))
    })?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_paths_and_durations() {
        assert_eq!(search_path("\"$user\", public"), vec!["public"]);
        assert_eq!(search_path("CRM, \"Mixed\""), vec!["crm", "Mixed"]);
        assert_eq!(parse_duration_ms("0").ok().flatten(), None);
        assert_eq!(
            parse_duration_ms("2s").ok().flatten(),
            Some(Duration::from_secs(2))
        );
        assert!(parse_duration_ms("2 weeks").is_err());
        assert!(parse_duration_ms("18446744073709551h").is_err());
    }
}
