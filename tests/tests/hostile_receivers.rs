//! Receivers that misbehave: down, behind a certificate the relay does not trust, speaking
//! garbage, cutting the connection mid-response, or answering with a huge body. Each is
//! recorded as what it is, retried where the schedule says so, and none makes the relay hold
//! more than a bounded amount of memory.

use e2e::receiver::Reply;
use e2e::stage::Stage;
use serde_json::json;

/// Send one event to `path` and return its first recorded attempt.
async fn first_attempt(stage: &Stage, url: &str) -> e2e::stage::Attempt {
    let endpoint: i64 = stage
        .db
        .query_one(
            "SELECT endpoint_id FROM webhooks.create_endpoint($1, ARRAY['review.*'])",
            &[&url],
        )
        .await
        .unwrap()
        .get(0);
    let event_id = stage
        .emit("review.submitted", json!({"id": 1}))
        .await
        .unwrap();
    stage
        .wait_for_attempts(event_id, endpoint, 1)
        .await
        .remove(0)
}

fn assert_retried_failure(attempt: &e2e::stage::Attempt, error_part: &str) {
    assert_eq!(attempt.outcome, "retry", "{attempt:?}");
    assert_eq!(attempt.response_status, None, "{attempt:?}");
    let error = attempt.error.as_deref().unwrap_or_default();
    assert!(error.contains(error_part), "{error}");
}

#[tokio::test]
async fn a_receiver_that_is_down_is_a_retried_connection_failure() {
    let stage = Stage::new().await.unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    let closed = format!("https://127.0.0.1:{}/down", e2e::free_port());
    let attempt = first_attempt(&stage, &closed).await;
    assert_retried_failure(&attempt, "could not connect");
}

#[tokio::test]
async fn a_certificate_the_relay_does_not_trust_is_a_retried_connection_failure() {
    let stage = Stage::new().await.unwrap();
    // Without --ca-file the relay trusts only the public roots, not the receiver's own CA.
    let _relay = e2e::relay::Relay::start(
        &stage.cluster.connstr_as("app", "relay_login"),
        &["--allow-network", "127.0.0.0/8", "--poll-interval", "100ms"],
    )
    .await
    .unwrap();
    let attempt = first_attempt(&stage, &stage.receiver.url("/untrusted")).await;
    assert_retried_failure(&attempt, "could not connect");
    assert_retried_failure(&attempt, "certificate");
    // The recorded failure says what to do about it.
    assert_retried_failure(&attempt, "name it or its CA with --ca-file");
    assert_eq!(stage.receiver.request_count(), 0);
}

#[tokio::test]
async fn a_receiver_behind_an_openssl_self_signed_certificate_named_with_ca_file_is_delivered_to() {
    // `openssl req -x509` marks its certificate CA:TRUE, which a standard verifier refuses as
    // a server's certificate even when the operator named it; the relay trusts the very
    // certificate it was given.
    let receiver = e2e::receiver::Receiver::start_with_openssl_certificate()
        .await
        .unwrap();
    let stage = Stage::with_receiver(receiver).await.unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    let attempt = first_attempt(&stage, &stage.receiver.url("/self-signed")).await;
    assert_eq!(attempt.outcome, "succeeded", "{attempt:?}");
    assert_eq!(stage.receiver.request_count(), 1);
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_retried_failure() {
    let stage = Stage::new().await.unwrap();
    stage
        .receiver
        .answer_raw(Some(b"this is not HTTP at all\r\n\r\n"));
    let _relay = stage.relay(&[]).await.unwrap();
    let attempt = first_attempt(&stage, &stage.receiver.url("/garbage")).await;
    assert_retried_failure(&attempt, "request failed");
}

#[tokio::test]
async fn a_connection_closed_mid_response_is_a_retried_failure() {
    let stage = Stage::new().await.unwrap();
    stage.receiver.answer_raw(Some(b"HTTP/1.1 2"));
    let _relay = stage.relay(&[]).await.unwrap();
    let attempt = first_attempt(&stage, &stage.receiver.url("/cut")).await;
    assert_retried_failure(&attempt, "request failed");
}

#[tokio::test]
async fn a_huge_response_body_is_cut_short_and_costs_no_memory() {
    let stage = Stage::new().await.unwrap();
    let huge = "x".repeat(64 * 1024 * 1024);
    stage.receiver.script([Reply::status(200).with_body(&huge)]);
    let relay = stage.relay(&[]).await.unwrap();
    let attempt = first_attempt(&stage, &stage.receiver.url("/huge")).await;
    assert_eq!(attempt.outcome, "succeeded", "{:?}", attempt.error);
    assert_eq!(attempt.response_body.as_deref().map(str::len), Some(1024));

    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 48 * 1024,
        "the relay's peak memory was {rss_kib} KiB for a 64 MiB response"
    );
}
