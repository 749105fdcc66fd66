//! `webhooks.emit` is part of the caller's transaction: a rollback leaves no event and no
//! delivery and wakes nobody; a commit makes both visible and, while a relay sleeps, sends one
//! notification, however many events the transaction emitted (and none while relays are awake).

use e2e::cluster::Cluster;
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
    let (_listener, mut notifications) = listen(&cluster).await;
    // No relay is asleep: an awake relay polls, so a commit sends no notification at all.
    writer
        .batch_execute("SELECT webhooks.emit('application.advanced', '{\"id\": 1}')")
        .await
        .unwrap();
    let unasked = tokio::time::timeout(Duration::from_millis(300), notifications.recv()).await;
    assert!(unasked.is_err(), "nobody sleeps, yet got {unasked:?}");
    writer
        .batch_execute("DELETE FROM webhooks.deliveries")
        .await
        .unwrap();
    let before = count(&writer, "events").await;
    // A relay registers as asleep, as webhook-relay does after a second without work.
    writer
        .batch_execute("SELECT webhooks.set_relay_asleep('relay-under-test', true)")
        .await
        .unwrap();

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

    let first = tokio::time::timeout(Duration::from_secs(5), notifications.recv()).await;
    assert_eq!(first.unwrap().as_deref(), Some("webhooks_work"));
    let extra = tokio::time::timeout(Duration::from_millis(300), notifications.recv()).await;
    assert!(
        extra.is_err(),
        "one committed transaction sends one notification, got another: {extra:?}"
    );
}

#[tokio::test]
async fn the_relay_is_woken_by_a_commit_not_by_a_rollback() {
    let (cluster, mut writer) = Cluster::with_app_database().await.unwrap();
    writer
        .batch_execute("SELECT webhooks.create_endpoint('https://hooks.test/a', ARRAY['offer.*'])")
        .await
        .unwrap();
    // A long poll interval, so any wake-up we see comes from a notification.
    let relay = e2e::relay::Relay::start(&cluster.connstr("app"), &["--poll-interval", "1h"])
        .await
        .unwrap();
    let wakeups = || async {
        let (_, body) = relay.health().await.unwrap();
        let n = body
            .split("\"wakeups\":")
            .nth(1)
            .unwrap()
            .trim_end_matches(|c: char| !c.is_ascii_digit());
        n.parse::<u64>().unwrap()
    };
    // After a second without work the relay registers as asleep and waits for a notification.
    e2e::eventually_counts(
        &writer,
        "SELECT count(*) FROM webhooks.sleeping_relays",
        1,
        Duration::from_secs(10),
    )
    .await;
    let before = wakeups().await;

    let tx = writer.transaction().await.unwrap();
    tx.batch_execute("SELECT webhooks.emit('offer.accepted', '{}')")
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wakeups().await,
        before,
        "a rollback must not wake the relay"
    );

    writer
        .batch_execute("SELECT webhooks.emit('offer.accepted', '{}')")
        .await
        .unwrap();
    e2e::eventually(Duration::from_secs(5), "a wake-up after commit", || async {
        (wakeups().await > before).then_some(())
    })
    .await;
}
