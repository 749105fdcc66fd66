//! Endpoint configuration changes the relay has heard of since it claimed a delivery.
//!
//! A claim carries the endpoint's URL, secret and rate limit, and a delivery may wait up to its
//! lease before its request starts. An admin's change (rotate_secret, update_endpoint, pause,
//! disable, delete) is announced at its commit on `webhooks_endpoint_changed`; the LISTEN
//! connection records it here, and a delivery whose endpoint changed after its claim is handed
//! back instead of sent, to be claimed again with what the endpoint is now (or not at all).
//!
//! Changes are counted in one epoch. A claim notes the epoch before it is sent, so a change
//! that commits while the claim is under way counts as after it. The check before every
//! request is one atomic load while nothing has changed since the claim.

use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The channel `webhooks._endpoint_changed()` notifies, with the endpoint id as payload.
pub const CHANNEL: &str = "webhooks_endpoint_changed";

#[derive(Default)]
pub struct ConfigChanges {
    epoch: AtomicU64,
    /// The epoch of each endpoint's latest change.
    changed_at: Mutex<HashMap<i64, u64>>,
    /// The epoch at which every endpoint last counted as changed (the LISTEN connection was
    /// re-established, so changes may have gone unheard).
    all_changed_at: AtomicU64,
}

impl ConfigChanges {
    /// The epoch to stamp on a claim, read before the claim is sent.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Endpoint `endpoint_id` changed.
    pub fn record(&self, endpoint_id: i64) {
        let mut changed = self.changed_at.lock().expect("not poisoned");
        let now = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        changed.insert(endpoint_id, now);
    }

    /// Any endpoint may have changed unheard (the notifications' connection was lost).
    pub fn record_all(&self) {
        let now = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.all_changed_at.store(now, Ordering::Release);
        self.changed_at.lock().expect("not poisoned").clear();
    }

    /// Whether `endpoint_id` changed after a claim stamped `claimed_at`.
    pub fn changed_since(&self, endpoint_id: i64, claimed_at: u64) -> bool {
        if self.epoch.load(Ordering::Acquire) == claimed_at {
            return false;
        }
        if self.all_changed_at.load(Ordering::Acquire) > claimed_at {
            return true;
        }
        let changed = self.changed_at.lock().expect("not poisoned");
        changed.get(&endpoint_id).is_some_and(|&at| at > claimed_at)
    }

    /// A notification's payload: an endpoint id.
    pub fn record_notification(&self, payload: &str) {
        match payload.parse::<i64>() {
            Ok(endpoint_id) => self.record(endpoint_id),
            Err(_) => {
                tracing::warn!(
                    payload,
                    "unexpected {CHANNEL} payload; treating every endpoint as changed"
                );
                self.record_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_counts_only_for_its_endpoint_and_for_claims_before_it() {
        let changes = ConfigChanges::default();
        let before = changes.epoch();
        assert!(!changes.changed_since(1, before));
        changes.record_notification("1");
        assert!(changes.changed_since(1, before));
        assert!(!changes.changed_since(2, before));
        let after = changes.epoch();
        assert!(!changes.changed_since(1, after));
        changes.record_all();
        assert!(changes.changed_since(2, after));
        assert!(!changes.changed_since(2, changes.epoch()));
        changes.record_notification("not a number");
        assert!(changes.changed_since(3, after));
    }
}
