// The native tracking trigger against its SQL definitions: the column lists of
// webhooks.table_kinds, and payload values as to_jsonb() and webhooks.iso8601() give them.
// (tests/tests/ats_events.rs compares every event's payload with Kit's examples.)

#[pg_test]
fn the_trigger_reads_exactly_the_columns_table_kinds_requires() {
    let kinds = crate::tracking::kind_columns();
    assert_eq!(kinds.len() as i64, count("webhooks.table_kinds"));
    for (kind, columns) in kinds {
        let required = Spi::get_one::<Vec<String>>(&format!(
            "SELECT required_columns FROM webhooks.table_kinds WHERE kind = '{kind}'"
        ))
        .unwrap()
        .unwrap_or_else(|| panic!("{kind} is not in webhooks.table_kinds"));
        assert_eq!(required, columns, "{kind}");
    }
}

#[pg_test]
fn the_trigger_fires_exactly_the_events_table_kinds_lists_and_the_catalog_holds() {
    let kinds = crate::tracking::kind_events();
    assert_eq!(kinds.len() as i64, count("webhooks.table_kinds"));
    for (kind, events) in kinds {
        let listed = one::<Vec<String>>(&format!(
            "SELECT events FROM webhooks.table_kinds WHERE kind = '{kind}'"
        ));
        assert_eq!(listed, events, "{kind}");
        assert!(events.len() <= crate::tracking::max_fired(), "{kind} fires more events than the log writer takes from one change");
        for event in events {
            assert_eq!(
                count(&format!("webhooks.event_types WHERE name = '{event}'")),
                1,
                "{kind} fires {event}, which the event catalog must hold"
            );
        }
    }
}

#[pg_test]
fn the_trigger_and_the_event_data_domain_share_one_payload_limit() {
    assert_eq!(
        one::<i32>("SELECT webhooks.max_payload_bytes()") as usize,
        crate::tracking::max_payload_bytes()
    );
}

