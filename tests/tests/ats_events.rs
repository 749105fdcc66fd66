//! Golden tests: each of the 27 table-driven event types is fired by a change to the reference
//! ATS schema (sql/ats_schema.sql) and its logged payload is compared with the seed's example
//! (tests/golden/seed-examples.json, copied from Kit's event reference): same keys, same JSON
//! types, same values, with only the fields the change itself sets differing.

use serde_json::{json, Value};
use std::collections::BTreeSet;

const SEEDS: &str = include_str!("../golden/seed-examples.json");

/// A write and the events it must log, in order: (event type, seed example, fields that differ).
struct Step {
    sql: &'static str,
    fires: Vec<(&'static str, &'static str, Value)>,
}

fn step(sql: &'static str, fires: Vec<(&'static str, &'static str, Value)>) -> Step {
    Step { sql, fires }
}

const APP: &str = "application.submitted";
const OFFER: &str = "offer.candidate_accepted";
const INTERVIEW: &str = "interview.scheduled";
const CODE: &str = "code_assignment.submitted";
const POSTING: &str = "job_posting.published";
const MESSAGE: &str = "outreach.message.sent";

/// The hiring story, with the seeds' own data (Jane Smith, candidate 7; Senior Engineer, 3).
fn story() -> Vec<Step> {
    vec![
        step("INSERT INTO ats.candidates (id, name, email) VALUES (7, 'Jane Smith', 'jane@example.com');
              INSERT INTO ats.job_postings (id, title, location, department, employment_type, public_url)
              VALUES (3, 'Senior Engineer', 'Remote', 'Engineering', 'Full-time', 'https://careers.example.com/senior-engineer')", vec![]),
        step("UPDATE ats.job_postings SET status = 'published', published_at = '2025-01-10T08:00:00Z' WHERE id = 3",
             vec![("job_posting.published", POSTING, json!({}))]),
        step("UPDATE ats.job_postings SET status = 'paused' WHERE id = 3",
             vec![("job_posting.paused", POSTING, json!({"status": "paused"}))]),
        step("UPDATE ats.job_postings SET status = 'closed', closed_at = '2025-02-01T00:00:00Z' WHERE id = 3",
             vec![("job_posting.closed", POSTING, json!({"status": "closed", "closed_at": "2025-02-01T00:00:00Z"}))]),
        step("UPDATE ats.job_postings SET status = 'published', closed_at = NULL WHERE id = 3",
             vec![("job_posting.reopened", POSTING, json!({}))]),
        step("INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES (42, 7, 3, '2025-01-15T14:30:00Z')",
             vec![("application.submitted", APP, json!({}))]),
        step("UPDATE ats.applications SET current_stage = 'Technical Interview' WHERE id = 42",
             vec![("application.advanced", APP, json!({"current_stage": "Technical Interview"}))]),
        step("UPDATE ats.applications SET offered = true WHERE id = 42",
             vec![("application.offer_extended", APP, json!({"current_stage": "Technical Interview", "offered": true}))]),
        step("INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES (43, 7, 3, NULL)", vec![]),
        step("UPDATE ats.applications SET rejected = true WHERE id = 43",
             vec![("application.rejected", APP, json!({"id": 43, "submitted_at": null, "rejected": true}))]),
        step("UPDATE ats.applications SET withdrawn = true WHERE id = 43",
             vec![("application.withdrawn", APP, json!({"id": 43, "submitted_at": null, "rejected": true, "withdrawn": true}))]),
        step("INSERT INTO ats.offers (id, application_id, candidate_id, job_posting_id, details, extended_at, expires_at)
              VALUES (15, 42, 7, 3, 'Senior Engineer — $150k base', '2025-01-18T09:00:00Z', '2025-01-25T23:59:59Z')", vec![]),
        step("UPDATE ats.offers SET status = 'candidate_accepted' WHERE id = 15",
             vec![("offer.candidate_accepted", OFFER, json!({}))]),
        step("UPDATE ats.offers SET details = 'Senior Engineer — $160k base' WHERE id = 15",
             vec![("offer.revised", OFFER, json!({"details": "Senior Engineer — $160k base"}))]),
        step("UPDATE ats.offers SET status = 'accepted', accepted_at = '2025-01-21T10:00:00Z' WHERE id = 15",
             vec![("offer.accepted", OFFER, json!({"status": "accepted", "details": "Senior Engineer — $160k base", "accepted_at": "2025-01-21T10:00:00Z"}))]),
        step("INSERT INTO ats.offers (id, candidate_id, job_posting_id, details, extended_at, expires_at)
              VALUES (16, 7, 3, 'Senior Engineer — $150k base', '2025-01-18T09:00:00Z', '2025-01-25T23:59:59Z'),
                     (17, 7, 3, 'Senior Engineer — $150k base', '2025-01-18T09:00:00Z', '2025-01-25T23:59:59Z')", vec![]),
        step("UPDATE ats.offers SET status = 'candidate_declined' WHERE id = 16",
             vec![("offer.candidate_declined", OFFER, json!({"id": 16, "status": "candidate_declined"}))]),
        step("UPDATE ats.offers SET status = 'declined', declined_at = '2025-01-22T10:00:00Z' WHERE id = 17",
             vec![("offer.declined", OFFER, json!({"id": 17, "status": "declined", "declined_at": "2025-01-22T10:00:00Z"}))]),
        step("INSERT INTO ats.interviews (id, candidate_id, job_posting_id, scheduled_at, duration_minutes)
              VALUES (28, 7, 3, '2025-01-20T14:00:00Z', 60)",
             vec![("interview.scheduled", INTERVIEW, json!({}))]),
        step("UPDATE ats.interviews SET status = 'confirmed' WHERE id = 28",
             vec![("interview.confirmed", INTERVIEW, json!({"status": "confirmed"}))]),
        step("UPDATE ats.interviews SET status = 'completed' WHERE id = 28",
             vec![("interview.completed", INTERVIEW, json!({"status": "completed"}))]),
        step("INSERT INTO ats.interviews (id, candidate_id, job_posting_id, status, scheduled_at, duration_minutes)
              VALUES (29, 7, 3, 'confirmed', '2025-01-20T14:00:00Z', 60)",
             vec![("interview.confirmed", INTERVIEW, json!({"id": 29, "status": "confirmed"}))]),
        step("UPDATE ats.interviews SET status = 'cancelled' WHERE id = 29",
             vec![("interview.cancelled", INTERVIEW, json!({"id": 29, "status": "cancelled"}))]),
        step("INSERT INTO ats.interviews (id, candidate_id, job_posting_id, scheduled_at, duration_minutes)
              VALUES (30, 7, 3, NULL, 45)",
             vec![("interview.scheduled", INTERVIEW, json!({"id": 30, "scheduled_at": null, "duration_minutes": 45}))]),
        step("UPDATE ats.interviews SET status = 'no_show' WHERE id = 30",
             vec![("interview.no_show", INTERVIEW, json!({"id": 30, "status": "no_show", "scheduled_at": null, "duration_minutes": 45}))]),
        step("INSERT INTO ats.code_assignments (id, candidate_id, job_posting_id, repo_url, deadline_at)
              VALUES (11, 7, 3, 'https://github.com/org/assignment-jane-smith', '2025-01-25T23:59:59Z'),
                     (12, 7, 3, 'https://github.com/org/assignment-jane-smith-2', '2025-01-25T23:59:59Z')", vec![]),
        step("UPDATE ats.code_assignments SET submitted_at = '2025-01-22T16:45:00Z' WHERE id = 11",
             vec![("code_assignment.submitted", CODE, json!({}))]),
        step("UPDATE ats.code_assignments SET submitted_at = deadline_at, auto_submitted = true WHERE id = 12",
             vec![("code_assignment.auto_submitted", CODE, json!({"id": 12, "repo_url": "https://github.com/org/assignment-jane-smith-2", "submitted_at": "2025-01-25T23:59:59Z"}))]),
        step("INSERT INTO ats.reviews (id, candidate_id, job_posting_id, recommendation, reviewer, stage)
              VALUES (9, 7, 3, 'strong_yes', 'Alex Johnson', 'Technical Interview')",
             vec![("review.submitted", "review.submitted", json!({}))]),
        step("INSERT INTO ats.outreach_campaigns (id, name) VALUES ('oc_def456', 'Platform engineers');
              INSERT INTO ats.outreach_prospects (id, campaign_id, company_name, display_name, email)
              VALUES ('op_abc123', 'oc_def456', 'Acme Corp', 'Jane Smith', 'jane@acme.example')", vec![]),
        step("UPDATE ats.outreach_prospects SET status = 'drafted' WHERE id = 'op_abc123'",
             vec![("outreach.prospect.drafted", "outreach.prospect.drafted", json!({}))]),
        step("INSERT INTO ats.outreach_messages (id, campaign_id, prospect_id, step_number, subject, body)
              VALUES ('om_ghi789', 'oc_def456', 'op_abc123', 1, 'Quick question about Acme''s hiring workflow', 'Hi Jane, ...'),
                     ('om_b2', 'oc_def456', 'op_abc123', 2, 'Following up', 'Hi again'),
                     ('om_f3', 'oc_def456', 'op_abc123', 3, 'Last note', 'Bye')", vec![]),
        step("UPDATE ats.outreach_messages SET status = 'approved', approved_at = '2026-03-12T09:30:00Z' WHERE id = 'om_ghi789'",
             vec![("outreach.message.approved", MESSAGE, json!({"status": "approved", "sent_at": null}))]),
        step("UPDATE ats.outreach_messages SET status = 'sent', sent_at = '2026-03-12T10:15:00Z' WHERE id = 'om_ghi789'",
             vec![("outreach.message.sent", MESSAGE, json!({}))]),
        step("UPDATE ats.outreach_messages SET status = 'bounced', sent_at = '2026-03-12T10:15:00Z', approved_at = '2026-03-12T09:30:00Z', last_error_code = '550' WHERE id = 'om_b2'",
             vec![("outreach.message.bounced", MESSAGE, json!({"id": "om_b2", "step_number": 2, "subject": "Following up", "status": "bounced", "last_error_code": "550"}))]),
        step("UPDATE ats.outreach_messages SET status = 'failed', approved_at = '2026-03-12T09:30:00Z', retry_count = 3, last_error_code = '421' WHERE id = 'om_f3'",
             vec![("outreach.message.failed", MESSAGE, json!({"id": "om_f3", "step_number": 3, "subject": "Last note", "status": "failed", "sent_at": null, "retry_count": 3, "last_error_code": "421"}))]),
    ]
}

/// The seed example with `patch`'s fields replaced (every patched key must already exist).
fn expected(seeds: &Value, example: &str, patch: &Value) -> Value {
    let mut value = seeds[example].clone();
    for (key, replacement) in patch.as_object().unwrap() {
        let slot = value
            .get_mut(key)
            .unwrap_or_else(|| panic!("{example} has no field {key}"));
        *slot = replacement.clone();
    }
    value
}

async fn events_after(db: &tokio_postgres::Client, after: i64) -> Vec<(i64, String, Value)> {
    db.query(
        "SELECT id, event_type, data::text FROM webhooks.events WHERE id > $1 ORDER BY id",
        &[&after],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), serde_json::from_str(r.get(2)).unwrap()))
    .collect()
}

/// Play the story: `writer` makes each change, `reader` checks what was logged. Returns the
/// event types fired.
async fn play_story(
    writer: &tokio_postgres::Client,
    reader: &tokio_postgres::Client,
) -> BTreeSet<String> {
    let seeds: Value = serde_json::from_str(SEEDS).unwrap();
    let mut last = 0;
    let mut fired = BTreeSet::new();
    for step in story() {
        writer
            .batch_execute(step.sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", step.sql));
        let logged = events_after(reader, last).await;
        let types: Vec<&str> = logged.iter().map(|(_, t, _)| t.as_str()).collect();
        let want: Vec<&str> = step.fires.iter().map(|(t, _, _)| *t).collect();
        assert_eq!(types, want, "after: {}", step.sql);
        for ((_, event_type, data), (_, example, patch)) in logged.iter().zip(&step.fires) {
            assert_eq!(
                data,
                &expected(&seeds, example, patch),
                "payload of {event_type}"
            );
            fired.insert(event_type.clone());
        }
        last = logged.last().map_or(last, |(id, _, _)| *id);
    }
    fired
}

#[tokio::test]
async fn every_table_driven_event_logs_the_seed_payload() {
    let (_cluster, db) = e2e::ats::database().await.unwrap();
    let fired = play_story(&db, &db).await;
    let catalog: BTreeSet<String> = db
        .query(
            "SELECT name FROM webhooks.event_types WHERE name <> 'test.ping'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(catalog.len(), 27);
    assert_eq!(fired, catalog, "every table-driven event type is fired");
}

/// Look-alikes of the operators and functions a trigger body might name without a schema. Each
/// does the real thing for its owner (so the writer's own statements work) and fails when run
/// with anyone else's rights, which is what a hijacked SECURITY DEFINER trigger would do.
const TRAPS: &str = r#"
DO $do$
DECLARE
    t record;
    n integer := 0;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('=', 'text', 'text', 'boolean'), ('<>', 'text', 'text', 'boolean'), ('||', 'text', 'text', 'text'),
        ('=', 'integer', 'integer', 'boolean'), ('=', 'bigint', 'bigint', 'boolean'),
        ('=', 'bigint', 'integer', 'boolean'), ('=', 'integer', 'bigint', 'boolean'),
        ('>', 'integer', 'integer', 'boolean'), ('=', 'boolean', 'boolean', 'boolean'),
        ('=', 'timestamptz', 'timestamptz', 'boolean'), ('>', 'timestamptz', 'timestamptz', 'boolean'),
        ('-', 'timestamptz', 'interval', 'timestamptz')) AS ops(op, l, r, result)
    LOOP
        n := n + 1;
        EXECUTE format($f$CREATE FUNCTION trap.op%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql AS $b$
            BEGIN
                IF current_user::pg_catalog.text OPERATOR(pg_catalog.<>) 'ats_app' THEN
                    RAISE EXCEPTION 'hijacked: operator %s ran as %%', current_user;
                END IF;
                RETURN a OPERATOR(pg_catalog.%s) b;
            END $b$$f$, n, t.l, t.r, t.result, t.op, t.op);
        EXECUTE format('CREATE OPERATOR trap.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = trap.op%s)', t.op, t.l, t.r, n);
    END LOOP;
    FOR t IN SELECT * FROM (VALUES
        ('now', '', 'timestamptz'), ('cardinality', 'text[]', 'integer'),
        ('array_append', 'text[], text', 'text[]'), ('concat', 'text, text', 'text'),
        ('pg_notify', 'text, text', 'void'), ('to_char', 'timestamp, text', 'text'),
        ('timezone', 'text, timestamptz', 'timestamp'),
        ('jsonb_build_object', 'text, bigint, text, text, text, text', 'jsonb'),
        ('jsonb_build_object', 'text, bigint, text, text', 'jsonb'),
        ('jsonb_typeof', 'jsonb', 'text'), ('pg_column_size', 'jsonb', 'integer')) AS fns(name, args, result)
    LOOP
        EXECUTE format($f$CREATE FUNCTION trap.%I(%s) RETURNS %s LANGUAGE plpgsql AS $b$
            BEGIN RAISE EXCEPTION 'hijacked: function %s ran as %%', current_user; END $b$$f$,
            t.name, t.args, t.result, t.name);
    END LOOP;
END
$do$;
"#;

#[tokio::test]
async fn a_writer_whose_search_path_leads_to_look_alikes_cannot_hijack_the_trigger_or_emit() {
    let (cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(
        "CREATE ROLE ats_app LOGIN;
         CREATE SCHEMA trap AUTHORIZATION ats_app;
         GRANT USAGE ON SCHEMA ats TO ats_app;
         GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ats TO ats_app;
         GRANT webhooks_emitter TO ats_app;
         ALTER ROLE ats_app SET search_path = trap, pg_catalog;",
    )
    .await
    .unwrap();
    let app = cluster.connect_as("app", "ats_app").await.unwrap();
    app.batch_execute(TRAPS).await.unwrap();
    // The traps are live: the writer's own statements go through them.
    let trapped: i64 = app
        .query_one(
            "SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
              WHERE n.nspname = 'trap'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(trapped, 12);
    // A subscriber, so that the fan-out runs too.
    db.batch_execute(
        "SELECT webhooks.create_endpoint('https://hooks.test/all', ARRAY['application.*', 'offer.*',
                'interview.*', 'code_assignment.*', 'review.*', 'job_posting.*']);",
    )
    .await
    .unwrap();

    let fired = play_story(&app, &db).await;
    assert_eq!(fired.len(), 27, "every event fired, with the seed payloads");
    db.batch_execute("SELECT webhooks.fan_out()").await.unwrap();
    let unqueued: i64 = db
        .query_one(
            "SELECT count(*) FROM webhooks.events ev
              WHERE ev.event_type NOT LIKE 'outreach.%'
                AND NOT EXISTS (SELECT FROM webhooks.deliveries d WHERE d.event_id = ev.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unqueued, 0,
        "every non-outreach event was queued for the subscriber"
    );

    // webhooks.emit, which applications call from their own triggers, has no SET search_path
    // either: its checks, inserts and wake-up must not reach the look-alikes.
    let emitted: i64 = app
        .query_one(
            "SELECT webhooks.emit('application.submitted', '{\"id\": 1}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let deliveries: i64 = db
        .query_one(
            "SELECT count(*) FROM webhooks.deliveries WHERE event_id = $1",
            &[&emitted],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(deliveries, 1, "emit queued its delivery");
    for (call, expected) in [
        ("webhooks.emit('no.such.event', '{}')", "unknown event type"),
        ("webhooks.emit('application.submitted', '[1]')", "must be a JSON object"),
        (
            "webhooks.emit('application.submitted', jsonb_build_object('x', repeat(md5(random()::text), 10000)))",
            "the limit is 256 KiB",
        ),
    ] {
        let error = app
            .batch_execute(&format!("SELECT {call}"))
            .await
            .unwrap_err();
        let message = error.as_db_error().unwrap().message().to_string();
        assert!(message.contains(expected), "{call}: {message}");
    }
}
