// The relay's SQL: record_attempts in both its forms (typed arrays, as webhook-relay sends
// them, and JSON, for psql and other relays).

/// One pending delivery per endpoint for a fresh event; returns the delivery ids in endpoint order.
fn two_deliveries() -> (i64, i64) {
    endpoint("first", "ARRAY['offer.accepted']");
    endpoint("second", "ARRAY['offer.accepted']");
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 7}')");
    (
        one("SELECT min(id) FROM webhooks.deliveries"),
        one("SELECT max(id) FROM webhooks.deliveries"),
    )
}

#[pg_test]
fn record_attempts_takes_json_or_typed_arrays_and_records_the_same() {
    let (ok, retry) = two_deliveries();
    claim_all();
    let json = one::<String>(&format!(
        r#"SELECT concat_ws(',', succeeded, retried, failed) FROM webhooks.record_attempts('r1', '[{{
            "delivery_id": {ok}, "attempt_number": 1, "started_at": "2026-11-22T10:00:00Z",
            "duration_ms": 12.5, "request_headers": {{"X-Webhook-Id": "1"}}, "response_status": 200,
            "response_body": "ok", "error": null, "retry_after_seconds": null, "permanent": false}}]')"#
    ));
    assert_eq!(json, "1,0,0");
    let arrays = one::<String>(&format!(
        "SELECT concat_ws(',', succeeded, retried, failed) FROM webhooks.record_attempts('r2',
            ARRAY[{retry}], ARRAY[1], ARRAY[timestamptz '2026-11-22T10:00:01Z'], ARRAY[3.0::float8],
            ARRAY['{{\"X-Webhook-Id\": \"1\"}}'::json], ARRAY[503], ARRAY['busy'], ARRAY[NULL::text],
            ARRAY[NULL::float8], ARRAY[false])"
    ));
    assert_eq!(arrays, "0,1,0");

    let attempts = one::<String>(
        "SELECT string_agg(concat_ws(' ', relay_id, attempt_number, started_at AT TIME ZONE 'UTC', duration_ms,
                                     request_headers ->> 'X-Webhook-Id', response_status, response_body, outcome), ' | '
                           ORDER BY delivery_id) FROM webhooks.attempts",
    );
    assert_eq!(attempts, "r1 1 2026-11-22 10:00:00 12.5 1 200 ok succeeded | r2 1 2026-11-22 10:00:01 3 1 503 busy retry");
    assert_eq!(count(&format!("webhooks.deliveries WHERE id = {ok} AND status = 'succeeded' AND finished_at IS NOT NULL")), 1);
    assert_eq!(
        count(&format!(
            "webhooks.deliveries WHERE id = {retry} AND status = 'pending' AND attempts = 1 AND last_response_status = 503
               AND next_attempt_at BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds'"
        )),
        1,
        "a 503 waits a minute"
    );
    assert_eq!(one::<String>("SELECT concat_ws(',', succeeded, retried, failed, not_held) FROM webhooks.record_attempts('r1', '[]')"), "0,0,0,0");
}

#[pg_test]
fn record_attempts_refuses_ragged_arrays_missing_fields_and_non_arrays() {
    let (id, _) = two_deliveries();
    let ragged = format!(
        "SELECT webhooks.record_attempts('r', ARRAY[{id}], ARRAY[1, 2], ARRAY[now()], ARRAY[1.0::float8],
            NULL, NULL, NULL, NULL, NULL, NULL)"
    );
    let err = expect_error(&ragged, "the attempt arrays differ in length (1 delivery ids)", "Element i of every array");
    assert_eq!(err.sqlstate, "22023");
    let missing = format!(
        "SELECT webhooks.record_attempts('r', ARRAY[{id}], ARRAY[1], ARRAY[NULL::timestamptz], ARRAY[1.0::float8],
            ARRAY[NULL::json], ARRAY[200], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::float8], ARRAY[NULL::boolean])"
    );
    expect_error(&missing, "needs delivery_id, attempt_number, started_at and duration_ms", "may be NULL");
    expect_error(
        &format!("SELECT webhooks.record_attempts('r', '{{\"delivery_id\": {id}}}')"),
        "attempts must be a JSON array, not object",
        "one object per attempt",
    );
    expect_error(
        &format!("SELECT webhooks.record_attempts('r', '[{{\"delivery_id\": {id}, \"attempt_number\": 1}}]')"),
        "needs delivery_id, attempt_number, started_at and duration_ms",
        "may be NULL",
    );
    assert_eq!(count("webhooks.attempts"), 0);
    assert_eq!(count("webhooks.deliveries WHERE status = 'pending' AND attempts = 0"), 2);
}

