//! The relay as a process among others: two relays share one queue without double sends, a
//! crashed relay's leases run out and its work is picked up, SIGTERM finishes or hands back
//! what is in flight, a database restart is survived, and the command line explains itself.

use e2e::receiver::Reply;
use e2e::relay::binary;
use e2e::stage::Stage;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn event_ids(stage: &Stage) -> Vec<String> {
    stage
        .receiver
        .requests()
        .iter()
        .map(|r| r.header("x-webhook-id").unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn two_relays_on_one_database_send_each_delivery_once() {
    let stage = Stage::new().await.unwrap();
    stage
        .endpoint("/shared", &["application.*"], "")
        .await
        .unwrap();
    // A receiver that takes a few milliseconds keeps both relays busy at once.
    stage
        .receiver
        .answer_by_default(Reply::status(200).with_delay(Duration::from_millis(5)));
    let small = [
        "--concurrency",
        "16",
        "--batch-size",
        "8",
        "--max-in-flight-per-endpoint",
        "16",
    ];
    let a = stage
        .relay(&[&small[..], &["--relay-id", "relay-a"]].concat())
        .await
        .unwrap();
    let b = stage
        .relay(&[&small[..], &["--relay-id", "relay-b"]].concat())
        .await
        .unwrap();
    stage.emit_many("application.submitted", 300).await.unwrap();

    stage.receiver.wait_for(300, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = event_ids(&stage);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (300, 300));
    let by_relay: Vec<(String, i64)> = stage
        .db
        .query(
            "SELECT relay_id, count(*) FROM webhooks.attempts GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        by_relay.len(),
        2,
        "both relays should have worked: {by_relay:?}"
    );
    assert_eq!(by_relay.iter().map(|(_, n)| n).sum::<i64>(), 300);
    // Neither relay's claims failed on the other's finished deliveries.
    for relay in [&a, &b] {
        assert!(
            !relay.logs().contains("claiming failed"),
            "{}",
            relay.logs()
        );
    }
}

#[tokio::test]
async fn endpoints_on_one_host_share_a_pool_of_kept_alive_connections() {
    let stage = Stage::new().await.unwrap();
    for n in 1..=4 {
        stage
            .endpoint(&format!("/shared-host/{n}"), &["application.*"], "")
            .await
            .unwrap();
    }
    stage
        .receiver
        .answer_by_default(Reply::status(200).with_delay(Duration::from_millis(2)));
    let _relay = stage
        .relay(&[
            "--concurrency",
            "8",
            "--batch-size",
            "8",
            "--max-in-flight-per-endpoint",
            "2",
        ])
        .await
        .unwrap();
    stage.emit_many("application.submitted", 200).await.unwrap();

    stage.receiver.wait_for(800, WAIT).await;
    // At most 8 requests are ever in flight. A pool that kept only one endpoint's share of
    // idle connections for the shared host would drop the rest after every burst and open
    // (and TLS-handshake) hundreds of connections; racing connects may add a few.
    let connections = stage.receiver.connection_count();
    assert!(
        connections <= 16,
        "800 deliveries over 8 concurrent requests opened {connections} connections"
    );
}

#[tokio::test]
async fn a_receiver_that_closes_each_connection_gets_every_delivery_on_a_new_one() {
    let stage = Stage::new().await.unwrap();
    // Every response asks for its connection to be closed.
    let closing = Reply::status(200).with_header("connection", "close");
    stage.receiver.answer_by_default(closing);
    stage.endpoint("/closing", &["offer.*"], "").await.unwrap();
    let _relay = stage.relay(&["--concurrency", "4"]).await.unwrap();
    stage.emit_many("offer.accepted", 60).await.unwrap();

    stage.receiver.wait_for(60, WAIT).await;
    // A connection handed back to the pool after its response may close a moment later:
    // the next request must then go on a new connection, not fail on the old one.
    let deadline = Instant::now() + WAIT;
    loop {
        // Both counts from one snapshot: counted by two statements, attempts recorded between
        // them would look like failures.
        let row = stage
            .db
            .query_one(
                "SELECT count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FROM webhooks.attempts",
                &[],
            )
            .await
            .unwrap();
        let (succeeded, attempts): (i64, i64) = (row.get(0), row.get(1));
        if attempts >= 60 {
            assert_eq!(
                (succeeded, attempts),
                (60, 60),
                "every first attempt succeeds"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{attempts} of 60 attempts recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stage.receiver.connection_count(), 60);
}

#[tokio::test]
async fn a_crashed_relays_delivery_is_sent_by_another_relay_once_its_lease_runs_out() {
    let stage = Stage::new().await.unwrap();
    let (endpoint, _) = stage.endpoint("/hang", &["offer.*"], "").await.unwrap();
    // The first request hangs longer than the crash takes; the retry is answered at once.
    stage
        .receiver
        .script([Reply::status(200).with_delay(Duration::from_secs(20))]);
    let flags = ["--request-timeout", "2s", "--lease", "7s"];
    let mut doomed = stage.relay(&flags).await.unwrap();
    let event_id = stage
        .emit("offer.accepted", json!({"id": 1}))
        .await
        .unwrap();
    let first = stage.receiver.wait_for(1, WAIT).await.remove(0);
    doomed.kill();

    let _survivor = stage.relay(&flags).await.unwrap();
    let second = stage.receiver.wait_for(2, WAIT).await.remove(1);
    let gap = second.at - first.at;
    assert!(
        gap >= Duration::from_secs(5),
        "re-sent after {gap:?}, while the lease still held"
    );
    assert_eq!(first.header("x-webhook-id"), second.header("x-webhook-id"));
    let attempts = stage.wait_for_attempts(event_id, endpoint, 1).await;
    assert_eq!(attempts.len(), 1, "the crashed relay recorded nothing");
    assert_eq!(attempts[0].outcome, "succeeded");
}

#[tokio::test]
async fn sigterm_finishes_requests_on_the_wire_hands_back_the_rest_and_exits_zero() {
    let stage = Stage::new().await.unwrap();
    let (slow, _) = stage.endpoint("/slow", &["offer.*"], "").await.unwrap();
    let (limited, _) = stage
        .endpoint("/limited", &["interview.*"], "rate_limit => 1")
        .await
        .unwrap();
    stage
        .receiver
        .script([Reply::status(200).with_delay(Duration::from_millis(1500))]);
    let mut relay = stage.relay(&[]).await.unwrap();
    let on_the_wire = stage
        .emit("offer.accepted", json!({"id": 1}))
        .await
        .unwrap();
    stage.receiver.wait_for(1, WAIT).await;
    // Three for an endpoint allowed one request a second: two of them wait on the limiter.
    stage.emit_many("interview.completed", 3).await.unwrap();
    stage.receiver.wait_for(2, WAIT).await;

    let asked = Instant::now();
    let status = relay.stop(Duration::from_secs(20)).await.unwrap();
    assert!(status.success(), "exit status {status}\n{}", relay.logs());
    assert!(asked.elapsed() < Duration::from_secs(5));

    let finished = stage.attempts(on_the_wire, slow).await.unwrap();
    assert_eq!(finished.len(), 1, "{}", relay.logs());
    assert_eq!(finished[0].outcome, "succeeded");
    let held: Vec<(String, i32, bool, bool)> = stage
        .db
        .query(
            "SELECT status, attempts, leased_by IS NULL, next_attempt_at <= now()
               FROM webhooks.deliveries WHERE endpoint_id = $1 AND attempts = 0",
            &[&limited],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(held.len(), 2, "{held:?}\n{}", relay.logs());
    assert!(
        held.iter()
            .all(|h| *h == ("pending".to_string(), 0, true, true)),
        "handed back unattempted and due now: {held:?}"
    );
    assert!(relay.logs().contains("relay stopped cleanly"));
}

#[tokio::test]
async fn the_relay_survives_a_database_restart_and_delivers_afterwards() {
    let stage = Stage::new().await.unwrap();
    stage
        .endpoint("/after", &["job_posting.*"], "")
        .await
        .unwrap();
    let relay = stage
        .relay(&["--max-reconnect-delay", "500ms"])
        .await
        .unwrap();
    stage.cluster.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stage.cluster.pg_ctl_start().unwrap();

    let db = stage.cluster.connect("app").await.unwrap();
    db.batch_execute("SELECT webhooks.emit('job_posting.closed', '{\"id\": 3}')")
        .await
        .unwrap();
    let request = stage.receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        request.header("x-webhook-event"),
        Some("job_posting.closed")
    );
    relay.wait_healthy(WAIT).await.unwrap();
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let out = std::process::Command::new(binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--database-url", "DATABASE_URL"),
        ("--concurrency", "WEBHOOK_RELAY_CONCURRENCY"),
        ("--batch-size", "WEBHOOK_RELAY_BATCH_SIZE"),
        ("--poll-interval", "WEBHOOK_RELAY_POLL_INTERVAL"),
        ("--lease", "WEBHOOK_RELAY_LEASE"),
        ("--ca-file", "WEBHOOK_RELAY_CA_FILE"),
        ("--user-agent", "WEBHOOK_RELAY_USER_AGENT"),
        ("--request-timeout", "WEBHOOK_RELAY_REQUEST_TIMEOUT"),
        ("--max-in-flight-per-endpoint", "WEBHOOK_RELAY_PER_ENDPOINT"),
        ("--allow-network", "WEBHOOK_RELAY_ALLOW_NETWORKS"),
        ("--awake-poll-interval", "WEBHOOK_RELAY_AWAKE_POLL_INTERVAL"),
        ("--idle-poll-interval", "WEBHOOK_RELAY_IDLE_POLL_INTERVAL"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(help.contains(env), "--help lacks {env}:\n{help}");
    }
}

#[test]
fn a_lease_that_could_expire_mid_request_is_refused_at_start() {
    let out = std::process::Command::new(binary())
        .args(["--database-url", "host=/nonexistent", "--lease", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--lease"), "{stderr}");
}

/// `--concurrency` caps the requests on the wire, not the deliveries claimed: the relay claims
/// up to a batch ahead, and what it has claimed waits for a request slot.
#[tokio::test]
async fn concurrency_caps_requests_on_the_wire_while_a_batch_is_claimed_ahead() {
    let stage = Stage::new().await.unwrap();
    stage.endpoint("/capped", &["offer.*"], "").await.unwrap();
    let reply_delay = Duration::from_millis(400);
    stage
        .receiver
        .answer_by_default(Reply::status(200).with_delay(reply_delay));
    stage.emit_many("offer.accepted", 12).await.unwrap();
    let _relay = stage
        .relay(&["--concurrency", "3", "--batch-size", "20"])
        .await
        .unwrap();

    // The first three are held by the receiver; no fourth can start before one is answered.
    stage.receiver.wait_for(3, WAIT).await;
    let leased: i64 = stage
        .scalar("SELECT count(*) FROM webhooks.deliveries WHERE leased_by IS NOT NULL")
        .await
        .unwrap();
    assert_eq!(
        leased, 12,
        "one claim takes all twelve, beyond the three slots"
    );
    assert_eq!(stage.receiver.request_count(), 3);

    // Of any four arrivals, one came after an earlier one was answered.
    let requests = stage.receiver.wait_for(12, WAIT).await;
    for four in requests.windows(4) {
        let span = four[3].at.duration_since(four[0].at);
        assert!(
            span >= reply_delay,
            "four requests on the wire within {span:?}"
        );
    }
}
