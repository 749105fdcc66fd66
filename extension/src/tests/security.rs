// Attacks by roles the extension gives out (docs/security.md): each class of fault tried the way
// an attacker would, and refused.

/// Every role a DBA hands out, and a role with no webhooks role at all.
const ATTACKERS: [&str; 5] = [
    "webhooks_admin",
    "webhooks_relay",
    "webhooks_reader",
    "webhooks_emitter",
    "lookalike_nobody",
];

#[pg_test]
fn temporary_look_alikes_never_run_as_the_extension_owner() {
    // PostgreSQL looks up tables and views in the caller's temporary schema first unless the
    // search path names it. A look-alike of every relation of pg_catalog and webhooks, with
    // the same columns, runs pg_temp.hijack() as whoever reads it: any call that reads one
    // fails with HIJACKED and the role it ran as.
    run("CREATE ROLE lookalike_nobody");
    run("CREATE SCHEMA lookalike AUTHORIZATION webhooks_admin");
    run("SET LOCAL ROLE webhooks_admin");
    run("CREATE TABLE lookalike.candidates (id bigint PRIMARY KEY, name text, email text);
         CREATE TABLE lookalike.job_postings (id bigint PRIMARY KEY, title text);
         CREATE TABLE lookalike.reviews (id bigint, candidate_id bigint, job_posting_id bigint,
             recommendation text, reviewer text, stage text);
         GRANT INSERT ON lookalike.reviews TO PUBLIC");
    run("RESET ROLE");
    run("SELECT webhooks.track('lookalike.reviews')");
    let id = endpoint("lookalike", "ARRAY['offer.*', 'review.submitted']");
    let other = endpoint("lookalike-other", "ARRAY['offer.*']");
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 1}')");
    let delivery: i64 = one(&format!("SELECT min(id) FROM webhooks.deliveries WHERE endpoint_id = {id}"));
    let look_alikes = one::<String>(
        "SELECT string_agg(format('CREATE TEMP VIEW %I AS SELECT r.* FROM (SELECT pg_temp.hijack() AS h) h LEFT JOIN (SELECT %s) r ON true',
                                  c.relname,
                                  (SELECT string_agg(format('NULL::%s AS %I',
                                              CASE WHEN t.typtype = 'p' THEN 'text'
                                                   ELSE format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), NULL) END,
                                              a.attname), ', ' ORDER BY a.attnum)
                                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)), '; ')
           FROM pg_class c
          WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'webhooks'::regnamespace)
            AND c.relkind IN ('r', 'v', 'p', 'm', 'S', 'f')",
    );
    let calls = [
        "SELECT webhooks.set_setting('outreach_addon', 'true')".to_string(),
        "SELECT * FROM webhooks.list_event_types()".into(),
        "SELECT * FROM webhooks.create_endpoint('https://hooks.test/new', ARRAY['offer.*'])".into(),
        format!("SELECT * FROM webhooks.update_endpoint({id}, '{{\"events\": [\"offer.*\", \"application.*\"]}}')"),
        format!("SELECT webhooks.pause_endpoint({id})"),
        format!("SELECT webhooks.resume_endpoint({id})"),
        format!("SELECT webhooks.disable_endpoint({id}, 'test')"),
        format!("SELECT webhooks.rotate_secret({id})"),
        format!("SELECT webhooks.send_test_ping({id})"),
        format!("SELECT webhooks.replay({id}, now() - interval '1 day')"),
        format!("SELECT webhooks.redeliver({delivery})"),
        "SELECT webhooks.retry_now()".into(),
        "SELECT webhooks.fan_out()".into(),
        "SELECT webhooks.resume_after_restore()".into(),
        "SELECT webhooks.untrack('lookalike.reviews')".into(),
        "SELECT webhooks.track('lookalike.reviews')".into(),
        "SELECT * FROM webhooks.track_ats('lookalike')".into(),
        format!("SELECT webhooks.delete_endpoint({other})"),
        "SELECT webhooks.emit('offer.accepted', '{\"id\": 2}')".into(),
        "SELECT * FROM webhooks.claim_deliveries('r', 10, interval '1 minute')".into(),
        format!(
            "SELECT * FROM webhooks.record_attempts('r', '[{{\"delivery_id\": {delivery}, \"attempt_number\": 1,
                \"started_at\": \"2026-01-01T00:00:00Z\", \"duration_ms\": 1, \"response_status\": 410}}]')"
        ),
        format!("SELECT webhooks.release_deliveries('r', ARRAY[{delivery}]::bigint[])"),
        "SELECT * FROM webhooks.work_marker()".into(),
        "SELECT * FROM webhooks.queue_stats()".into(),
        "SELECT webhooks.lease_key()".into(),
        "SELECT webhooks.generate_secret(), webhooks.check_endpoint_url('https://a.test/'), webhooks.iso8601(now())".into(),
        "SELECT count(*) FROM webhooks.endpoint_list".into(),
        "SELECT count(*) FROM webhooks.endpoint_status".into(),
        "SELECT count(*) FROM webhooks.delivery_log".into(),
        "SELECT count(*) FROM webhooks.events_awaiting_fan_out".into(),
        "INSERT INTO lookalike.reviews VALUES (1, 7, 3, 'yes', 'Alex', 'Onsite')".into(),
    ];
    for role in ATTACKERS {
        run(&format!("SET LOCAL ROLE {role}"));
        run("CREATE FUNCTION pg_temp.hijack() RETURNS int LANGUAGE plpgsql VOLATILE AS
             $$ BEGIN RAISE EXCEPTION 'HIJACKED: a look-alike ran as %', current_user; END $$");
        run(&look_alikes);
        run("RESET ROLE");
        for call in &calls {
            if let Some(error) = error_as(Some(role), call) {
                assert!(!error.message.contains("HIJACKED"), "{role}: {call}: {error:?}");
            }
        }
        run("DO $$ DECLARE v text; BEGIN
               FOR v IN SELECT c.relname FROM pg_catalog.pg_class c
                         WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'v' LOOP
                   EXECUTE pg_catalog.format('DROP VIEW IF EXISTS pg_temp.%I CASCADE', v);
               END LOOP;
             END $$");
        run("DROP FUNCTION pg_temp.hijack()");
    }
}

#[pg_test]
fn only_emitters_emit_and_never_test_pings_or_events_of_an_add_on_that_is_off() {
    endpoint("emitted", "ARRAY['offer.accepted']");
    run("CREATE ROLE forger; CREATE ROLE app IN ROLE webhooks_emitter");
    let refused = error_as(Some("forger"), "SELECT webhooks.emit('offer.accepted', '{}')").expect("refused");
    assert_eq!(refused.sqlstate, "42501", "{refused:?}");
    assert!(error_as(Some("app"), "SELECT webhooks.emit('offer.accepted', '{}')").is_none());
    let ping = error_as(Some("app"), "SELECT webhooks.emit('test.ping', '{}')").expect("refused");
    assert_eq!(ping.sqlstate, "42501", "{ping:?}");
    assert!(ping.hint.contains("send_test_ping"), "{ping:?}");
    let outreach = error_as(Some("app"), "SELECT webhooks.emit('outreach.message.sent', '{}')").expect("refused");
    assert_eq!(outreach.sqlstate, "0A000", "{outreach:?}");
    assert!(outreach.message.contains("needs the outreach add-on"), "{outreach:?}");
    assert!(outreach.hint.contains("set_setting('outreach_addon', 'true')"), "{outreach:?}");
    run("SELECT webhooks.set_setting('outreach_addon', 'true')");
    assert!(error_as(Some("app"), "SELECT webhooks.emit('outreach.message.sent', '{}')").is_none());
}

#[pg_test]
fn a_relay_records_and_releases_only_what_its_session_holds_under_a_live_lease() {
    // Two relay sessions, told apart by their lease keys as two connections would be.
    let mine = "0123456789abcdef0123456789abcdef";
    let theirs = "fedcba9876543210fedcba9876543210";
    let id = endpoint("leased", "ARRAY['offer.accepted']");
    let victim = endpoint("victim", "ARRAY['offer.declined']");
    run("SELECT webhooks.emit('offer.accepted', '{}'), webhooks.emit('offer.declined', '{}')");
    let as_session = |key: &str| run(&format!("SELECT webhooks.lease_key('{key}')"));
    let delivery_of = |endpoint: i64| one::<i64>(&format!("SELECT id FROM webhooks.deliveries WHERE endpoint_id = {endpoint}"));
    let (leased, unclaimed) = (delivery_of(id), delivery_of(victim));

    as_session(theirs);
    assert_eq!(count("webhooks.claim_deliveries('r', 10, interval '1 minute')"), 2);
    as_session(mine);
    assert_eq!(report_attempt(leased, 200), "0,0,0,1", "a success recorded for another session's lease");
    assert_eq!(report_attempt(unclaimed, 410), "0,0,0,1", "a fake 410 for another endpoint's delivery");
    assert_eq!(one::<String>(&format!("SELECT status FROM webhooks.endpoints WHERE id = {victim}")), "active");
    assert_eq!(one::<i32>(&format!("SELECT webhooks.release_deliveries('r', ARRAY[{leased}]::bigint[])")), 0);
    assert_eq!(count("webhooks.attempts"), 0);
    as_session(theirs);
    assert_eq!(report_attempt(leased, 200), "1,0,0,0", "the holder records it");

    let long = error_as(None, "SELECT * FROM webhooks.claim_deliveries('r', 10, interval '100 years')").expect("refused");
    assert_eq!(long.sqlstate, "22023", "{long:?}");
    assert!(long.hint.contains("at most 01:00:00"), "{long:?}");
    expect_error("SELECT webhooks.lease_key('guess')", "32 lowercase hex digits", "without an argument");
}

#[pg_test]
fn turning_allow_http_off_disables_plain_http_endpoints_until_they_use_https() {
    run("SELECT webhooks.set_setting('allow_http', 'true')");
    let plain = one::<i64>("SELECT endpoint_id FROM webhooks.create_endpoint('http://hooks.test/plain', ARRAY['offer.accepted'])");
    let secure = endpoint("secure", "ARRAY['offer.accepted']");
    run("SELECT webhooks.set_setting('allow_http', 'false')");
    assert_eq!(
        one::<String>(&format!("SELECT status || ': ' || disabled_reason FROM webhooks.endpoints WHERE id = {plain}")),
        "disabled: plain http is no longer allowed (the allow_http setting was turned off)"
    );
    assert_eq!(one::<String>(&format!("SELECT status FROM webhooks.endpoints WHERE id = {secure}")), "active");
    run("SELECT webhooks.emit('offer.accepted', '{}')");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {plain}")), 0);
    expect_error(&format!("SELECT webhooks.resume_endpoint({plain})"), "only https is allowed", "Use https");
    run(&format!("SELECT webhooks.update_endpoint({plain}, '{{\"url\": \"https://hooks.test/plain\"}}')"));
    assert_eq!(one::<String>(&format!("SELECT webhooks.resume_endpoint({plain})")), "active");
}

#[pg_test]
fn own_secrets_must_be_strong_and_secrets_are_shown_only_at_creation_and_rotation() {
    for weak in ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abcabcabcabcabcabcabcabcabcabcab", "password1234password1234", "short"] {
        let err = expect_error(
            &format!("SELECT webhooks.create_endpoint('https://hooks.test/w', ARRAY['offer.accepted'], secret => '{weak}')"),
            "signing secret is too weak",
            "128 bits",
        );
        assert_eq!(err.sqlstate, "22023");
    }
    let strong = "whsec_9f86d081884c7d659a2feaa0c55ad015";
    let id = one::<i64>(&format!(
        "SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.test/s', ARRAY['offer.accepted'], secret => '{strong}')"
    ));
    let updated = one::<String>(&format!("SELECT to_jsonb(u)::text FROM webhooks.update_endpoint({id}, '{{\"name\": \"renamed\"}}') u"));
    assert!(updated.contains("renamed") && !updated.contains("secret") && !updated.contains(strong), "{updated}");
}

