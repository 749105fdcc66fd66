//! `cargo xtask demo`: the whole story in one command. A throwaway cluster with the extension
//! and the reference ATS schema, an HTTPS receiver on 127.0.0.1 that verifies every signature
//! and prints each event, the relay in between, a scripted hiring story that fires every event
//! category, and the delivery log read back from psql. Everything is torn down at the end.

use crate::run::{cmd, status};
use crate::setup::install_extension;
use anyhow::{Context, Result};
use e2e::cluster::Cluster;
use e2e::receiver::Receiver;
use e2e::relay::Relay;
use e2e::stage::{body_json, signature_is_valid};
use std::time::Duration;

pub fn run() -> Result<()> {
    install_extension()?;
    status(cmd("cargo", &["build", "-p", "webhook-relay"]))?;
    tokio::runtime::Runtime::new()?.block_on(story())
}

/// The hiring story: each statement is one thing a recruiter or candidate does in the ATS.
const HIRING_STORY: &[&str] = &[
    "INSERT INTO ats.candidates (id, name, email) VALUES (7, 'Jane Smith', 'jane@example.com')",
    "INSERT INTO ats.job_postings (id, title, location, department, public_url) VALUES (3, 'Senior Engineer', 'Remote', 'Engineering', 'https://careers.example.com/senior-engineer')",
    "UPDATE ats.job_postings SET status = 'published', published_at = now() WHERE id = 3",
    "INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES (42, 7, 3, now())",
    "UPDATE ats.applications SET current_stage = 'Technical Interview' WHERE id = 42",
    "INSERT INTO ats.interviews (id, candidate_id, job_posting_id, scheduled_at) VALUES (28, 7, 3, now() + interval '2 days')",
    "UPDATE ats.interviews SET status = 'confirmed' WHERE id = 28",
    "INSERT INTO ats.code_assignments (id, candidate_id, job_posting_id, repo_url, deadline_at) VALUES (11, 7, 3, 'https://github.com/org/assignment-jane-smith', now() + interval '3 days')",
    "UPDATE ats.code_assignments SET submitted_at = now() WHERE id = 11",
    "UPDATE ats.interviews SET status = 'completed' WHERE id = 28",
    "INSERT INTO ats.reviews (candidate_id, job_posting_id, recommendation, reviewer, stage) VALUES (7, 3, 'strong_yes', 'Alex Johnson', 'Technical Interview')",
    "UPDATE ats.applications SET offered = true, current_stage = 'Offer' WHERE id = 42",
    "INSERT INTO ats.offers (id, application_id, candidate_id, job_posting_id, details, extended_at, expires_at) VALUES (15, 42, 7, 3, 'Senior Engineer — $150k base', now(), now() + interval '7 days')",
    "UPDATE ats.offers SET details = 'Senior Engineer — $160k base' WHERE id = 15",
    "UPDATE ats.offers SET status = 'candidate_accepted' WHERE id = 15",
    "UPDATE ats.job_postings SET status = 'closed', closed_at = now() WHERE id = 3",
    "INSERT INTO ats.outreach_campaigns (id, name) VALUES ('oc_def456', 'Platform engineers')",
    "INSERT INTO ats.outreach_prospects (id, campaign_id, company_name, display_name, email, status) VALUES ('op_abc123', 'oc_def456', 'Acme Corp', 'Sam Lee', 'sam@acme.example', 'drafted')",
    "INSERT INTO ats.outreach_messages (id, campaign_id, prospect_id, subject, body) VALUES ('om_ghi789', 'oc_def456', 'op_abc123', 'Quick question about Acme''s hiring workflow', 'Hi Sam')",
    "UPDATE ats.outreach_messages SET status = 'sent', approved_at = now(), sent_at = now() WHERE id = 'om_ghi789'",
];

