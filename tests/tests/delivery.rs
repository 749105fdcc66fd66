//! What a receiver gets, and what each kind of answer does to the delivery: the headers and
//! signature of the seeds, retries on the documented schedule, failures, timeouts, redirects.

use e2e::receiver::Reply;
use e2e::stage::{body_json, signature_is_valid, OneEvent, Stage};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// "2025-01-15T14:30:00Z"
fn is_iso8601_utc_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn every_header_and_the_signature_check_out_at_the_receiver() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, secret) = stage
        .endpoint("/hooks", &["application.*"], "")
        .await
        .unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    let data = json!({"id": 42, "candidate": {"id": 7, "name": "Jane Smith"}, "rejected": false});
    let event_id = stage
        .emit("application.submitted", data.clone())
        .await
        .unwrap();

    let request = stage.receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some("Kit-Webhooks/1.0"));
    assert_eq!(
        request.header("x-webhook-event"),
        Some("application.submitted")
    );
    assert_eq!(
        request.header("x-webhook-id"),
        Some(event_id.to_string().as_str())
    );
    let timestamp = request.header("x-webhook-timestamp").unwrap();
    assert!(is_iso8601_utc_seconds(timestamp), "{timestamp}");
    let skew: f64 = stage
        .scalar(&format!(
            "SELECT abs(extract(epoch FROM now() - '{timestamp}'::timestamptz))::float8"
        ))
        .await
        .unwrap();
    assert!(
        skew < 300.0,
        "timestamp {timestamp} is {skew}s from the database clock"
    );
    let signature = request.header("x-webhook-signature").unwrap();
    assert_eq!(signature.len(), 64);
    assert!(signature_is_valid(&secret, &request), "signature rejected");
    assert!(!signature_is_valid("whsec_someone_else_entirely", &request));

    let body = body_json(&request);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{body}");
    assert_eq!(body["event"], "application.submitted");
    assert_eq!(body["data"], data);
    assert!(is_iso8601_utc_seconds(body["created_at"].as_str().unwrap()));

    let attempts = stage.wait_for_attempts(event_id, endpoint, 1).await;
    assert_eq!(attempts[0].outcome, "succeeded");
    assert_eq!(attempts[0].response_status, Some(200));
    assert_eq!(
        attempts[0].request_headers["X-Webhook-Signature"],
        signature
    );
    assert_eq!(
        attempts[0].request_headers["X-Webhook-Timestamp"],
        timestamp
    );
    assert!(attempts[0].duration_ms > 0.0);
    e2e::eventually(WAIT, "the delivery to be marked succeeded", || async {
        let d = stage.delivery(event_id, endpoint).await.ok()?;
        (d.status == "succeeded" && d.leased_by.is_none()).then_some(())
    })
    .await;
}

/// A claim renders each event's body once and its deliveries share it: every subscriber gets
/// the same bytes, signed with its own secret.
#[tokio::test]
async fn the_deliveries_of_one_event_carry_the_same_body_each_signed_with_its_endpoints_secret() {
    let stage = Stage::new().await.unwrap();
    let mut endpoints = Vec::new();
    for n in 1..=3 {
        let path = format!("/shared/{n}");
        let (_, secret) = stage.endpoint(&path, &["application.*"], "").await.unwrap();
        endpoints.push((path, secret));
    }
    // Logged before the relay starts, so that one claim holds all three deliveries of each.
    stage.emit_many("application.submitted", 20).await.unwrap();
    let _relay = stage.relay(&[]).await.unwrap();

    let requests = stage.receiver.wait_for(60, WAIT).await;
    assert_eq!(requests.len(), 60);
    let mut bodies = std::collections::HashMap::new();
    for request in &requests {
        let (_, secret) = endpoints
            .iter()
            .find(|(path, _)| *path == request.path)
            .unwrap();
        assert!(signature_is_valid(secret, request), "{}", request.path);
        let event_id = request.header("x-webhook-id").unwrap().to_owned();
        bodies
            .entry(event_id)
            .or_insert_with(Vec::new)
            .push((request.path.clone(), request.body.clone()));
    }
    assert_eq!(bodies.len(), 20);
    let logged: serde_json::Value = serde_json::from_str(
        &stage
            .scalar::<String>("SELECT jsonb_object_agg(id::text, data)::text FROM webhooks.events")
            .await
            .unwrap(),
    )
    .unwrap();
    for (event_id, received) in bodies {
        let mut paths: Vec<&str> = received.iter().map(|(path, _)| path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            ["/shared/1", "/shared/2", "/shared/3"],
            "event {event_id}"
        );
        assert!(
            received.iter().all(|(_, body)| *body == received[0].1),
            "event {event_id}: the three bodies differ"
        );
        let body = serde_json::from_slice::<serde_json::Value>(&received[0].1).unwrap();
        assert_eq!(body["event"], "application.submitted");
        assert_eq!(body["data"], logged[&event_id], "event {event_id}");
    }
}

