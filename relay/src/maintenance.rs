//! Retention on a timer: every `--maintenance-interval` the relay calls `webhooks.maintain()`,
//! which makes partitions ahead of time and drops those past their retention. Every relay
//! does; the database runs one call at a time and a concurrent one returns at once. It has a
//! connection of its own, so that a call waiting for a table lock never delays a claim.

use crate::db::Database;
use crate::shutdown::Shutdown;
use crate::state::RelayState;
use std::sync::Arc;
use std::time::Duration;

/// Call `webhooks.maintain()` now and then every `interval` until shutdown. A failed call (a
/// lock not granted within its timeout, the database away) is logged and counted, and the
/// next interval tries again.
pub async fn run(
    db: Arc<Database>,
    interval: Duration,
    state: Arc<RelayState>,
    mut shutdown: Shutdown,
) {
    loop {
        match db.maintain().await {
            Ok(done) => {
                for (action, object) in done {
                    tracing::info!(%action, %object, "retention");
                }
            }
            Err(e) => {
                state.count_maintenance_failure();
                tracing::warn!(error = %format!("{e:#}"), "retention failed; trying again at the next interval");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.requested() => return,
        }
    }
}
