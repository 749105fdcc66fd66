// Emitting, fan-out, pausing, test pings, replay, redelivery, the append-only log, views.

#[pg_test]
fn emit_logs_the_event_and_queues_one_delivery_per_active_subscriber() {
    let a = endpoint("a", "ARRAY['application.*']");
    let b = endpoint("b", "ARRAY['application.submitted', 'offer.accepted']");
    let c = endpoint("c", "ARRAY['offer.accepted']");
    let event = one::<i64>("SELECT webhooks.emit('application.submitted', '{\"id\": 42}')");
    assert_eq!(one::<String>(&format!("SELECT event_type || ' ' || data::text FROM webhooks.events WHERE id = {event}")), "application.submitted {\"id\": 42}");
    assert_eq!(
        one::<String>(&format!("SELECT string_agg(endpoint_id::text, ',' ORDER BY endpoint_id) FROM webhooks.deliveries WHERE event_id = {event}")),
        format!("{a},{b}")
    );
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {c}")), 0);
    assert_eq!(count(&format!("webhooks.deliveries WHERE event_id = {event} AND status = 'pending' AND attempts = 0 AND next_attempt_at <= now()")), 2);

    let unsubscribed = one::<i64>("SELECT webhooks.emit('job_posting.closed', '{\"id\": 3}')");
    assert_eq!(count(&format!("webhooks.events WHERE id = {unsubscribed}")), 1, "logged even with no subscriber");
    assert_eq!(count(&format!("webhooks.deliveries WHERE event_id = {unsubscribed}")), 0);
}

#[pg_test]
fn emit_refuses_unknown_types_and_non_object_data() {
    let err = expect_error("SELECT webhooks.emit('application.created', '{}')", "unknown event type \"application.created\"", "list_event_types()");
    assert_eq!(err.sqlstate, "22023");
    expect_error("SELECT webhooks.emit('application.submitted', '[1, 2]')", "must be a JSON object, not array", "jsonb_build_object");
    expect_error("SELECT webhooks.emit('application.submitted', '\"text\"')", "must be a JSON object, not string", "jsonb_build_object");
    expect_error("SELECT webhooks.emit('application.submitted', NULL)", "must be a JSON object, not NULL", "jsonb_build_object");
    let err = expect_error(
        "SELECT webhooks.emit('application.submitted', jsonb_build_object('notes', repeat('x', 300000)))",
        "the limit is 256 KiB",
        "not whole documents",
    );
    assert_eq!(err.sqlstate, "54000");
    assert_eq!(count("webhooks.events"), 0);
    one::<i64>("SELECT webhooks.emit('application.submitted', jsonb_build_object('notes', repeat('x', 200000)))");
}

#[pg_test]
fn a_rolled_back_emit_leaves_no_event_and_no_delivery() {
    endpoint("rb", "ARRAY['offer.accepted']");
    // error_as runs the statement in a subtransaction and always rolls it back.
    assert!(error_as(None, "SELECT webhooks.emit('offer.accepted', '{\"id\": 1}')").is_none());
    assert_eq!(count("webhooks.events"), 0);
    assert_eq!(count("webhooks.deliveries"), 0);
}

#[pg_test]
fn events_firing_while_paused_are_not_queued_and_queued_ones_wait() {
    let id = endpoint("paused", "ARRAY['offer.accepted']");
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 1}')");
    run(&format!("SELECT webhooks.pause_endpoint({id})"));
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 2}')");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id}")), 1, "the paused-time event is not queued");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id} AND status = 'pending'")), 1, "the earlier one waits");
    run(&format!("SELECT webhooks.resume_endpoint({id})"));
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 3}')");
    assert_eq!(
        one::<String>(&format!(
            "SELECT string_agg(e.data ->> 'id', ',' ORDER BY e.id) FROM webhooks.deliveries d JOIN webhooks.events e ON e.id = d.event_id WHERE d.endpoint_id = {id}"
        )),
        "1,3"
    );
    run(&format!("SELECT webhooks.disable_endpoint({id}, 'test')"));
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 4}')");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id}")), 2, "disabled endpoints get nothing either");
}

