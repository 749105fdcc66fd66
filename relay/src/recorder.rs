//! The recorder: collects what became of each delivery and writes it to the database in
//! batches, one round trip for many attempts. A write that fails because the database is
//! unreachable is retried until it succeeds (or until shutdown's deadline). A batch the
//! database itself refuses `MAX_REFUSALS` times is dropped, since sending it again cannot
//! help and would hold up every report behind it. A dropped report loses no delivery: its
//! lease runs out and the delivery is claimed and sent again (at least once, same
//! X-Webhook-Id). Every dropped report is logged at ERROR and counted in /metrics as
//! `webhook_relay_reports_dropped_total`.

use crate::db::Database;
use crate::deliver::Report;
use crate::delivery::{AttemptReport, Release};
use crate::state::RelayState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most reports written per round trip.
const BATCH: usize = 1000;
/// How long a batch waits for more reports once its first has arrived. Each call of
/// `record_attempts` is a round trip, a transaction and its checks besides its attempts, so
/// under load a few milliseconds of waiting make the batches several times larger
/// (docs/benchmarks-history.md, "Figures behind the code"); at low traffic it only delays the record, not the request.
const LINGER: Duration = Duration::from_millis(10);
/// Times the database may refuse one batch (as opposed to being unreachable) before it is
/// dropped.
const MAX_REFUSALS: usize = 3;

/// Write reports until every sender is gone, then return. `give_up_after` bounds how long a
/// write may keep failing once the relay is shutting down.
pub async fn run(
    db: Arc<Database>,
    state: Arc<RelayState>,
    mut reports: mpsc::Receiver<Report>,
    shutdown: crate::shutdown::Shutdown,
    give_up_after: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while reports.recv_many(&mut batch, BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, reports.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut attempts: Vec<AttemptReport> = Vec::new();
        let mut releases: Vec<Release> = Vec::new();
        for report in batch.drain(..) {
            match report {
                Report::Attempted(a) => attempts.push(a),
                Report::Released(r) => releases.push(r),
            }
        }
        let recorded = persist(&shutdown, give_up_after, "attempts", || {
            db.record(&attempts)
        })
        .await;
        match recorded {
            Some(outcomes) => state.count_attempts(&attempts, outcomes),
            None => state.count_dropped_reports(attempts.len()),
        }
        let released = persist(&shutdown, give_up_after, "releases", || {
            db.release(&releases)
        })
        .await;
        match released {
            Some(()) => state.count_releases(releases.len()),
            None => state.count_dropped_reports(releases.len()),
        }
    }
}

/// Retry one write with backoff until it succeeds, or until shutdown has waited
/// `give_up_after` for it. Returns the write's result if it was written.
async fn persist<T, F, Fut>(
    shutdown: &crate::shutdown::Shutdown,
    give_up_after: Duration,
    what: &str,
    write: F,
) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut refusals = 0;
    loop {
        let error = match write().await {
            Ok(written) => return Some(written),
            Err(e) => {
                // The server answered with an error: retrying the same batch cannot help for long.
                let refused = e
                    .downcast_ref::<tokio_postgres::Error>()
                    .is_some_and(|pg| pg.as_db_error().is_some());
                refusals += usize::from(refused);
                format!("{e:#}")
            }
        };
        if refusals >= MAX_REFUSALS {
            tracing::error!(%error, what, "the database refused this batch repeatedly; dropping it, its deliveries come back when their leases run out");
            return None;
        }
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if shutdown.is_requested() && since.elapsed() >= give_up_after {
            tracing::error!(%error, what, "could not write before shutdown; the deliveries come back when their leases run out");
            return None;
        }
        tracing::warn!(%error, what, retry_in = ?delay, "writing to the database failed; will retry");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