#[pg_test]
fn only_attempts_at_deliveries_this_session_holds_under_a_live_lease_are_recorded() {
    // A relay whose lease ran out reports after another relay finished the delivery, a report
    // for a delivery nobody claimed, and one for a delivery deleted with its endpoint: none is
    // recorded, and each is counted as not held.
    let (finished, deleted) = two_deliveries();
    assert_eq!(report_attempt(finished, 200), "0,0,0,1", "nobody claimed it");
    assert_eq!(count("webhooks.attempts"), 0);
    claim_all();
    assert_eq!(report_attempt(finished, 200), "1,0,0,0");
    let second_endpoint: i64 = one(&format!("SELECT endpoint_id FROM webhooks.deliveries WHERE id = {deleted}"));
    run(&format!("SELECT webhooks.delete_endpoint({second_endpoint})"));

    assert_eq!(report_attempt(finished, 500), "0,0,0,1", "the lease ended with the first report");
    assert_eq!(report_attempt(deleted, 200), "0,0,0,1", "nothing to record into");
    assert_eq!(
        one::<String>("SELECT string_agg(concat_ws(' ', response_status, outcome), ' | ' ORDER BY id) FROM webhooks.attempts"),
        "200 succeeded"
    );
    assert_eq!(
        count(&format!("webhooks.deliveries WHERE id = {finished} AND status = 'succeeded' AND last_response_status = 200")),
        1,
        "the delivery keeps its outcome"
    );
}

#[pg_test]
fn claims_and_records_planned_on_an_empty_queue_still_use_indexes_once_a_backlog_arrives() {
    // A relay's connection caches the plans of its first claim and record, often made while
    // the queue is empty; planned for tables that small, they would scan the tables whole on
    // every call once a backlog had come in.
    let (first, second) = two_deliveries();
    let claim_and_record = |max: i32| {
        one::<String>(&format!(
            "SELECT concat_ws(',', r.succeeded, r.retried, r.failed)
               FROM (SELECT jsonb_agg(jsonb_build_object(
                                'delivery_id', c.delivery_id, 'attempt_number', c.attempt_number,
                                'started_at', now(), 'duration_ms', 1, 'response_status', 200)) AS batch
                       FROM webhooks.claim_deliveries('r', {max}, interval '1 minute', {max}) c) b
              CROSS JOIN LATERAL webhooks.record_attempts('r', coalesce(b.batch, '[]')) r"
        ))
    };
    assert_eq!(claim_and_record(10), "2,0,0", "deliveries {first} and {second}");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 3000) g");
    let scans = || {
        one::<String>(
            "SELECT string_agg(relname || ' ' || seq_scan, ', ' ORDER BY relname) FROM pg_stat_xact_user_tables
              WHERE schemaname = 'webhooks' AND relname IN ('deliveries', 'events', 'attempts')",
        )
    };
    let before = scans();
    assert_eq!(claim_and_record(500), "500,0,0");
    assert_eq!(scans(), before, "a claim or record scanned a whole table");
}

#[pg_test]
fn request_headers_are_logged_as_sent_in_the_order_sent() {
    // As the relay sends them: the typed form takes json, which keeps its text.
    let (delivery, _) = two_deliveries();
    claim_all();
    run(&format!(
        r#"SELECT webhooks.record_attempts('r', ARRAY[{delivery}], ARRAY[1], ARRAY[now()], ARRAY[2.0::float8],
            ARRAY['{{"User-Agent": "Kit-Webhooks/1.0", "X-Webhook-Id": "7", "Content-Type": "application/json"}}'::json],
            ARRAY[200], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::float8], ARRAY[NULL::boolean])"#
    ));
    assert_eq!(
        one::<String>("SELECT request_headers::text FROM webhooks.attempts"),
        r#"{"User-Agent": "Kit-Webhooks/1.0", "X-Webhook-Id": "7", "Content-Type": "application/json"}"#
    );
}

