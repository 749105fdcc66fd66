// Endpoint management: create, list, edit, pause/resume, disable, rotate, delete.

#[pg_test]
fn create_returns_id_and_generated_secret_and_records_history() {
    let (id, secret) = Spi::get_two::<i64, String>(
        "SELECT * FROM webhooks.create_endpoint('https://hooks.test/a', ARRAY['application.submitted'], description => 'first')",
    )
    .unwrap();
    let (id, secret) = (id.unwrap(), secret.unwrap());
    assert!(secret.starts_with("whsec_") && secret.len() == 70);
    assert_eq!(one::<String>(&format!("SELECT secret FROM webhooks.endpoints WHERE id = {id}")), secret);
    assert_eq!(one::<String>(&format!("SELECT name FROM webhooks.endpoints WHERE id = {id}")), format!("hooks.test #{id}"));
    assert_eq!(one::<String>(&format!("SELECT status FROM webhooks.endpoint_list WHERE id = {id}")), "active");
    assert_eq!(count(&format!("webhooks.endpoint_history WHERE endpoint_id = {id} AND action = 'created'")), 1);
    assert_eq!(
        count("information_schema.columns WHERE table_schema = 'webhooks' AND table_name = 'endpoint_list' AND column_name = 'secret'"),
        0,
        "the list view must not expose secrets"
    );
}

#[pg_test]
fn create_keeps_an_own_secret_name_and_rate_limit() {
    let id = one::<i64>(
        "SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.test/b', ARRAY['offer.accepted'],
             name => 'ATS Sync Production', secret => 'Kq3v9ZtW0pLx7bNf2RmYc8HdJs6A', rate_limit => 5)",
    );
    let row = one::<String>(&format!("SELECT name || '|' || secret || '|' || rate_limit FROM webhooks.endpoints WHERE id = {id}"));
    assert_eq!(row, "ATS Sync Production|Kq3v9ZtW0pLx7bNf2RmYc8HdJs6A|5");
}

#[pg_test]
fn category_subscriptions_expand_and_mix_with_single_types() {
    let id = endpoint("mix", "ARRAY['application.*', 'offer.accepted', 'application.submitted']");
    assert_eq!(
        one::<String>(&format!("SELECT array_to_string(event_types, ',') FROM webhooks.endpoint_list WHERE id = {id}")),
        "application.advanced,application.offer_extended,application.rejected,application.submitted,application.withdrawn,offer.accepted"
    );
    assert_eq!(
        one::<String>(&format!("SELECT array_to_string(events, ',') FROM webhooks.endpoint_list WHERE id = {id}")),
        "application.*,offer.accepted,application.submitted",
        "the selection is kept as given"
    );
}

#[pg_test]
fn create_refuses_bad_input_naming_the_value() {
    let create = |args: &str| format!("SELECT webhooks.create_endpoint({args})");
    expect_error(&create("'https://hooks.test/x', ARRAY['application.sent']"), "unknown event type \"application.sent\"", "list_event_types()");
    expect_error(&create("'https://hooks.test/x', ARRAY['nonsense.*']"), "unknown event type \"nonsense.*\"", "application.*");
    expect_error(&create("'https://hooks.test/x', ARRAY[]::text[]"), "at least one event type", "list_event_types()");
    expect_error(&create("'https://hooks.test/x', ARRAY['test.ping']"), "cannot subscribe to \"test.ping\"", "send_test_ping");
    expect_error(&create("'http://hooks.test/x', ARRAY['offer.accepted']"), "uses scheme \"http\"; only https", "allow_http");
    expect_error(&create("'ftp://hooks.test/x', ARRAY['offer.accepted']"), "uses scheme \"ftp\"", "https://");
    expect_error(&create("'hooks.test/x', ARRAY['offer.accepted']"), "\"hooks.test/x\" is not a valid URL", "absolute URL");
    expect_error(&create("'https://', ARRAY['offer.accepted']"), "is not a valid URL", "absolute URL");
    expect_error(&create("'https://u:p@hooks.test/', ARRAY['offer.accepted']"), "contains a user name or password", "signature");
    expect_error(&create("'https:///nohost', ARRAY['offer.accepted']"), "\"https:///nohost\" has no host", "with a host name");
    expect_error(&create("'https:nohost', ARRAY['offer.accepted']"), "\"https:nohost\" has no host", "with a host name");
    expect_error(&create("'https://hooks.test/x', ARRAY['offer.accepted'], rate_limit => 0"), "rate limit 0 is not valid", "between 1 and 100000");
    expect_error(&create("'https://hooks.test/x', ARRAY['offer.accepted'], secret => 'short'"), "too weak (5 characters", "at least 24");
    expect_error(&create("'https://hooks.test/x', ARRAY['offer.accepted'], failure_window => '1 second'"), "failure window 00:00:01 is not valid", "24 hours");
    endpoint("taken", "ARRAY['offer.accepted']");
    expect_error(&create("'https://hooks.test/x', ARRAY['offer.accepted'], name => 'taken'"), "named \"taken\" already exists", "unique");
    assert_eq!(count("webhooks.endpoints"), 1, "nothing partially applied");
    assert_eq!(count("webhooks.subscriptions"), 1);
}

