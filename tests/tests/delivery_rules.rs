//! The delivery rules exactly as Kit and Kula state them, whenever fan-out runs and however a
//! receiver fails: pause and subscriptions are decided at the event, auto-disable counts
//! deliveries that failed for good, only 429 among the 4xx is retried, the Outreach add-on's
//! switch stops its deliveries, and a URL needs a host.

use e2e::receiver::Reply;
use e2e::stage::{OneEvent, Stage};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const SUBMIT: &str = "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
                      VALUES (7, 3, now())";

async fn tracked_stage() -> (Stage, i64) {
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    stage.db.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    let (endpoint, _) = stage.endpoint("/a", &["application.*"], "").await.unwrap();
    (stage, endpoint)
}

async fn call(stage: &Stage, sql: &str) {
    stage.db.batch_execute(sql).await.unwrap();
}

async fn deliveries(stage: &Stage) -> i64 {
    stage
        .scalar("SELECT count(*) FROM webhooks.deliveries")
        .await
        .unwrap()
}

async fn deliveries_to(stage: &Stage, endpoint: i64) -> i64 {
    stage
        .scalar(&format!(
            "SELECT count(*) FROM webhooks.deliveries WHERE endpoint_id = {endpoint}"
        ))
        .await
        .unwrap()
}

/// Replace the endpoint's subscription with one category.
async fn subscribe(stage: &Stage, endpoint: i64, category: &str) {
    call(
        stage,
        &format!("SELECT webhooks.update_endpoint({endpoint}, '{{\"events\": [\"{category}\"]}}')"),
    )
    .await;
}

#[tokio::test]
async fn with_fan_out_run_by_hand_an_endpoints_state_at_the_event_decides() {
    let (stage, id) = tracked_stage().await;
    // Fired while paused, fanned out after resume: not delivered.
    call(&stage, &format!("SELECT webhooks.pause_endpoint({id})")).await;
    call(&stage, SUBMIT).await;
    call(&stage, &format!("SELECT webhooks.resume_endpoint({id})")).await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    assert_eq!(
        deliveries(&stage).await,
        0,
        "an event fired while paused was queued"
    );

    // Fired while active, fanned out while paused: delivered once resumed.
    call(&stage, SUBMIT).await;
    call(&stage, &format!("SELECT webhooks.pause_endpoint({id})")).await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    call(&stage, &format!("SELECT webhooks.resume_endpoint({id})")).await;
    assert_eq!(
        deliveries(&stage).await,
        1,
        "an event fired while active was lost"
    );

    // Subscriptions: a type taken at the event counts, not one taken later.
    subscribe(&stage, id, "offer.*").await;
    call(&stage, SUBMIT).await;
    subscribe(&stage, id, "application.*").await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    assert_eq!(deliveries(&stage).await, 1, "unsubscribed at the event");
    call(&stage, SUBMIT).await;
    subscribe(&stage, id, "offer.*").await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    assert_eq!(deliveries(&stage).await, 2, "subscribed at the event");

    // A new endpoint gets no earlier event; a deleted one none at all.
    call(&stage, SUBMIT).await;
    let (late, _) = stage
        .endpoint("/late", &["application.*"], "")
        .await
        .unwrap();
    call(&stage, "SELECT webhooks.fan_out()").await;
    assert_eq!(
        deliveries_to(&stage, late).await,
        0,
        "created after the event"
    );
    call(&stage, SUBMIT).await;
    call(&stage, &format!("SELECT webhooks.delete_endpoint({late})")).await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    assert_eq!(
        deliveries_to(&stage, late).await,
        0,
        "deleted before fan-out"
    );
}

#[tokio::test]
async fn under_a_live_relay_an_endpoints_state_at_the_event_decides() {
    let (stage, id) = tracked_stage().await;
    let _relay = stage.relay(&[]).await.unwrap();
    let writer = stage.cluster.connect("app").await.unwrap();

    // An event whose transaction began while the endpoint was active, committed (and so fanned
    // out by the relay) while it is paused: delivered after resume.
    writer.batch_execute("BEGIN").await.unwrap();
    writer.batch_execute(SUBMIT).await.unwrap();
    call(&stage, &format!("SELECT webhooks.pause_endpoint({id})")).await;
    writer.batch_execute("COMMIT").await.unwrap();
    e2e::eventually(WAIT, "the event fanned out", || async {
        (stage
            .scalar::<i64>("SELECT count(*) FROM webhooks.events_awaiting_fan_out")
            .await
            .ok()?
            == 0)
            .then_some(())
    })
    .await;
    assert!(stage.receiver.requests().is_empty(), "sent while paused");
    call(&stage, &format!("SELECT webhooks.resume_endpoint({id})")).await;
    stage.receiver.wait_for(1, WAIT).await;

    // An event whose transaction began while the endpoint was paused, committed after resume:
    // never delivered.
    call(&stage, &format!("SELECT webhooks.pause_endpoint({id})")).await;
    writer.batch_execute("BEGIN").await.unwrap();
    writer.batch_execute(SUBMIT).await.unwrap();
    call(&stage, &format!("SELECT webhooks.resume_endpoint({id})")).await;
    writer.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stage.receiver.request_count(),
        1,
        "an event fired while paused went out"
    );
    assert_eq!(deliveries(&stage).await, 1);
}

