//! `webhook-relay`: delivers the webhook events that the pg_webhooks extension queues.
//!
//! Tasks: the LISTEN connection (wakeup), the dispatcher that claims and delivers, the
//! recorder, retention on a timer (maintenance), and the health server. A shutdown signal
//! stops them in that order and the process exits 0; a database whose pg_webhooks version the
//! relay does not work with stops it with exit status 1.

mod config;
mod config_changes;
mod db;
mod deliver;
mod delivery;
mod dispatcher;
mod guard;
mod headers;
mod health;
mod http;
mod in_flight;
mod limits;
mod maintenance;
mod metrics;
mod pinned;
mod pool;
mod recorder;
mod shutdown;
mod sign;
mod state;
mod wakeup;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

// Every delivery allocates and frees its request, body and report on several worker threads,
// and under load glibc's allocator became one of the largest costs of the relay's CPU
// (docs/benchmarks-history.md, "Figures behind the code").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = config::Config::parse();
    if let Err(problem) = config.validate() {
        eprintln!("webhook-relay: {problem}");
        return std::process::ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("WEBHOOK_RELAY_LOG").ok()))
        // Colours only for a person at a terminal, not in a log file or journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
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

/// Libraries that log every statement or connection event at `debug`: they stay at `info`
/// unless `WEBHOOK_RELAY_LOG` names them, so that `debug` means the relay's own lines (one per
/// attempt) and not a flood of the database driver's.
const CHATTY_LIBRARIES: [&str; 5] = ["tokio_postgres", "hyper", "hyper_util", "rustls", "h2"];

/// The log filter for `WEBHOOK_RELAY_LOG` (default `info`).
fn log_filter(directives: Option<String>) -> tracing_subscriber::EnvFilter {
    let mut directives = directives
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    for library in CHATTY_LIBRARIES {
        if !directives.contains(library) {
            directives.push_str(&format!(",{library}=info"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("webhook-relay: WEBHOOK_RELAY_LOG={directives:?} is not a valid filter ({e}); logging at info");
        tracing_subscriber::EnvFilter::new("info")
    })
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signals()?;
    let state = Arc::new(state::RelayState::default());
    let wake = Arc::new(Notify::new());
    let relay_id = config.relay_id();
    let http = http::HttpClient::new(
        config.ca_file.as_deref(),
        config.request_timeout,
        // Idle connections are pooled per host, and several endpoints often share one host
        // (one receiver, several paths): keep as many as can be in flight at all, or every
        // burst past the cap would pay for fresh TLS handshakes.
        config.concurrency as usize,
        guard::NetworkPolicy::new(config.allow_networks.clone()),
    )
    .context("setting up the HTTPS client")?;

    let lease_key = Arc::new(db::LeaseKey::default());
    let config_changes = Arc::new(config_changes::ConfigChanges::default());
    let db = Arc::new(db::Database::new(
        config.database_url.clone(),
        relay_id.clone(),
        lease_key.clone(),
    ));
    if let Some(addr) = config.health_addr.0 {
        let bound = health::serve(addr, state.clone(), db.clone(), shutdown.clone()).await?;
        tracing::info!(%bound, "health server listening (/healthz, /metrics)");
    }
    tracing::info!(%relay_id, concurrency = config.concurrency, batch_size = config.batch_size, lease = ?config.lease, "relay starting");

    let listener = tokio::spawn(wakeup::listen_forever(
        config.database_url.clone(),
        config.max_reconnect_delay,
        wake.clone(),
        config_changes.clone(),
        state.clone(),
        shutdown.clone(),
    ));
    // Room for a report from every delivery the relay can hold, so that a finished delivery
    // never waits for the recorder (and keeps its place from the next claim) while a batch is
    // being written.
    let (reports, received) =
        mpsc::channel(config.concurrency as usize + config.batch_size as usize);
    // The recorder has a connection of its own: PostgreSQL runs one connection's statements
    // one after another, and a claim must not queue behind a batch of records.
    let recorder_db = Arc::new(db::Database::new(
        config.database_url.clone(),
        relay_id.clone(),
        lease_key.clone(),
    ));
    let recorder = tokio::spawn(recorder::run(
        recorder_db,
        state.clone(),
        received,
        shutdown.clone(),
        config.shutdown_grace,
    ));
    let summary = tokio::spawn(log_summaries(state.clone(), shutdown.clone()));
    let retention = (!config.maintenance_interval.is_zero()).then(|| {
        let maintenance_db = Arc::new(db::Database::new(
            config.database_url.clone(),
            relay_id.clone(),
            lease_key.clone(),
        ));
        tokio::spawn(maintenance::run(
            maintenance_db,
            config.maintenance_interval,
            state.clone(),
            shutdown.clone(),
        ))
    });
    let watcher = tokio::spawn(wakeup::watch_for_work(
        db.clone(),
        config.idle_poll_interval,
        wake.clone(),
        state.clone(),
        shutdown.clone(),
    ));

    let dispatcher = dispatcher::Dispatcher {
        db,
        executor: Arc::new(deliver::Executor {
            http,
            user_agent: hyper::header::HeaderValue::from_str(&config.user_agent)
                .context("--user-agent")?,
            requests: tokio::sync::Semaphore::new(config.concurrency as usize),
            config_changes: config_changes.clone(),
        }),
        config_changes,
        limits: limits::EndpointLimits::default(),
        state: state.clone(),
        reports,
        concurrency: config.concurrency,
        batch_size: config.batch_size,
        per_endpoint: config.max_in_flight_per_endpoint,
        lease: config.lease,
        poll_interval: config.poll_interval,
        awake_poll_interval: config.awake_poll_interval,
        stay_awake: config.stay_awake,
        max_reconnect_delay: config.max_reconnect_delay,
        shutdown_grace: config.shutdown_grace,
    };
    // Order matters: the dispatcher returns once its tasks are done and drops the last report
    // sender, which lets the recorder write what is left and return.
    // A task of its own rather than this function's: every finished delivery wakes the
    // dispatcher, and on the runtime's workers that is a queue push, where waking the main
    // thread parked in block_on costs a futex call and a context switch.
    tokio::spawn(dispatcher.run(wake, shutdown)).await?;
    recorder.await?;
    listener.await?;
    watcher.await?;
    summary.await?;
    if let Some(retention) = retention {
        retention.await?;
    }
    if let Some(reason) = state.stopped_for() {
        anyhow::bail!(reason);
    }
    let [succeeded, retried, failed, released] = state.counters.snapshot();
    tracing::info!(
        succeeded,
        retried,
        failed,
        released,
        "relay stopped cleanly"
    );
    Ok(())
}

/// One info line for every ten seconds in which something happened; totals come at exit.
async fn log_summaries(state: Arc<state::RelayState>, mut shutdown: shutdown::Shutdown) {
    let mut last = [0u64; 4];
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.requested() => return,
        }
        let now = state.counters.snapshot();
        if now != last {
            let [succeeded, retried, failed, released] = std::array::from_fn(|i| now[i] - last[i]);
            tracing::info!(
                succeeded,
                retried,
                failed,
                released,
                "deliveries in the last 10s"
            );
            last = now;
        }
    }
}
