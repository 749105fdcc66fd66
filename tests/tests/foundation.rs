//! The foundation works end to end: the extension installs into a throwaway cluster, the relay
//! connects, listens and answers its health check (also across a database restart), and the
//! HTTPS receiver records requests and answers as scripted.

use e2e::cluster::Cluster;
use e2e::receiver::{https_post, Receiver, Reply};
use e2e::relay::Relay;
use std::time::Duration;

#[tokio::test]
async fn extension_installs_and_relay_connects_and_receiver_records() {
    let (cluster, db) = Cluster::with_app_database()
        .await
        .expect("throwaway cluster");
    let row = db
        .query_one(
            "SELECT e.extversion, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'pg_webhooks'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(1), "webhooks");
    assert!(!row.get::<_, String>(0).is_empty());

    let mut relay = Relay::start(&cluster.connstr("app"), &["--poll-interval", "200ms"])
        .await
        .unwrap();
    let (status, body) = relay.health().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"database\":\"connected\""), "{body}");
    assert!(
        relay.logs().contains("connected and listening"),
        "{}",
        relay.logs()
    );

    // The receiver: a scripted 503, then the default 200, each request recorded.
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::status(503).with_body("busy")]);
    let first = https_post(&receiver.url("/hooks"), receiver.ca_pem(), r#"{"n":1}"#)
        .await
        .unwrap();
    let second = https_post(&receiver.url("/hooks"), receiver.ca_pem(), r#"{"n":2}"#)
        .await
        .unwrap();
    assert_eq!(first, (503, "busy".to_string()));
    assert_eq!(second.0, 200);
    let seen = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/hooks");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(&seen[1].body[..], br#"{"n":2}"#);

    relay
        .stop(Duration::from_secs(10))
        .await
        .map(|s| assert!(s.success(), "exit status {s}"))
        .unwrap();
}

#[tokio::test]
async fn relay_reports_unhealthy_while_database_is_down_and_reconnects() {
    let cluster = Cluster::start().expect("throwaway cluster");
    cluster.create_database_with_extension("app").await.unwrap();
    let mut relay = Relay::start(&cluster.connstr("app"), &["--max-reconnect-delay", "500ms"])
        .await
        .unwrap();

    cluster.stop().unwrap();
    e2e::eventually(Duration::from_secs(10), "health to turn 503", || async {
        matches!(relay.health().await, Ok((503, _))).then_some(())
    })
    .await;

    cluster.pg_ctl_start().unwrap();
    relay.wait_healthy(Duration::from_secs(20)).await.unwrap();
    let status = relay.stop(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "exit status {status}\n{}", relay.logs());
}

#[tokio::test]
async fn relay_refuses_a_database_without_the_extension_and_says_why() {
    let cluster = Cluster::start().expect("throwaway cluster");
    let relay = Relay::spawn(&cluster.connstr("postgres"), &[]).unwrap();
    e2e::eventually(
        Duration::from_secs(10),
        "the relay to log the missing extension",
        || async {
            relay
                .logs()
                .contains("extension pg_webhooks is not installed")
                .then_some(())
        },
    )
    .await;
    assert_eq!(relay.health().await.unwrap().0, 503);
}
