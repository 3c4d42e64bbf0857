//! The background scheduler: one thread per open database
//! (`tessera-segments`) that refreshes `EVERY` segments when their interval
//! has passed since their latest version, and recomputes in full the
//! clock-reading `ON COMMIT` segments refreshed incrementally (see
//! [`super::incremental`]). It sleeps until the earliest such time, wakes
//! when a definition changes, and ends when the database closes.
//!
//! Times come from the stored versions, so a schedule survives a restart:
//! a segment due while the database was closed is refreshed right after it
//! opens. A failed refresh is kept in the segment's `last_error` (the
//! `segments` table shows it) and retried after [`RETRY`].

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Segments;
use crate::identity::graph::now_micros;

/// Longest sleep between two looks at the schedule.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Wait after a failed refresh before the next attempt.
pub const RETRY: Duration = Duration::from_secs(60);

/// What the thread and the rest of the database share.
#[derive(Debug, Default)]
pub struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    closing: bool,
    started: bool,
}

/// What the scheduler runs its refreshes through: the database, if still
/// open.
pub trait Runner: Send + 'static {
    /// Refreshes the segments whose time has come; `None` once the
    /// database is closed, else how many refreshes failed.
    fn refresh_scheduled(&self) -> Option<usize>;
}

impl Scheduler {
    /// Starts the thread (once).
    pub fn start(segments: &std::sync::Arc<Segments>, runner: impl Runner) -> std::io::Result<()> {
        {
            let mut st = segments.scheduler.state.lock();
            if st.started {
                return Ok(());
            }
            st.started = true;
        }
        let shared = std::sync::Arc::downgrade(segments);
        std::thread::Builder::new()
            .name("tessera-segments".into())
            .spawn(move || run(&shared, &runner))
            .map(|_| ())
    }

    /// A definition or a version changed: look at the schedule again.
    pub fn poke(&self) {
        let _st = self.state.lock();
        self.wake.notify_all();
    }

    /// The database is closing: the thread ends at its next look.
    pub fn close(&self) {
        self.state.lock().closing = true;
        self.wake.notify_all();
    }
}

fn run(segments: &std::sync::Weak<Segments>, runner: &impl Runner) {
    let mut retry = false;
    loop {
        {
            let Some(segs) = segments.upgrade() else {
                return;
            };
            let mut st = segs.scheduler.state.lock();
            if st.closing {
                return;
            }
            let wait = if std::mem::take(&mut retry) {
                RETRY
            } else {
                match segs.next_scheduled() {
                    None => MAX_SLEEP,
                    Some(at) => {
                        Duration::from_micros(u64::try_from(at - now_micros()).unwrap_or(0))
                    }
                }
            };
            if !wait.is_zero() {
                segs.scheduler.wake.wait_for(&mut st, wait.min(MAX_SLEEP));
                continue;
            }
        }
        match runner.refresh_scheduled() {
            None => return,
            Some(failed) => retry = failed > 0,
        }
    }
}