async fn story() -> Result<()> {
    println!("\n==> a throwaway PostgreSQL 15 cluster, the extension and the reference ATS schema");
    let cluster = Cluster::start()?;
    cluster.create_database_with_extension("ats").await?;
    let db = cluster.connect("ats").await?;
    e2e::ats::load_and_track(&db).await?;
    let psql = Psql(cluster.connstr("ats"));
    psql.show("SELECT table_name, kind FROM webhooks.tracked_tables ORDER BY 1")?;

    // Its certificate is made the way most people make one by hand (docs/relay.md,
    // "Self-signed receivers"): openssl req -x509, named to the relay with --ca-file.
    let receiver = Receiver::start_with_openssl_certificate().await?;
    println!(
        "\n==> an HTTPS receiver at {} that verifies every signature, behind a certificate made with\n    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \\\n        -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout key.pem -out cert.pem\n    and named to the relay with --ca-file cert.pem",
        receiver.url("/hooks")
    );
    psql.show("SELECT webhooks.set_setting('outreach_addon', 'true')")?;
    let create = format!(
        "SELECT endpoint_id, signing_secret FROM webhooks.create_endpoint('{}', ARRAY['application.*', 'offer.*', 'interview.*', 'code_assignment.*', 'review.*', 'job_posting.*', 'outreach.*'], name => 'Demo receiver')",
        receiver.url("/hooks")
    );
    println!("\nats=# {create}");
    let row = db.query_one(&create, &[]).await?;
    let (endpoint, secret): (i64, String) = (row.get(0), row.get(1));
    println!("    endpoint {endpoint}, signing secret {secret}");

    let ca = receiver.ca_file();
    let mut relay = Relay::start(
        &cluster.connstr("ats"),
        &[
            "--ca-file",
            ca.to_str().context("CA path")?,
            // The demo's receiver is on loopback, which the SSRF guard refuses by default.
            "--allow-network",
            "127.0.0.0/8",
        ],
    )
    .await?;
    println!("\n==> webhook-relay running; the hiring story, one statement per step:");
    for sql in HIRING_STORY {
        println!("ats=# {sql};");
        db.batch_execute(sql).await?;
    }
    psql.show(&format!("SELECT webhooks.send_test_ping({endpoint})"))?;

    // The relay's next claim makes the deliveries of the tracked events (fan-out); once the
    // queue is empty, every delivery exists.
    e2e::eventually_counts(
        &db,
        "SELECT count(*) FROM webhooks.events_awaiting_fan_out",
        0,
        Duration::from_secs(10),
    )
    .await;
    let expected: i64 = db
        .query_one("SELECT count(*) FROM webhooks.deliveries", &[])
        .await?
        .get(0);
    let mut received = receiver
        .wait_for(expected as usize, Duration::from_secs(30))
        .await;
    // Deliveries run concurrently; list them in event order.
    received.sort_by_key(|r| {
        r.header("x-webhook-id")
            .and_then(|id| id.parse::<i64>().ok())
            .unwrap_or(0)
    });
    println!("\n==> the receiver got {} deliveries:", received.len());
    for request in &received {
        let body = body_json(request);
        println!(
            "    {}  {:<28} id={:<3} data.id={}",
            if signature_is_valid(&secret, request) {
                "signature ok "
            } else {
                "BAD SIGNATURE"
            },
            request.header("x-webhook-event").unwrap_or("?"),
            request.header("x-webhook-id").unwrap_or("?"),
            body["data"]["id"]
        );
    }
    anyhow::ensure!(
        received.iter().all(|r| signature_is_valid(&secret, r)),
        "a signature did not verify"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n==> the delivery log, from psql");
    psql.show("SELECT delivery_id, event_type, endpoint_name, attempt_number AS try, response_status AS status, round(duration_ms::numeric, 1) AS ms, outcome FROM webhooks.delivery_log ORDER BY delivery_id")?;
    psql.show(
        "SELECT name, status, pending, succeeded_24h, failed_24h FROM webhooks.endpoint_status",
    )?;

    let exit = relay.stop(Duration::from_secs(10)).await?;
    println!("\n==> relay stopped ({exit}); cluster removed. Demo done.");
    Ok(())
}

/// psql against the demo database, echoing each statement as a prompt would.
struct Psql(String);

impl Psql {
    fn show(&self, sql: &str) -> Result<()> {
        println!("\nats=# {sql};");
        let mut c = cmd("psql", &["-X", "-P", "pager=off", "-d", &self.0, "-c", sql]);
        c.env("PGTZ", "UTC");
        let out = c.output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        anyhow::ensure!(out.status.success(), "psql failed");
        Ok(())
    }
}
