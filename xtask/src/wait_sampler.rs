//! What pgbench's backends are doing, sampled from pg_stat_activity every 10 ms while a run
//! lasts: on CPU (no wait event) or waiting, and for what. It tells a run limited by CPU from
//! one limited by the WAL flush or by a lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SAMPLE: &str = "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU')
                        FROM pg_stat_activity
                       WHERE application_name = 'pgbench' AND state = 'active'";

/// A sampling loop running on the benchmark's tokio runtime.
pub struct WaitSampler {
    stop: Arc<AtomicBool>,
    samples: tokio::task::JoinHandle<HashMap<String, u64>>,
}

impl WaitSampler {
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        db: Arc<tokio_postgres::Client>,
    ) -> WaitSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let samples = runtime.spawn(async move {
            let mut counts = HashMap::new();
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(rows) = db.query(SAMPLE, &[]).await {
                    for row in rows {
                        *counts.entry(row.get::<_, String>(0)).or_insert(0) += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            counts
        });
        WaitSampler { stop, samples }
    }

    /// Stop sampling; the three commonest states with their share of the samples, e.g.
    /// "CPU 61%, LWLock:WALWrite 22%, IO:WALSync 9%".
    pub fn finish(self, runtime: &tokio::runtime::Runtime) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let counts = runtime.block_on(self.samples).unwrap_or_default();
        let total: u64 = counts.values().sum();
        let mut states: Vec<(String, u64)> = counts.into_iter().collect();
        states.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        states
            .iter()
            .take(3)
            .map(|(state, n)| format!("{state} {}%", n * 100 / total.max(1)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