#[pg_test]
fn payload_values_are_what_to_jsonb_and_iso8601_give_for_any_column_type() {
    run("CREATE SCHEMA conv;
         CREATE TYPE conv.state AS ENUM ('draft', 'sent');
         CREATE DOMAIN conv.line AS varchar(200);
         CREATE TABLE conv.messages (id text PRIMARY KEY, campaign_id text, prospect_id text,
             step_number numeric, subject conv.line, status conv.state, sent_at timestamp,
             approved_at date, retry_count smallint, last_error_code int[])");
    run("SELECT webhooks.track('conv.messages', kind => 'outreach_messages')");
    // Timestamps without a time zone are read in the session's zone, as the cast reads them.
    run("SET LOCAL TimeZone = 'Asia/Kolkata'");
    run(r#"INSERT INTO conv.messages VALUES
           ('om_1', 'oc_1', 'op_1', 2.50, 'Hi "there" \ é', 'sent', '2025-03-01 10:00:59.9', '2025-02-28', 3, '{1,NULL}'),
           ('om_2', 'oc_1', 'op_2', NULL, NULL, 'sent', 'infinity', '0044-03-15 BC', NULL, NULL),
           ('om_3', 'oc_1', 'op_3', 1e20, 'x', 'sent', '10000-01-01', NULL, -1, '{}')"#);
    assert_eq!(count("webhooks.events"), 3);
    let mismatches = count(
        "webhooks.events ev JOIN conv.messages m ON m.id = ev.data ->> 'id'
          WHERE ev.data IS DISTINCT FROM pg_catalog.jsonb_build_object(
                'id', m.id, 'campaign_id', m.campaign_id, 'prospect_id', m.prospect_id,
                'step_number', m.step_number, 'subject', m.subject, 'status', m.status,
                'sent_at', webhooks.iso8601(m.sent_at), 'approved_at', webhooks.iso8601(m.approved_at),
                'retry_count', m.retry_count, 'last_error_code', m.last_error_code)",
    );
    assert_eq!(mismatches, 0, "{}", one::<String>("SELECT string_agg(data::text, E'\\n') FROM webhooks.events"));
    assert_eq!(
        one::<String>("SELECT data ->> 'sent_at' FROM webhooks.events WHERE data ->> 'id' = 'om_1'"),
        "2025-03-01T04:30:59Z"
    );
}

/// A schema with the candidates and job postings tables payloads read.
fn schema_with_people(schema: &str) {
    run(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.candidates (id bigint PRIMARY KEY, name text, email text);
         CREATE TABLE {schema}.job_postings (id bigint PRIMARY KEY, title text)"
    ));
}

#[pg_test]
fn track_refuses_columns_whose_types_the_rules_cannot_read() {
    schema_with_people("odd");
    run("CREATE TABLE odd.applications (id int, candidate_id bigint, job_posting_id bigint,
             current_stage text, submitted_at timestamptz, rejected text, withdrawn bool, offered bool);
         CREATE TABLE odd.reviews (id int, candidate_id bigint, job_posting_id point,
             recommendation text, reviewer text, stage text);
         CREATE TABLE odd.interviews (id int, candidate_id bigint, job_posting_id bigint,
             status text, scheduled_at text, duration_minutes int)");
    let rejected = error_as(None, "SELECT webhooks.track('odd.applications')").expect("refused");
    assert_eq!(rejected.sqlstate, "42804");
    assert!(rejected.message.contains("odd.applications.rejected is text, but the applications rules read it as boolean"), "{rejected:?}");
    assert!(rejected.hint.contains("ALTER TABLE"), "{rejected:?}");
    let posting = error_as(None, "SELECT webhooks.track('odd.reviews')").expect("refused");
    assert!(posting.message.contains("odd.reviews.job_posting_id cannot be looked up: odd.job_postings.id (bigint) cannot be compared with a value of type point"), "{posting:?}");
    let time = error_as(None, "SELECT webhooks.track('odd.interviews')").expect("refused");
    assert!(time.message.contains("odd.interviews.scheduled_at is text, but interviews payloads send it as a timestamp"), "{time:?}");
    assert_eq!(count("webhooks.tracked_tables"), 0);
    assert_eq!(count("pg_trigger WHERE tgname = 'webhooks_events'"), 0);
}

#[pg_test]
fn only_track_can_attach_the_tracking_trigger() {
    // The trigger writes the log without privilege checks, so attaching it is what must be
    // guarded: EXECUTE on it is revoked from PUBLIC, and only track() (an admin function) may.
    run("CREATE ROLE app_owner;
         CREATE SCHEMA owned AUTHORIZATION app_owner;
         CREATE TABLE owned.reviews (id int, candidate_id bigint, job_posting_id bigint,
             recommendation text, reviewer text, stage text);
         ALTER TABLE owned.reviews OWNER TO app_owner");
    let refused = error_as(
        Some("app_owner"),
        "CREATE TRIGGER forged AFTER INSERT ON owned.reviews FOR EACH ROW
         EXECUTE FUNCTION webhooks.track_changes('reviews')",
    )
    .expect("refused");
    assert_eq!(refused.sqlstate, "42501", "{refused:?}");
    assert!(refused.message.contains("track_changes"), "{refused:?}");
    let refused = error_as(Some("app_owner"), "SELECT webhooks.track('owned.reviews')").expect("refused");
    assert_eq!(refused.sqlstate, "42501", "{refused:?}");
}

#[pg_test]
fn an_index_the_trigger_cannot_maintain_stops_tracked_writes_with_a_clear_error() {
    schema_with_people("idx");
    run("CREATE TABLE idx.reviews (id int, candidate_id bigint, job_posting_id bigint,
             recommendation text, reviewer text, stage text);
         SELECT webhooks.track('idx.reviews');
         CREATE INDEX events_by_candidate ON webhooks.events ((data -> 'candidate' ->> 'id'))");
    expect_error(
        "INSERT INTO idx.reviews VALUES (1, 7, 3, 'yes', 'Alex', 'Onsite')",
        "webhooks.events_0 has an index that tracking cannot maintain: events_0_expr_idx",
        "drop this index",
    );
    run("DROP INDEX webhooks.events_by_candidate");
    run("INSERT INTO idx.reviews VALUES (1, 7, 3, 'yes', 'Alex', 'Onsite')");
    assert_eq!(count("webhooks.events WHERE event_type = 'review.submitted'"), 1);
}
