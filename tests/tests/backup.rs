//! pg_dump and pg_restore: what a dump carries, and tracked events across a restore
//! (docs/reliability.md, "Backups").

use e2e::ats::PEOPLE;
use e2e::cluster::Cluster;
use std::process::Command;

/// Run one of the cluster's client programs (pg_dump, pg_restore) against `database`.
fn client(cluster: &Cluster, program: &str, database: &str, args: &[&str]) {
    let output = Command::new(cluster.bindir().join(program))
        .arg("--dbname")
        .arg(cluster.connstr(database))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn number(db: &tokio_postgres::Client, query: &str) -> i64 {
    db.query_one(query, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_restored_dump_keeps_the_webhooks_data_and_delivers_what_the_dump_had_not_fanned_out() {
    let (cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    // One transaction each: fan_out() takes what has committed before it.
    for statement in [
        "SELECT webhooks.set_setting('outreach_addon', 'true')",
        "SELECT webhooks.create_endpoint('https://hooks.test/a', ARRAY['application.*'])",
        // Partitions retention made: not the extension's, so pg_dump carries them whole.
        "SELECT count(*) FROM webhooks.maintain()",
        "INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at)
              VALUES (1, 7, 3, now())",
        "SELECT webhooks.fan_out()",
        "SELECT count(*) FROM webhooks.claim_deliveries('r', 10, '1 minute')",
        "SELECT webhooks.record_attempts('r', jsonb_build_array(jsonb_build_object('delivery_id', id,
              'attempt_number', 1, 'started_at', now(), 'duration_ms', 1, 'response_status', 200)))
           FROM webhooks.deliveries",
        // The next event goes to the log's second period, made by maintain().
        "UPDATE webhooks.event_log_periods SET opened_at = now() - interval '2 days'",
        "SELECT count(*) FROM webhooks.maintain()",
        "INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at)
              VALUES (2, 7, 3, now())",
    ] {
        db.batch_execute(statement).await.unwrap();
    }

    // Into another database of the same cluster: every table gets a new oid.
    let dump = cluster.socket_dir().join("app.dump");
    let dump = dump.to_str().unwrap();
    client(
        &cluster,
        "pg_dump",
        "app",
        &["--format=custom", "--file", dump],
    );
    db.batch_execute("CREATE DATABASE restored").await.unwrap();
    client(
        &cluster,
        "pg_restore",
        "restored",
        &["--exit-on-error", dump],
    );
    let restored = cluster.connect("restored").await.unwrap();

    for (what, query, expected) in [
        ("endpoints", "SELECT count(*) FROM webhooks.endpoints", 1),
        ("subscriptions", "SELECT count(*) FROM webhooks.subscriptions", 5),
        ("events", "SELECT count(*) FROM webhooks.events", 2),
        ("deliveries", "SELECT count(*) FROM webhooks.deliveries", 1),
        (
            "the finished delivery, its attempt and the second period's event, in partitions maintain() made",
            "SELECT 100 * (SELECT count(*) FROM webhooks.deliveries WHERE tableoid::regclass::text LIKE 'webhooks.deliveries_finished_2%')
                   + 10 * (SELECT count(*) FROM webhooks.attempts WHERE tableoid::regclass::text LIKE 'webhooks.attempts_2%')
                   + (SELECT count(*) FROM webhooks.events WHERE tableoid = 'webhooks.events_1'::regclass)",
            111,
        ),
        ("event log periods", "SELECT count(*) FROM webhooks.event_log_periods", 2),
        ("history", "SELECT count(*) FROM webhooks.endpoint_history", 1),
        ("tracked tables", "SELECT count(*) FROM webhooks.tracked_tables", 8),
        (
            "the changed setting",
            "SELECT count(*) FROM webhooks.settings WHERE name = 'outreach_addon' AND value = 'true'",
            1,
        ),
    ] {
        assert_eq!(number(&restored, query).await, expected, "{what}");
    }

    // The dumped fan-out position names the other cluster's transactions: fan-out waits.
    let waiting = restored
        .batch_execute("SELECT webhooks.fan_out()")
        .await
        .unwrap_err();
    let message = waiting.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("resume_after_restore"), "{message}");
    assert_eq!(
        number(&restored, "SELECT webhooks.resume_after_restore()::bigint").await,
        1,
        "the event logged after the dump's last fan-out gets its delivery"
    );

    // Tracking goes on with the restored tables' new oids, and nothing is delivered twice.
    for statement in [
        "UPDATE ats.applications SET current_stage = 'Onsite' WHERE id = 1",
        "SELECT webhooks.fan_out()",
    ] {
        restored.batch_execute(statement).await.unwrap();
    }
    let named = restored
        .query_one(
            "SELECT data -> 'candidate' ->> 'name' FROM webhooks.events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(named.get::<_, String>(0), "Jane Smith");
    let row = restored
        .query_one(
            "SELECT count(*), count(DISTINCT event_id) FROM webhooks.deliveries",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (3, 3));

    // Identity sequences came across: new rows continue after the restored ones.
    let endpoint = number(
        &restored,
        "SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.test/b', ARRAY['offer.*'])",
    )
    .await;
    assert_eq!(endpoint, 2);
}
