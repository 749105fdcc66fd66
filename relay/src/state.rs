//! Process-wide state shared by the dispatcher and the health server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct RelayState {
    database_connected: AtomicBool,
    wakeups: AtomicU64,
}

impl RelayState {
    pub fn set_database_connected(&self, connected: bool) {
        self.database_connected.store(connected, Ordering::Relaxed);
    }

    pub fn database_connected(&self) -> bool {
        self.database_connected.load(Ordering::Relaxed)
    }

    pub fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }
}
