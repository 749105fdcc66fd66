//! Tracked events get their deliveries after commit: the trigger queues the event
//! (webhooks.fanout_queue) and webhooks.fan_out(), which every relay claim runs first, makes one
//! delivery per subscriber. These tests pin down who gets one, that none is made twice, and that
//! a running relay takes a tracked write all the way to the receiver.

use e2e::ats::PEOPLE;
use e2e::stage::{body_json, signature_is_valid, Stage};
use std::time::Duration;

const SUBMIT: &str = "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
                      VALUES (7, 3, now())";

async fn tracked_stage() -> Stage {
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    stage.db.batch_execute(PEOPLE).await.unwrap();
    stage
}

async fn count(stage: &Stage, sql: &str) -> i64 {
    stage.scalar(sql).await.unwrap()
}

#[tokio::test]
async fn fan_out_makes_one_delivery_per_subscriber_that_was_active_when_the_event_was_logged() {
    let stage = tracked_stage().await;
    let (active, _) = stage.endpoint("/a", &["application.*"], "").await.unwrap();
    let (paused, _) = stage.endpoint("/p", &["application.*"], "").await.unwrap();
    stage.endpoint("/o", &["offer.*"], "").await.unwrap();
    stage
        .db
        .execute("SELECT webhooks.pause_endpoint($1)", &[&paused])
        .await
        .unwrap();

    stage.db.batch_execute(SUBMIT).await.unwrap();
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.events").await,
        1
    );
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.fanout_queue").await,
        1,
        "the commit queued the event"
    );
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.deliveries").await,
        0,
        "no delivery before the fan-out"
    );
    let awaiting = "SELECT awaiting_fan_out FROM webhooks.queue_stats()";
    assert_eq!(count(&stage, awaiting).await, 1, "the relay's /metrics");
    // An endpoint created after the event was logged does not receive it.
    stage
        .endpoint("/late", &["application.*"], "")
        .await
        .unwrap();

    let made: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(made, 1, "only the active subscriber that existed gets one");
    let owner: i64 = stage
        .scalar("SELECT endpoint_id FROM webhooks.deliveries")
        .await
        .unwrap();
    assert_eq!(owner, active);
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.fanout_queue").await,
        0
    );
    assert_eq!(count(&stage, awaiting).await, 0);
    let again: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(again, 0, "a queued event is fanned out once");

    let refused = stage
        .db
        .batch_execute("SELECT webhooks.fan_out(0)")
        .await
        .unwrap_err();
    let error = refused.as_db_error().unwrap();
    assert!(error.message().contains("max_events"), "{error:?}");
    assert!(error.hint().is_some());
}

#[tokio::test]
async fn a_rolled_back_write_queues_nothing() {
    let stage = tracked_stage().await;
    stage.endpoint("/a", &["application.*"], "").await.unwrap();
    stage
        .db
        .batch_execute(&format!("BEGIN; {SUBMIT}; ROLLBACK;"))
        .await
        .unwrap();
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.fanout_queue").await,
        0
    );
    let made: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(made, 0);
}

async fn replay_last_hour(stage: &Stage, endpoint: i64) -> i32 {
    stage
        .db
        .query_one(
            "SELECT webhooks.replay($1, now() - interval '1 hour')",
            &[&endpoint],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn replay_leaves_queued_events_to_the_fan_out_so_none_is_delivered_twice() {
    let stage = tracked_stage().await;
    let (endpoint, _) = stage.endpoint("/a", &["application.*"], "").await.unwrap();
    stage.db.batch_execute(SUBMIT).await.unwrap();
    let replayed = replay_last_hour(&stage, endpoint).await;
    assert_eq!(
        replayed, 0,
        "the event is still queued: fan_out will deliver it"
    );
    let made: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(made, 1);
    let replayed = replay_last_hour(&stage, endpoint).await;
    assert_eq!(replayed, 1, "once fanned out, replay restarts its delivery");
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.deliveries").await,
        1
    );
}

#[tokio::test]
async fn a_running_relay_delivers_a_tracked_write_signed_with_its_payload() {
    let stage = tracked_stage().await;
    let (_, secret) = stage.endpoint("/a", &["application.*"], "").await.unwrap();
    let _relay = stage.relay(&[]).await.unwrap();
    stage.db.batch_execute(SUBMIT).await.unwrap();

    let request = stage
        .receiver
        .wait_for(1, Duration::from_secs(20))
        .await
        .remove(0);
    assert!(signature_is_valid(&secret, &request));
    let body = body_json(&request);
    assert_eq!(body["event"], "application.submitted");
    assert_eq!(body["data"]["candidate"]["name"], "Jane Smith");
    assert_eq!(body["data"]["job_posting"]["title"], "Senior Engineer");
    assert_eq!(
        count(&stage, "SELECT count(*) FROM webhooks.fanout_queue").await,
        0
    );
}
