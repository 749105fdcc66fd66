//! Tracked events get their deliveries after commit: the trigger logs the event with its
//! transaction's id, and webhooks.fan_out(), which every relay claim runs first, makes one
//! delivery per subscriber for the events of transactions that have ended since its last round.
//! These tests pin down who gets one, that none is made twice or missed whatever order
//! transactions commit in, and that a running relay takes a tracked write all the way to the
//! receiver.

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

/// A tracked stage with one endpoint subscribed to every application event.
async fn subscribed_stage() -> Stage {
    let stage = tracked_stage().await;
    stage.endpoint("/a", &["application.*"], "").await.unwrap();
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
        count(
            &stage,
            "SELECT count(*) FROM webhooks.events_awaiting_fan_out"
        )
        .await,
        1,
        "the commit left the event awaiting fan-out"
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
        count(
            &stage,
            "SELECT count(*) FROM webhooks.events_awaiting_fan_out"
        )
        .await,
        0
    );
    assert_eq!(count(&stage, awaiting).await, 0);
    let again: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(again, 0, "an event is fanned out once");

    let error = refusal(&stage, "SELECT webhooks.fan_out(0)").await;
    assert!(error.message().contains("max_events"), "{error:?}");
}

/// The error `sql` fails with, which must come with a hint.
async fn refusal(stage: &Stage, sql: &str) -> tokio_postgres::error::DbError {
    let error = stage.db.batch_execute(sql).await.unwrap_err();
    let error = error.as_db_error().unwrap().clone();
    assert!(error.hint().is_some(), "{error:?}");
    error
}