#[tokio::test]
async fn a_receiver_failing_for_a_while_is_retried_not_disabled() {
    // A burst of 40 deliveries into a receiver that answers 503 (restarting): every one is a
    // retry, none has failed, and the endpoint stays active.
    let stage = Stage::new().await.unwrap();
    let (id, _) = stage
        .endpoint("/restarting", &["review.*"], "")
        .await
        .unwrap();
    stage.receiver.answer_by_default(Reply::status(503));
    let _relay = stage.relay(&[]).await.unwrap();
    stage.emit_many("review.submitted", 40).await.unwrap();
    stage.receiver.wait_for(40, WAIT).await;
    e2e::eventually(WAIT, "40 retries recorded", || async {
        (stage
            .scalar::<i64>("SELECT count(*) FROM webhooks.attempts WHERE outcome = 'retry'")
            .await
            .ok()?
            == 40)
            .then_some(())
    })
    .await;
    let (status, failed): (String, i64) = {
        let row = stage
            .db
            .query_one(
                "SELECT status, failed_deliveries_in_window FROM webhooks.endpoint_status WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), failed), ("active", 0));
}

#[tokio::test]
async fn a_408_fails_the_delivery_and_is_not_retried() {
    let run = OneEvent::run("/slow", vec![Reply::status(408)], &[])
        .await
        .unwrap();
    assert_eq!(run.first.outcome, "failed");
    assert_eq!(run.delivery().await.status, "failed");
}

#[tokio::test]
async fn switching_the_outreach_add_on_off_stops_outreach_deliveries() {
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    call(
        &stage,
        "SELECT webhooks.set_setting('outreach_addon', 'true')",
    )
    .await;
    let (id, _) = stage
        .endpoint("/outreach", &["outreach.*"], "")
        .await
        .unwrap();
    call(
        &stage,
        "INSERT INTO ats.outreach_campaigns (id, name) VALUES ('oc_1', 'Spring');
         INSERT INTO ats.outreach_prospects (id, campaign_id, company_name, display_name, status)
         VALUES ('op_1', 'oc_1', 'Acme', 'Ada', 'drafted')",
    )
    .await;
    call(&stage, "SELECT webhooks.fan_out()").await;
    // Queued while on, not yet sent (no relay): the switch cancels it, saying why.
    call(
        &stage,
        "SELECT webhooks.set_setting('outreach_addon', 'false')",
    )
    .await;
    let queued: String = stage
        .scalar(&format!(
            "SELECT status || ': ' || last_error FROM webhooks.deliveries WHERE endpoint_id = {id}"
        ))
        .await
        .unwrap();
    assert_eq!(
        queued,
        "failed: not sent: the outreach add-on was turned off"
    );
    // Fired while off: never queued, even though the endpoint still lists outreach.*.
    call(
        &stage,
        "INSERT INTO ats.outreach_prospects (id, campaign_id, company_name, display_name, status)
         VALUES ('op_2', 'oc_1', 'Beta', 'Bo', 'drafted')",
    )
    .await;
    let _relay = stage.relay(&[]).await.unwrap();
    call(&stage, "SELECT webhooks.fan_out()").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(stage.receiver.requests().is_empty());
    assert_eq!(deliveries(&stage).await, 1);
    let refused = stage
        .db
        .execute("SELECT webhooks.emit('outreach.message.sent', '{}')", &[])
        .await
        .unwrap_err();
    let refused = refused.as_db_error().expect("refused by the database");
    assert!(refused.message().contains("add-on"), "{refused:?}");
    // Switched on again: new events are taken from then on.
    call(
        &stage,
        "SELECT webhooks.set_setting('outreach_addon', 'true')",
    )
    .await;
    call(
        &stage,
        "INSERT INTO ats.outreach_prospects (id, campaign_id, company_name, display_name, status)
         VALUES ('op_3', 'oc_1', 'Gamma', 'Gil', 'drafted')",
    )
    .await;
    let request = stage.receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(e2e::stage::body_json(&request)["data"]["id"], json!("op_3"));
}

#[tokio::test]
async fn a_url_without_a_host_is_refused() {
    let stage = Stage::new().await.unwrap();
    for url in ["https:///nohost", "https:nohost", "https:/nohost"] {
        let refused = stage
            .db
            .execute(
                "SELECT webhooks.create_endpoint($1, ARRAY['offer.accepted'])",
                &[&url],
            )
            .await
            .unwrap_err();
        let db_error = refused.as_db_error().expect("refused by the database");
        assert_eq!(db_error.code().code(), "22023", "{url}");
        assert!(
            db_error.message().contains("has no host"),
            "{url}: {db_error:?}"
        );
    }
}

#[tokio::test]
async fn at_debug_the_relay_logs_its_attempts_and_not_the_database_drivers_statements() {
    // The harness runs every relay with WEBHOOK_RELAY_LOG=debug.
    let run = OneEvent::run("/logged", vec![], &[]).await.unwrap();
    let logs = run.relay.logs();
    let attempts = logs
        .lines()
        .filter(|line| line.contains("DEBUG attempt delivery_id="))
        .count();
    assert_eq!(attempts, 1, "{logs}");
    for driver_line in [
        "executing statement",
        "preparing query",
        "DEBUG tokio_postgres",
    ] {
        assert!(!logs.contains(driver_line), "{driver_line:?} in\n{logs}");
    }
}
