-- pg_webhooks: who may do what, and the catalog documentation. Loaded last, after every object exists.

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
                webhooks.endpoint_list, webhooks.endpoint_status, webhooks.delivery_log
TO webhooks_reader;

-- Relays: exactly the calls webhook-relay makes, and no table rights. Claims return what a
-- request needs (URL, secret, body); records and releases reach only this session's leases.
GRANT EXECUTE ON FUNCTION
    webhooks.claim_deliveries(text, integer, interval, integer, bigint[], integer[]),
    webhooks.record_attempts(text, jsonb),
    webhooks.record_attempts(text, bigint[], integer[], timestamptz[], double precision[], json[], integer[], text[], text[], double precision[], boolean[]),
    webhooks.queue_stats(),
    webhooks.release_deliveries(text, bigint[], double precision[]),
    webhooks.work_marker(),
    webhooks.lease_key(text)
TO webhooks_relay;

-- The delivery rules are pure functions; anyone who can read the log may evaluate them.
GRANT EXECUTE ON FUNCTION webhooks.max_attempts(), webhooks.retry_delay(integer),
                          webhooks.attempt_outcome(integer, boolean, integer), webhooks.max_lease()
TO webhooks_admin, webhooks_reader, webhooks_relay;

------------------------------------------------------------------------------------------
-- Documentation in the catalog (\df+ and \dv+ show it)
------------------------------------------------------------------------------------------