#[pg_test]
fn test_ping_goes_to_that_endpoint_only_with_empty_data() {
    let a = endpoint("ping-a", "ARRAY['offer.accepted']");
    let b = endpoint("ping-b", "ARRAY['offer.accepted']");
    let event = one::<i64>(&format!("SELECT webhooks.send_test_ping({a})"));
    assert_eq!(one::<String>(&format!("SELECT event_type || ' ' || data::text FROM webhooks.events WHERE id = {event}")), "test.ping {}");
    assert_eq!(one::<String>(&format!("SELECT string_agg(endpoint_id::text, ',') FROM webhooks.deliveries WHERE event_id = {event}")), a.to_string());
    run(&format!("SELECT webhooks.pause_endpoint({b})"));
    let err = expect_error(&format!("SELECT webhooks.send_test_ping({b})"), &format!("endpoint {b} is paused"), &format!("webhooks.resume_endpoint({b})"));
    assert_eq!(err.sqlstate, "55000");
}

#[pg_test]
fn replay_requeues_a_window_of_the_log_and_fills_gaps() {
    let id = endpoint("replay", "ARRAY['offer.*']");
    run("INSERT INTO webhooks.events (event_type, created_at, data) VALUES
           ('offer.accepted', now() - interval '3 hours', '{\"n\": 1}'),
           ('offer.declined', now() - interval '2 hours', '{\"n\": 2}'),
           ('offer.accepted', now() - interval '1 hour',  '{\"n\": 3}'),
           ('interview.scheduled', now() - interval '2 hours', '{\"n\": 4}')");
    // Event 2 was delivered before and failed; the others never reached this endpoint.
    run(&format!(
        "INSERT INTO webhooks.deliveries (event_id, endpoint_id, status, attempts, finished_at)
         SELECT id, {id}, 'failed', 7, now() FROM webhooks.events WHERE data ->> 'n' = '2'"
    ));
    let queued = one::<i32>(&format!("SELECT webhooks.replay({id}, now() - interval '150 minutes', now() - interval '30 minutes')"));
    assert_eq!(queued, 2, "events 2 and 3; 1 is outside the window, 4 is not subscribed");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id} AND status = 'pending' AND attempts = 0 AND finished_at IS NULL")), 2);

    let only = one::<i32>(&format!("SELECT webhooks.replay({id}, now() - interval '1 day', event_types => ARRAY['offer.declined'])"));
    assert_eq!(only, 1);
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id}")), 2, "replaying again never duplicates a pair");
    expect_error(&format!("SELECT webhooks.replay({id}, now(), now() - interval '1 hour')"), "is empty", "since < until");
    expect_error(&format!("SELECT webhooks.replay({id}, now() - interval '1 day', event_types => ARRAY['offer.nope'])"), "unknown event type \"offer.nope\"", "list_event_types");
}

#[pg_test]
fn backfill_since_queues_past_events_for_a_new_endpoint() {
    run("INSERT INTO webhooks.events (event_type, created_at, data) VALUES
           ('review.submitted', now() - interval '2 days', '{}'),
           ('review.submitted', now() - interval '2 hours', '{}'),
           ('offer.accepted', now() - interval '1 hour', '{}')");
    let id = one::<i64>("SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.test/b', ARRAY['review.*'], backfill_since => now() - interval '1 day')");
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id}")), 1);
}

#[pg_test]
fn redeliver_starts_a_fresh_round_now() {
    endpoint("again", "ARRAY['offer.accepted']");
    run("SELECT webhooks.emit('offer.accepted', '{}')");
    run("UPDATE webhooks.deliveries SET status = 'failed', attempts = 7, finished_at = now(), next_attempt_at = now() + interval '1 day'");
    let delivery = one::<i64>("SELECT id FROM webhooks.deliveries");
    run(&format!("SELECT webhooks.redeliver({delivery})"));
    assert_eq!(count(&format!("webhooks.deliveries WHERE id = {delivery} AND status = 'pending' AND attempts = 0 AND next_attempt_at <= now() AND finished_at IS NULL")), 1);
}

