//! Per-endpoint limits: how many deliveries this relay holds for each endpoint (the claim
//! never takes more than the per-endpoint cap), and the endpoint's rate limiter (governor).

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rustc_hash::FxHashMap as HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// One endpoint's gate, shared by every task delivering to it.
pub struct EndpointGate {
    in_flight: AtomicI32,
    rate_limit: Option<i32>,
    /// Evenly spaced requests (a burst of one), so that no window of a second ever sees more
    /// than `rate_limit` requests.
    pub limiter: Option<DefaultDirectRateLimiter>,
}

/// Counts a delivery as held for its endpoint until dropped.
pub struct Held(Arc<EndpointGate>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Held {
    type Target = EndpointGate;
    fn deref(&self) -> &EndpointGate {
        &self.0
    }
}

#[derive(Default)]
pub struct EndpointLimits {
    gates: Mutex<HashMap<i64, Arc<EndpointGate>>>,
}

impl EndpointLimits {
    /// Hold one delivery for `endpoint_id`; the gate is rebuilt when its rate limit changed.
    pub fn hold(&self, endpoint_id: i64, rate_limit: Option<i32>) -> Held {
        let mut gates = self.gates.lock().expect("limits lock poisoned");
        let gate = gates
            .entry(endpoint_id)
            .and_modify(|gate| {
                if gate.rate_limit != rate_limit {
                    *gate = Arc::new(EndpointGate::new(rate_limit));
                }
            })
            .or_insert_with(|| Arc::new(EndpointGate::new(rate_limit)))
            .clone();
        gate.in_flight.fetch_add(1, Ordering::Relaxed);
        Held(gate)
    }

    /// (endpoint, deliveries held) for every endpoint with any, for the next claim. Idle gates
    /// of unlimited endpoints are forgotten here; rate-limited ones are kept so the limiter
    /// remembers recent sends.
    pub fn busy(&self) -> Vec<(i64, i32)> {
        let mut gates = self.gates.lock().expect("limits lock poisoned");
        gates
            .retain(|_, gate| gate.limiter.is_some() || gate.in_flight.load(Ordering::Relaxed) > 0);
        gates
            .iter()
            .map(|(id, gate)| (*id, gate.in_flight.load(Ordering::Relaxed)))
            .filter(|(_, held)| *held > 0)
            .collect()
    }
}

impl EndpointGate {
    fn new(rate_limit: Option<i32>) -> Self {
        let limiter = rate_limit
            .and_then(|r| NonZeroU32::new(r.max(0) as u32))
            .map(|per_second| {
                RateLimiter::direct(Quota::per_second(per_second).allow_burst(NonZeroU32::MIN))
            });
        EndpointGate {
            in_flight: AtomicI32::new(0),
            rate_limit,
            limiter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_deliveries_are_counted_until_dropped() {
        let limits = EndpointLimits::default();
        let a = limits.hold(1, None);
        let b = limits.hold(1, None);
        let c = limits.hold(2, Some(5));
        let mut busy = limits.busy();
        busy.sort();
        assert_eq!(busy, vec![(1, 2), (2, 1)]);
        drop((a, b, c));
        assert!(limits.busy().is_empty());
    }

    #[test]
    fn a_rate_limited_gate_spaces_requests() {
        let gate = EndpointGate::new(Some(2));
        let limiter = gate.limiter.as_ref().unwrap();
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err(), "burst must be one request");
    }
}
