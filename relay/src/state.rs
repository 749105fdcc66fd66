//! Process-wide state shared by the dispatcher, the recorder and the health server.

use crate::db::AttemptReport;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct RelayState {
    database_connected: AtomicBool,
    wakeups: AtomicU64,
    pub counters: Counters,
}

/// Totals since start; the summary log line and /healthz read them.
#[derive(Default)]
pub struct Counters {
    pub succeeded: AtomicU64,
    pub unsuccessful_status: AtomicU64,
    pub errors: AtomicU64,
    pub released: AtomicU64,
}

impl Counters {
    /// (succeeded, unsuccessful status, no response, released)
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.succeeded.load(Ordering::Relaxed),
            self.unsuccessful_status.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.released.load(Ordering::Relaxed),
        ]
    }
}

impl RelayState {
    pub fn set_database_connected(&self, connected: bool) {
        self.database_connected.store(connected, Ordering::Relaxed);
    }

    pub fn database_connected(&self) -> bool {
        self.database_connected.load(Ordering::Relaxed)
    }

    pub fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub fn count_attempts(&self, attempts: &[AttemptReport]) {
        for attempt in attempts {
            let counter = match attempt.response_status {
                Some(200..=299) => &self.counters.succeeded,
                Some(_) => &self.counters.unsuccessful_status,
                None => &self.counters.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_releases(&self, released: usize) {
        self.counters
            .released
            .fetch_add(released as u64, Ordering::Relaxed);
    }
}
