//! `/metrics`: the relay's figures and the queue's, as Prometheus text exposition. Every
//! metric the relay exports is named and described here.

use crate::db::QueueStats;
use crate::state::{RelayState, LATENCY_BUCKETS};
use std::fmt::Write;

/// The relay's own figures, then the queue's (`queue` is the database's answer, or why there
/// was none).
pub fn render(state: &RelayState, queue: anyhow::Result<QueueStats>) -> String {
    let mut out = String::new();
    let [succeeded, retried, failed, released] = state.counters.snapshot();
    let not_held = state
        .counters
        .not_held
        .load(std::sync::atomic::Ordering::Relaxed);
    header(
        &mut out,
        "attempts_total",
        "counter",
        "Delivery attempts recorded, by what they meant for their delivery.",
    );
    for (outcome, n) in [
        ("succeeded", succeeded),
        ("retry", retried),
        ("failed", failed),
        ("not_held", not_held),
    ] {
        let _ = writeln!(
            out,
            "webhook_relay_attempts_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    counter(
        &mut out,
        "released_total",
        "Claimed deliveries handed back unattempted.",
        released,
    );
    counter(
        &mut out,
        "reports_dropped_total",
        "Attempts and releases the relay could not record (refused by the database, or unwritten at shutdown); their deliveries are sent again when their leases run out.",
        state.counters.dropped_reports.load(std::sync::atomic::Ordering::Relaxed),
    );
    counter(
        &mut out,
        "maintenance_failures_total",
        "Calls of webhooks.maintain() (retention) that failed; the next interval tries again.",
        state
            .counters
            .maintenance_failures
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    histogram(&mut out, state);
    gauge(
        &mut out,
        "in_flight",
        "Deliveries claimed by this relay and not yet recorded.",
        state.in_flight(),
    );
    gauge(
        &mut out,
        "database_connected",
        "1 while the LISTEN connection is up.",
        i64::from(state.database_connected()),
    );
    counter(
        &mut out,
        "wakeups_total",
        "Times the relay woke from sleep.",
        state.wakeups(),
    );
    match queue {
        Ok(q) => {
            gauge(
                &mut out,
                "queue_due",
                "Pending deliveries due now (all relays).",
                q.due,
            );
            gauge(
                &mut out,
                "queue_scheduled",
                "Pending deliveries waiting for a retry or a lease to run out.",
                q.scheduled,
            );
            gauge(
                &mut out,
                "queue_awaiting_fan_out",
                "Tracked events whose deliveries are not made yet (all relays' next claims make them).",
                q.awaiting_fan_out,
            );
            gauge(
                &mut out,
                "queue_oldest_pending_seconds",
                "Seconds the oldest pending delivery has waited since it was made (0 with none), whatever holds it back.",
                q.oldest_pending_seconds,
            );
            gauge(
                &mut out,
                "event_log_bytes",
                "The event log (webhooks.events) on disk, indexes included.",
                q.event_log_bytes,
            );
            gauge(
                &mut out,
                "endpoints_disabled",
                "Endpoints disabled (410 Gone, too many failures, or by an admin).",
                q.endpoints_disabled,
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "# queue depth unavailable: {}",
                format!("{e:#}").replace('\n', " ")
            );
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP webhook_relay_{name} {help}\n# TYPE webhook_relay_{name} {kind}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    sample(out, name, "counter", help, value);
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    sample(out, name, "gauge", help, value);
}

/// A metric of one sample: its HELP and TYPE lines, then its value.
fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "webhook_relay_{name} {value}");
}

fn histogram(out: &mut String, state: &RelayState) {
    const NAME: &str = "attempt_duration_seconds";
    header(
        out,
        NAME,
        "histogram",
        "Time from sending a request to its complete response (or failure).",
    );
    let (buckets, count, sum) = state.latency();
    let mut cumulative = 0;
    for (le, n) in LATENCY_BUCKETS.iter().zip(buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "webhook_relay_{NAME}_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "webhook_relay_{NAME}_bucket{{le=\"+Inf\"}} {count}\nwebhook_relay_{NAME}_sum {sum}\nwebhook_relay_{NAME}_count {count}"
    );
}
