//! The purge of erased data from every file, and the thread that runs it
//! by each request's deadline.

use std::sync::Arc;
use std::time::Duration;

use tessera_sql::SqlEngine;
use tessera_sql::storage::Mutation;

use super::{Event, LOG_TABLE, Privacy, event_rows};
use crate::WeakDatabase;
use crate::error::Result;
use crate::identity::graph::now_micros;
use crate::spaces::Spaces;

/// What a purge did for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// The request.
    pub request: String,
    /// When its files were purged.
    pub at: i64,
    /// Occurrences of its values found in the files afterwards (`None`:
    /// not verified, its values being unknown to this process).
    pub found: Option<i64>,
}

/// Purges every pending erasure: rewrites the graph logs as snapshots and
/// every segment with deleted rows (the logs and manifests that held the
/// rows go with them), then records `purged`, and `verified` for the
/// requests whose values this process still knows.
pub async fn purge(engine: &SqlEngine, spaces: &Spaces, privacy: &Privacy) -> Result<Vec<Purged>> {
    let due = privacy.due();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    spaces.compact_logs(None).await?;
    engine.store().compact()?;
    completed(engine, privacy, due)
}

/// Records that the erasures `due` are purged (a compaction of everything
/// just ran), verifying those whose values are known.
pub(crate) fn completed(
    engine: &SqlEngine,
    privacy: &Privacy,
    due: Vec<(String, super::Pending)>,
) -> Result<Vec<Purged>> {
    let at = now_micros();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for (request, pending) in due {
        events.push(Event {
            at,
            ..Event::new(&request, "purged")
        });
        let found = if pending.needles.is_empty() {
            None
        } else {
            let report = engine.store().find_bytes(&pending.needles)?;
            let n = report.found.len() as i64;
            events.push(Event {
                rows: Some(n),
                ..Event::new(&request, "verified")
            });
            Some(n)
        };
        out.push(Purged { request, at, found });
    }
    if engine.store().table(LOG_TABLE).is_ok() {
        let mut m = Mutation::new();
        m.append(LOG_TABLE, event_rows(&events)?);
        engine.store().writer().commit(m)?;
    }
    let mut pending = privacy.pending.lock();
    for p in &out {
        pending.remove(&p.request);
    }
    Ok(out)
}

/// Longest sleep of the purger between two looks at its deadlines.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Starts the thread that purges erasures by their deadlines (once; it
/// ends when the database closes).
pub fn start_purger(privacy: &Arc<Privacy>, db: WeakDatabase) {
    let mut slot = privacy.purger.lock();
    if slot.is_some() {
        return;
    }
    let shared = Arc::clone(privacy);
    let spawned = std::thread::Builder::new()
        .name("tessera-purge".into())
        .spawn(move || purger(&shared, &db));
    match spawned {
        Ok(handle) => *slot = Some(handle),
        Err(e) => {
            *privacy.last_error.lock() = Some(format!("the purge thread cannot start: {e}"));
        }
    }
}

fn purger(privacy: &Privacy, db: &WeakDatabase) {
    loop {
        {
            let mut pending = privacy.pending.lock();
            if privacy.closing.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let next = pending.values().map(|p| p.deadline).min();
            let wait = match next {
                None => MAX_SLEEP,
                Some(d) => Duration::from_micros(u64::try_from(d - now_micros()).unwrap_or(0)),
            };
            if !wait.is_zero() {
                privacy.wake.wait_for(&mut pending, wait.min(MAX_SLEEP));
                continue;
            }
        }
        let Some(db) = db.upgrade() else { return };
        let failed = match db.purge_erasures() {
            Ok(_) => {
                *privacy.last_error.lock() = None;
                false
            }
            Err(e) => {
                *privacy.last_error.lock() = Some(e.to_string());
                true
            }
        };
        drop(db);
        if failed {
            // Try again later rather than in a tight loop.
            let mut pending = privacy.pending.lock();
            privacy.wake.wait_for(&mut pending, Duration::from_secs(60));
        }
    }
}
