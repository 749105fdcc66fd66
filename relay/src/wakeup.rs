//! Noticing new work while the dispatcher is idle, without writers notifying anyone.
//!
//! - The watcher reads `webhooks.work_marker()` (how far the event log's and the deliveries'
//!   id sequences have come) every `--idle-poll-interval` while the dispatcher is idle, and
//!   wakes it when the marker moves. Writers pay nothing for it: a NOTIFY at commit would
//!   serialise every writer's commit with every other notifying commit in the cluster.
//! - The LISTEN connection turns `webhooks_work` notifications (sent by operators' actions
//!   that make existing deliveries due: redeliver, retry_now, resume) into wake-ups and
//!   `webhooks_endpoint_changed` ones into configuration changes (`config_changes`), and
//!   reconnects with backoff when the database goes away.

use crate::config_changes::{self, ConfigChanges};
use crate::db::Database;
use crate::shutdown::Shutdown;
use crate::state::RelayState;
use futures_util::{stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel `webhooks._wake_relay()` notifies.
pub const CHANNEL: &str = "webhooks_work";

/// The version of pg_webhooks this relay works with: the one built from the same workspace.
/// The SQL functions it calls change between versions (their columns and arguments), so any
/// other version is refused rather than half-used.
pub const EXTENSION_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The database holds a version of pg_webhooks this relay does not work with.
#[derive(Debug)]
pub struct UnsupportedExtension {
    pub installed: String,
}

impl std::fmt::Display for UnsupportedExtension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pg_webhooks {} is installed, and this relay works with pg_webhooks {EXTENSION_VERSION} only: \
             update the extension (ALTER EXTENSION pg_webhooks UPDATE TO '{EXTENSION_VERSION}'), \
             or run the relay released with pg_webhooks {}",
            self.installed, self.installed
        )
    }
}

impl std::error::Error for UnsupportedExtension {}

/// Keep a LISTEN connection open until shutdown, reconnecting with capped exponential backoff.
pub async fn listen_forever(
    database_url: String,
    max_delay: Duration,
    wake: Arc<Notify>,
    changes: Arc<ConfigChanges>,
    state: Arc<RelayState>,
    mut shutdown: Shutdown,
) {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_requested() {
        let outcome = tokio::select! {
            r = listen_once(&database_url, &wake, &changes, &state) => r,
            _ = shutdown.requested() => break,
        };
        // A connection that got as far as listening starts the next outage's backoff afresh.
        if state.database_connected() {
            delay = Duration::from_millis(100);
        }
        state.set_database_connected(false);
        match outcome {
            Ok(()) => tracing::warn!("database closed the LISTEN connection; reconnecting"),
            Err(e) if e.downcast_ref::<UnsupportedExtension>().is_some() => {
                state.stop_for(format!("{e:#}"));
                shutdown.request();
                break;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "database unavailable")
            }
        }
        // A wake-up after reconnecting catches anything notified while we were away.
        wake.notify_one();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.requested() => break,
        }
        delay = (delay * 2).min(max_delay);
    }
}

/// One connection's life: connect, check the extension, LISTEN, forward notifications.
async fn listen_once(
    url: &str,
    wake: &Notify,
    changes: &ConfigChanges,
    state: &RelayState,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));

    let setup = async {
        let version: Option<String> = client
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'",
                &[],
            )
            .await?
            .map(|row| row.get(0));
        let version = version.context("extension pg_webhooks is not installed in this database (CREATE EXTENSION pg_webhooks)")?;
        if version != EXTENSION_VERSION {
            return Err(anyhow::Error::new(UnsupportedExtension {
                installed: version,
            }));
        }
        client
            .batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {}",
                config_changes::CHANNEL
            ))
            .await?;
        anyhow::Ok(version)
    };
    // The connection must be polled while the setup queries run.
    let version = tokio::select! {
        v = setup => v?,
        m = messages.next() => match m {
            Some(Err(e)) => return Err(e).context("PostgreSQL connection failed during setup"),
            _ => anyhow::bail!("PostgreSQL connection closed during setup"),
        },
    };
    state.set_database_connected(true);
    // Changes made while no connection listened went unheard: whatever was claimed before now
    // is checked again.
    changes.record_all();
    tracing::info!(extension_version = %version, channel = CHANNEL, "connected and listening");
    wake.notify_one();

    while let Some(message) = messages.next().await {
        match message.context("PostgreSQL connection failed")? {
            AsyncMessage::Notification(n) if n.channel() == config_changes::CHANNEL => {
                changes.record_notification(n.payload())
            }
            AsyncMessage::Notification(_) => {
                state.notice_work();
                wake.notify_one()
            }
            AsyncMessage::Notice(notice) => tracing::debug!(%notice, "notice from PostgreSQL"),
            _ => {}
        }
    }
    drop(client);
    Ok(())
}

/// After this long idle, the watcher reads the marker ten times less often: a quiet system
/// then costs a tenth, and only the first event after the quiet waits longer.
const SLOW_DOWN_AFTER: Duration = Duration::from_secs(60);

/// While the dispatcher is idle, read the work marker every `every` (ten times less often once
/// it has been idle for `SLOW_DOWN_AFTER`) and wake the dispatcher when it has moved. A read
/// that fails is retried at the next tick (the dispatcher's own connection reports the outage).
pub async fn watch_for_work(
    db: Arc<Database>,
    every: Duration,
    wake: Arc<Notify>,
    state: Arc<RelayState>,
    mut shutdown: Shutdown,
) {
    // Kept across busy spells: the first read of an idle spell wakes the dispatcher once more
    // if work came meanwhile, which costs one claim and can miss nothing.
    let mut last_seen = None;
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        let pause = match idle_since {
            Some(since) if since.elapsed() >= SLOW_DOWN_AFTER => every * 10,
            _ => every,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.requested() => return,
        }
        if !state.is_idle() {
            idle_since = None;
            continue;
        }
        idle_since.get_or_insert_with(tokio::time::Instant::now);
        match db.work_marker().await {
            Ok(marker) if last_seen != Some(marker) => {
                if last_seen.is_some() {
                    state.notice_work();
                    wake.notify_one();
                    idle_since = None;
                }
                last_seen = Some(marker);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "could not read the work marker"),
        }
    }
}
