//! The GDPR side of the database: erasure of a person (`ERASE PROFILE`),
//! its proof (`erasure_requests`, `VERIFY ERASURE`) and the suppression of
//! data about erased people that arrives later (`LIFT SUPPRESSION` ends it).
//!
//! ## An erasure, step by step ([`erase::erase`])
//!
//! 1. The space's writers wait (its writer token) and the store's
//!    structural lock is taken, so row positions stay valid.
//! 2. The person's profile is found (by id, or by an identifier normalised
//!    as the space normalises it) and erased from the identity graph: its
//!    values blanked and unindexed ([`IdentityGraph::erase_profile`](crate::identity::graph::IdentityGraph::erase_profile)).
//! 3. One atomic commit holds: the deletion of every row of every source
//!    whose `profile_id` is one of the person's ids; the graph-log row that
//!    replays the erasure; every stored segment version that counted the
//!    person, rewritten without them; the suppression hashes; and the audit
//!    events. After a crash, all of it is there or none.
//! 4. The rows disappear from queries at once (deletion vectors). Their
//!    bytes stay in files until a purge: the graph logs are rewritten as
//!    snapshots and every segment with deleted rows is rewritten; the log
//!    files and manifests that held the data are deleted with them. A
//!    purge runs by the request's deadline ([`EngineOptions::erasure_deadline`](tessera_sql::EngineOptions),
//!    24 hours by default), at once with `ERASE … IMMEDIATELY`, on `COMPACT`,
//!    and at the next open if the deadline passed while the database was
//!    closed (so a crash during a purge is completed on restart).
//! 5. `IMMEDIATELY` then reads every byte of every file of the database for
//!    the person's identifiers, as stored and as normalised, and records
//!    how many it found (none, or the request says where).
//!
//! ## What is kept
//!
//! `erasure_log` (append-only) holds events: request id, event, time, the
//! subject as a keyed hash, the table and row counts. `erasure_suppressions`
//! holds a keyed hash per identifier ([`suppress`]). Neither holds a value
//! a person could be recognised from without the database's salt; the
//! view `erasure_requests` sums the events up, one row per request.

pub mod archive;
pub mod consent;
pub mod erase;
pub mod export;
pub mod purge;
pub mod suppress;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tessera_sql::SqlEngine;
use tessera_sql::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use tessera_sql::datafusion::error::Result as DfResult;
use tessera_sql::storage::{ScanOptions, Store, TableOptions};

use crate::error::{EngineError, Result};
use crate::identity::graph::now_micros;
use crate::space::ReadOnlyHook;
use crate::spaces::Spaces;
use suppress::Suppressions;

/// The audit log: one row per event of an erasure request.
pub const LOG_TABLE: &str = "public.erasure_log";
/// The suppression list: one row per suppressed identifier.
pub const SUPPRESSION_TABLE: &str = "public.erasure_suppressions";
/// The view summing the log up, one row per request.
pub const REQUESTS_VIEW: &str = "public.erasure_requests";
/// Catalog key of the database's salt.
const SALT_KEY: &str = "privacy:salt";

/// One event of an erasure request, as `erasure_log` stores it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The request.
    pub request: String,
    /// `received`, `tombstoned`, `identifiers`, `segments`, `purged`,
    /// `verified`, `suppressed`, `suppression lifted`.
    pub event: String,
    /// When (microseconds since the Unix epoch).
    pub at: i64,
    /// The person, as a keyed hash (`received`).
    pub subject: Option<String>,
    /// The profile space (`received`).
    pub space: Option<String>,
    /// The table concerned (`tombstoned`, `suppressed`).
    pub table: Option<String>,
    /// Rows (or values, versions, occurrences) concerned.
    pub rows: Option<i64>,
    /// When the purge is due (`received`).
    pub deadline: Option<i64>,
}

