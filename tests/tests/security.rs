//! Attacks that need more than one session or a running relay (the rest are pg_tests in
//! extension/src/tests/security.rs; docs/security.md lists them all).

use e2e::stage::{signature_is_valid, Stage};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, NoTls};

const SUBMIT: &str = "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
                      VALUES (7, 3, now())";

#[tokio::test]
async fn no_login_role_can_hold_back_tracked_deliveries_with_an_advisory_lock() {
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    stage.db.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    stage.endpoint("/a", &["application.*"], "").await.unwrap();
    stage
        .db
        .batch_execute("CREATE ROLE mallory LOGIN")
        .await
        .unwrap();
    let mallory = stage.cluster.connect_as("app", "mallory").await.unwrap();
    // Every advisory lock SQL can name near the fan-out's: the key fan_out once used, as one
    // bigint and as two integers, both halves.
    mallory
        .batch_execute(
            "SELECT pg_advisory_lock(1701143144);
             SELECT pg_advisory_lock(0, 1701143144);
             SELECT pg_advisory_lock(1701143144, 0);
             SELECT pg_advisory_lock(30568, 1701143144);",
        )
        .await
        .unwrap();
    stage.db.batch_execute(SUBMIT).await.unwrap();
    let made: i32 = stage.scalar("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(made, 1, "the tracked event got its delivery");
}

/// An endpoint limited to 2 requests a second with `events` deliveries queued, and a relay
/// that has claimed them all and is sending them slowly. Returns (endpoint id, secret).
async fn slow_endpoint_with_a_backlog(stage: &Stage, events: i32) -> (i64, String) {
    let endpoint = stage
        .endpoint("/slow", &["offer.accepted"], "rate_limit => 2")
        .await
        .unwrap();
    stage.emit_many("offer.accepted", events).await.unwrap();
    endpoint
}

/// How long after `committed` the last request signed with `old_secret` arrived, if one did.
fn last_old_request_after(stage: &Stage, old_secret: &str, committed: Instant) -> Option<Duration> {
    stage
        .receiver
        .requests()
        .iter()
        .filter(|r| signature_is_valid(old_secret, r))
        .filter_map(|r| r.at.checked_duration_since(committed))
        .max()
}

/// A session listening where relays hear of endpoint changes, as the relay's LISTEN
/// connection does; yields when each notification arrived.
async fn listen_for_changes(
    stage: &Stage,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
) {
    let (client, mut connection) = tokio_postgres::connect(&stage.cluster.connstr("app"), NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(_) = message {
                let _ = tx.send(Instant::now());
            }
        }
    });
    client
        .batch_execute("LISTEN webhooks_endpoint_changed")
        .await
        .unwrap();
    (client, rx)
}

#[tokio::test]
async fn once_a_rotation_commits_no_request_starts_with_the_old_secret() {
    let stage = Stage::new().await.unwrap();
    let (id, old_secret) = slow_endpoint_with_a_backlog(&stage, 8).await;
    let _relay = stage.relay(&[]).await.unwrap();
    let (_listener, mut heard) = listen_for_changes(&stage).await;
    stage.receiver.wait_for(1, Duration::from_secs(20)).await;
    let asked = Instant::now();
    let new_secret: String = stage
        .scalar(&format!("SELECT webhooks.rotate_secret({id})"))
        .await
        .unwrap();
    let committed = Instant::now();
    // The window left: from the commit to a listener hearing of it (the relay's LISTEN
    // connection hears it the same way). The commit happens between `asked` and `committed`.
    let heard_at = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("the change is announced")
        .unwrap();
    eprintln!(
        "the rotation was heard {:?} after the call returned ({:?} after it was made)",
        heard_at.saturating_duration_since(committed),
        heard_at.saturating_duration_since(asked)
    );
    let requests = stage.receiver.wait_for(8, Duration::from_secs(30)).await;
    assert!(requests.len() >= 8, "{} requests", requests.len());
    let late = last_old_request_after(&stage, &old_secret, committed);
    eprintln!("old secret used {late:?} after the rotation committed");
    assert!(
        late.is_none_or(|late| late < Duration::from_millis(500)),
        "a request signed with the old secret arrived {late:?} after the rotation"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let undelivered: i64 = stage
            .scalar("SELECT count(*) FROM webhooks.deliveries WHERE status <> 'succeeded'")
            .await
            .unwrap();
        if undelivered == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} deliveries never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(requests.iter().any(|r| signature_is_valid(&new_secret, r)));
}

#[tokio::test]
async fn once_a_delete_commits_no_request_starts_for_the_endpoint() {
    let stage = Stage::new().await.unwrap();
    let (id, secret) = slow_endpoint_with_a_backlog(&stage, 8).await;
    let relay = stage.relay(&[]).await.unwrap();
    stage.receiver.wait_for(1, Duration::from_secs(20)).await;
    stage
        .db
        .batch_execute(&format!("SELECT webhooks.delete_endpoint({id})"))
        .await
        .unwrap();
    let committed = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let late = last_old_request_after(&stage, &secret, committed);
    eprintln!("a request arrived {late:?} after the delete committed");
    assert!(
        late.is_none_or(|late| late < Duration::from_millis(500)),
        "a request arrived {late:?} after the delete committed\n{}",
        relay.logs()
    );
    assert!(stage.receiver.request_count() < 8);
}
