//! Retention (extension/sql/retention.sql): `webhooks.maintain()` makes partitions ahead,
//! opens the event log's periods and drops whole partitions past their retention, and nothing
//! pending is lost; the relay runs it on a timer. Age is made by moving recorded times back.

use e2e::stage::{body_json, Stage};
use e2e::texts as lines;
use std::time::Duration;

/// What one call of `webhooks.maintain()` did, as "action object" lines.
async fn maintain(db: &tokio_postgres::Client) -> Vec<String> {
    lines(
        db,
        "SELECT action || ' ' || object FROM webhooks.maintain()",
    )
    .await
}

/// Where each event is, "partition:period", in id order.
async fn event_partitions(db: &tokio_postgres::Client) -> Vec<String> {
    lines(
        db,
        "SELECT tableoid::regclass::text || ':' || (id >> 32) FROM webhooks.events ORDER BY id",
    )
    .await
}

#[tokio::test]
async fn old_periods_go_whole_and_pending_deliveries_keep_their_events_and_arrive() {
    let stage = Stage::new().await.unwrap();
    let db = &stage.db;
    e2e::ats::load_and_track(db).await.unwrap();
    db.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    stage
        .endpoint("/kept", &["application.submitted", "offer.accepted"], "")
        .await
        .unwrap();

    let first = maintain(db).await;
    assert!(
        first.contains(&"created webhooks.events_1".to_string()),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .filter(|l| l.starts_with("created webhooks.attempts_"))
            .count()
            >= 3,
        "attempts partitioned from today on: {first:?}"
    );
    assert_eq!(
        maintain(db).await,
        Vec::<String>::new(),
        "a second call has nothing to do"
    );

    // In the first period: an emitted event (its delivery pending: no relay runs) and a tracked
    // one (awaiting fan-out), written on this connection, whose tracking has routed to events_0.
    stage
        .emit("offer.accepted", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    db.batch_execute("INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES (1, 7, 3, now())")
        .await
        .unwrap();
    // A day later the next period opens, into the partition made ahead, and a tracked write
    // on the same connection goes there.
    db.batch_execute(
        "UPDATE webhooks.event_log_periods SET opened_at = now() - interval '40 days'",
    )
    .await
    .unwrap();
    let opened = maintain(db).await;
    assert!(
        opened.contains(&"opened webhooks.events_1".to_string()),
        "{opened:?}"
    );
    assert!(
        opened.contains(&"created webhooks.events_2".to_string()),
        "{opened:?}"
    );
    db.batch_execute("INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES (2, 7, 3, now())")
        .await
        .unwrap();
    assert_eq!(
        event_partitions(db).await,
        [
            "webhooks.events_0:0",
            "webhooks.events_0:0",
            "webhooks.events_1:1"
        ]
    );

    // 35 days on, the first period is past retention: it goes whole, but for the events the
    // pending delivery and fan-out still need, which move to events_kept.
    db.batch_execute(
        "UPDATE webhooks.event_log_periods SET opened_at = now() - interval '35 days' WHERE first_id > 0",
    )
    .await
    .unwrap();
    let dropped = maintain(db).await;
    assert!(
        dropped.contains(&"kept 2 events of webhooks.events_0 in webhooks.events_kept".to_string())
            && dropped.contains(&"dropped webhooks.events_0".to_string()),
        "{dropped:?}"
    );
    assert_eq!(
        event_partitions(db).await,
        [
            "webhooks.events_kept:0",
            "webhooks.events_kept:0",
            "webhooks.events_1:1"
        ]
    );
    // Replay reaches back as far as what is kept, and says so.
    let refused = db
        .query_one("SELECT webhooks.replay(1, now() - interval '90 days')", &[])
        .await
        .unwrap_err();
    let refused = refused.as_db_error().unwrap();
    assert!(
        refused
            .message()
            .starts_with("the event log no longer holds events from before "),
        "{refused:?}"
    );
    assert!(
        refused.hint().unwrap().contains("event_retention"),
        "{refused:?}"
    );

    // Everything pending arrives, the events from events_kept included.
    let _relay = stage.relay(&[]).await.unwrap();
    let received = stage.receiver.wait_for(3, Duration::from_secs(20)).await;
    let mut got: Vec<String> = received
        .iter()
        .map(|r| {
            let body = body_json(r);
            format!(
                "{} {}",
                body["event"].as_str().unwrap(),
                body["data"]["id"]
                    .as_i64()
                    .or(body["data"]["n"].as_i64())
                    .unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "application.submitted 1",
            "application.submitted 2",
            "offer.accepted 1"
        ]
    );
}

#[tokio::test]
async fn once_a_new_period_opens_a_quiet_log_is_not_read_by_claims() {
    let stage = Stage::new().await.unwrap();
    let db = &stage.db;
    maintain(db).await;
    stage
        .emit("offer.accepted", serde_json::json!({}))
        .await
        .unwrap();
    db.batch_execute("UPDATE webhooks.event_log_periods SET opened_at = now() - interval '2 days'")
        .await
        .unwrap();
    assert!(maintain(db)
        .await
        .contains(&"opened webhooks.events_1".to_string()));
    // Rounds of fan-out (every claim runs one) bring its floor up to the new period.
    for _ in 0..3 {
        db.batch_execute("SELECT webhooks.fan_out()").await.unwrap();
    }
    // Then a claim's fan-out reads the sequence and the position, and no partition of the log.
    // (A fresh session: a backend's table statistics of the last second are not yet flushed,
    // and would count as this transaction's.)
    let fresh = stage.cluster.connect("app").await.unwrap();
    fresh
        .batch_execute("BEGIN; SELECT webhooks.fan_out()")
        .await
        .unwrap();
    let scans = lines(
        &fresh,
        "SELECT relname || ' ' || (coalesce(idx_scan, 0) + seq_scan)
           FROM pg_stat_xact_user_tables WHERE relname ~ '^events_' AND coalesce(idx_scan, 0) + seq_scan > 0",
    )
    .await;
    fresh.batch_execute("COMMIT").await.unwrap();
    assert_eq!(scans, Vec::<String>::new());
}

#[tokio::test]
async fn finished_deliveries_and_attempts_go_by_whole_partitions_and_strays_by_row() {
    let stage = Stage::new().await.unwrap();
    let db = &stage.db;
    stage
        .endpoint("/done", &["offer.accepted"], "")
        .await
        .unwrap();
    // Before the first maintain(), what finishes lands in the default partitions.
    stage.emit_many("offer.accepted", 3).await.unwrap();
    let mut relay = stage.relay(&["--maintenance-interval", "0"]).await.unwrap();
    stage.receiver.wait_for(3, Duration::from_secs(20)).await;
    e2e::eventually(
        Duration::from_secs(20),
        "three deliveries succeeded",
        || async {
            let n: i64 = stage
                .scalar("SELECT count(*) FROM webhooks.deliveries_finished_default")
                .await
                .ok()?;
            (n == 3).then_some(())
        },
    )
    .await;
    relay.stop(Duration::from_secs(10)).await.unwrap();
    // The first call makes today's partitions and moves those rows in.
    maintain(db).await;
    let placed: i64 = stage
        .scalar("SELECT count(*) FROM webhooks.deliveries WHERE tableoid::regclass::text LIKE 'webhooks.deliveries_finished_2%'")
        .await
        .unwrap();
    assert_eq!(placed, 3);
    // A partition 40 days old goes whole; a stray in the default partition goes by row.
    db.batch_execute(
        "SELECT webhooks._add_time_partition('webhooks.attempts', 'webhooks.attempts_default', 'started_at',
                                             now() - interval '41 days', now() - interval '40 days');
         UPDATE webhooks.attempts SET started_at = now() - interval '40 days 12 hours' WHERE id = (SELECT min(id) FROM webhooks.attempts);
         UPDATE webhooks.attempts SET started_at = now() - interval '50 days' WHERE id = (SELECT max(id) FROM webhooks.attempts);",
    )
    .await
    .unwrap();
    let done = maintain(db).await;
    assert!(
        done.iter()
            .any(|l| l.starts_with("dropped webhooks.attempts_")),
        "{done:?}"
    );
    assert!(
        done.contains(&"deleted 1 rows of webhooks.attempts_default".to_string()),
        "{done:?}"
    );
    let left: i64 = stage
        .scalar("SELECT count(*) FROM webhooks.attempts")
        .await
        .unwrap();
    assert_eq!(left, 1);

    // A deleted endpoint's audit line goes once it is older than deleted_endpoint_retention
    // (90 days); a younger one stays.
    db.batch_execute(
        "SELECT webhooks.delete_endpoint(id) FROM webhooks.endpoints;
         SELECT webhooks.delete_endpoint((SELECT endpoint_id FROM webhooks.create_endpoint('https://young.example.com/', ARRAY['offer.*'])));
         ALTER TABLE webhooks.endpoint_history DISABLE TRIGGER endpoint_history_append_only;
         UPDATE webhooks.endpoint_history SET at = now() - interval '91 days' WHERE endpoint_id = 1;
         ALTER TABLE webhooks.endpoint_history ENABLE TRIGGER endpoint_history_append_only;",
    )
    .await
    .unwrap();
    maintain(db).await;
    let audit = lines(
        db,
        "SELECT endpoint_id || ' ' || action FROM webhooks.endpoint_history ORDER BY id",
    )
    .await;
    assert_eq!(audit, ["2 deleted"]);
}

#[tokio::test]
async fn the_relay_runs_retention_on_its_timer_and_says_what_it_did() {
    let stage = Stage::new().await.unwrap();
    let relay = stage
        .relay(&["--maintenance-interval", "1s"])
        .await
        .unwrap();
    e2e::eventually(Duration::from_secs(20), "the relay made the partitions ahead", || async {
        let made: bool = stage
            .scalar("SELECT to_regclass('webhooks.events_1') IS NOT NULL AND EXISTS (SELECT FROM webhooks._time_partitions('webhooks.attempts'))")
            .await
            .ok()?;
        made.then_some(())
    })
    .await;
    e2e::eventually(Duration::from_secs(10), "the relay logged it", || async {
        relay.logs().contains("created").then_some(())
    })
    .await;
    assert!(
        relay.logs().contains("webhooks.events_1"),
        "{}",
        relay.logs()
    );
    let metrics = relay.metrics().await.unwrap();
    assert_eq!(
        metrics.get("webhook_relay_maintenance_failures_total"),
        Some(&0.0)
    );
}