impl Event {
    /// An event of `request` happening now, without details.
    pub fn new(request: &str, event: &str) -> Self {
        Self {
            request: request.to_string(),
            event: event.to_string(),
            at: now_micros(),
            subject: None,
            space: None,
            table: None,
            rows: None,
            deadline: None,
        }
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// The columns of `erasure_log`.
pub fn log_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("at", timestamp(), false),
        Field::new("subject", DataType::Utf8, true),
        Field::new("space", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("deadline", timestamp(), true),
    ]))
}

/// The columns of `erasure_suppressions`.
pub fn suppression_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("space", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
    ]))
}

/// `events` as rows of `erasure_log`.
pub fn event_rows(events: &[Event]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&Event) -> Option<&str>| -> ArrayRef {
        Arc::new(events.iter().map(f).collect::<StringArray>())
    };
    Ok(RecordBatch::try_new(
        log_schema(),
        vec![
            text(&|e| Some(e.request.as_str())),
            text(&|e| Some(e.event.as_str())),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                events.iter().map(|e| e.at),
            )),
            text(&|e| e.subject.as_deref()),
            text(&|e| e.space.as_deref()),
            text(&|e| e.table.as_deref()),
            Arc::new(events.iter().map(|e| e.rows).collect::<Int64Array>()),
            Arc::new(
                events
                    .iter()
                    .map(|e| e.deadline)
                    .collect::<TimestampMicrosecondArray>(),
            ),
        ],
    )?)
}

/// The row ids of a batch scanned with `row_ids` (none without them).
pub(crate) fn row_ids(b: &RecordBatch) -> &[u64] {
    b.column_by_name(tessera_sql::storage::ROW_ID_COLUMN)
        .and_then(|c| c.as_primitive_opt::<tessera_sql::datafusion::arrow::datatypes::UInt64Type>())
        .map_or(&[], |c| c.values())
}

/// Every row of stored table `table` (none if it does not exist).
fn read_all(store: &Store, table: &str) -> Result<Vec<RecordBatch>> {
    let Ok(snap) = store.table(table) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in snap.scan(&ScanOptions::default())?.partitions {
        for b in part {
            out.push(b?);
        }
    }
    Ok(out)
}

fn corrupt(table: &str, what: &str) -> EngineError {
    EngineError::corrupt_table(table, format!("{table}: {what}"))
}

/// Reads `erasure_log`.
pub fn read_events(store: &Store) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for b in read_all(store, LOG_TABLE)? {
        let text = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| corrupt(LOG_TABLE, &format!("column {name}")))
        };
        let time = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .ok_or_else(|| corrupt(LOG_TABLE, &format!("column {name}")))
        };
        let (request, event, subject, space, table) = (
            text("request_id")?,
            text("event")?,
            text("subject")?,
            text("space")?,
            text("table_name")?,
        );
        let (at, deadline) = (time("at")?, time("deadline")?);
        let rows = b
            .column_by_name("rows")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| corrupt(LOG_TABLE, "column rows"))?;
        let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        for i in 0..b.num_rows() {
            out.push(Event {
                request: request.value(i).to_string(),
                event: event.value(i).to_string(),
                at: at.value(i),
                subject: opt(subject, i),
                space: opt(space, i),
                table: opt(table, i),
                rows: rows.is_valid(i).then(|| rows.value(i)),
                deadline: deadline.is_valid(i).then(|| deadline.value(i)),
            });
        }
    }
    out.sort_by_key(|e| e.at);
    Ok(out)
}

/// An erasure whose files are not purged yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// When the purge is due (microseconds since the Unix epoch).
    pub deadline: i64,
    /// Values to look for once purged (kept in memory only: after a
    /// restart the purge is not verified automatically).
    pub needles: Vec<Vec<u8>>,
}

