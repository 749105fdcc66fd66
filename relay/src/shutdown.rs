//! Graceful shutdown: SIGINT or SIGTERM flips one watch channel every task listens to.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has been requested.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// A handle that never fires, for tests.
    #[cfg(test)]
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        // A dropped sender would read as "requested": keep it for the life of the test.
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Wait until shutdown is requested (returns at once if it already was).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Install the signal handlers; the returned handle fires on the first SIGINT or SIGTERM.
pub fn on_signals() -> std::io::Result<Shutdown> {
    let (tx, rx) = watch::channel(false);
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
    Ok(Shutdown(rx))
}