#[tokio::test]
async fn a_500_then_a_200_is_retried_after_a_minute_and_ends_succeeded() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, secret) = stage.endpoint("/flaky", &["offer.*"], "").await.unwrap();
    stage.receiver.script([
        Reply::status(500).with_body("database on fire"),
        Reply::status(200),
    ]);
    let _relay = stage.relay(&[]).await.unwrap();
    let event_id = stage
        .emit("offer.revised", json!({"id": 15}))
        .await
        .unwrap();

    let first = stage.wait_for_attempts(event_id, endpoint, 1).await;
    assert_eq!(first[0].outcome, "retry");
    assert_eq!(first[0].response_status, Some(500));
    assert_eq!(first[0].response_body.as_deref(), Some("database on fire"));
    let delivery = stage.delivery(event_id, endpoint).await.unwrap();
    assert_eq!(delivery.status, "pending");
    assert!(
        (55.0..=61.0).contains(&delivery.due_in_seconds),
        "{delivery:?}"
    );

    assert_eq!(stage.retry_now(endpoint).await.unwrap(), 1);
    let attempts = stage.wait_for_attempts(event_id, endpoint, 2).await;
    assert_eq!(attempts[1].attempt_number, 2);
    assert_eq!(attempts[1].outcome, "succeeded");
    let requests = stage.receiver.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("x-webhook-id"),
        requests[1].header("x-webhook-id")
    );
    assert!(requests.iter().all(|r| signature_is_valid(&secret, r)));
    e2e::eventually(WAIT, "the delivery to be succeeded", || async {
        let d = stage.delivery(event_id, endpoint).await.ok()?;
        (d.status == "succeeded" && d.attempts == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn retries_follow_1m_5m_30m_2h_8h_16h_and_the_seventh_failure_is_final() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/down", &["review.*"], "").await.unwrap();
    stage.receiver.script((0..7).map(|_| Reply::status(503)));
    let _relay = stage.relay(&[]).await.unwrap();
    let event_id = stage
        .emit("review.submitted", json!({"id": 9}))
        .await
        .unwrap();

    let schedule_minutes = [1.0, 5.0, 30.0, 120.0, 480.0, 960.0];
    for (n, minutes) in schedule_minutes.iter().enumerate() {
        stage.wait_for_attempts(event_id, endpoint, n + 1).await;
        let delivery = e2e::eventually(WAIT, "the retry to be scheduled", || async {
            let d = stage.delivery(event_id, endpoint).await.ok()?;
            (d.attempts as usize == n + 1 && d.leased_by.is_none()).then_some(d)
        })
        .await;
        let expected = minutes * 60.0;
        assert!(
            (expected - 5.0..=expected + 1.0).contains(&delivery.due_in_seconds),
            "after attempt {}: due in {}s, expected {expected}s",
            n + 1,
            delivery.due_in_seconds
        );
        assert_eq!(stage.retry_now(endpoint).await.unwrap(), 1);
    }
    let attempts = stage.wait_for_attempts(event_id, endpoint, 7).await;
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["retry", "retry", "retry", "retry", "retry", "retry", "failed"]
    );
    let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt_number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
    e2e::eventually(WAIT, "the delivery to be failed", || async {
        let d = stage.delivery(event_id, endpoint).await.ok()?;
        (d.status == "failed").then_some(())
    })
    .await;
    assert_eq!(stage.retry_now(endpoint).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stage.receiver.requests().len(), 7);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured_when_longer_than_the_schedule() {
    let reply = Reply::status(429).with_header("Retry-After", "7200");
    let run = OneEvent::run("/busy", vec![reply], &[]).await.unwrap();
    assert_eq!(run.first.outcome, "retry");
    let delivery = run.delivery().await;
    assert!(
        (7190.0..=7201.0).contains(&delivery.due_in_seconds),
        "{delivery:?}"
    );
}

#[tokio::test]
async fn a_400_fails_at_once_without_retrying() {
    let reply = Reply::status(400).with_body("missing field: stage");
    let run = OneEvent::run("/strict", vec![reply], &[]).await.unwrap();
    assert_eq!(run.first.outcome, "failed");
    assert_eq!(run.first.response_status, Some(400));
    assert_eq!(
        run.first.response_body.as_deref(),
        Some("missing field: stage")
    );
    assert_eq!(run.delivery().await.status, "failed");
    assert_eq!(run.stage.retry_now(run.endpoint).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run.stage.receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_slow_receiver_is_recorded_as_a_timeout_and_retried() {
    let reply = Reply::status(200).with_delay(Duration::from_secs(4));
    let flags = ["--request-timeout", "1s", "--lease", "6s"];
    let run = OneEvent::run("/slow", vec![reply], &flags).await.unwrap();
    let attempt = &run.first;
    assert_eq!(attempt.outcome, "retry");
    assert_eq!(attempt.response_status, None);
    let error = attempt.error.as_deref().unwrap();
    assert!(error.contains("timeout"), "{error}");
    assert!(
        (950.0..3000.0).contains(&attempt.duration_ms),
        "{}",
        attempt.duration_ms
    );
    assert_eq!(run.delivery().await.status, "pending");
}

#[tokio::test]
async fn a_redirect_is_recorded_and_retried_but_never_followed() {
    let reply = Reply::status(302).with_header("Location", "/elsewhere");
    let run = OneEvent::run("/moved", vec![reply], &[]).await.unwrap();
    assert_eq!(run.first.response_status, Some(302));
    assert_eq!(run.first.outcome, "retry");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paths: Vec<String> = run
        .stage
        .receiver
        .requests()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(paths, ["/moved"]);
}