#[pg_test]
fn a_claim_leases_its_deliveries_in_place_without_new_index_entries() {
    // Every lease a HOT update: a lease that cannot stay on its page adds index entries that
    // every later claim walks past until vacuum. A queued row is 88 bytes, and a lease adds
    // the relay's id and the expiry; fillfactor 40 leaves room on every page for ids of up to
    // 38 bytes, such as this Kubernetes pod's name and a pid.
    endpoint("first", "ARRAY['offer.accepted']");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 2000) g");
    let updates = || {
        one::<String>(
            "SELECT pg_stat_get_xact_tuples_updated('webhooks.deliveries_pending'::regclass) || ' updated, '
                    || pg_stat_get_xact_tuples_hot_updated('webhooks.deliveries_pending'::regclass) || ' in place'",
        )
    };
    assert_eq!(updates(), "0 updated, 0 in place");
    assert_eq!(
        count("webhooks.claim_deliveries('webhook-relay-7d9f8b6c5d-x2x9z:4194304', 2000, interval '1 minute', 2000)"),
        2000
    );
    assert_eq!(updates(), "2000 updated, 2000 in place");
}

#[pg_test]
fn deliveries_due_at_the_same_moment_are_claimed_in_the_order_they_were_made() {
    // One transaction's events share a due time. The first delivery fails once and is made due
    // again at that same moment (retry_now); its row is rewritten elsewhere on the page, which
    // must not send it to the back of the queue.
    let first = endpoint("first", "ARRAY['offer.accepted']");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 10) g");
    let oldest: i64 = one("SELECT min(id) FROM webhooks.deliveries");
    assert_eq!(count("webhooks.claim_deliveries('r', 1, interval '10 minutes', 1)"), 1);
    run(&format!(
        "SELECT webhooks.record_attempts('r', ARRAY[{oldest}], ARRAY[1], ARRAY[now()], ARRAY[2.0::float8],
            ARRAY['{{}}'::json], ARRAY[503], ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::float8], ARRAY[false])"
    ));
    assert_eq!(one::<i32>(&format!("SELECT webhooks.retry_now({first})")), 1);
    // Each claimed delivery as its place in id order (0 for the oldest): other tests running
    // meanwhile may take ids from the same sequence.
    let claimed = |n: i32| {
        one::<String>(&format!(
            "SELECT string_agg(p.place::text, ',' ORDER BY p.place)
               FROM webhooks.claim_deliveries('r', {n}, interval '1 minute', {n}) c
               JOIN (SELECT d.id, row_number() OVER (ORDER BY d.id) - 1 AS place
                       FROM webhooks.deliveries d WHERE d.endpoint_id = {first}) p ON p.id = c.delivery_id"
        ))
    };
    assert_eq!(claimed(1), "0", "the oldest delivery goes first");
    assert_eq!(claimed(3), "1,2,3");
}

