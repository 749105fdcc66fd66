//! Process-wide state shared by the dispatcher, the recorder and the health server: whether
//! the database is reachable, and the counters behind the summary log and /metrics (which
//! metrics.rs writes).

use crate::db::Outcomes;
use crate::delivery::AttemptReport;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the attempt-duration histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct RelayState {
    database_connected: AtomicBool,
    wakeups: AtomicU64,
    in_flight: AtomicI64,
    /// The dispatcher has had no work for `--stay-awake`: the watcher polls the work marker.
    idle: AtomicBool,
    /// Signs of new work the watcher has seen (a moved work marker, a notification).
    work_noticed: AtomicU64,
    pub counters: Counters,
    latency: Histogram,
    /// Why the relay stopped by itself, when it did (it then exits with an error).
    stopped_for: std::sync::Mutex<Option<String>>,
}

/// Totals since start, by what the database made of each attempt.
#[derive(Default)]
pub struct Counters {
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub released: AtomicU64,
    /// Attempts the database did not record: the relay no longer held their lease.
    pub not_held: AtomicU64,
    /// Reports (attempts and releases) the recorder gave up writing (recorder.rs).
    pub dropped_reports: AtomicU64,
    /// Calls of webhooks.maintain() that failed (maintenance.rs).
    pub maintenance_failures: AtomicU64,
}

impl Counters {
    /// (succeeded, retried, failed, released)
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.succeeded.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.released.load(Ordering::Relaxed),
        ]
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RelayState {
    pub fn set_database_connected(&self, connected: bool) {
        self.database_connected.store(connected, Ordering::Relaxed);
    }

    pub fn database_connected(&self) -> bool {
        self.database_connected.load(Ordering::Relaxed)
    }

    /// Stop for good: the relay cannot go on (`reason` says why and what to do).
    pub fn stop_for(&self, reason: String) {
        tracing::error!(%reason, "the relay cannot run against this database; stopping");
        *self.stopped_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Why the relay stopped by itself, if it did.
    pub fn stopped_for(&self) -> Option<String> {
        self.stopped_for
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    pub fn notice_work(&self) {
        self.work_noticed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many signs of new work have been seen so far.
    pub fn work_noticed(&self) -> u64 {
        self.work_noticed.load(Ordering::Relaxed)
    }

    pub fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as i64, Ordering::Relaxed);
    }

    pub fn count_attempts(&self, attempts: &[AttemptReport], outcomes: Outcomes) {
        let c = &self.counters;
        c.succeeded.fetch_add(outcomes.succeeded, Ordering::Relaxed);
        c.retried.fetch_add(outcomes.retried, Ordering::Relaxed);
        c.failed.fetch_add(outcomes.failed, Ordering::Relaxed);
        c.not_held.fetch_add(outcomes.not_held, Ordering::Relaxed);
        if outcomes.not_held > 0 {
            tracing::warn!(
                not_held = outcomes.not_held,
                "attempts not recorded: their leases had run out or were no longer this relay's (the deliveries are sent again)"
            );
        }
        for attempt in attempts {
            let seconds = attempt.duration_ms / 1000.0;
            if let Some(i) = LATENCY_BUCKETS.iter().position(|le| seconds <= *le) {
                self.latency.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
            self.latency.count.fetch_add(1, Ordering::Relaxed);
            self.latency
                .sum_micros
                .fetch_add((attempt.duration_ms * 1000.0) as u64, Ordering::Relaxed);
        }
    }

    pub fn count_maintenance_failure(&self) {
        self.counters
            .maintenance_failures
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_dropped_reports(&self, dropped: usize) {
        self.counters
            .dropped_reports
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    pub fn count_releases(&self, released: usize) {
        self.counters
            .released
            .fetch_add(released as u64, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Attempt durations so far: per bucket of LATENCY_BUCKETS (not cumulative), the count,
    /// and the sum in seconds.
    pub fn latency(&self) -> ([u64; LATENCY_BUCKETS.len()], u64, f64) {
        let buckets = std::array::from_fn(|i| self.latency.buckets[i].load(Ordering::Relaxed));
        let count = self.latency.count.load(Ordering::Relaxed);
        let sum = self.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, count, sum)
    }
}