#[tokio::test]
async fn a_rolled_back_write_leaves_nothing_to_fan_out() {
    let stage = subscribed_stage().await;
    stage
        .db
        .batch_execute(&format!("BEGIN; {SUBMIT}; ROLLBACK;"))
        .await
        .unwrap();
    assert_eq!(
        count(
            &stage,
            "SELECT count(*) FROM webhooks.events_awaiting_fan_out"
        )
        .await,
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
async fn replay_leaves_events_awaiting_fan_out_to_it_so_none_is_delivered_twice() {
    let stage = tracked_stage().await;
    let (endpoint, _) = stage.endpoint("/a", &["application.*"], "").await.unwrap();
    stage.db.batch_execute(SUBMIT).await.unwrap();
    let replayed = replay_last_hour(&stage, endpoint).await;
    assert_eq!(
        replayed, 0,
        "the event still awaits fan-out, which will deliver it"
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
        count(
            &stage,
            "SELECT count(*) FROM webhooks.events_awaiting_fan_out"
        )
        .await,
        0
    );
}

/// Deliveries per event, in log order: "1:2 2:2" is two each for events 1 and 2.
async fn delivered_events(stage: &Stage) -> String {
    stage
        .scalar(
            "SELECT coalesce(string_agg(event_id || ':' || n, ' ' ORDER BY event_id), '')
               FROM (SELECT event_id, count(*) AS n FROM webhooks.deliveries GROUP BY 1) d",
        )
        .await
        .unwrap()
}

async fn fan_out(stage: &Stage, max_events: i32) -> i32 {
    fan_out_on(&stage.db, max_events).await
}

async fn fan_out_on(db: &tokio_postgres::Client, max_events: i32) -> i32 {
    let row = db
        .query_one("SELECT webhooks.fan_out($1)", &[&max_events])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn an_event_committed_after_later_ones_were_fanned_out_still_gets_its_delivery_once() {
    let stage = subscribed_stage().await;
    // The first event's transaction stays open while a later event commits, is fanned out,
    // and the log moves on past it.
    let slow = stage.cluster.connect("app").await.unwrap();
    slow.batch_execute(&format!("BEGIN; {SUBMIT}"))
        .await
        .unwrap();
    stage.db.batch_execute(SUBMIT).await.unwrap();
    assert_eq!(fan_out(&stage, 100).await, 1);
    for _ in 0..3 {
        stage.db.batch_execute(SUBMIT).await.unwrap();
        assert_eq!(fan_out(&stage, 100).await, 1);
    }
    let awaiting = "SELECT count(*) FROM webhooks.events_awaiting_fan_out";
    assert_eq!(
        count(&stage, awaiting).await,
        0,
        "the open write is not visible"
    );
    let floor = "SELECT floor FROM webhooks.fanout_position";
    assert_eq!(
        count(&stage, floor).await,
        0,
        "the log is read from the open write's event on"
    );
    slow.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&stage, awaiting).await, 1);
    assert_eq!(
        fan_out(&stage, 100).await,
        1,
        "the late commit's event, with the smallest id"
    );
    assert_eq!(fan_out(&stage, 100).await, 0);
    assert_eq!(delivered_events(&stage).await, "1:1 2:1 3:1 4:1 5:1");
    assert_eq!(
        count(&stage, floor).await,
        5,
        "and then from beyond the last event"
    );

    // With nothing to do, a round writes nothing (the relay runs one before every claim).
    stage.db.batch_execute("BEGIN").await.unwrap();
    assert_eq!(fan_out(&stage, 100).await, 0);
    let wrote: bool = stage
        .scalar("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        .await
        .unwrap();
    stage.db.batch_execute("COMMIT").await.unwrap();
    assert!(!wrote, "an idle round took a transaction id");
}

#[tokio::test]
async fn a_fan_out_inside_a_writing_transaction_leaves_that_transactions_events_to_the_next_round()
{
    let stage = subscribed_stage().await;
    stage
        .db
        .batch_execute(&format!(
            "BEGIN; {SUBMIT}; SELECT webhooks.fan_out(); {SUBMIT}; COMMIT;"
        ))
        .await
        .unwrap();
    assert_eq!(delivered_events(&stage).await, "");
    assert_eq!(fan_out(&stage, 100).await, 2);
    assert_eq!(fan_out(&stage, 100).await, 0);
    assert_eq!(delivered_events(&stage).await, "1:1 2:1");
}

#[tokio::test]
async fn a_round_stopped_at_max_events_resumes_where_it_stopped() {
    let stage = subscribed_stage().await;
    stage.endpoint("/b", &["application.*"], "").await.unwrap();
    for _ in 0..5 {
        stage.db.batch_execute(SUBMIT).await.unwrap();
    }
    assert_eq!(
        fan_out(&stage, 2).await,
        4,
        "two events, two subscribers each"
    );
    // Committed during the stopped round: left to the round after it.
    stage.db.batch_execute(SUBMIT).await.unwrap();
    assert_eq!(fan_out(&stage, 2).await, 4);
    assert_eq!(fan_out(&stage, 2).await, 2, "the round's last event");
    assert_eq!(fan_out(&stage, 2).await, 2, "the event committed meanwhile");
    assert_eq!(fan_out(&stage, 2).await, 0);
    assert_eq!(delivered_events(&stage).await, "1:2 2:2 3:2 4:2 5:2 6:2");
}

#[tokio::test]
async fn fan_out_refuses_isolation_levels_that_would_read_a_stale_position() {
    let stage = tracked_stage().await;
    let sql = "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT webhooks.fan_out();";
    let error = refusal(&stage, sql).await;
    assert!(error.message().contains("READ COMMITTED"), "{error:?}");
}

#[tokio::test]
async fn a_second_caller_skips_a_round_in_progress_instead_of_waiting_or_doubling_it() {
    let stage = subscribed_stage().await;
    stage.db.batch_execute(SUBMIT).await.unwrap();
    let first = stage.cluster.connect("app").await.unwrap();
    first.batch_execute("BEGIN").await.unwrap();
    assert_eq!(fan_out_on(&first, 100).await, 1);
    stage.db.batch_execute(SUBMIT).await.unwrap();
    assert_eq!(
        fan_out(&stage, 100).await,
        0,
        "the round in progress holds the fan-out"
    );
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        fan_out(&stage, 100).await,
        1,
        "the event committed meanwhile"
    );
    assert_eq!(delivered_events(&stage).await, "1:1 2:1");
}

#[tokio::test]
async fn with_a_cached_sequence_rounds_stay_exact_and_the_floor_stays_put() {
    let stage = subscribed_stage().await;
    stage
        .db
        .batch_execute("ALTER SEQUENCE webhooks.events_id_seq CACHE 20")
        .await
        .unwrap();
    let other = stage.cluster.connect("app").await.unwrap();
    for _ in 0..3 {
        stage.db.batch_execute(SUBMIT).await.unwrap();
        other.batch_execute(SUBMIT).await.unwrap();
        assert_eq!(fan_out(&stage, 100).await, 2);
    }
    assert_eq!(fan_out(&stage, 100).await, 0);
    // Each session draws from its own cached range: ids 1-3 and 21-23. The sequence has given
    // out 40, yet this session's next event is 4: a floor taken from the sequence would skip it.
    stage.db.batch_execute(SUBMIT).await.unwrap();
    assert_eq!(fan_out(&stage, 100).await, 1);
    assert_eq!(
        delivered_events(&stage).await,
        "1:1 2:1 3:1 4:1 21:1 22:1 23:1"
    );
    let floor = "SELECT floor FROM webhooks.fanout_position";
    assert_eq!(count(&stage, floor).await, 0);
}