#[pg_test]
fn recording_and_releasing_find_deliveries_by_key_when_the_due_index_looks_empty() {
    // A VACUUM that ran while the queue was empty leaves deliveries_due's statistics saying it
    // holds nothing, however much has been queued since, until the next one. Set them so (and
    // touch the table's, as VACUUM does, so that cached plans are made again).
    endpoint("first", "ARRAY['offer.accepted']");
    run("UPDATE pg_class SET reltuples = 0, relpages = 1 WHERE oid = 'webhooks.deliveries_due'::regclass");
    run("UPDATE pg_class SET relpages = relpages WHERE oid = 'webhooks.deliveries'::regclass");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 3000) g");
    run("CREATE TEMP TABLE claimed AS
         SELECT delivery_id FROM webhooks.claim_deliveries('r', 600, interval '1 minute', 600)");
    let index_entries_read =
        || one::<i64>("SELECT pg_stat_get_xact_tuples_returned('webhooks.deliveries_due'::regclass)");
    let before = index_entries_read();
    let recorded = one::<i32>(
        "SELECT succeeded FROM webhooks.record_attempts('r',
            (SELECT array_agg(delivery_id ORDER BY delivery_id) FROM (SELECT delivery_id FROM claimed ORDER BY delivery_id LIMIT 500) c),
            array_fill(1, ARRAY[500]), array_fill(now(), ARRAY[500]), array_fill(1.5::float8, ARRAY[500]),
            array_fill('{}'::json, ARRAY[500]), array_fill(200, ARRAY[500]), array_fill('ok'::text, ARRAY[500]),
            array_fill(NULL::text, ARRAY[500]), array_fill(NULL::float8, ARRAY[500]), array_fill(false, ARRAY[500]))",
    );
    assert_eq!(recorded, 500);
    let released = one::<i32>(
        "SELECT webhooks.release_deliveries('r',
            (SELECT array_agg(delivery_id) FROM (SELECT delivery_id FROM claimed ORDER BY delivery_id OFFSET 500) c))",
    );
    assert_eq!(released, 100);
    assert_eq!(
        index_entries_read() - before,
        0,
        "recording and releasing walked deliveries_due instead of looking deliveries up by key"
    );
}

#[pg_test]
fn only_429_among_the_4xx_is_retried() {
    for (status, outcome) in [
        (200, "succeeded"), (204, "succeeded"), (101, "retry"), (301, "retry"), (308, "retry"),
        (400, "failed"), (401, "failed"), (404, "failed"), (408, "failed"), (409, "failed"),
        (410, "failed"), (422, "failed"), (429, "retry"), (499, "failed"), (500, "retry"),
        (503, "retry"),
    ] {
        assert_eq!(one::<String>(&format!("SELECT webhooks.attempt_outcome({status}, false, 1)")), outcome, "{status}");
    }
    assert_eq!(one::<String>("SELECT webhooks.attempt_outcome(503, false, 7)"), "failed", "the seventh attempt");
}

#[pg_test]
fn auto_disable_counts_deliveries_failed_for_good_not_attempts_that_will_be_retried() {
    let id = endpoint("flaky", "ARRAY['offer.accepted']");
    run("SELECT count(webhooks.emit('offer.accepted', jsonb_build_object('id', g))) FROM generate_series(1, 60) g");
    let answer_all = |status: i32, limit: i32| {
        claim_all();
        one::<String>(&format!(
            "SELECT concat_ws(',', succeeded, retried, failed, not_held) FROM webhooks.record_attempts('r',
                (SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM webhooks.deliveries WHERE status = 'pending'
                                                         ORDER BY id LIMIT {limit}) d),
                array_fill(1, ARRAY[{limit}]), array_fill(now(), ARRAY[{limit}]), array_fill(1.0::float8, ARRAY[{limit}]),
                array_fill('{{}}'::json, ARRAY[{limit}]), array_fill({status}, ARRAY[{limit}]), array_fill(NULL::text, ARRAY[{limit}]),
                array_fill(NULL::text, ARRAY[{limit}]), array_fill(NULL::float8, ARRAY[{limit}]), array_fill(false, ARRAY[{limit}]))"
        ))
    };
    let state = || {
        one::<String>(&format!(
            "SELECT concat_ws(',', status, failed_deliveries_in_window) FROM webhooks.endpoint_status WHERE id = {id}"
        ))
    };
    // A receiver down for a while: 60 attempts answered 503, every one to be retried.
    assert_eq!(answer_all(503, 60), "0,60,0,0");
    assert_eq!(state(), "active,0", "retried attempts do not count");
    run(&format!("SELECT webhooks.retry_now({id})"));
    // Then 24 deliveries refused for good: still under the threshold.
    assert_eq!(answer_all(400, 24), "0,0,24,0");
    assert_eq!(state(), "active,24");
    assert_eq!(answer_all(404, 1), "0,0,1,0");
    assert_eq!(state(), "disabled,25");
    assert_eq!(
        one::<String>(&format!("SELECT disabled_reason FROM webhooks.endpoints WHERE id = {id}")),
        "25 deliveries failed within 24:00:00 (threshold 25)"
    );
}