/// The database's privacy state.
#[derive(Debug, Default)]
pub struct Privacy {
    salt: Mutex<Option<[u8; 32]>>,
    /// Requests waiting for their purge.
    pub(crate) pending: Mutex<BTreeMap<String, Pending>>,
    /// Wakes the purger (a new request, or the database closing).
    pub(crate) wake: Condvar,
    pub(crate) closing: std::sync::atomic::AtomicBool,
    pub(crate) purger: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The last purge that failed, and why.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Privacy {
    /// Loads the salt, the suppression lists (into the spaces) and the
    /// requests still to purge; protects the tables from users' writes.
    pub fn open(engine: &SqlEngine, spaces: &Spaces) -> Result<Privacy> {
        let privacy = Privacy::default();
        privacy.load_suppressions(engine, spaces)?;
        let mut pending = BTreeMap::new();
        for e in read_events(engine.store())? {
            match e.event.as_str() {
                "received" => {
                    pending.insert(
                        e.request.clone(),
                        Pending {
                            deadline: e.deadline.unwrap_or(e.at),
                            needles: Vec::new(),
                        },
                    );
                }
                "purged" => {
                    pending.remove(&e.request);
                }
                _ => {}
            }
        }
        *privacy.pending.lock() = pending;
        privacy.protect(engine);
        Ok(privacy)
    }

    /// Installs the suppression list of every space from the stored one
    /// (at open, and after a `UNIFY` made a space anew).
    pub fn load_suppressions(&self, engine: &SqlEngine, spaces: &Spaces) -> Result<()> {
        if let Some(bytes) = engine.extension(SALT_KEY) {
            let salt: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("catalog", "the erasure salt is not 32 bytes"))?;
            *self.salt.lock() = Some(salt);
            let mut lists: HashMap<String, Suppressions> = HashMap::new();
            for b in read_all(engine.store(), SUPPRESSION_TABLE)? {
                let col = |n: &str| {
                    b.column_by_name(n)
                        .and_then(|c| c.as_string_opt::<i32>())
                        .ok_or_else(|| corrupt(SUPPRESSION_TABLE, &format!("column {n}")))
                };
                let (req, space, kind, hash) = (
                    col("request_id")?,
                    col("space")?,
                    col("kind")?,
                    col("hash")?,
                );
                for i in 0..b.num_rows() {
                    lists
                        .entry(space.value(i).to_string())
                        .or_insert_with(|| Suppressions::new(salt))
                        .insert(
                            kind.value(i).to_string(),
                            hash.value(i).to_string(),
                            req.value(i).to_string(),
                        );
                }
            }
            for (name, list) in lists {
                if let Some(space) = spaces.get(&name) {
                    *space.suppressions().write() = Some(list);
                }
            }
        }
        Ok(())
    }

    /// Users read the audit tables; only Tessera writes them.
    fn protect(&self, engine: &SqlEngine) {
        for (table, what) in [
            (LOG_TABLE, "the erasure audit log"),
            (SUPPRESSION_TABLE, "the erasure suppression list"),
        ] {
            if engine.store().table(table).is_ok() {
                engine
                    .hooks()
                    .set(table, Some(Arc::new(ReadOnlyHook::new(what.to_string()))));
            }
        }
    }

    /// The salt and the audit tables, created on the first erasure.
    pub fn ensure(&self, engine: &SqlEngine) -> Result<[u8; 32]> {
        for (table, schema) in [
            (LOG_TABLE, log_schema()),
            (SUPPRESSION_TABLE, suppression_schema()),
        ] {
            if engine.store().table(table).is_err() {
                if engine.name_taken(table) {
                    return Err(EngineError::DuplicateObject(format!(
                        "a table or view named \"{table}\" exists; erasure keeps its audit log under \
                         that name: rename yours first"
                    )));
                }
                engine
                    .store()
                    .create_table(table, schema, TableOptions::default())?;
                engine.refresh_table(table)?;
            }
        }
        self.protect(engine);
        provide_view(engine);
        let mut salt = self.salt.lock();
        if let Some(s) = *salt {
            return Ok(s);
        }
        let s: [u8; 32] = rand::random();
        engine.set_extension(SALT_KEY, Some(s.to_vec()))?;
        *salt = Some(s);
        Ok(s)
    }

