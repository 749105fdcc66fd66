// Retention's settings and its limits on replay, in one transaction each. webhooks.maintain()
// itself (partitions made ahead, whole partitions dropped, nothing pending lost) is tested end
// to end, where its DDL commits and meets real concurrent transactions
// (tests/tests/retention.rs).

#[pg_test]
fn replay_and_backfill_reach_back_as_far_as_the_log_keeps() {
    let id = endpoint("late", "ARRAY['offer.*']");
    // While the log's first period is kept, every window is complete.
    assert_eq!(one::<String>("SELECT webhooks.events_kept_since()::text"), "-infinity");
    run(&format!("SELECT webhooks.replay({id}, now() - interval '10 years')"));
    // Once it is gone, the oldest period left says how far back.
    run("INSERT INTO webhooks.event_log_periods VALUES (4294967296, now() - interval '20 days')");
    run("DELETE FROM webhooks.event_log_periods WHERE first_id = 0");
    let kept = one::<String>("SELECT webhooks.iso8601(webhooks.events_kept_since())");
    let err = expect_error(
        &format!("SELECT webhooks.replay({id}, now() - interval '90 days')"),
        &format!("the event log no longer holds events from before {kept}"),
        "the event_retention setting",
    );
    assert_eq!(err.sqlstate, "22023");
    run(&format!("SELECT webhooks.replay({id}, webhooks.events_kept_since())"));
    expect_error(
        "SELECT webhooks.create_endpoint('https://hooks.test/b', ARRAY['offer.*'], backfill_since => now() - interval '90 days')",
        "no longer holds events",
        "ask for a window from",
    );
}

#[pg_test]
fn retention_and_the_partition_period_are_durations_set_with_set_setting() {
    assert_eq!(one::<String>("SELECT webhooks.set_setting('event_retention', '12 hours')"), "12:00:00");
    assert_eq!(one::<String>("SELECT webhooks.set_setting('partition_period', '1 hour')"), "01:00:00");
    expect_error("SELECT webhooks.set_setting('attempt_retention', 'soon')", "must be a duration of at least 1 minute", "'30 days'");
    expect_error("SELECT webhooks.set_setting('delivery_retention', '10 seconds')", "at least 1 minute", "interval");
    expect_error("SELECT webhooks.set_setting('partition_period', '40 days')", "at most 31 days", "interval");
}

#[pg_test]
fn the_storage_view_shows_every_table_with_its_size_and_retention() {
    assert_eq!(
        one::<String>("SELECT string_agg(table_name || ' ' || retention, ', ' ORDER BY table_name) FROM webhooks.storage"),
        "webhooks.attempts 30 days, webhooks.deliveries 30 days, webhooks.endpoint_activity 30 days, webhooks.endpoint_history 90 days, webhooks.events 30 days"
    );
    assert_eq!(count("webhooks.storage WHERE total_bytes > 0 AND horizon < now()"), 5);
    assert_eq!(one::<i64>("SELECT partitions FROM webhooks.storage WHERE table_name = 'webhooks.events'"), 2, "events_0 and events_kept");
}

#[pg_test]
fn a_finished_delivery_outliving_its_event_is_still_in_the_delivery_log() {
    let id = endpoint("outlived", "ARRAY['offer.*']");
    run(&format!(
        "INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, finished_at) VALUES (-1, {id}, 'succeeded', now())"
    ));
    assert_eq!(
        one::<String>("SELECT delivery_status || ' ' || coalesce(event_type, 'no event') FROM webhooks.delivery_log WHERE event_id = -1"),
        "succeeded no event"
    );
}
