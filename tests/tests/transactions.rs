//! `webhooks.emit` is part of the caller's transaction: a rollback leaves no event and no
//! delivery; a commit makes both visible. No writer ever notifies, whatever state the relays
//! are in, and an idle relay still notices a sparse event promptly.

use e2e::cluster::Cluster;
use e2e::stage::Stage;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// A LISTEN session on the relay's channel that counts notifications.
async fn listen(
    cluster: &Cluster,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) = tokio_postgres::connect(&cluster.connstr("app"), NoTls)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.channel().to_string());
            }
        }
    });
    client.batch_execute("LISTEN webhooks_work").await.unwrap();
    (client, rx)
}

async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM webhooks.{table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_event_exists_if_and_only_if_its_transaction_commits() {
    let (cluster, mut writer) = Cluster::with_app_database().await.unwrap();
    writer
        .batch_execute(
            "SELECT webhooks.create_endpoint('https://hooks.test/a', ARRAY['application.*'])",
        )
        .await
        .unwrap();
    let before = count(&writer, "events").await;

    let tx = writer.transaction().await.unwrap();
    tx.batch_execute("SELECT webhooks.emit('application.submitted', '{\"id\": 1}')")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(&writer, "events").await, before);
    assert_eq!(count(&writer, "deliveries").await, 0);

    let tx = writer.transaction().await.unwrap();
    for id in 2..5 {
        tx.batch_execute(&format!(
            "SELECT webhooks.emit('application.advanced', '{{\"id\": {id}}}')"
        ))
        .await
        .unwrap();
    }
    let other = cluster.connect("app").await.unwrap();
    assert_eq!(
        count(&other, "events").await,
        before,
        "not visible before commit"
    );
    tx.commit().await.unwrap();
    assert_eq!(count(&other, "events").await, before + 3);
    assert_eq!(count(&other, "deliveries").await, 3);
}

/// Notifications on `webhooks_work` after emitting and making a tracked write, each in its
/// own committed transaction.
async fn notifications_after_writes(
    stage: &Stage,
    notifications: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> usize {
    stage
        .emit("application.advanced", serde_json::json!({"id": 1}))
        .await
        .unwrap();
    stage
        .db
        .batch_execute(
            "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now())",
        )
        .await
        .unwrap();
    let mut seen = 0;
    while tokio::time::timeout(Duration::from_millis(300), notifications.recv())
        .await
        .is_ok()
    {
        seen += 1;
    }
    seen
}

#[tokio::test]
async fn writers_never_notify_whatever_state_the_relays_are_in() {
    // A notifying commit serialises with every other notifying commit in the cluster, so no
    // writer's commit notifies: not with no relay, an idle relay, or one killed while idle.
    let stage = Stage::new().await.unwrap();
    e2e::ats::load_and_track(&stage.db).await.unwrap();
    stage.db.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    stage.endpoint("/a", &["application.*"], "").await.unwrap();
    let (_listener, mut notifications) = listen(&stage.cluster).await;
    assert_eq!(
        notifications_after_writes(&stage, &mut notifications).await,
        0,
        "no relay"
    );

    let mut relay = stage.relay(&[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        notifications_after_writes(&stage, &mut notifications).await,
        0,
        "an idle relay"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.kill();
    assert_eq!(
        notifications_after_writes(&stage, &mut notifications).await,
        0,
        "a relay killed while idle"
    );
}

#[tokio::test]
async fn an_idle_relay_notices_a_sparse_event_without_any_notification() {
    let stage = Stage::new().await.unwrap();
    stage.endpoint("/sparse", &["offer.*"], "").await.unwrap();
    // A backstop poll of an hour: what delivers the event is the idle watcher.
    let ca = stage.receiver.ca_file();
    let _relay = e2e::relay::Relay::start(
        &stage.cluster.connstr_as("app", "relay_login"),
        &[
            "--ca-file",
            ca.to_str().unwrap(),
            "--allow-network",
            "127.0.0.0/8",
            "--poll-interval",
            "1h",
        ],
    )
    .await
    .unwrap();
    for n in 1..=3 {
        // Past --stay-awake (1 s): the relay is idle.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let committed = std::time::Instant::now();
        stage
            .emit("offer.accepted", serde_json::json!({ "id": n }))
            .await
            .unwrap();
        let request = stage
            .receiver
            .wait_for(n as usize, Duration::from_secs(10))
            .await
            .pop()
            .unwrap();
        eprintln!(
            "sparse event {n}: commit -> receipt {:?}",
            request.at.saturating_duration_since(committed)
        );
    }
}
