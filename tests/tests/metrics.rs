//! `/metrics` in Prometheus text: attempts by outcome, the latency histogram, in flight,
//! queue depth (due and scheduled) and disabled endpoints, matching what the database holds.

use e2e::receiver::Reply;
use e2e::stage::Stage;
use std::time::Duration;

#[tokio::test]
async fn metrics_count_outcomes_latency_and_queue_depth() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/m", &["review.*"], "").await.unwrap();
    stage.endpoint("/gone", &["offer.*"], "").await.unwrap();
    stage
        .receiver
        .script([Reply::status(503), Reply::status(410)]);
    let relay = stage.relay(&[]).await.unwrap();
    // One 503 (retry), then the offer endpoint answers 410 (failed, disabled), then 2 × 200.
    stage.emit_many("review.submitted", 1).await.unwrap();
    stage.receiver.wait_for(1, Duration::from_secs(20)).await;
    stage.emit_many("offer.accepted", 1).await.unwrap();
    stage.receiver.wait_for(2, Duration::from_secs(20)).await;
    stage.emit_many("review.submitted", 2).await.unwrap();

    let metrics = e2e::eventually(
        Duration::from_secs(20),
        "4 attempts in /metrics",
        || async {
            let m = relay.metrics().await.ok()?;
            (m.get("webhook_relay_attempt_duration_seconds_count") == Some(&4.0)).then_some(m)
        },
    )
    .await;
    let get = |name: &str| metrics.get(name).copied().unwrap_or(f64::NAN);
    assert_eq!(
        get("webhook_relay_attempts_total{outcome=\"succeeded\"}"),
        2.0
    );
    assert_eq!(get("webhook_relay_attempts_total{outcome=\"retry\"}"), 1.0);
    assert_eq!(get("webhook_relay_attempts_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(
        get("webhook_relay_attempt_duration_seconds_bucket{le=\"+Inf\"}"),
        4.0
    );
    assert!(get("webhook_relay_attempt_duration_seconds_bucket{le=\"10\"}") == 4.0);
    assert!(get("webhook_relay_attempt_duration_seconds_sum") > 0.0);
    assert_eq!(
        get("webhook_relay_queue_scheduled"),
        1.0,
        "the 503 waits for its retry"
    );
    assert_eq!(get("webhook_relay_queue_due"), 0.0);
    assert_eq!(get("webhook_relay_queue_awaiting_fan_out"), 0.0);
    assert_eq!(get("webhook_relay_endpoints_disabled"), 1.0);
    assert_eq!(get("webhook_relay_in_flight"), 0.0);
    assert_eq!(get("webhook_relay_database_connected"), 1.0);

    stage.retry_now(endpoint).await.unwrap();
    e2e::eventually(Duration::from_secs(20), "the retry to succeed", || async {
        let m = relay.metrics().await.ok()?;
        let succeeded = m.get("webhook_relay_attempts_total{outcome=\"succeeded\"}")?;
        (*succeeded == 3.0 && m.get("webhook_relay_queue_scheduled") == Some(&0.0)).then_some(())
    })
    .await;
}