#[pg_test]
fn only_a_table_owner_tracks_it_and_only_with_people_tables_the_owner_may_read() {
    run("CREATE ROLE hr; CREATE ROLE tracker IN ROLE webhooks_admin;
         CREATE SCHEMA hr AUTHORIZATION hr; CREATE SCHEMA secret_people;
         CREATE TABLE secret_people.candidates (id bigint PRIMARY KEY, name text, email text);
         CREATE TABLE secret_people.job_postings (id bigint PRIMARY KEY, title text)");
    run("SET LOCAL ROLE hr");
    run("CREATE TABLE hr.candidates (id bigint PRIMARY KEY, name text, email text);
         CREATE TABLE hr.job_postings (id bigint PRIMARY KEY, title text);
         CREATE TABLE hr.reviews (id bigint, candidate_id bigint, job_posting_id bigint,
             recommendation text, reviewer text, stage text, salary int)");
    run("RESET ROLE");

    // An admin that does not own the table (nor may look into its schema: it names it by oid).
    let reviews: i64 = one("SELECT 'hr.reviews'::regclass::oid::bigint");
    let not_owner = error_as(Some("tracker"), &format!("SELECT webhooks.track({reviews}::oid::regclass)")).expect("refused");
    assert_eq!(not_owner.sqlstate, "42501", "{not_owner:?}");
    assert!(not_owner.message.contains("only the owner of hr.reviews (role hr)"), "{not_owner:?}");
    // A temporary table of its own, whose people tables it may not read, named by oid.
    run("SET LOCAL ROLE tracker");
    run("CREATE TEMP TABLE reviews (id bigint, candidate_id bigint, job_posting_id bigint,
             recommendation text, reviewer text, stage text)");
    run("RESET ROLE");
    let oid_of = |name: &str| one::<i64>(&format!("SELECT '{name}'::regclass::oid::bigint"));
    let (secret_candidates, secret_postings) = (oid_of("secret_people.candidates"), oid_of("secret_people.job_postings"));
    let temp = error_as(
        Some("tracker"),
        &format!(
            "SELECT webhooks.track({}::oid::regclass, candidates => {secret_candidates}::oid::regclass,
                                   job_postings => {secret_postings}::oid::regclass)",
            oid_of("pg_temp.reviews")
        ),
    )
    .expect("refused");
    assert!(temp.message.contains("is a temporary table"), "{temp:?}");
    run("DROP TABLE pg_temp.reviews");
    // The owner, with people tables it may not read.
    run("GRANT tracker TO hr");
    let unreadable = error_as(
        Some("hr"),
        &format!("SELECT webhooks.track('hr.reviews', candidates => {secret_candidates}::oid::regclass, job_postings => 'hr.job_postings')"),
    )
    .expect("refused");
    assert_eq!(unreadable.sqlstate, "42501", "{unreadable:?}");
    assert!(unreadable.message.contains("role hr may not read secret_people.candidates (id, name, email)"), "{unreadable:?}");
    // The owner, with its own people tables: tracked; then the candidates are revoked from it.
    assert!(error_as(Some("hr"), "SELECT webhooks.track('hr.reviews')").is_none());
    run("SELECT webhooks.track('hr.reviews')");
    run("INSERT INTO hr.candidates VALUES (7, 'Ada', 'ada@example.com'); INSERT INTO hr.job_postings VALUES (3, 'Engineer')");
    run("INSERT INTO hr.reviews VALUES (1, 7, 3, 'yes', 'Alex', 'Onsite', 100)");
    assert_eq!(one::<String>("SELECT data -> 'candidate' ->> 'email' FROM webhooks.events WHERE event_type = 'review.submitted'"), "ada@example.com");
    run("ALTER TABLE hr.candidates OWNER TO postgres");
    let revoked = expect_error(
        "INSERT INTO hr.reviews VALUES (2, 7, 3, 'no', 'Alex', 'Onsite', 100)",
        "hr.reviews is tracked, but its payloads cannot name people: role hr may not read hr.candidates",
        "Grant its owner SELECT",
    );
    assert_eq!(revoked.sqlstate, "42501");
    run("GRANT SELECT (id, name, email) ON hr.candidates TO hr");
    run("INSERT INTO hr.reviews VALUES (3, 7, 3, 'maybe', 'Alex', 'Onsite', 100)");
    run("ALTER TABLE hr.candidates ENABLE ROW LEVEL SECURITY");
    expect_error(
        "INSERT INTO hr.reviews VALUES (4, 7, 3, 'no', 'Alex', 'Onsite', 100)",
        "row-level security on hr.candidates applies to role hr",
        "Grant its owner SELECT",
    );
    assert_eq!(count("webhooks.events WHERE event_type = 'review.submitted'"), 2);
    assert_eq!(count("webhooks.events WHERE data ? 'salary'"), 0);
}

#[pg_test]
fn a_tracked_column_changed_dropped_or_renamed_after_track_is_never_misread() {
    // Every column every kind reads: renamed, dropped, or made text. A write then either fails
    // with an error naming the table and column, or sends the column as what it now is.
    run("CREATE SCHEMA alt;
         CREATE TABLE alt.candidates (id bigint PRIMARY KEY, name text, email text);
         CREATE TABLE alt.posting_titles (id bigint PRIMARY KEY, title text);
         CREATE TABLE alt.job_postings (id bigint, title text, status text, location text,
             department text, employment_type text, published_at timestamptz, closed_at timestamptz, public_url text);
         CREATE TABLE alt.applications (id bigint, candidate_id bigint, job_posting_id bigint, current_stage text,
             submitted_at timestamptz, rejected boolean, withdrawn boolean, offered boolean);
         CREATE TABLE alt.offers (id bigint, candidate_id bigint, job_posting_id bigint, status text, details text,
             extended_at timestamptz, expires_at timestamptz, accepted_at timestamptz, declined_at timestamptz);
         CREATE TABLE alt.interviews (id bigint, candidate_id bigint, job_posting_id bigint, status text,
             scheduled_at timestamptz, duration_minutes int);
         CREATE TABLE alt.code_assignments (id bigint, candidate_id bigint, job_posting_id bigint, repo_url text,
             submitted_at timestamptz, deadline_at timestamptz, auto_submitted boolean);
         CREATE TABLE alt.reviews (id bigint, candidate_id bigint, job_posting_id bigint, recommendation text,
             reviewer text, stage text);
         CREATE TABLE alt.outreach_prospects (id text, campaign_id text, company_name text, display_name text, status text);
         CREATE TABLE alt.outreach_messages (id text, campaign_id text, prospect_id text, step_number int, subject text,
             status text, sent_at timestamptz, approved_at timestamptz, retry_count int, last_error_code text);
         INSERT INTO alt.candidates VALUES (7, 'Ada', 'ada@example.com');
         INSERT INTO alt.posting_titles VALUES (3, 'Engineer')");
    run("SELECT webhooks.track(format('alt.%I', k.kind)::regclass, candidates => 'alt.candidates',
                               job_postings => 'alt.posting_titles')
           FROM webhooks.table_kinds k");
    // A write that fires an event of the kind with every column set, by column name, so that
    // it still works with a column renamed or dropped (that column is then left out).
    let t = "\"2004-06-11T19:05:28Z\"";
    let writes = [
        ("applications", format!(r#"{{"id": 1, "candidate_id": 7, "job_posting_id": 3, "current_stage": "Applied", "submitted_at": {t}, "rejected": true, "withdrawn": true, "offered": true}}"#)),
        ("offers", format!(r#"{{"id": 1, "candidate_id": 7, "job_posting_id": 3, "status": "accepted", "details": "x", "extended_at": {t}, "expires_at": {t}, "accepted_at": {t}, "declined_at": {t}}}"#)),
        ("interviews", format!(r#"{{"id": 1, "candidate_id": 7, "job_posting_id": 3, "status": "scheduled", "scheduled_at": {t}, "duration_minutes": 60}}"#)),
        ("code_assignments", format!(r#"{{"id": 1, "candidate_id": 7, "job_posting_id": 3, "repo_url": "https://git.test/r", "submitted_at": {t}, "deadline_at": {t}, "auto_submitted": true}}"#)),
        ("reviews", r#"{"id": 1, "candidate_id": 7, "job_posting_id": 3, "recommendation": "yes", "reviewer": "Alex", "stage": "Onsite"}"#.to_string()),
        ("job_postings", format!(r#"{{"id": 4, "title": "Designer", "status": "published", "location": "Remote", "department": "Design", "employment_type": "Full-time", "published_at": {t}, "closed_at": {t}, "public_url": "https://jobs.test/4"}}"#)),
        ("outreach_prospects", r#"{"id": "op_1", "campaign_id": "oc_1", "company_name": "Acme", "display_name": "Ada", "status": "drafted"}"#.to_string()),
        ("outreach_messages", format!(r#"{{"id": "om_1", "campaign_id": "oc_1", "prospect_id": "op_1", "step_number": 1, "subject": "Hi", "status": "sent", "sent_at": {t}, "approved_at": {t}, "retry_count": 0}}"#)),
    ];
    for (kind, columns) in crate::tracking::kind_columns() {
        let row = &writes.iter().find(|(k, _)| *k == kind).expect("a write for every kind").1;
        let spec = crate::tracking::kind_reads(kind);
        for column in columns {
            for change in [
                format!("RENAME COLUMN {column} TO {column}_renamed"),
                format!("DROP COLUMN {column} CASCADE"),
                format!("ALTER COLUMN {column} TYPE text USING {column}::text"),
            ] {
                // The change, the write, and the payload it logged (as the error's message, so
                // that the subtransaction rolls it all back).
                let outcome = error_as(
                    None,
                    &format!(
                        "DO $$ BEGIN
                           ALTER TABLE alt.{kind} {change};
                           INSERT INTO alt.{kind} SELECT * FROM jsonb_populate_record(NULL::alt.{kind}, '{row}');
                           RAISE EXCEPTION 'logged: %', (SELECT string_agg(data::text, ' ') FROM webhooks.events);
                         END $$"
                    ),
                )
                .expect("the block always raises");
                let case = format!("{kind}.{column}: {change}: {outcome:?}");
                let typed = change.starts_with("ALTER COLUMN");
                let read_as_its_type = spec.contains(&column);
                let reference = column == "candidate_id" || column == "job_posting_id";
                if let Some(logged) = outcome.message.strip_prefix("logged: ") {
                    // Sent as what it now is: text.
                    assert!(typed && !read_as_its_type && !reference, "{case}");
                    assert!(!logged.contains("2004-06-11T19:05:28Z") || !spec.contains(&column), "{case}");
                } else if typed && reference {
                    assert!(outcome.message.contains("cannot be compared with a value of type text"), "{case}");
                } else {
                    assert!(outcome.message.contains(&format!("alt.{kind}")), "{case}");
                    assert!(outcome.message.contains(column), "{case}");
                    if typed {
                        assert!(read_as_its_type, "{case}");
                        assert_eq!(outcome.sqlstate, "42804", "{case}");
                        assert!(outcome.message.contains("is text, but"), "{case}");
                        assert!(outcome.hint.contains("untrack"), "{case}");
                    }
                }
            }
        }
    }
    assert_eq!(count("webhooks.events"), 0);
}
