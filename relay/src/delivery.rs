//! A delivery as the relay handles it: what a claim hands over (`Claimed`, with its event and
//! its endpoint's `Target`), built from a claim's rows, and what becomes of it (`AttemptReport`
//! with its `Failure`, or a `Release`). The driver (db.rs) only moves these to and from
//! PostgreSQL; the executor (deliver.rs) only reads and writes them.

use crate::db::ClaimRow;
use crate::headers::SentHeaders;
use crate::pool::Destination;
use crate::sign::SigningKey;
use anyhow::Context;
use bytes::Bytes;
use hyper::header::HeaderValue;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One delivery leased to this relay, ready to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub event_id: i64,
    pub endpoint_id: i64,
    pub attempt_number: i32,
    pub event: Arc<ClaimedEvent>,
    pub endpoint: Arc<Target>,
    pub lease_expires_at: SystemTime,
}

/// An event as a claim returned it, shared by its deliveries in that claim.
#[derive(Debug)]
pub struct ClaimedEvent {
    /// The `X-Webhook-Event` value, or why the event type cannot be one.
    pub event_type: Result<HeaderValue, String>,
    /// Rendered once per event by the database; these exact bytes are signed and sent.
    pub body: Bytes,
}

/// An endpoint as a claim found it, shared by its deliveries in that claim: its URL parsed and
/// its signing key set up once, not for every request.
#[derive(Debug)]
pub struct Target {
    /// Where its requests go, or why its URL cannot be used.
    pub destination: Result<Destination, String>,
    pub key: SigningKey,
    pub rate_limit: Option<i32>,
    /// `ConfigChanges::epoch()` before the claim that read this: the endpoint has changed
    /// since if a change was recorded after it.
    pub config_epoch: u64,
}

/// The deliveries of one claim. One row of each event carries its body and the others share
/// it; each endpoint's URL and key are set up once per claim.
pub fn from_claim(rows: Vec<ClaimRow>, config_epoch: u64) -> anyhow::Result<Vec<Claimed>> {
    let mut events: HashMap<i64, Arc<ClaimedEvent>> = HashMap::default();
    let mut targets: HashMap<i64, Arc<Target>> = HashMap::default();
    for row in &rows {
        if let Some(body) = row.body() {
            let event_type = HeaderValue::from_str(row.event_type())
                .map_err(|e| format!("could not build the request: X-Webhook-Event: {e}"));
            events.insert(
                row.event_id(),
                Arc::new(ClaimedEvent {
                    event_type,
                    body: Bytes::copy_from_slice(body.as_bytes()),
                }),
            );
        }
        targets.entry(row.endpoint_id()).or_insert_with(|| {
            Arc::new(Target {
                destination: Destination::parse(row.url()),
                key: SigningKey::new(row.secret()),
                rate_limit: row.rate_limit(),
                config_epoch,
            })
        });
    }
    rows.iter()
        .map(|row| {
            let event_id = row.event_id();
            let endpoint_id = row.endpoint_id();
            let event = events
                .get(&event_id)
                .cloned()
                .with_context(|| format!("the claim returned no body for event {event_id}"))?;
            Ok(Claimed {
                delivery_id: row.delivery_id(),
                event_id,
                endpoint_id,
                attempt_number: row.attempt_number(),
                event,
                endpoint: targets[&endpoint_id].clone(),
                lease_expires_at: row.lease_expires_at(),
            })
        })
        .collect()
}

/// Why an attempt got no usable answer, as its attempt log line records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The delivery cannot be sent as it stands: its URL is unusable, the network policy
    /// refuses its destination, or its event type is no header value. Retrying cannot help,
    /// so the delivery fails at once.
    Unsendable(String),
    /// No response came: the connection, the request or the timeout failed. Retried.
    NoResponse(String),
    /// The status arrived, so the outcome stands by it; the body broke off and is only noted.
    BodyIncomplete(String),
}

impl Failure {
    /// The text the attempt log's `error` column gets.
    pub fn message(&self) -> &str {
        match self {
            Failure::Unsendable(m) | Failure::NoResponse(m) | Failure::BodyIncomplete(m) => m,
        }
    }

    /// Whether the delivery fails now instead of being retried.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Unsendable(_))
    }
}

/// One attempt as `webhooks.record_attempts` takes it.
#[derive(Debug)]
pub struct AttemptReport {
    pub delivery_id: i64,
    pub attempt_number: i32,
    pub started_at: SystemTime,
    pub duration_ms: f64,
    pub request_headers: SentHeaders,
    pub response_status: Option<u16>,
    pub response_body: Option<String>,
    pub failure: Option<Failure>,
    pub retry_after_seconds: Option<f64>,
}

/// A delivery handed back unattempted, due again after `delay`.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    pub delivery_id: i64,
    pub delay: Duration,
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[test]
    fn only_an_unsendable_delivery_fails_at_once() {
        assert!(Failure::Unsendable("bad URL".into()).is_permanent());
        assert!(!Failure::NoResponse("timeout".into()).is_permanent());
        assert!(!Failure::BodyIncomplete("reset".into()).is_permanent());
        assert_eq!(Failure::NoResponse("timeout".into()).message(), "timeout");
    }
}
