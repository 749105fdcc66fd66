//! Rules that act on the endpoint rather than one delivery: 410 Gone and too many failures
//! disable it, pause holds its queue, a test ping arrives, and its rate limit holds.

use e2e::receiver::Reply;
use e2e::stage::{body_json, signature_is_valid, OneEvent, Stage};
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

async fn endpoint_state(stage: &Stage, endpoint: i64) -> (String, Option<String>, i64) {
    let row = stage
        .db
        .query_one(
            "SELECT status, disabled_reason, failed_deliveries_in_window
               FROM webhooks.endpoint_status WHERE id = $1",
            &[&endpoint],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_410_gone_disables_the_endpoint_and_says_why() {
    let run = OneEvent::run("/gone", vec![Reply::status(410)], &[])
        .await
        .unwrap();
    assert_eq!(run.first.outcome, "failed");
    let (status, reason, _) = endpoint_state(&run.stage, run.endpoint).await;
    assert_eq!(status, "disabled");
    assert!(reason.unwrap().contains("410 Gone"));
    let history: String = run
        .stage
        .scalar("SELECT string_agg(action, ',' ORDER BY id) FROM webhooks.endpoint_history")
        .await
        .unwrap();
    assert_eq!(history, "created,disabled");

    // Nothing more is queued or sent.
    run.stage
        .emit("review.submitted", json!({"id": 2}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(run.stage.receiver.requests().len(), 1);
}

#[tokio::test]
async fn twenty_five_failed_deliveries_disable_the_endpoint_and_resume_resets_the_count() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/broken", &["review.*"], "").await.unwrap();
    // A 400 is not retried: each delivery fails for good at its first attempt.
    stage.receiver.script((0..25).map(|_| Reply::status(400)));
    let _relay = stage.relay(&[]).await.unwrap();

    for id in 0..24 {
        stage
            .emit("review.submitted", json!({ "id": id }))
            .await
            .unwrap();
    }
    e2e::eventually(WAIT, "24 failed deliveries", || async {
        let (_, _, failed) = endpoint_state(&stage, endpoint).await;
        (failed == 24).then_some(())
    })
    .await;
    assert_eq!(endpoint_state(&stage, endpoint).await.0, "active");

    stage
        .emit("review.submitted", json!({"id": 24}))
        .await
        .unwrap();
    let (status, reason, failed) = e2e::eventually(WAIT, "the endpoint disabled", || async {
        let state = endpoint_state(&stage, endpoint).await;
        (state.0 == "disabled").then_some(state)
    })
    .await;
    assert_eq!(failed, 25);
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("25 deliveries failed within 24:00:00"),
        "{reason}"
    );

    stage
        .db
        .execute("SELECT webhooks.resume_endpoint($1)", &[&endpoint])
        .await
        .unwrap();
    let (status_after, _, failed_after) = endpoint_state(&stage, endpoint).await;
    assert_eq!((status_after.as_str(), failed_after), ("active", 0));
    assert_eq!(status, "disabled");

    // The receiver is fixed (it answers 200 from now on): the failed deliveries are replayed.
    let replayed: i32 = stage
        .scalar(&format!(
            "SELECT webhooks.replay({endpoint}, now() - interval '1 hour')"
        ))
        .await
        .unwrap();
    assert_eq!(replayed, 25);
    stage.receiver.wait_for(50, WAIT).await;
    e2e::eventually(WAIT, "all 25 deliveries succeeded", || async {
        let done: i64 = stage
            .scalar("SELECT count(*) FROM webhooks.deliveries WHERE status = 'succeeded'")
            .await
            .ok()?;
        (done == 25).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_paused_endpoint_receives_nothing_and_gets_its_held_deliveries_after_resume() {
    let mut stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage
        .endpoint("/paused", &["interview.*"], "")
        .await
        .unwrap();
    let _relay = stage.relay(&[]).await.unwrap();

    // Queued, then paused before the relay could see them (one transaction).
    let mut held = Vec::new();
    let tx = stage.db.transaction().await.unwrap();
    for id in 1..=3 {
        let row = tx
            .query_one(
                "SELECT webhooks.emit('interview.scheduled', jsonb_build_object('id', $1::int))",
                &[&id],
            )
            .await
            .unwrap();
        held.push(row.get::<_, i64>(0));
    }
    tx.execute("SELECT webhooks.pause_endpoint($1)", &[&endpoint])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let status: String = stage
        .scalar("SELECT status FROM webhooks.endpoints")
        .await
        .unwrap();
    assert_eq!(status, "paused");
    // Fired while paused: not queued at all (Kit's rule).
    stage
        .emit("interview.cancelled", json!({"id": 99}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(stage.receiver.requests().is_empty());

    stage
        .db
        .execute("SELECT webhooks.resume_endpoint($1)", &[&endpoint])
        .await
        .unwrap();
    stage.receiver.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids: Vec<i64> = stage
        .receiver
        .requests()
        .iter()
        .map(|r| r.header("x-webhook-id").unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, held);
}

#[tokio::test]
async fn a_test_ping_arrives_signed_with_empty_data_and_the_configured_user_agent() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, secret) = stage.endpoint("/ping", &["offer.*"], "").await.unwrap();
    let _relay = stage
        .relay(&["--user-agent", "Acme-Hooks/2.0"])
        .await
        .unwrap();
    let event_id: i64 = stage
        .scalar(&format!("SELECT webhooks.send_test_ping({endpoint})"))
        .await
        .unwrap();
    let request = stage.receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(request.header("x-webhook-event"), Some("test.ping"));
    assert_eq!(request.header("user-agent"), Some("Acme-Hooks/2.0"));
    assert_eq!(
        request.header("x-webhook-id"),
        Some(event_id.to_string().as_str())
    );
    assert!(signature_is_valid(&secret, &request));
    let body = body_json(&request);
    assert_eq!(body["event"], "test.ping");
    assert_eq!(body["data"], json!({}));
}

/// Requests that arrived within any window shorter than a second, at most.
fn busiest_second(arrivals: &[Instant]) -> usize {
    // 200 ms short of a second: a request that had to open a fresh TLS connection, or ran on
    // a loaded machine, arrives late, which makes the next gap look short at the receiver. At
    // 5 per second, sends 200 ms apart put at most 4 arrivals in such a window, so one late
    // arrival of up to 200 ms still passes, and an unlimited relay's 15 at once do not.
    let window = Duration::from_millis(800);
    arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|t| **t >= *start && **t < *start + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rate_limited_endpoint_never_exceeds_its_rate_and_does_not_hold_up_others() {
    let stage = Stage::new().await.unwrap();
    let (limited, _) = stage
        .endpoint("/limited", &["job_posting.*"], "rate_limit => 5")
        .await
        .unwrap();
    let (_free, _) = stage
        .endpoint("/free", &["job_posting.*"], "")
        .await
        .unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    stage.emit_many("job_posting.published", 15).await.unwrap();

    let started = Instant::now();
    stage.receiver.wait_for(30, WAIT).await;
    let requests = stage.receiver.requests();
    let at = |path: &str| -> Vec<Instant> {
        requests
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.at)
            .collect()
    };
    let (limited_at, free_at) = (at("/limited"), at("/free"));
    assert_eq!((limited_at.len(), free_at.len()), (15, 15));
    assert!(
        busiest_second(&limited_at) <= 5,
        "{} requests within one second",
        busiest_second(&limited_at)
    );
    let span = *limited_at.iter().max().unwrap() - *limited_at.iter().min().unwrap();
    assert!(
        span >= Duration::from_millis(2500),
        "15 requests at 5/s took {span:?}"
    );
    let free_done = *free_at.iter().max().unwrap() - started;
    assert!(
        free_done < Duration::from_secs(2),
        "the unlimited endpoint waited {free_done:?}"
    );
    // Waiting for the limiter is not a failed attempt: one successful attempt each.
    let first_time_successes = format!(
        "SELECT count(*) FROM webhooks.attempts
          WHERE endpoint_id = {limited} AND outcome = 'succeeded' AND attempt_number = 1"
    );
    e2e::eventually(WAIT, "15 successful first attempts", || async {
        let n: i64 = stage.scalar(&first_time_successes).await.ok()?;
        (n == 15).then_some(())
    })
    .await;
    let all: i64 = stage
        .scalar(&format!(
            "SELECT count(*) FROM webhooks.attempts WHERE endpoint_id = {limited}"
        ))
        .await
        .unwrap();
    assert_eq!(all, 15);
}

/// A recorder's batch holds its delivery rows until it commits. Disabling the endpoint (as two
/// relays may do at once) must not wait for that, or two recorders could deadlock; deleting it
/// must, and then take the batch's attempts with it, so that no attempt outlives its endpoint.
#[tokio::test]
async fn a_recorders_batch_lets_disable_through_and_holds_delete_back() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/locks", &["offer.*"], "").await.unwrap();
    stage
        .emit("offer.accepted", json!({"id": 1}))
        .await
        .unwrap();
    let recorder = stage.cluster.connect("app").await.unwrap();
    recorder.batch_execute("BEGIN").await.unwrap();
    let succeeded: i32 = recorder
        .query_one(
            "SELECT (webhooks.record_attempts('test', jsonb_agg(jsonb_build_object(
                        'delivery_id', c.delivery_id, 'attempt_number', c.attempt_number,
                        'started_at', now(), 'duration_ms', 5, 'response_status', 200)))).succeeded
               FROM webhooks.claim_deliveries('test', 10, interval '1 minute') c",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(succeeded, 1);
    let admin = stage.cluster.connect("app").await.unwrap();
    admin
        .batch_execute("SET lock_timeout = '2s'")
        .await
        .unwrap();

    admin
        .execute(
            "SELECT webhooks.disable_endpoint($1, 'failing')",
            &[&endpoint],
        )
        .await
        .expect("disable does not wait for the recorder");
    let blocked = admin
        .execute("SELECT webhooks.delete_endpoint($1)", &[&endpoint])
        .await
        .expect_err("delete waits for the recorder");
    assert_eq!(
        blocked.code(),
        Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "unexpected error: {blocked:?}"
    );

    // A delete that is already waiting when the batch commits must take its attempt too.
    admin.batch_execute("RESET lock_timeout").await.unwrap();
    let deleting = tokio::spawn(async move {
        admin
            .execute("SELECT webhooks.delete_endpoint($1)", &[&endpoint])
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!deleting.is_finished(), "delete waits for the recorder");
    recorder.batch_execute("COMMIT").await.unwrap();
    deleting.await.unwrap().unwrap();
    let left: i64 = stage
        .scalar(&format!(
            "SELECT (SELECT count(*) FROM webhooks.attempts WHERE endpoint_id = {endpoint})
                  + (SELECT count(*) FROM webhooks.deliveries WHERE endpoint_id = {endpoint})"
        ))
        .await
        .unwrap();
    assert_eq!(left, 0, "attempts and deliveries go with the endpoint");
}
