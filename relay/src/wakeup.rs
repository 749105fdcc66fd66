//! The LISTEN connection: turns the extension's `webhooks_work` notifications into wake-ups
//! for the dispatcher and its `webhooks_endpoint_changed` notifications into configuration
//! changes (`config_changes`), and reconnects with backoff when the database goes away.

use crate::config_changes::{self, ConfigChanges};
use crate::shutdown::Shutdown;
use crate::state::RelayState;
use futures_util::{stream, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel `webhooks.wake_relay()` notifies.
pub const CHANNEL: &str = "webhooks_work";

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
            AsyncMessage::Notification(_) => wake.notify_one(),
            AsyncMessage::Notice(notice) => tracing::debug!(%notice, "notice from PostgreSQL"),
            _ => {}
        }
    }
    drop(client);
    Ok(())
}
