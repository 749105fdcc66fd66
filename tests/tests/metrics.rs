//! `/metrics` in Prometheus text: attempts by outcome, the latency histogram, in flight,
//! queue depth (due and scheduled), the oldest pending delivery's age, the event log's size and
//! disabled endpoints, matching what the database holds.

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
    assert!(
        get("webhook_relay_queue_oldest_pending_seconds") > 0.0,
        "the 503's delivery is pending"
    );
    assert!(get("webhook_relay_event_log_bytes") >= 8192.0);
    assert_eq!(get("webhook_relay_endpoints_disabled"), 1.0);
    assert_eq!(get("webhook_relay_in_flight"), 0.0);
    assert_eq!(get("webhook_relay_database_connected"), 1.0);
    assert_eq!(get("webhook_relay_reports_dropped_total"), 0.0);

    stage.retry_now(endpoint).await.unwrap();
    e2e::eventually(Duration::from_secs(20), "the retry to succeed", || async {
        let m = relay.metrics().await.ok()?;
        let succeeded = m.get("webhook_relay_attempts_total{outcome=\"succeeded\"}")?;
        (*succeeded == 3.0
            && m.get("webhook_relay_queue_scheduled") == Some(&0.0)
            && m.get("webhook_relay_queue_oldest_pending_seconds") == Some(&0.0))
        .then_some(())
    })
    .await;
}

/// A batch of attempts the database refuses (here: the relay's role lost EXECUTE on
/// record_attempts) is dropped after three refusals, counted, and its delivery is claimed and
/// sent again once the lease runs out: nothing is lost, and the operator can see it happened.
#[tokio::test]
async fn a_refused_report_is_counted_and_its_delivery_sent_again() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/refused", &["offer.*"], "").await.unwrap();
    let relay = stage
        .relay(&["--request-timeout", "1s", "--lease", "6s"])
        .await
        .unwrap();
    let grant = |verb: &'static str| {
        format!(
            "DO $$ BEGIN EXECUTE format('{verb} EXECUTE ON FUNCTION %s {} webhooks_relay',
               (SELECT p.oid::regprocedure FROM pg_proc p
                  WHERE p.proname = 'record_attempts' AND p.pronargs = 11)); END $$",
            if verb == "GRANT" { "TO" } else { "FROM" }
        )
    };
    stage.db.batch_execute(&grant("REVOKE")).await.unwrap();
    let event = stage
        .emit("offer.accepted", serde_json::json!({ "id": 1 }))
        .await
        .unwrap();
    stage.receiver.wait_for(1, Duration::from_secs(20)).await;
    e2e::eventually(Duration::from_secs(20), "the dropped report", || async {
        let m = relay.metrics().await.ok()?;
        (m.get("webhook_relay_reports_dropped_total") == Some(&1.0)).then_some(())
    })
    .await;
    assert!(
        relay.logs().contains("refused this batch repeatedly"),
        "the log says why"
    );
    assert_eq!(
        stage.delivery(event, endpoint).await.unwrap().status,
        "pending"
    );

    stage.db.batch_execute(&grant("GRANT")).await.unwrap();
    let requests = stage.receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(
        requests[0].header("x-webhook-id"),
        requests[1].header("x-webhook-id"),
        "the same delivery, sent again"
    );
    stage.wait_for_attempts(event, endpoint, 1).await;
    assert_eq!(
        stage.delivery(event, endpoint).await.unwrap().status,
        "succeeded"
    );
}