#[pg_test]
fn the_event_log_and_endpoint_history_are_append_only() {
    endpoint("log", "ARRAY['offer.accepted']");
    run("SELECT webhooks.emit('offer.accepted', '{}')");
    for (stmt, hint) in [
        ("UPDATE webhooks.events SET data = '{\"x\": 1}'", "source of truth"),
        ("DELETE FROM webhooks.events", "source of truth"),
        ("TRUNCATE webhooks.events CASCADE", "source of truth"),
        ("UPDATE webhooks.endpoint_history SET action = 'edited'", "delete_endpoint"),
        ("DELETE FROM webhooks.endpoint_history", "delete_endpoint"),
        ("TRUNCATE webhooks.endpoint_history", "source of truth"),
    ] {
        let err = expect_error(stmt, "is append-only", hint);
        assert_eq!(err.sqlstate, "42501", "{stmt}");
    }
}

#[pg_test]
fn operator_views_count_per_endpoint_and_show_attempts() {
    let id = endpoint("ops", "ARRAY['offer.*']");
    run("SELECT webhooks.emit('offer.accepted', '{}'), webhooks.emit('offer.declined', '{}'), webhooks.emit('offer.revised', '{}')");
    // The first succeeds, the second fails for good (a relay-refused URL), the third waits.
    claim_all();
    run("SELECT webhooks.record_attempts('r', array_agg(id ORDER BY id), ARRAY[1, 1], ARRAY[now(), now()],
            ARRAY[8.25, 10000]::float8[], ARRAY['{\"X-Webhook-Event\": \"offer.accepted\"}', '{}']::json[],
            ARRAY[200, NULL], ARRAY[NULL, NULL]::text[], ARRAY[NULL, 'refused']::text[], ARRAY[NULL, NULL]::float8[],
            ARRAY[false, true])
           FROM (SELECT id FROM webhooks.deliveries ORDER BY id LIMIT 2) d");
    assert_eq!(
        one::<String>(&format!("SELECT concat_ws(',', pending, succeeded_24h, failed_24h, failed_deliveries_in_window, last_attempt_at = now()) FROM webhooks.endpoint_status WHERE id = {id}")),
        "1,1,1,1,t"
    );
    assert_eq!(count("webhooks.delivery_log"), 3, "one row per attempt, and pending deliveries without attempts");
    assert_eq!(
        one::<String>("SELECT concat_ws('|', event_type, endpoint_name, response_status, duration_ms, request_headers ->> 'X-Webhook-Event') FROM webhooks.delivery_log WHERE outcome = 'succeeded'"),
        "offer.accepted|ops|200|8.25|offer.accepted"
    );
}

#[pg_test]
fn endpoint_status_reads_no_finished_delivery_and_no_attempt() {
    // Its counts come from endpoint_activity, a row per endpoint and hour: the view costs the
    // same after a day of a million deliveries as after ten.
    let id = endpoint("busy", "ARRAY['offer.accepted']");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 300) g");
    claim_all();
    run("SELECT webhooks.record_attempts('r', array_agg(id), array_agg(1), array_agg(now()), array_agg(2.0::float8),
            array_agg('{}'::json), array_agg(CASE WHEN n % 3 = 0 THEN 404 ELSE 200 END), array_agg(NULL::text),
            array_agg(NULL::text), array_agg(NULL::float8), array_agg(false))
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM webhooks.deliveries) d");
    let rows_read = || {
        one::<i64>(
            "SELECT sum(seq_tup_read + coalesce(idx_tup_fetch, 0))::bigint FROM pg_stat_xact_user_tables
              WHERE schemaname = 'webhooks' AND relname ~ '^(deliveries|attempts)'",
        )
    };
    let before = rows_read();
    assert_eq!(
        one::<String>(&format!(
            "SELECT concat_ws(',', pending, succeeded_24h, failed_24h, failed_deliveries_in_window)
               FROM webhooks.endpoint_status WHERE id = {id}"
        )),
        "0,200,100,100"
    );
    assert_eq!(rows_read() - before, 100, "only the failed attempts in the window (for the disable rule) are read");
}