#[pg_test]
fn plain_http_is_accepted_only_when_an_admin_allows_it() {
    run("SELECT webhooks.set_setting('allow_http', 'true')");
    let id = one::<i64>("SELECT endpoint_id FROM webhooks.create_endpoint('http://127.0.0.1:8080/hook', ARRAY['offer.accepted'])");
    assert!(id > 0);
}

#[pg_test]
fn update_changes_only_the_given_fields_and_is_all_or_nothing() {
    let id = endpoint("edit", "ARRAY['offer.accepted']");
    run(&format!(
        "SELECT webhooks.update_endpoint({id}, '{{\"url\": \"https://new.test/hook\", \"description\": \"d\",
            \"name\": \"renamed\", \"events\": [\"interview.*\"], \"rate_limit\": 10}}')"
    ));
    let row = one::<String>(&format!(
        "SELECT concat_ws('|', url, description, name, rate_limit, array_to_string(event_types, ','))
           FROM webhooks.endpoint_list WHERE id = {id}"
    ));
    assert_eq!(
        row,
        "https://new.test/hook|d|renamed|10|interview.cancelled,interview.completed,interview.confirmed,interview.no_show,interview.scheduled"
    );
    run(&format!("SELECT webhooks.update_endpoint({id}, '{{\"rate_limit\": null}}')"));
    assert_eq!(count(&format!("webhooks.endpoints WHERE id = {id} AND rate_limit IS NULL")), 1);

    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{\"url\": \"https://other.test/\", \"events\": [\"bogus\"]}}')"), "unknown event type \"bogus\"", "list_event_types");
    assert_eq!(one::<String>(&format!("SELECT url FROM webhooks.endpoints WHERE id = {id}")), "https://new.test/hook");
    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{\"secret\": \"x\"}}')"), "field \"secret\" cannot be changed here", "rotate_secret");
    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{}}')"), "non-empty JSON object", "Keys: url");
    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{\"rate_limit\": 0}}')"), "rate limit 0 is not valid", "between 1 and 100000");
    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{\"events\": \"offer.*\"}}')"), "must be a JSON array", "application.*");
    expect_error(&format!("SELECT webhooks.update_endpoint({id}, '{{\"name\": \"\"}}')"), "name cannot be empty", "descriptive name");
    assert_eq!(count(&format!("webhooks.endpoint_history WHERE endpoint_id = {id} AND action = 'edited'")), 2);
}

#[pg_test]
fn unknown_endpoint_ids_are_refused_by_every_function() {
    for call in [
        "webhooks.update_endpoint(999, '{\"name\": \"x\"}')",
        "webhooks.pause_endpoint(999)",
        "webhooks.resume_endpoint(999)",
        "webhooks.disable_endpoint(999, 'why')",
        "webhooks.rotate_secret(999)",
        "webhooks.delete_endpoint(999)",
        "webhooks.send_test_ping(999)",
        "webhooks.replay(999, now() - interval '1 day')",
    ] {
        let err = expect_error(&format!("SELECT {call}"), "endpoint 999 does not exist", "webhooks.endpoint_list");
        assert_eq!(err.sqlstate, "P0002", "{call}");
    }
    expect_error("SELECT webhooks.redeliver(999)", "delivery 999 does not exist", "delivery_log");
}