COMMENT ON FUNCTION webhooks.set_setting(text, text) IS 'Change a database-wide switch (allow_http, outreach_addon). Admin only. Turning allow_http off disables every plain-http endpoint.';
COMMENT ON FUNCTION webhooks.list_event_types() IS 'Every event type with its category, description, required add-on and whether it is available now.';
COMMENT ON FUNCTION webhooks.create_endpoint(text, text[], text, text, text, integer, timestamptz, interval) IS 'Create an endpoint subscribed to event types and/or categories (''application.*''). Returns its id and signing secret. backfill_since queues past events from the log.';
COMMENT ON FUNCTION webhooks.update_endpoint(bigint, jsonb) IS 'Change url, name, description, events, rate_limit or failure_window: keys present in the JSON object are changed, others kept. Returns the endpoint as endpoint_list shows it (no secret).';
COMMENT ON FUNCTION webhooks.pause_endpoint(bigint) IS 'Stop deliveries. Events that fire while paused are not queued; already queued deliveries wait for resume.';
COMMENT ON FUNCTION webhooks.resume_endpoint(bigint) IS 'Re-enable a paused or disabled endpoint and reset its failure counter.';
COMMENT ON FUNCTION webhooks.disable_endpoint(bigint, text) IS 'Disable an endpoint, recording why. The relay calls it on 410 Gone and on too many failures.';
COMMENT ON FUNCTION webhooks.rotate_secret(bigint, text) IS 'Replace the signing secret (generated, or the one given). The old secret stops signing at once.';
COMMENT ON FUNCTION webhooks.delete_endpoint(bigint) IS 'Delete an endpoint with its subscriptions, deliveries, attempts and history, leaving one audit line (deleted, by whom, when; no URL or name). The event log stays.';
COMMENT ON FUNCTION webhooks.send_test_ping(bigint) IS 'Queue a test.ping event with data {} for this endpoint only. Returns the event id.';
COMMENT ON FUNCTION webhooks.emit(text, jsonb) IS 'Log an event and queue one delivery per active subscribed endpoint, in the caller''s transaction. Returns the event id. Members of webhooks_emitter only; refuses test.ping and the events of add-ons that are off.';
COMMENT ON FUNCTION webhooks.replay(bigint, timestamptz, timestamptz, text[]) IS 'Queue logged events of [since, until) to an endpoint again, optionally only some types. Returns how many were queued.';
COMMENT ON FUNCTION webhooks.redeliver(bigint) IS 'Send one delivery again now, starting a fresh retry schedule.';
COMMENT ON FUNCTION webhooks.iso8601(timestamptz) IS 'Format a timestamp as ISO 8601 UTC with whole seconds and Z, as in webhook payloads.';
COMMENT ON FUNCTION webhooks.generate_secret() IS 'A new 256-bit signing secret (whsec_ + 64 hex digits).';
COMMENT ON FUNCTION webhooks.check_endpoint_url(text, boolean) IS 'Validate and normalise an endpoint URL; raises an error naming the problem.';
COMMENT ON VIEW webhooks.endpoint_list IS 'Endpoints without their secrets.';
COMMENT ON VIEW webhooks.endpoint_status IS 'Per-endpoint status: pending deliveries, deliveries succeeded and failed for good in the last 24 h, and failed_deliveries_in_window, the count auto-disable compares with the threshold.';
COMMENT ON VIEW webhooks.delivery_log IS 'Every delivery with its event, endpoint and attempts (request headers, response status, timing).';
COMMENT ON FUNCTION webhooks.max_attempts() IS 'Attempts per delivery before it is failed: 7 (the first at once, then six retries).';
COMMENT ON FUNCTION webhooks.retry_delay(integer) IS 'Wait after failed attempt n before the next: 1 min, 5 min, 30 min, 2 h, 8 h, 16 h; NULL after the sixth.';
COMMENT ON FUNCTION webhooks.attempt_outcome(integer, boolean, integer) IS 'succeeded (2xx), failed (every other 4xx but 429, a refused target, or the last attempt) or retry (429, 5xx, 3xx, timeouts, network and TLS errors).';
COMMENT ON FUNCTION webhooks.make_deliveries(bigint[]) IS 'The deliveries of the given events, one per endpoint that took the event''s type at the event''s time (webhooks.subscription_periods) and still exists; fan_out and resume_after_restore use it.';
COMMENT ON FUNCTION webhooks.resume_after_restore() IS 'After restoring a dump: make the deliveries of the tracked events the dumped cluster had not fanned out, then restart fan-out at the end of the log. Run once the restore is complete, before applications write again.';
COMMENT ON FUNCTION webhooks.restore_setting() IS 'Trigger: a restored settings row replaces the one CREATE EXTENSION made.';
COMMENT ON FUNCTION webhooks.restore_fanout_position() IS 'Trigger: a restored fan-out position replaces the fresh one and is marked restored, so that fan_out waits for resume_after_restore.';
COMMENT ON FUNCTION webhooks.fan_out(integer) IS 'Make the deliveries of up to max_events committed tracked events (webhooks.events_awaiting_fan_out); every claim runs it first. Returns the number of deliveries made.';
COMMENT ON FUNCTION webhooks.claim_deliveries(text, integer, interval, integer, bigint[], integer[]) IS 'Relay only: lease up to max_deliveries due deliveries of active endpoints (FOR UPDATE SKIP LOCKED), with the rendered body, URL and secret.';
COMMENT ON FUNCTION webhooks.record_attempts(text, bigint[], integer[], timestamptz[], double precision[], json[], integer[], text[], text[], double precision[], boolean[]) IS 'Relay only: record_attempts with one array per field (element i of each is attempt i); what webhook-relay calls.';
COMMENT ON FUNCTION webhooks.record_attempts(text, jsonb) IS 'Relay only: log attempts, move their deliveries to succeeded, a scheduled retry or failed, and disable endpoints on 410 Gone or too many failures. Returns the count of each outcome, and of attempts not recorded because this session holds no live lease on their delivery.';
COMMENT ON FUNCTION webhooks.queue_stats() IS 'Pending deliveries due now and scheduled for later, disabled endpoints, and tracked events awaiting fan-out (the relay''s /metrics).';
COMMENT ON FUNCTION webhooks.release_deliveries(text, bigint[], double precision[]) IS 'Relay only: give deliveries this session holds back unattempted, due again after delay_ms (at most a day).';
COMMENT ON FUNCTION webhooks.retry_now(bigint) IS 'Make waiting retries (of one endpoint, or all when NULL) due now. Returns how many.';
COMMENT ON FUNCTION webhooks.track(regclass, text, regclass, regclass) IS 'Emit the documented events from changes to a table: checks its columns (naming any missing) and their types, and attaches the webhooks.track_changes AFTER INSERT OR UPDATE trigger. kind defaults to the table name.';
COMMENT ON FUNCTION webhooks.untrack(regclass, boolean) IS 'Stop tracking a table: drops its trigger.';
COMMENT ON FUNCTION webhooks.track_ats(text) IS 'Track every reference ATS table (sql/ats_schema.sql) found in a schema.';
COMMENT ON FUNCTION webhooks.track_changes() IS 'The tracking trigger webhooks.track attaches: track_changes(kind) fires the kind''s events, reading the people tables recorded in webhooks.tracked_tables, (docs/ats-events.md) and logs them in the writing transaction.';
COMMENT ON FUNCTION webhooks.check_trackable(oid, text, oid, oid) IS 'Used by track: refuses a table whose rule booleans, payload timestamps or people ids have types tracking cannot use.';
COMMENT ON FUNCTION webhooks.require_columns(regclass, text, text[]) IS 'Raise an error listing the columns a table lacks.';
COMMENT ON FUNCTION webhooks.people_columns(text) IS 'Columns read from the candidates and job_postings tables for payloads.';
COMMENT ON FUNCTION webhooks.work_marker() IS 'Relay only: how far the event log''s and the deliveries'' id sequences have come; an idle relay polls it to notice new work without notifications.';