    /// The requests waiting for their purge, with what is known of them.
    pub fn due(&self) -> Vec<(String, Pending)> {
        self.pending
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The requests waiting for their purge.
    pub fn pending(&self) -> Vec<String> {
        self.pending.lock().keys().cloned().collect()
    }

    /// Why the last background purge failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }
}

/// One row per erasure request: the `erasure_requests` view.
#[derive(Debug)]
pub struct RequestsView {
    store: Store,
}

impl RequestsView {
    /// The view over `store`'s audit log.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl crate::profiles::ComputedRows for RequestsView {
    fn columns(&self) -> SchemaRef {
        let ts = |n: &str| Field::new(n, timestamp(), true);
        let int = |n: &str| Field::new(n, DataType::Int64, true);
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Utf8, false),
            text("space"),
            text("subject"),
            ts("received_at"),
            ts("deadline"),
            int("rows_erased"),
            text("rows_per_table"),
            int("identifiers"),
            int("segment_versions"),
            ts("purged_at"),
            ts("verified_at"),
            int("found"),
            int("suppressed_records"),
            ts("suppression_lifted_at"),
        ]))
    }

    fn compute(&self) -> DfResult<RecordBatch> {
        #[derive(Default)]
        struct Row {
            space: Option<String>,
            subject: Option<String>,
            received: Option<i64>,
            deadline: Option<i64>,
            rows: Option<i64>,
            tables: Vec<String>,
            identifiers: Option<i64>,
            versions: Option<i64>,
            purged: Option<i64>,
            verified: Option<i64>,
            found: Option<i64>,
            suppressed: Option<i64>,
            lifted: Option<i64>,
        }
        let events = read_events(&self.store).map_err(EngineError::into_datafusion)?;
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for e in events {
            let r = rows.entry(e.request.clone()).or_default();
            let add = |slot: &mut Option<i64>, n: Option<i64>| {
                *slot = Some(slot.unwrap_or(0) + n.unwrap_or(0));
            };
            match e.event.as_str() {
                "received" => {
                    r.space = e.space;
                    r.subject = e.subject;
                    r.received = Some(e.at);
                    r.deadline = e.deadline;
                }
                "tombstoned" => {
                    add(&mut r.rows, e.rows);
                    r.tables.push(format!(
                        "{}: {}",
                        e.table.unwrap_or_default(),
                        e.rows.unwrap_or(0)
                    ));
                }
                "identifiers" => r.identifiers = e.rows,
                "segments" => r.versions = e.rows,
                "purged" => r.purged = r.purged.or(Some(e.at)),
                "verified" => {
                    r.verified = Some(e.at);
                    r.found = e.rows;
                }
                "suppressed" => add(&mut r.suppressed, e.rows),
                "suppression lifted" => r.lifted = Some(e.at),
                _ => {}
            }
        }
        let v: Vec<(&String, &Row)> = rows.iter().collect();
        let ts = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
            Arc::new(
                v.iter()
                    .map(|(_, r)| f(r))
                    .collect::<TimestampMicrosecondArray>(),
            )
        };
        let int = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
            Arc::new(v.iter().map(|(_, r)| f(r)).collect::<Int64Array>())
        };
        let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(v.iter().map(|(_, r)| f(r)).collect::<StringArray>())
        };
        RecordBatch::try_new(
            self.columns(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    v.iter().map(|(k, _)| k.as_str()),
                )),
                text(&|r| r.space.clone()),
                text(&|r| r.subject.clone()),
                ts(&|r| r.received),
                ts(&|r| r.deadline),
                int(&|r| r.rows),
                text(&|r| (!r.tables.is_empty()).then(|| r.tables.join(", "))),
                int(&|r| r.identifiers),
                int(&|r| r.versions),
                ts(&|r| r.purged),
                ts(&|r| r.verified),
                int(&|r| r.found),
                int(&|r| r.suppressed),
                ts(&|r| r.lifted),
            ],
        )
        .map_err(Into::into)
    }
}

/// Shows `erasure_requests` (once the database has erased someone, and
/// unless a table of that name exists).
pub fn provide_view(engine: &SqlEngine) {
    if !engine.name_taken(REQUESTS_VIEW) {
        let _ = engine.provide_table(
            REQUESTS_VIEW,
            Some(Arc::new(crate::profiles::Computed(RequestsView::new(
                engine.store().clone(),
            )))),
        );
    }
}
