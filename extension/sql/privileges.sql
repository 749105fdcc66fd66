-- pg_webhooks: who may do what. Loaded last, after every object exists. (Each object's
-- COMMENT ON, which \df+ and \dv+ show, stands beside its definition.)

------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA webhooks FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA webhooks FROM PUBLIC;

-- USAGE lets a role name the schema's objects; what it may do with them is granted below.
-- Writers of tracked tables need nothing here: the tracking trigger writes the log itself.
GRANT USAGE ON SCHEMA webhooks TO PUBLIC;

-- Emitters: log events that are signed and sent to every subscribed endpoint. A right the DBA
-- grants (GRANT webhooks_emitter TO app), never PUBLIC's.
GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb) TO webhooks_emitter;

-- Admins: manage endpoints, settings and tracking, and read everything but signing secrets,
-- which create_endpoint and rotate_secret show once.
GRANT EXECUTE ON FUNCTION
    webhooks.set_setting(text, text),
    webhooks.list_event_types(),
    webhooks.create_endpoint(text, text[], text, text, text, integer, timestamptz, interval),
    webhooks.update_endpoint(bigint, jsonb),
    webhooks.pause_endpoint(bigint),
    webhooks.resume_endpoint(bigint),
    webhooks.disable_endpoint(bigint, text),
    webhooks.rotate_secret(bigint, text),
    webhooks.delete_endpoint(bigint),
    webhooks.send_test_ping(bigint),
    webhooks.replay(bigint, timestamptz, timestamptz, text[]),
    webhooks.redeliver(bigint),
    webhooks.retry_now(bigint),
    webhooks.fan_out(integer),
    webhooks.resume_after_restore(),
    webhooks.maintain(),
    webhooks.events_kept_since(),
    webhooks.track(regclass, text, regclass, regclass),
    webhooks.untrack(regclass, boolean),
    webhooks.track_ats(text),
    webhooks.iso8601(timestamptz),
    webhooks.generate_secret(),
    webhooks.check_endpoint_url(text, boolean)
TO webhooks_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA webhooks TO webhooks_admin;
REVOKE SELECT ON webhooks.endpoints FROM webhooks_admin;
GRANT SELECT (id, name, description, url, events, status, disabled_reason, disabled_at, rate_limit,
              failure_window, failure_threshold, failures_counted_since, created_at, updated_at)
    ON webhooks.endpoints TO webhooks_admin;

-- Readers: the log, the deliveries and the operator views; never secrets.
GRANT EXECUTE ON FUNCTION webhooks.list_event_types(), webhooks.iso8601(timestamptz) TO webhooks_reader;
GRANT SELECT ON webhooks.tracked_tables, webhooks.table_kinds TO webhooks_reader;
GRANT SELECT ON webhooks.settings, webhooks.event_types, webhooks.events, webhooks.deliveries, webhooks.subscription_periods,
                webhooks.fanout_position, webhooks.fanout_marks, webhooks.events_awaiting_fan_out,
                webhooks.attempts, webhooks.endpoint_activity, webhooks.endpoint_history, webhooks.subscriptions,
                webhooks.endpoint_list, webhooks.endpoint_status, webhooks.delivery_log,
                webhooks.event_log_periods, webhooks.storage
TO webhooks_reader;
GRANT EXECUTE ON FUNCTION webhooks.events_kept_since() TO webhooks_reader;

-- Relays: exactly the calls webhook-relay makes, and no table rights. Claims return what a
-- request needs (URL, secret, body); records and releases reach only this session's leases.
GRANT EXECUTE ON FUNCTION
    webhooks.claim_deliveries(text, integer, interval, integer, bigint[], integer[]),
    webhooks.record_attempts(text, jsonb),
    webhooks.record_attempts(text, bigint[], integer[], timestamptz[], double precision[], json[], integer[], text[], text[], double precision[], boolean[]),
    webhooks.queue_stats(),
    webhooks.release_deliveries(text, bigint[], double precision[]),
    webhooks.work_marker(),
    webhooks.lease_key(text),
    webhooks.maintain()
TO webhooks_relay;

-- The delivery rules are pure functions; anyone who can read the log may evaluate them.
GRANT EXECUTE ON FUNCTION webhooks.max_attempts(), webhooks.retry_delay(integer),
                          webhooks.attempt_outcome(integer, boolean, integer), webhooks.max_lease()
TO webhooks_admin, webhooks_reader, webhooks_relay;

-- Read by webhooks.events_awaiting_fan_out, whose readers need to run it.
GRANT EXECUTE ON FUNCTION webhooks._ended_in(xid8, pg_snapshot, xid8)
TO webhooks_reader, webhooks_admin, webhooks_relay;

-- Read by webhooks.endpoint_status, whose readers need to run it.
GRANT EXECUTE ON FUNCTION webhooks.failed_deliveries_in_window(webhooks.endpoints)
TO webhooks_reader, webhooks_admin;

-- The payload limit is a constant anyone may read (the event_data domain's check calls it).
GRANT EXECUTE ON FUNCTION webhooks.max_payload_bytes() TO PUBLIC;

-- Read by webhooks.storage, whose readers need to run them.
GRANT EXECUTE ON FUNCTION webhooks._setting_interval(text), webhooks._time_partitions(regclass),
                          webhooks._oldest_filled_partition(regclass)
TO webhooks_reader, webhooks_admin;