-- Read by webhooks.events_awaiting_fan_out, whose readers need to run it.
GRANT EXECUTE ON FUNCTION webhooks.ended_in(xid8, pg_snapshot, xid8)
TO webhooks_reader, webhooks_admin, webhooks_relay;
COMMENT ON FUNCTION webhooks.ended_in(xid8, pg_snapshot, xid8) IS 'Whether a transaction had ended in a snapshot taken by another (or the same) transaction: the rule of webhooks.fan_out''s rounds.';

-- Internal helpers and bookkeeping tables, described like the rest so that \df+ and \dt+ say
-- what each one is for.
COMMENT ON FUNCTION webhooks.setting_enabled(text) IS 'Internal: whether a boolean setting of webhooks.settings is on.';
COMMENT ON FUNCTION webhooks.resolve_event_selection(text[]) IS 'Internal: expand a subscription''s event types and ''category.*'' patterns to event types, refusing unknown ones and types whose add-on is off.';
COMMENT ON FUNCTION webhooks.lock_endpoint(bigint) IS 'Internal: lock an endpoint row for a change, or fail naming the id.';
COMMENT ON FUNCTION webhooks.record_history(bigint, text, jsonb) IS 'Internal: append an endpoint configuration change to webhooks.endpoint_history.';
COMMENT ON FUNCTION webhooks.check_secret(text) IS 'Internal: refuse a signing secret shorter than 24 characters, with spaces, or with less than 128 bits of variety (Shannon estimate).';
COMMENT ON FUNCTION webhooks.check_rate_limit(integer) IS 'Internal: refuse a rate limit outside 1 to 100000 requests per second (NULL means none).';
COMMENT ON FUNCTION webhooks.check_failure_window(interval) IS 'Internal: refuse a failure window outside 1 minute to 30 days.';
COMMENT ON FUNCTION webhooks.checked_url(text) IS 'Internal: an endpoint URL checked by check_endpoint_url, with plain http allowed only when the allow_http setting is on.';
COMMENT ON FUNCTION webhooks.wake_relay() IS 'Internal: NOTIFY webhooks_work at commit, after an operator''s action made existing deliveries due; writers never notify.';
COMMENT ON FUNCTION webhooks.queue_from_log(bigint, timestamptz, timestamptz, text[]) IS 'Internal: queue deliveries of logged events to one endpoint (replay); existing ones start a new round. The caller holds the endpoint''s row lock.';
COMMENT ON FUNCTION webhooks.refuse_log_change() IS 'Trigger of the append-only logs: refuses UPDATE, DELETE and TRUNCATE.';
COMMENT ON TABLE webhooks.table_kinds IS 'What webhooks.track knows how to track: each kind of ATS table, the columns it needs, and the events it fires.';
COMMENT ON TABLE webhooks.tracked_tables IS 'Tables webhooks.track has attached the tracking trigger to, with their kind and people tables.';
COMMENT ON FUNCTION webhooks.max_lease() IS 'The longest lease claim_deliveries grants: 1 hour.';
COMMENT ON FUNCTION webhooks.lease_key(text) IS 'Relay only: this session''s lease key (made on first use, or the one given back after a reconnect). Records and releases reach only the leases taken with it.';
COMMENT ON FUNCTION webhooks.lease_holder() IS 'Internal: what deliveries.leased_by holds for this session''s leases: 64 bits of the SHA-256 of the session''s lease key.';
COMMENT ON FUNCTION webhooks.lock_fan_out(boolean) IS 'Internal: the transaction-scoped lock that makes fan-out rounds run one at a time, in an advisory lock class no SQL role can take (pg_locks: advisory, objsubid 30568).';
COMMENT ON FUNCTION webhooks.session_role() IS 'Internal: the role this session acts as (its user or SET ROLE), whatever security-definer functions stand between; whose rights track() checks.';
COMMENT ON FUNCTION webhooks.check_may_track(regclass) IS 'Internal: refuse to track or untrack a table unless the session''s role is its owner or a member of the owning role, or a temporary table.';
COMMENT ON FUNCTION webhooks.endpoint_changed(bigint) IS 'Internal: NOTIFY webhooks_endpoint_changed with the endpoint id at commit, so that relays stop using what their claims said about it.';
COMMENT ON FUNCTION webhooks.refuse_history_change() IS 'Trigger of webhooks.endpoint_history: refuses UPDATE and DELETE, except delete_endpoint deleting the history of the endpoint it deletes.';
COMMENT ON FUNCTION webhooks.sync_subscription_periods(bigint) IS 'Internal: end and start an endpoint''s subscription periods so that they say what it takes from now on (active, subscribed, add-on on).';
COMMENT ON TABLE webhooks.subscription_periods IS 'When each endpoint took each event type (active, subscribed, add-on on): who gets a tracked event is decided at the event''s time, however late fan-out reaches it.';
