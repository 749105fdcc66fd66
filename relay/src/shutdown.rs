//! Graceful shutdown: SIGINT or SIGTERM (or a task that finds the relay cannot go on) flips
//! one watch channel every task listens to.

use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has been requested, and can request it.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>, Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Stop the relay as a signal would (a task found that it cannot go on).
    pub fn request(&self) {
        let _ = self.1.send(true);
    }

    /// A handle that never fires, for tests.
    #[cfg(test)]
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown(rx, Arc::new(tx))
    }

    /// Wait until shutdown is requested (returns at once if it already was).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Install the signal handlers; the returned handle fires on the first SIGINT or SIGTERM.
pub fn on_signals() -> std::io::Result<Shutdown> {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let shutdown = Shutdown(rx, tx.clone());
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = which,
            "shutdown requested: no new claims, finishing in-flight work"
        );
        let _ = tx.send(true);
    });
    Ok(shutdown)
}
