// The event catalog, settings and the Outreach add-on gate.

#[pg_test]
fn catalog_has_every_seed_event_by_category() {
    let per_category = one::<String>(
        "SELECT string_agg(category || '=' || n, ' ' ORDER BY category)
           FROM (SELECT category, count(*) n FROM webhooks.list_event_types() GROUP BY 1) c",
    );
    assert_eq!(
        per_category,
        "application=5 code_assignment=2 interview=5 job_posting=4 offer=5 outreach=5 review=1 test=1"
    );
    assert_eq!(
        one::<String>("SELECT string_agg(name, ',' ORDER BY name) FROM webhooks.event_types WHERE category = 'outreach'"),
        "outreach.message.approved,outreach.message.bounced,outreach.message.failed,outreach.message.sent,outreach.prospect.drafted"
    );
    assert_eq!(count("webhooks.list_event_types() WHERE description = ''"), 0);
    assert_eq!(count("webhooks.list_event_types() WHERE NOT available"), 5, "outreach is off by default");
}

#[pg_test]
fn outreach_subscriptions_need_the_addon() {
    let err = expect_error(
        "SELECT webhooks.create_endpoint('https://hooks.test/o', ARRAY['outreach.message.sent'])",
        "event type \"outreach.message.sent\" needs the Outreach add-on",
        "webhooks.set_setting('outreach_addon', 'true')",
    );
    assert_eq!(err.sqlstate, "0A000");
    expect_error(
        "SELECT webhooks.create_endpoint('https://hooks.test/o', ARRAY['offer.accepted', 'outreach.*'])",
        "needs the Outreach add-on",
        "outreach_addon",
    );
    let plain = endpoint("plain", "ARRAY['offer.accepted']");
    expect_error(
        &format!("SELECT webhooks.update_endpoint({plain}, '{{\"events\": [\"outreach.*\"]}}')"),
        "needs the Outreach add-on",
        "outreach_addon",
    );

    run("SELECT webhooks.set_setting('outreach_addon', 'true')");
    let id = endpoint("outreach", "ARRAY['outreach.*']");
    assert_eq!(count(&format!("webhooks.subscriptions WHERE endpoint_id = {id}")), 5);
    assert_eq!(count("webhooks.list_event_types() WHERE NOT available"), 0);
}

#[pg_test]
fn settings_refuse_unknown_names_and_non_booleans() {
    expect_error("SELECT webhooks.set_setting('allow_ftp', 'true')", "unknown setting \"allow_ftp\"", "allow_http, attempt_retention, deleted_endpoint_retention, delivery_retention, event_retention, outreach_addon, partition_period");
    expect_error("SELECT webhooks.set_setting('allow_http', 'sometimes')", "must be true or false, not \"sometimes\"", "'true'");
    assert_eq!(one::<String>("SELECT webhooks.set_setting('allow_http', 'on')"), "true");
}

#[pg_test]
fn payload_timestamps_are_utc_whole_seconds_whatever_the_session_timezone() {
    run("SET LOCAL TimeZone = 'America/New_York'");
    assert_eq!(
        one::<String>("SELECT webhooks.iso8601('2025-01-15 09:30:00.789-05')"),
        "2025-01-15T14:30:00Z"
    );
}

#[pg_test]
fn every_table_view_and_function_says_what_it_is_for() {
    let uncommented = one::<String>(
        "SELECT coalesce(string_agg(what, ', ' ORDER BY what), '')
           FROM (SELECT c.oid::regclass::text AS what
                   FROM pg_class c
                  WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'v')
                    AND obj_description(c.oid, 'pg_class') IS NULL
                 UNION ALL
                 SELECT p.oid::regprocedure::text
                   FROM pg_proc p
                  WHERE p.pronamespace = 'webhooks'::regnamespace
                    AND obj_description(p.oid, 'pg_proc') IS NULL) missing",
    );
    assert_eq!(uncommented, "", "objects without COMMENT ON");
}