#[pg_test]
fn pause_resume_and_disable_are_recorded_and_resume_resets_the_failure_counter() {
    let id = endpoint("p", "ARRAY['offer.accepted']");
    assert_eq!(one::<String>(&format!("SELECT webhooks.pause_endpoint({id})")), "paused");
    assert_eq!(one::<String>(&format!("SELECT webhooks.resume_endpoint({id})")), "active");
    run(&format!("UPDATE webhooks.endpoints SET failures_counted_since = now() - interval '1 day' WHERE id = {id}"));
    assert_eq!(one::<String>(&format!("SELECT webhooks.disable_endpoint({id}, 'receiver answered 410 Gone')")), "disabled");
    assert_eq!(
        one::<String>(&format!("SELECT disabled_reason FROM webhooks.endpoint_list WHERE id = {id} AND disabled_at IS NOT NULL")),
        "receiver answered 410 Gone"
    );
    expect_error(&format!("SELECT webhooks.disable_endpoint({id}, '  ')"), "a reason is required", "410 Gone");
    run(&format!("SELECT webhooks.resume_endpoint({id})"));
    assert_eq!(
        count(&format!("webhooks.endpoints WHERE id = {id} AND status = 'active' AND disabled_reason IS NULL AND failures_counted_since = now()")),
        1
    );
    assert_eq!(
        one::<String>(&format!("SELECT string_agg(action, ',' ORDER BY id) FROM webhooks.endpoint_history WHERE endpoint_id = {id}")),
        "created,paused,resumed,disabled,resumed"
    );
    assert_eq!(
        one::<String>(&format!("SELECT detail ->> 'reason' FROM webhooks.endpoint_history WHERE endpoint_id = {id} AND action = 'disabled'")),
        "receiver answered 410 Gone"
    );
}

#[pg_test]
fn rotate_secret_replaces_it_at_once() {
    let (id, old) = Spi::get_two::<i64, String>("SELECT * FROM webhooks.create_endpoint('https://hooks.test/r', ARRAY['offer.accepted'])").unwrap();
    let (id, old) = (id.unwrap(), old.unwrap());
    let new = one::<String>(&format!("SELECT webhooks.rotate_secret({id})"));
    assert_ne!(new, old);
    assert_eq!(one::<String>(&format!("SELECT secret FROM webhooks.endpoints WHERE id = {id}")), new);
    assert_eq!(one::<String>(&format!("SELECT webhooks.rotate_secret({id}, 'u7F2kQ9xLp3ZrB8mW1tYc6NvJd4H')")), "u7F2kQ9xLp3ZrB8mW1tYc6NvJd4H");
    expect_error(&format!("SELECT webhooks.rotate_secret({id}, 'tiny')"), "too weak", "at least 24");
    assert_eq!(count(&format!("webhooks.endpoint_history WHERE endpoint_id = {id} AND action = 'secret_rotated'")), 2);
    assert_eq!(count("webhooks.endpoint_history WHERE detail::text LIKE '%mine-mine%'"), 0, "history never holds secrets");
}

#[pg_test]
fn delete_removes_endpoint_deliveries_and_attempts_but_keeps_the_log() {
    let id = endpoint("d", "ARRAY['offer.accepted']");
    let keep = endpoint("keep", "ARRAY['offer.accepted']");
    run("SELECT webhooks.emit('offer.accepted', '{\"id\": 1}')");
    claim_all();
    run(
        "SELECT webhooks.record_attempts('r', array_agg(id), array_agg(1), array_agg(now()), array_agg(12.5::float8),
            array_agg('{}'::json), array_agg(500), array_agg(NULL::text), array_agg(NULL::text),
            array_agg(NULL::float8), array_agg(false))
           FROM webhooks.deliveries"
    );
    assert_eq!(count("webhooks.endpoint_activity WHERE attempts = 1"), 2);
    run(&format!("SELECT webhooks.delete_endpoint({id})"));
    assert_eq!(count(&format!("webhooks.endpoints WHERE id = {id}")), 0);
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {id}")), 0);
    assert_eq!(count(&format!("webhooks.attempts WHERE endpoint_id = {id}")), 0);
    assert_eq!(count(&format!("webhooks.subscriptions WHERE endpoint_id = {id}")), 0);
    assert_eq!(count(&format!("webhooks.endpoint_activity WHERE endpoint_id = {id}")), 0);
    assert_eq!(count(&format!("webhooks.deliveries WHERE endpoint_id = {keep}")), 1);
    assert_eq!(count(&format!("webhooks.endpoint_activity WHERE endpoint_id = {keep}")), 1);
    assert_eq!(count("webhooks.events"), 1, "the event log stays");
    assert_eq!(
        one::<String>(&format!(
            "SELECT string_agg(concat_ws(' ', action, detail, actor = session_user, at = now()), ' | ')
               FROM webhooks.endpoint_history WHERE endpoint_id = {id}"
        )),
        "deleted {} t t",
        "its history goes with it, leaving one audit line without URL or name"
    );
    assert_eq!(count(&format!("webhooks.endpoint_history WHERE endpoint_id = {keep}")), 1, "others' history stays");
    expect_error(
        &format!("DELETE FROM webhooks.endpoint_history WHERE endpoint_id = {keep}"),
        "append-only: DELETE is not allowed",
        "delete_endpoint",
    );
}
