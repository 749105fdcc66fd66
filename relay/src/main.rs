//! `webhook-relay`: delivers the webhook events that the pg_webhooks extension queues.
//!
//! Tasks: the LISTEN connection (wakeup), the dispatcher that claims and delivers, and the
//! health server. A shutdown signal stops them in that order and the process exits 0.

mod config;
mod health;
mod shutdown;
mod state;
mod wakeup;

use clap::Parser;
use std::sync::Arc;
use tokio::sync::Notify;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = config::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEBHOOK_RELAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "relay stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signals()?;
    let state = Arc::new(state::RelayState::default());
    let wake = Arc::new(Notify::new());
    let relay_id = config.relay_id();

    if let Some(addr) = config.health_addr.0 {
        let bound = health::serve(addr, state.clone(), shutdown.clone()).await?;
        tracing::info!(%bound, "health server listening");
    }
    tracing::info!(%relay_id, "relay starting");

    let listener = tokio::spawn(wakeup::listen_forever(
        config.database_url.clone(),
        config.max_reconnect_delay,
        wake.clone(),
        state.clone(),
        shutdown.clone(),
    ));

    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.requested() => break,
        }
        state.count_wakeup();
    }
    listener.await?;
    tracing::info!("relay stopped cleanly");
    Ok(())
}
