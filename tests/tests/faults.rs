//! Crash safety under load: relays killed with SIGKILL again and again while events keep
//! coming (from `emit` and from tracked writes, whose deliveries the relays' claims make), and
//! PostgreSQL restarted in the middle of a drain. Every event must reach the
//! receiver; duplicates are allowed (at-least-once) but bounded by what was in flight.

use e2e::receiver::Reply;
use e2e::stage::Stage;
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// (events received at least once, requests in all) by X-Webhook-Id.
fn received(stage: &Stage) -> (usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in stage.receiver.requests() {
        *seen
            .entry(request.header("x-webhook-id").unwrap_or("?").to_string())
            .or_default() += 1;
    }
    (seen.len(), seen.values().sum())
}

/// Deliveries not finished, and tracked events whose deliveries are not made yet.
async fn pending(stage: &Stage) -> i64 {
    stage
        .scalar(
            "SELECT (SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending')
                  + (SELECT count(*) FROM webhooks.events_awaiting_fan_out)",
        )
        .await
        .unwrap_or(-1)
}

#[tokio::test]
async fn relays_killed_mid_batch_lose_nothing_while_events_keep_coming() {
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    stage.db.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    stage
        .endpoint("/load", &["application.*"], "")
        .await
        .unwrap();
    // Replies take a little while, so that every kill lands with requests in flight.
    stage
        .receiver
        .answer_by_default(Reply::status(200).with_delay(Duration::from_millis(10)));
    let concurrency = 32;
    let flags = [
        "--concurrency",
        "32",
        "--request-timeout",
        "1s",
        "--lease",
        "6s",
    ];

    let emitter = {
        let db = stage.cluster.connect("app").await.unwrap();
        tokio::spawn(async move {
            // Half the batches through emit (deliveries made in the transaction), half as
            // tracked writes (deliveries made by a relay's claim, which may be the one killed).
            for batch in 0..40 {
                db.batch_execute(if batch % 2 == 0 {
                    "SELECT webhooks.emit('application.submitted', jsonb_build_object('id', g))
                       FROM generate_series(1, 20) g"
                } else {
                    "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
                     SELECT 7, 3, now() FROM generate_series(1, 20)"
                })
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let kills = 4;
    for _ in 0..kills {
        let mut relay = stage.relay(&flags).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        relay.kill();
    }
    emitter.await.unwrap();
    let _survivor = stage.relay(&flags).await.unwrap();
    e2e::eventually(WAIT, "every delivery to finish", || async {
        (pending(&stage).await == 0).then_some(())
    })
    .await;

    let events: i64 = stage
        .scalar("SELECT count(*) FROM webhooks.events")
        .await
        .unwrap();
    let (distinct, requests) = received(&stage);
    let duplicates = requests - distinct;
    println!(
        "{kills} kills: {events} events, {distinct} received, {requests} requests, {duplicates} duplicates"
    );
    assert_eq!(events, 800);
    assert_eq!(distinct as i64, events, "an event was lost");
    assert!(
        duplicates <= kills * concurrency,
        "{duplicates} duplicates for {kills} kills of a relay holding at most {concurrency}"
    );
}

#[tokio::test]
async fn a_postgres_restart_mid_drain_loses_nothing() {
    let stage = Stage::new().await.unwrap();
    stage.endpoint("/drain", &["offer.*"], "").await.unwrap();
    stage
        .receiver
        .answer_by_default(Reply::status(200).with_delay(Duration::from_millis(2)));
    stage.emit_many("offer.accepted", 2000).await.unwrap();
    let relay = stage
        .relay(&[
            "--concurrency",
            "64",
            "--max-reconnect-delay",
            "500ms",
            // Deliveries leased before the restart come back when their lease runs out.
            "--lease",
            "6s",
            "--request-timeout",
            "1s",
        ])
        .await
        .unwrap();
    stage.receiver.wait_for(300, WAIT).await;
    stage.cluster.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stage.cluster.pg_ctl_start().unwrap();

    let db = stage.cluster.connect("app").await.unwrap();
    e2e::eventually(WAIT, "the drain to finish after the restart", || async {
        let left: i64 = db
            .query_one(
                "SELECT count(*) FROM webhooks.deliveries WHERE status = 'pending'",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (left == 0).then_some(())
    })
    .await;
    let (distinct, requests) = received(&stage);
    println!(
        "restart mid-drain: 2000 events, {distinct} received, {requests} requests, {} duplicates",
        requests - distinct
    );
    assert_eq!(distinct, 2000, "an event was lost");
    relay.wait_healthy(WAIT).await.unwrap();
}
