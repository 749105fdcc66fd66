//! The executor: one claimed delivery becomes one signed POST (or, if it cannot be sent in
//! time, a release back to the queue), reported to the recorder either way. A delivery waits
//! for its endpoint's rate limit, then for one of `--concurrency` request slots; if its
//! endpoint's configuration changed meanwhile, it goes back to the queue unsent.

use crate::config_changes::ConfigChanges;
use crate::delivery::{AttemptReport, Claimed, Failure, Release};
use crate::headers::SentHeaders;
use crate::http::{Exchange, HttpClient};
use crate::limits::Held;
use crate::shutdown::Shutdown;
use crate::sign;
use bytes::Bytes;
use hyper::header::HeaderValue;
use std::time::{Duration, Instant, SystemTime};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

/// What became of a claimed delivery.
#[derive(Debug)]
// Nearly every report is an attempt: boxing it to shrink the rare release would cost an
// allocation per delivery.
#[allow(clippy::large_enum_variant)]
pub enum Report {
    Attempted(AttemptReport),
    Released(Release),
}

/// Settings shared by every delivery.
pub struct Executor {
    pub http: HttpClient,
    pub user_agent: HeaderValue,
    /// Requests on the wire at once (`--concurrency`). The relay holds more deliveries than
    /// this, claimed ahead in large batches, and they wait here for a slot.
    pub requests: Semaphore,
    pub config_changes: std::sync::Arc<ConfigChanges>,
}

/// Time kept in hand between the end of a request and the end of its lease.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

impl Executor {
    pub async fn deliver(&self, job: Claimed, gate: Held, mut shutdown: Shutdown) -> Report {
        // A rate-limited delivery waits here, uncounted and holding no request slot.
        if let Some(limiter) = &gate.limiter {
            let ready = limiter.until_ready();
            let waited = self.within_lease(&job, &mut shutdown, ready, Duration::from_secs(1));
            if let Err(handed_back) = waited.await {
                return handed_back;
            }
        }
        let slot = self.requests.acquire();
        let _slot = match self
            .within_lease(&job, &mut shutdown, slot, Duration::ZERO)
            .await
        {
            Ok(slot) => slot.expect("the request semaphore is never closed"),
            Err(handed_back) => return handed_back,
        };
        if shutdown.is_requested() {
            return release(&job, Duration::ZERO);
        }
        // The last moment before the request: a URL, secret or state changed since the claim
        // must not be used (claimed again, the delivery gets what the endpoint is now).
        if self
            .config_changes
            .changed_since(job.endpoint_id, job.endpoint.config_epoch)
        {
            tracing::debug!(
                delivery_id = job.delivery_id,
                endpoint_id = job.endpoint_id,
                "endpoint changed since the claim; handing the delivery back"
            );
            return release(&job, Duration::ZERO);
        }
        // Boxed: the request's future is most of a delivery's state, and a delivery task is
        // moved whole when it is spawned and when it finishes. Held inline, that state would
        // be copied for each of the thousands of deliveries held waiting for a slot.
        Report::Attempted(Box::pin(self.attempt(job)).await)
    }

    /// Wait for `ready` while the lease still covers a whole request afterwards. Otherwise the
    /// delivery goes back to the queue, due again after `retry_in`, rather than outlive its
    /// lease (another relay could then send it too); at shutdown it goes back at once.
    async fn within_lease<F: std::future::Future>(
        &self,
        job: &Claimed,
        shutdown: &mut Shutdown,
        ready: F,
        retry_in: Duration,
    ) -> Result<F::Output, Report> {
        let lease_left = job
            .lease_expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let budget = lease_left.saturating_sub(self.http.timeout() + LEASE_MARGIN);
        tokio::select! {
            output = ready => Ok(output),
            _ = tokio::time::sleep(budget) => Err(release(job, retry_in)),
            _ = shutdown.requested() => Err(release(job, Duration::ZERO)),
        }
    }

    async fn attempt(&self, job: Claimed) -> AttemptReport {
        // Signed at the moment of sending, so a retry hours later passes a receiver's
        // five-minute replay check.
        let started_at = SystemTime::now();
        let timestamp = sign::timestamp(OffsetDateTime::from(started_at));
        let signature = job.endpoint.key.sign(&timestamp, &job.event.body);
        let header = |text: String| {
            HeaderValue::from_maybe_shared(Bytes::from(text))
                .expect("a timestamp or a hex signature is visible ASCII")
        };
        let headers = SentHeaders {
            user_agent: self.user_agent.clone(),
            event_type: job
                .event
                .event_type
                .clone()
                .unwrap_or_else(|_| HeaderValue::from_static("")),
            event_id: HeaderValue::from(job.event_id),
            timestamp: header(timestamp),
            signature: header(signature),
        };
        let clock = Instant::now();
        let exchange = match (&job.endpoint.destination, &job.event.event_type) {
            (Ok(to), Ok(_)) => self.http.post(to, &headers, job.event.body.clone()).await,
            (Err(problem), _) | (_, Err(problem)) => {
                Exchange::failed(Failure::Unsendable(problem.clone()))
            }
        };
        let duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        tracing::debug!(
            delivery_id = job.delivery_id,
            event_id = job.event_id,
            endpoint_id = job.endpoint_id,
            attempt = job.attempt_number,
            status = exchange.status,
            error = exchange.failure.as_ref().map(Failure::message),
            duration_ms = format!("{duration_ms:.1}"),
            "attempt"
        );
        AttemptReport {
            delivery_id: job.delivery_id,
            attempt_number: job.attempt_number,
            started_at,
            duration_ms,
            request_headers: headers,
            response_status: exchange.status,
            response_body: exchange.body_prefix,
            failure: exchange.failure,
            retry_after_seconds: exchange.retry_after_seconds,
        }
    }
}

fn release(job: &Claimed, delay: Duration) -> Report {
    Report::Released(Release {
        delivery_id: job.delivery_id,
        delay,
    })
}
