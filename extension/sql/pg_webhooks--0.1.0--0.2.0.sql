-- pg_webhooks 0.1.0 -> 0.2.0.
--
-- Security: every function that runs as the extension's owner, and every function those call,
-- pins search_path with pg_temp last; emitting needs webhooks_emitter; fan-out rounds take a
-- lock no SQL role can take; relays record and release only what their session holds under a
-- live lease, capped at webhooks.max_lease(), and have no table rights; admins never read
-- secrets; only a table's owner tracks it, with people tables the owner may read; weak own
-- secrets are refused; turning allow_http off disables plain-http endpoints; configuration
-- changes are announced to relays (webhooks_endpoint_changed). docs/security.md explains each.
--
-- Delivery rules: who gets a tracked event is decided by the endpoints' state at the event
-- (subscription_periods), however late fan-out reaches it; auto-disable counts deliveries that
-- failed for good; a 408 is not retried; switching an add-on off stops its deliveries; deleting
-- an endpoint deletes its history but for one audit line.
--
-- Wake-up: writers never NOTIFY (a notifying commit serialises with every other in the
-- cluster); an idle relay polls webhooks.work_marker(), and sleeping_relays is gone.
--
-- Readability: internal functions take a leading underscore; record_attempts, fan_out,
-- claim_deliveries and update_endpoint are split into named steps; the payload limit
-- (max_payload_bytes), the failure count (failed_deliveries_in_window) and restarting a
-- delivery (_restart_deliveries) each have one home; every object's comment stands beside it.
--
-- Operators: queue_stats() also returns the oldest pending delivery's age and the event log's
-- size on disk.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_emitter') THEN
        CREATE ROLE webhooks_emitter NOLOGIN;
    END IF;
END
$roles$;

------------------------------------------------------------------------------------------
-- Who gets a tracked event is decided at the event: subscription periods
------------------------------------------------------------------------------------------

CREATE TABLE webhooks.subscription_periods (
    endpoint_id bigint NOT NULL,
    event_type  text NOT NULL,
    since       timestamptz NOT NULL,
    -- NULL while the period lasts.
    until       timestamptz,
    PRIMARY KEY (event_type, since, endpoint_id)
);
CREATE INDEX subscription_periods_endpoint ON webhooks.subscription_periods (endpoint_id, event_type);

-- Until now fan-out decided by the endpoints' state when it ran. From here on the periods
-- decide; each active endpoint takes what it subscribes to now from its creation on (the one
-- thing 0.1.0 also looked at), so events logged before this update and fanned out after it
-- go where 0.1.0 would have sent them.
INSERT INTO webhooks.subscription_periods (endpoint_id, event_type, since)
SELECT s.endpoint_id, s.event_type, e.created_at
  FROM webhooks.subscriptions s
  JOIN webhooks.endpoints e ON e.id = s.endpoint_id AND e.status = 'active'
  JOIN webhooks.event_types t ON t.name = s.event_type
 WHERE t.addon IS NULL
    OR (SELECT st.value FROM webhooks.settings st WHERE st.name = t.addon || '_addon') = 'true';
SELECT pg_catalog.pg_extension_config_dump('webhooks.subscription_periods', '');

------------------------------------------------------------------------------------------
-- Auto-disable counts deliveries that failed for good
------------------------------------------------------------------------------------------

DROP INDEX webhooks.attempts_endpoint_failures;
DROP VIEW webhooks.endpoint_status;

------------------------------------------------------------------------------------------
-- Retention: the event log, deliveries and attempts become partitioned tables
------------------------------------------------------------------------------------------

-- Each is made anew as a fresh install makes it, its rows are copied in, and the 0.1.0 table
-- goes. The views that read them are made again below.
DROP VIEW webhooks.events_awaiting_fan_out;
DROP VIEW webhooks.delivery_log;
ALTER TABLE webhooks.events RENAME TO events_0_1_0;
ALTER SEQUENCE webhooks.events_id_seq RENAME TO events_0_1_0_id_seq;
ALTER INDEX webhooks.events_pkey RENAME TO events_0_1_0_pkey;
ALTER INDEX webhooks.events_created_at RENAME TO events_0_1_0_created_at;
ALTER TABLE webhooks.deliveries RENAME TO deliveries_0_1_0;
ALTER SEQUENCE webhooks.deliveries_id_seq RENAME TO deliveries_0_1_0_id_seq;
ALTER INDEX webhooks.deliveries_pkey RENAME TO deliveries_0_1_0_pkey;
ALTER INDEX webhooks.deliveries_due RENAME TO deliveries_0_1_0_due;
ALTER TABLE webhooks.attempts RENAME TO attempts_0_1_0;
ALTER SEQUENCE webhooks.attempts_id_seq RENAME TO attempts_0_1_0_id_seq;
ALTER INDEX webhooks.attempts_pkey RENAME TO attempts_0_1_0_pkey;
-- Constraint names are chosen among the schema's, so the new tables' would take another.
ALTER TABLE webhooks.deliveries_0_1_0 RENAME CONSTRAINT deliveries_status_check TO deliveries_0_1_0_status_check;
ALTER TABLE webhooks.attempts_0_1_0 RENAME CONSTRAINT attempts_outcome_check TO attempts_0_1_0_outcome_check;

-- No foreign key to event_types: a key check would share-lock the catalog row on every
-- emit; emit() validates the type itself.
-- Partitioned by id, one partition per period (the partition_period setting): events_<n>
-- holds the ids from n * 2^32, and webhooks.maintain() opens period n + 1 by moving the id
-- sequence there, so that each partition holds the events of one period and retention drops
-- whole partitions. By id rather than by time: every reader finds an event by its id (claims,
-- fan-out, deliveries), and an id names its partition, so each of them reads one partition.
-- Ids grow by 2^32 per period: JSON readers that hold numbers as doubles read them exactly
-- for two million periods. events_kept (the default partition) holds the events of pending
-- deliveries whose period was dropped.
-- Indexes belong to each partition, not to the partitioned tables (here and below): the
-- partitions webhooks.maintain() makes copy them from the default partition. An index of the
-- partitioned table would make pg_restore fail, since CREATE EXTENSION would have made it
-- before the restore attaches the dumped partitions (which then get it twice).
CREATE TABLE webhooks.events (
    id         bigint GENERATED ALWAYS AS IDENTITY,
    event_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    data       webhooks.event_data,
    -- A tracked event's writing transaction, by which webhooks.fan_out() finds it once it has
    -- committed. NULL for events that got their deliveries when they were logged (emit()).
    fanout_xid xid8
) PARTITION BY RANGE (id);
CREATE TABLE webhooks.events_kept PARTITION OF webhooks.events (PRIMARY KEY (id)) DEFAULT;
CREATE TABLE webhooks.events_0 PARTITION OF webhooks.events (PRIMARY KEY (id))
    FOR VALUES FROM (0) TO (4294967296);
-- BRIN: created_at grows with the log, so a tiny index serves replay windows at almost no
-- cost per emitted event. VACUUM summarizes each 128-page range once it is full; until then an
-- insert finds its range unsummarized and leaves the index alone. The one exception would be
-- the first range, which CREATE INDEX summarizes while the table is empty, so that every event
-- of the first 128 pages would rewrite its summary (a third of a tracked write's index work):
-- it is desummarized, like every range that is still filling (here, and for each new partition
-- in webhooks.maintain()).
CREATE INDEX events_kept_created_at ON webhooks.events_kept USING brin (created_at);
CREATE INDEX events_0_created_at ON webhooks.events_0 USING brin (created_at);
SELECT pg_catalog.brin_desummarize_range('webhooks.events_kept_created_at', 0);
SELECT pg_catalog.brin_desummarize_range('webhooks.events_0_created_at', 0);

-- The periods of the event log: the first id of each partition and when it was opened. The
-- oldest period still kept says how far back replay and backfill reach.
CREATE TABLE webhooks.event_log_periods (
    first_id  bigint PRIMARY KEY CHECK (first_id % 4294967296 = 0),
    opened_at timestamptz NOT NULL
);

-- Partitioned by status: the pending deliveries (the queue the relays claim from) in one
-- table that stays as small as the backlog, and the finished ones by the day they finished
-- (the partition_period setting), which retention drops whole. Finishing a delivery moves its
-- row from the one to the other: a new row where the update wrote a new row version before.
-- The first period holds the whole 0.1.0 log, and opened with its first event.
INSERT INTO webhooks.event_log_periods
SELECT 0, coalesce((SELECT min(ev.created_at) FROM webhooks.events_0_1_0 ev), now());

-- Partitioned by status: the pending deliveries (the queue the relays claim from) in one
-- table that stays as small as the backlog, and the finished ones by the day they finished
-- (the partition_period setting), which retention drops whole. Finishing a delivery moves its
-- row from the one to the other: a new row where the update wrote a new row version before.
CREATE TABLE webhooks.deliveries (
    id                   bigint GENERATED ALWAYS AS IDENTITY,
    -- No foreign keys on the hot path: checking them would lock the endpoint row in every
    -- emitting transaction (shared locks from many writers become multixacts). Only the
    -- extension's functions write here; delete_endpoint removes an endpoint's deliveries, and
    -- an event stays while a pending delivery needs it (webhooks.maintain()).
    event_id             bigint NOT NULL,
    endpoint_id          bigint NOT NULL,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Attempts in the current round (replay and redeliver start a new round at 0).
    attempts             integer NOT NULL DEFAULT 0,
    -- When the delivery is due (first attempt, or the next retry).
    next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    -- A relay's claim: the delivery is not claimed again until leased_until, so a crashed
    -- relay's work comes back by itself. Neither column is indexed, so the claim's update is a
    -- HOT update (no index writes), which matters at thousands of deliveries a second.
    -- The holder: a digest of the claiming session's lease key (webhooks._lease_holder()).
    leased_by            text,
    leased_until         timestamptz,
    last_response_status integer,
    last_error           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    CHECK ((status = 'pending') = (finished_at IS NULL))
    -- One delivery per (event, endpoint) holds by construction: emit inserts each pair once,
    -- and replay (under the endpoint's row lock) updates existing pairs before inserting the
    -- missing ones. A unique index would cost every emitting transaction a large share of its
    -- throughput (docs/benchmarks-history.md, "Tracking").
) PARTITION BY LIST (status);
CREATE TABLE webhooks.deliveries_pending PARTITION OF webhooks.deliveries
    (PRIMARY KEY (id)) FOR VALUES IN ('pending') WITH (fillfactor = 40);
-- Why 40: a claim leases a page's deliveries together, and each lease is a new version of the
-- row, larger than the queued one (88 bytes) by the expiry and the relay's id. Only when all of
-- them fit on the page are the leases HOT updates. A lease that spills to another page adds
-- index entries that every later claim walks past until vacuum: with fillfactor 80, seven
-- leases in ten spilled. 40 leaves room for a holder of up to 38 bytes; it is 16.
CREATE TABLE webhooks.deliveries_finished PARTITION OF webhooks.deliveries
    FOR VALUES IN ('succeeded', 'failed') PARTITION BY RANGE (finished_at);
-- Finished deliveries are found by id (redeliver, delivery_log).
CREATE TABLE webhooks.deliveries_finished_default PARTITION OF webhooks.deliveries_finished DEFAULT;
CREATE INDEX deliveries_finished_default_id ON webhooks.deliveries_finished_default (id);

-- The claim walks this per endpoint (oldest due first), so its cost does not grow with the
-- backlog. The id makes every key unique: one transaction's deliveries share a due time, and
-- equal keys would be merged into posting lists, whose entries are only marked dead once all
-- of them are, so every claim would visit the finished deliveries' rows again (claims read
-- 17-21 index entries per delivery they took; now 5-6). It also sends deliveries due at the
-- same moment in the order they were made.
CREATE INDEX deliveries_due ON webhooks.deliveries_pending (endpoint_id, next_attempt_at, id);
-- No index on finished deliveries by endpoint: endpoint_status counts them from
-- endpoint_activity, so finishing a delivery writes one index entry.

-- Partitioned by the attempt's start, one partition per period (the partition_period
-- setting), which retention drops whole; attempts_default takes what no partition covers.
CREATE TABLE webhooks.attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    -- No foreign key: its check would run a query and lock the delivery row for every
    -- recorded attempt (a fifth of record_attempts' time). Only record_attempts writes here,
    -- for deliveries whose rows it holds locked, and delete_endpoint deletes an endpoint's
    -- attempts with its deliveries.
    delivery_id      bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    attempt_number   integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      double precision NOT NULL,
    -- json, not jsonb: the headers as sent, in the order sent, and PostgreSQL only checks the
    -- text instead of building a binary tree for every attempt it records.
    request_headers  json NOT NULL,
    response_status  integer,
    response_body    text,
    error            text,
    outcome          text NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'failed')),
    relay_id         text
) PARTITION BY RANGE (started_at);
-- The key leads with the delivery, so that one index serves both uniqueness and the lookup of
-- a delivery's attempts (delivery_log): a second index on delivery_id cost every recorded
-- attempt one more index entry and WAL record.
CREATE TABLE webhooks.attempts_default PARTITION OF webhooks.attempts
    (PRIMARY KEY (delivery_id, id)) DEFAULT;
-- Deliveries that failed for good, by endpoint and time: what auto-disable counts. Attempts
-- that will be retried are not indexed.
CREATE INDEX attempts_default_failed ON webhooks.attempts_default (endpoint_id, started_at)
    WHERE outcome = 'failed';

-- (refuse_log_change takes its new name, _refuse_log_change, further down.)
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON webhooks.events
    FOR EACH ROW EXECUTE FUNCTION webhooks.refuse_log_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON webhooks.events
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks.refuse_log_change();
INSERT INTO webhooks.events OVERRIDING SYSTEM VALUE
SELECT ev.id, ev.event_type, ev.created_at, ev.data, ev.fanout_xid FROM webhooks.events_0_1_0 ev;
-- Finished deliveries go to the default partition (webhooks.maintain() makes the periods' from
-- the current one on), from which retention deletes them once they are old enough.
INSERT INTO webhooks.deliveries OVERRIDING SYSTEM VALUE
SELECT d.id, d.event_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.leased_by,
       d.leased_until, d.last_response_status, d.last_error, d.created_at,
       CASE WHEN d.status <> 'pending' THEN coalesce(d.finished_at, d.next_attempt_at) END
  FROM webhooks.deliveries_0_1_0 d;
INSERT INTO webhooks.attempts OVERRIDING SYSTEM VALUE
SELECT a.id, a.delivery_id, a.endpoint_id, a.attempt_number, a.started_at, a.duration_ms,
       a.request_headers, a.response_status, a.response_body, a.error, a.outcome, a.relay_id
  FROM webhooks.attempts_0_1_0 a;
SELECT pg_catalog.setval('webhooks.events_id_seq', s.last_value, s.is_called) FROM webhooks.events_0_1_0_id_seq s;
SELECT pg_catalog.setval('webhooks.deliveries_id_seq', s.last_value, s.is_called) FROM webhooks.deliveries_0_1_0_id_seq s;
SELECT pg_catalog.setval('webhooks.attempts_id_seq', s.last_value, s.is_called) FROM webhooks.attempts_0_1_0_id_seq s;
-- Leaving the extension first takes them off its list of configuration tables.
ALTER EXTENSION pg_webhooks DROP TABLE webhooks.events_0_1_0;
ALTER EXTENSION pg_webhooks DROP SEQUENCE webhooks.events_0_1_0_id_seq;
ALTER EXTENSION pg_webhooks DROP TABLE webhooks.deliveries_0_1_0;
ALTER EXTENSION pg_webhooks DROP SEQUENCE webhooks.deliveries_0_1_0_id_seq;
ALTER EXTENSION pg_webhooks DROP TABLE webhooks.attempts_0_1_0;
ALTER EXTENSION pg_webhooks DROP SEQUENCE webhooks.attempts_0_1_0_id_seq;
DROP TABLE webhooks.events_0_1_0, webhooks.deliveries_0_1_0, webhooks.attempts_0_1_0;

SELECT pg_catalog.pg_extension_config_dump('webhooks.events_0', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_kept', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.event_log_periods', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_pending', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_finished_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempts_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempts_id_seq', '');

INSERT INTO webhooks.settings (name, value, description) VALUES
    ('event_retention', '30 days',
     'How long the event log keeps events (replay and backfill reach this far back); events of pending deliveries stay until they are delivered.'),
    ('delivery_retention', '30 days',
     'How long finished (succeeded or failed) deliveries are kept; pending ones stay until they finish.'),
    ('attempt_retention', '30 days',
     'How long the record of each HTTP attempt is kept.'),
    ('deleted_endpoint_retention', '90 days',
     'How long the audit line of a deleted endpoint is kept.'),
    ('partition_period', '1 day',
     'The time each partition of the event log, finished deliveries and attempts covers; retention drops whole partitions.');


------------------------------------------------------------------------------------------
-- Functions and views: renamed, dropped, and made as a fresh 0.2.0 install makes them
------------------------------------------------------------------------------------------

-- Internal functions take a leading underscore (they keep their rights and their uses).
ALTER FUNCTION webhooks.check_failure_window(failure_window interval) RENAME TO _check_failure_window;
ALTER FUNCTION webhooks.check_rate_limit(rate_limit integer) RENAME TO _check_rate_limit;
ALTER FUNCTION webhooks.check_secret(secret text) RENAME TO _check_secret;
ALTER FUNCTION webhooks.check_trackable("table_name" oid, "kind" TEXT, "candidates" oid, "job_postings" oid) RENAME TO _check_trackable;
ALTER FUNCTION webhooks.checked_url(url text) RENAME TO _checked_url;
ALTER FUNCTION webhooks.ended_in(xid xid8, snapshot pg_snapshot, taken_by xid8) RENAME TO _ended_in;
ALTER FUNCTION webhooks.lock_endpoint(endpoint_id bigint) RENAME TO _lock_endpoint;
ALTER FUNCTION webhooks.make_deliveries(event_ids bigint[]) RENAME TO _make_deliveries;
ALTER FUNCTION webhooks.people_columns(kind text) RENAME TO _people_columns;
ALTER FUNCTION webhooks.queue_from_log(endpoint_id bigint, since timestamptz, until timestamptz, only_types text[]) RENAME TO _queue_from_log;
ALTER FUNCTION webhooks.record_history(endpoint_id bigint, action text, detail jsonb) RENAME TO _record_history;
ALTER FUNCTION webhooks.refuse_log_change() RENAME TO _refuse_log_change;
ALTER FUNCTION webhooks.require_columns(tbl regclass, role text, columns text[]) RENAME TO _require_columns;
ALTER FUNCTION webhooks.resolve_event_selection(selection text[]) RENAME TO _resolve_event_selection;
ALTER FUNCTION webhooks.restore_fanout_position() RENAME TO _restore_fanout_position;
ALTER FUNCTION webhooks.restore_setting() RENAME TO _restore_setting;
ALTER FUNCTION webhooks.setting_enabled(setting text) RENAME TO _setting_enabled;
ALTER FUNCTION webhooks.wake_relay() RENAME TO _wake_relay;

-- Functions that 0.2.0 removes, or whose arguments or results changed.
DROP FUNCTION webhooks.update_endpoint(endpoint_id bigint, changes jsonb);
DROP FUNCTION webhooks.record_attempts(relay_id text, delivery_ids bigint[], attempt_numbers integer[], started_ats timestamptz[], durations_ms double precision[], headers json[], response_statuses integer[], response_bodies text[], errors text[], retry_afters_seconds double precision[], permanents boolean[]);
DROP FUNCTION webhooks.record_attempts(relay_id text, attempts jsonb);
DROP FUNCTION webhooks.set_relay_asleep(relay_id text, asleep boolean);
DROP FUNCTION webhooks.queue_stats(OUT due bigint, OUT scheduled bigint, OUT endpoints_disabled bigint, OUT awaiting_fan_out bigint);

-- Every function and view of 0.2.0, as a fresh install makes them, with its comment.
COMMENT ON TABLE webhooks.subscription_periods IS 'When each endpoint took each event type (active, subscribed, add-on on): who gets a tracked event is decided at the event''s time, however late fan-out reaches it.';
CREATE OR REPLACE FUNCTION webhooks.max_payload_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 262144;

COMMENT ON FUNCTION webhooks.max_payload_bytes() IS 'The largest event payload, in bytes of its jsonb: 262144 (256 KiB).';
COMMENT ON DOMAIN webhooks.event_data IS 'An event payload: a JSON object of at most 256 KiB.';
CREATE OR REPLACE FUNCTION webhooks._ended_in(xid xid8, snapshot pg_snapshot, taken_by xid8) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN pg_catalog.pg_visible_in_snapshot(xid, snapshot) AND xid IS DISTINCT FROM taken_by;

COMMENT ON FUNCTION webhooks._ended_in(xid8, pg_snapshot, xid8) IS 'Whether a transaction had ended in a snapshot taken by another (or the same) transaction: the rule of webhooks.fan_out''s rounds.';
CREATE OR REPLACE VIEW webhooks.events_awaiting_fan_out AS
SELECT ev.id, ev.event_type, ev.created_at, ev.fanout_xid
  FROM webhooks.events ev, webhooks.fanout_position p
 WHERE ev.id > p.floor
   AND ev.fanout_xid IS NOT NULL
   AND NOT webhooks._ended_in(ev.fanout_xid, p.done, p.done_by)
   AND NOT (p.batch IS NOT NULL AND ev.id <= p.batch_reached
            AND webhooks._ended_in(ev.fanout_xid, p.batch, p.batch_by));

CREATE OR REPLACE FUNCTION webhooks._refuse_log_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- webhooks.maintain() deletes the carried-over events nothing needs any more.
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'events_kept'
       AND pg_catalog.current_setting('webhooks.maintaining', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The log is the source of truth. To deliver an event again use webhooks.replay or webhooks.redeliver.';
END
$$;

COMMENT ON FUNCTION webhooks._refuse_log_change() IS 'Trigger of the append-only logs: refuses UPDATE, DELETE and TRUNCATE.';
CREATE OR REPLACE FUNCTION webhooks._refuse_history_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.endpoint_id::text = current_setting('webhooks.deleting_endpoint', true) THEN
        RETURN OLD;
    END IF;
    -- webhooks.maintain() deletes the audit lines of endpoints deleted longer ago than the
    -- deleted_endpoint_retention setting.
    IF TG_OP = 'DELETE' AND OLD.action = 'deleted'
       AND current_setting('webhooks.maintaining', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'webhooks.endpoint_history is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'An endpoint''s history goes only with the endpoint: webhooks.delete_endpoint.';
END
$$;

COMMENT ON FUNCTION webhooks._refuse_history_change() IS 'Trigger of webhooks.endpoint_history: refuses UPDATE and DELETE, except delete_endpoint deleting the history of the endpoint it deletes.';
COMMENT ON TABLE webhooks.settings IS 'Database-wide switches; change them with webhooks.set_setting.';
COMMENT ON TABLE webhooks.event_types IS 'The event catalog: every event type, its category, and the add-on it needs.';
COMMENT ON TABLE webhooks.endpoints IS 'Webhook endpoints with their signing secrets. Read webhooks.endpoint_list for a view without secrets.';
COMMENT ON TABLE webhooks.subscriptions IS 'Endpoint subscriptions expanded to individual event types.';
COMMENT ON TABLE webhooks.events IS 'Append-only event log, the source of truth. The id is what receivers deduplicate on (X-Webhook-Id).';
COMMENT ON TABLE webhooks.events_0 IS 'The event log''s first period (ids below 2^32).';
COMMENT ON TABLE webhooks.events_kept IS 'Events of pending deliveries whose period retention has dropped (the event log''s default partition).';
COMMENT ON TABLE webhooks.event_log_periods IS 'The event log''s periods: the first id of each partition and when it was opened.';
COMMENT ON TABLE webhooks.deliveries IS 'One row per (event, endpoint): the work the relay claims.';
COMMENT ON TABLE webhooks.deliveries_pending IS 'Pending deliveries: the queue relays claim from.';
COMMENT ON TABLE webhooks.deliveries_finished IS 'Finished deliveries, partitioned by the period they finished in.';
COMMENT ON TABLE webhooks.deliveries_finished_default IS 'Finished deliveries no period partition covers.';
COMMENT ON TABLE webhooks.attempts_default IS 'Attempts no period partition covers.';
COMMENT ON TABLE webhooks.fanout_position IS 'How far webhooks.fan_out() has come through the log: the snapshot whose ended transactions'' tracked events all have their deliveries.';
COMMENT ON TABLE webhooks.fanout_marks IS 'The last event id given out before each fan-out round''s transaction id: what lets fan_out() skip the part of the log it has finished.';
COMMENT ON VIEW webhooks.events_awaiting_fan_out IS 'Committed tracked events whose deliveries are not made yet; the next webhooks.fan_out() (every relay claim runs it) makes them.';
COMMENT ON TABLE webhooks.attempts IS 'One row per HTTP attempt, written by the relay.';
COMMENT ON TABLE webhooks.endpoint_activity IS 'Per endpoint and hour (of recording): deliveries that succeeded, deliveries that failed for good, attempts, and the latest attempt''s start. Kept by record_attempts; endpoint_status sums it.';
COMMENT ON TABLE webhooks.endpoint_history IS 'Append-only record of every endpoint configuration change.';
CREATE OR REPLACE FUNCTION webhooks."_check_trackable"(
	"table_name" oid, /* pg_sys :: Oid */
	"kind" TEXT, /* & str */
	"candidates" oid, /* Option < pg_sys :: Oid > */
	"job_postings" oid /* Option < pg_sys :: Oid > */
) RETURNS void
STABLE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_trackable_wrapper';

CREATE OR REPLACE FUNCTION webhooks."_lock_fan_out"(
	"wait" bool /* bool */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'lock_fan_out_wrapper';

CREATE OR REPLACE FUNCTION webhooks."_session_role"() RETURNS oid /* pg_sys :: Oid */
STRICT STABLE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_role_wrapper';

CREATE OR REPLACE FUNCTION webhooks."check_endpoint_url"(
	"url" TEXT, /* & str */
	"allow_http" bool DEFAULT false /* bool */
) RETURNS TEXT /* String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_endpoint_url_wrapper';

CREATE OR REPLACE FUNCTION webhooks."generate_secret"() RETURNS TEXT /* String */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'generate_secret_wrapper';

COMMENT ON FUNCTION webhooks.generate_secret() IS 'A new 256-bit signing secret (whsec_ + 64 hex digits).';
COMMENT ON FUNCTION webhooks.check_endpoint_url(text, boolean) IS 'Validate and normalise an endpoint URL; raises an error naming the problem.';
CREATE OR REPLACE FUNCTION webhooks._setting_enabled(setting text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT coalesce((SELECT value::boolean FROM webhooks.settings WHERE name = setting), false)
$$;

COMMENT ON FUNCTION webhooks._setting_enabled(text) IS 'Internal: whether a boolean setting of webhooks.settings is on.';
CREATE OR REPLACE FUNCTION webhooks.iso8601(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', ts), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

COMMENT ON FUNCTION webhooks.iso8601(timestamptz) IS 'Format a timestamp as ISO 8601 UTC with whole seconds and Z, as in webhook payloads.';
CREATE OR REPLACE FUNCTION webhooks._resolve_event_selection(selection text[]) RETURNS text[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    item     text;
    matched  text[];
    resolved text[] := '{}';
    gated    text;
BEGIN
    IF selection IS NULL OR cardinality(selection) = 0 THEN
        RAISE EXCEPTION 'an endpoint must subscribe to at least one event type'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give event types such as ''application.submitted'' or whole categories such as ''application.*''; SELECT * FROM webhooks.list_event_types() lists them.';
    END IF;
    FOREACH item IN ARRAY selection LOOP
        IF item IS NULL OR item = 'test.ping' OR item = 'test.*' THEN
            RAISE EXCEPTION 'cannot subscribe to "%"', coalesce(item, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'test.ping is sent on demand to one endpoint by webhooks.send_test_ping(endpoint_id); it is not a subscription.';
        END IF;
        IF item LIKE '%.*' THEN
            SELECT array_agg(name ORDER BY name) INTO matched
              FROM webhooks.event_types
             WHERE name LIKE left(item, -2) || '.%' AND category <> 'test';
        ELSE
            SELECT array_agg(name) INTO matched FROM webhooks.event_types WHERE name = item;
        END IF;
        IF matched IS NULL THEN
            RAISE EXCEPTION 'unknown event type "%"', item
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Valid event types are listed by SELECT name FROM webhooks.list_event_types(); categories are application.*, offer.*, interview.*, code_assignment.*, review.*, job_posting.*, outreach.*.';
        END IF;
        resolved := resolved || matched;
    END LOOP;

    SELECT min(t.name) INTO gated
      FROM webhooks.event_types t
     WHERE t.name = ANY (resolved) AND t.addon = 'outreach'
       AND NOT webhooks._setting_enabled('outreach_addon');
    IF gated IS NOT NULL THEN
        RAISE EXCEPTION 'event type "%" needs the Outreach add-on, which is not enabled for this database', gated
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'An admin enables it with SELECT webhooks.set_setting(''outreach_addon'', ''true'').';
    END IF;
    RETURN ARRAY(SELECT DISTINCT unnest(resolved) ORDER BY 1);
END
$$;

COMMENT ON FUNCTION webhooks._resolve_event_selection(text[]) IS 'Internal: expand a subscription''s event types and ''category.*'' patterns to event types, refusing unknown ones and types whose add-on is off.';
CREATE OR REPLACE FUNCTION webhooks._lock_endpoint(endpoint_id bigint) RETURNS webhooks.endpoints
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    locked webhooks.endpoints;
BEGIN
    -- NO KEY UPDATE: admin changes queue behind each other, but not behind anything that
    -- only reads the endpoint's key.
    SELECT * INTO locked FROM webhooks.endpoints e WHERE e.id = _lock_endpoint.endpoint_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'endpoint % does not exist', coalesce(endpoint_id::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT id, name, url FROM webhooks.endpoint_list shows the existing endpoints.';
    END IF;
    RETURN locked;
END
$$;

COMMENT ON FUNCTION webhooks._lock_endpoint(bigint) IS 'Internal: lock an endpoint row for a change, or fail naming the id.';
CREATE OR REPLACE FUNCTION webhooks._record_history(endpoint_id bigint, action text, detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    INSERT INTO webhooks.endpoint_history (endpoint_id, action, detail) VALUES ($1, $2, $3)
$$;

COMMENT ON FUNCTION webhooks._record_history(bigint, text, jsonb) IS 'Internal: append an endpoint configuration change to webhooks.endpoint_history.';
CREATE OR REPLACE FUNCTION webhooks._sync_subscription_periods(endpoint_id bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    WITH taking AS (
        SELECT s.event_type
          FROM webhooks.subscriptions s
          JOIN webhooks.endpoints e ON e.id = s.endpoint_id AND e.status = 'active'
          JOIN webhooks.event_types t ON t.name = s.event_type
         WHERE s.endpoint_id = _sync_subscription_periods.endpoint_id
           AND (t.addon IS NULL OR webhooks._setting_enabled(t.addon || '_addon'))
    ), ended AS (
        UPDATE webhooks.subscription_periods p SET until = now()
         WHERE p.endpoint_id = _sync_subscription_periods.endpoint_id AND p.until IS NULL
           AND p.event_type NOT IN (SELECT t.event_type FROM taking t)
    ), resumed AS (
        -- A period ended earlier in this transaction goes on, rather than end and restart at
        -- the same instant.
        UPDATE webhooks.subscription_periods p SET until = NULL
         WHERE p.endpoint_id = _sync_subscription_periods.endpoint_id AND p.until = now()
           AND p.event_type IN (SELECT t.event_type FROM taking t)
    )
    -- All three parts read the periods as they were before this statement.
    INSERT INTO webhooks.subscription_periods (endpoint_id, event_type, since)
    SELECT _sync_subscription_periods.endpoint_id, t.event_type, now()
      FROM taking t
     WHERE NOT EXISTS (SELECT FROM webhooks.subscription_periods p
                        WHERE p.endpoint_id = _sync_subscription_periods.endpoint_id
                          AND p.event_type = t.event_type
                          AND (p.until IS NULL OR p.until = now()))
$$;

COMMENT ON FUNCTION webhooks._sync_subscription_periods(bigint) IS 'Internal: end and start an endpoint''s subscription periods so that they say what it takes from now on (active, subscribed, add-on on).';
CREATE OR REPLACE FUNCTION webhooks._set_subscriptions(endpoint_id bigint, event_types text[]) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    DELETE FROM webhooks.subscriptions s
     WHERE s.endpoint_id = _set_subscriptions.endpoint_id
       AND s.event_type <> ALL (_set_subscriptions.event_types);
    INSERT INTO webhooks.subscriptions (event_type, endpoint_id)
    SELECT t, _set_subscriptions.endpoint_id FROM unnest(_set_subscriptions.event_types) t
        ON CONFLICT DO NOTHING;
    SELECT webhooks._sync_subscription_periods(_set_subscriptions.endpoint_id);
$$;

COMMENT ON FUNCTION webhooks._set_subscriptions(bigint, text[]) IS 'Internal: make an endpoint''s subscriptions exactly these event types, and its subscription periods follow.';
CREATE OR REPLACE FUNCTION webhooks._check_secret(secret text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    bits double precision;
BEGIN
    SELECT coalesce(sum(-f.n * log(2, f.n::numeric / length(secret))), 0) INTO bits
      FROM (SELECT count(*) AS n FROM regexp_split_to_table(secret, '') c GROUP BY c) f;
    IF secret IS NULL OR length(secret) < 24 OR secret ~ '\s' OR bits < 128 THEN
        RAISE EXCEPTION 'signing secret is too weak (% characters, about % bits of variety)',
                        coalesce(length(secret), 0), floor(coalesce(bits, 0))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give at least 24 characters without spaces and with real variety (128 bits or more: for example 32 random bytes in hex or base64), or omit the secret to have a strong one generated.';
    END IF;
    RETURN secret;
END
$$;

COMMENT ON FUNCTION webhooks._check_secret(text) IS 'Internal: refuse a signing secret shorter than 24 characters, with spaces, or with less than 128 bits of variety (Shannon estimate).';
CREATE OR REPLACE FUNCTION webhooks._check_rate_limit(rate_limit integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF rate_limit IS NOT NULL AND rate_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'rate limit % is not valid', rate_limit
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give requests per second between 1 and 100000, or NULL for no limit.';
    END IF;
    RETURN rate_limit;
END
$$;

COMMENT ON FUNCTION webhooks._check_rate_limit(integer) IS 'Internal: refuse a rate limit outside 1 to 100000 requests per second (NULL means none).';
CREATE OR REPLACE FUNCTION webhooks._check_failure_window(failure_window interval) RETURNS interval
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF failure_window IS NULL OR failure_window < interval '1 minute' OR failure_window > interval '30 days' THEN
        RAISE EXCEPTION 'failure window % is not valid', coalesce(failure_window::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give an interval between 1 minute and 30 days; the default is 24 hours.';
    END IF;
    RETURN failure_window;
END
$$;

COMMENT ON FUNCTION webhooks._check_failure_window(interval) IS 'Internal: refuse a failure window outside 1 minute to 30 days.';
CREATE OR REPLACE FUNCTION webhooks._checked_url(url text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT webhooks.check_endpoint_url(url, webhooks._setting_enabled('allow_http'))
$$;

COMMENT ON FUNCTION webhooks._checked_url(text) IS 'Internal: an endpoint URL checked by check_endpoint_url, with plain http allowed only when the allow_http setting is on.';
CREATE OR REPLACE FUNCTION webhooks._wake_relay() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT pg_notify('webhooks_work', '')
$$;

COMMENT ON FUNCTION webhooks._wake_relay() IS 'Internal: NOTIFY webhooks_work at commit, after an operator''s action made existing deliveries due; writers never notify.';
CREATE OR REPLACE FUNCTION webhooks._endpoint_changed(endpoint_id bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT pg_notify('webhooks_endpoint_changed', endpoint_id::text)
$$;

COMMENT ON FUNCTION webhooks._endpoint_changed(bigint) IS 'Internal: NOTIFY webhooks_endpoint_changed with the endpoint id at commit, so that relays stop using what their claims said about it.';
CREATE OR REPLACE FUNCTION webhooks._run_again_after_a_move() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a delivery this transaction waited for finished meanwhile'
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Retry the transaction; in READ COMMITTED (the default) the webhooks functions retry by themselves.';
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._run_again_after_a_move() IS 'Internal: after SQLSTATE 40001 from a delivery that moved partitions, whether a statement may run again (READ COMMITTED) or the transaction must be retried.';
CREATE OR REPLACE FUNCTION webhooks._restart_deliveries(delivery_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    restarted integer;
BEGIN
    LOOP
        BEGIN
            UPDATE webhooks.deliveries d
               SET status = 'pending', attempts = 0, next_attempt_at = now(), leased_by = NULL,
                   leased_until = NULL, finished_at = NULL
             WHERE d.id = ANY (_restart_deliveries.delivery_ids);
            GET DIAGNOSTICS restarted = ROW_COUNT;
            RETURN restarted;
        EXCEPTION WHEN serialization_failure THEN
            PERFORM webhooks._run_again_after_a_move();
        END;
    END LOOP;
END
$$;

COMMENT ON FUNCTION webhooks._restart_deliveries(bigint[]) IS 'Internal: start deliveries on a new round (pending, due now, no attempts, no lease); replay, backfill and redeliver use it. Returns how many.';
CREATE OR REPLACE FUNCTION webhooks._queue_from_log(endpoint_id bigint, since timestamptz, until timestamptz,
                                        only_types text[]) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    queued integer;
    kept_since timestamptz := webhooks.events_kept_since();
BEGIN
    -- Retention has dropped what came before (webhooks.maintain()): a window reaching further
    -- back would quietly replay only part of itself.
    IF since < kept_since THEN
        RAISE EXCEPTION 'the event log no longer holds events from before %', webhooks.iso8601(kept_since)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Events are kept for %s (the event_retention setting): ask for a window from %s on.',
                                webhooks._setting_interval('event_retention'), webhooks.iso8601(kept_since));
    END IF;
    WITH replayed AS (
        SELECT ev.id
          FROM webhooks.events ev
         WHERE ev.created_at >= since AND ev.created_at < until
           AND ev.event_type IN (SELECT s.event_type FROM webhooks.subscriptions s
                                  WHERE s.endpoint_id = _queue_from_log.endpoint_id)
           AND (only_types IS NULL OR ev.event_type = ANY (only_types))
           -- A tracked event still awaiting fan-out gets its delivery from fan_out(); adding
           -- one here as well would deliver it twice. (A fan-out in progress has not committed
           -- its new position, so its events are still seen here as awaiting.)
           AND NOT EXISTS (SELECT FROM webhooks.events_awaiting_fan_out a WHERE a.id = ev.id)
    ), restarted AS (
        SELECT webhooks._restart_deliveries(ARRAY(
                   SELECT d.id FROM webhooks.deliveries d
                    WHERE d.endpoint_id = _queue_from_log.endpoint_id
                      AND d.event_id IN (SELECT r.id FROM replayed r))) AS n
    ), added AS (
        -- Both parts read the deliveries as they were before this statement: pairs restarted
        -- above exist, so they are not inserted again.
        INSERT INTO webhooks.deliveries (event_id, endpoint_id)
        SELECT r.id, _queue_from_log.endpoint_id
          FROM replayed r
         WHERE NOT EXISTS (SELECT FROM webhooks.deliveries d
                            WHERE d.event_id = r.id AND d.endpoint_id = _queue_from_log.endpoint_id)
        RETURNING 1
    )
    SELECT (SELECT n FROM restarted) + (SELECT count(*) FROM added) INTO queued;
    IF queued > 0 THEN
        PERFORM webhooks._wake_relay();
    END IF;
    RETURN queued;
END
$$;

COMMENT ON FUNCTION webhooks._queue_from_log(bigint, timestamptz, timestamptz, text[]) IS 'Internal: queue deliveries of logged events to one endpoint (replay); existing ones start a new round. The caller holds the endpoint''s row lock.';
CREATE OR REPLACE FUNCTION webhooks.failed_deliveries_in_window(endpoint webhooks.endpoints) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.count(*)
      FROM webhooks.attempts a
     WHERE a.endpoint_id OPERATOR(pg_catalog.=) endpoint.id
       AND a.outcome OPERATOR(pg_catalog.=) 'failed'
       AND a.started_at OPERATOR(pg_catalog.>=)
           greatest(pg_catalog.now() OPERATOR(pg_catalog.-) endpoint.failure_window,
                    endpoint.failures_counted_since)
$$;

COMMENT ON FUNCTION webhooks.failed_deliveries_in_window(webhooks.endpoints) IS 'What auto-disable counts: the endpoint''s deliveries failed for good within its failure window, since it was last resumed.';
CREATE OR REPLACE VIEW webhooks.endpoint_list AS
SELECT e.id, e.name, e.description, e.url, e.events,
       ARRAY(SELECT s.event_type FROM webhooks.subscriptions s WHERE s.endpoint_id = e.id ORDER BY 1) AS event_types,
       e.status, e.disabled_reason, e.disabled_at, e.rate_limit, e.failure_window, e.failure_threshold,
       e.created_at, e.updated_at
  FROM webhooks.endpoints e;

COMMENT ON VIEW webhooks.endpoint_list IS 'Endpoints without their secrets.';
CREATE OR REPLACE VIEW webhooks.endpoint_status AS
SELECT e.id, e.name, e.url, e.status, e.disabled_reason,
       (SELECT count(*) FROM webhooks.deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
       coalesce(day.succeeded, 0) AS succeeded_24h,
       coalesce(day.failed, 0) AS failed_24h,
       -- What auto-disable counts: deliveries failed for good within the failure window,
       -- since the last resume (attempts that will be retried do not count).
       webhooks.failed_deliveries_in_window(e) AS failed_deliveries_in_window,
       (SELECT max(a.last_attempt_at) FROM webhooks.endpoint_activity a WHERE a.endpoint_id = e.id) AS last_attempt_at
  FROM webhooks.endpoints e
  LEFT JOIN LATERAL (
      SELECT sum(a.succeeded)::bigint AS succeeded, sum(a.failed)::bigint AS failed
        FROM webhooks.endpoint_activity a
       WHERE a.endpoint_id = e.id AND a.hour > now() - interval '24 hours') day ON true;

COMMENT ON VIEW webhooks.endpoint_status IS 'Per-endpoint status: pending deliveries, deliveries succeeded and failed for good in the last 24 h, and failed_deliveries_in_window, the count auto-disable compares with the threshold.';
CREATE OR REPLACE VIEW webhooks.delivery_log AS
SELECT d.id AS delivery_id, d.event_id, ev.event_type, ev.created_at AS event_created_at,
       e.id AS endpoint_id, e.name AS endpoint_name, d.status AS delivery_status,
       a.attempt_number, a.started_at, a.duration_ms, a.outcome, a.response_status,
       a.error, a.request_headers, a.response_body, a.relay_id, d.next_attempt_at
  FROM webhooks.deliveries d
  LEFT JOIN webhooks.events ev ON ev.id = d.event_id
  JOIN webhooks.endpoints e ON e.id = d.endpoint_id
  LEFT JOIN webhooks.attempts a ON a.delivery_id = d.id;

COMMENT ON VIEW webhooks.delivery_log IS 'Every delivery with its event, endpoint and attempts (request headers, response status, timing).';
CREATE OR REPLACE FUNCTION webhooks.set_setting(name text, value text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    parsed boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM webhooks.settings s WHERE s.name = set_setting.name) THEN
        RAISE EXCEPTION 'unknown setting "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid settings: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.name) FROM webhooks.settings s) || '.';
    END IF;
    IF name LIKE '%\_retention' OR name = 'partition_period' THEN
        RETURN webhooks._set_duration_setting(name, value);
    END IF;
    BEGIN
        parsed := value::boolean;
    EXCEPTION WHEN invalid_text_representation THEN
        parsed := NULL;
    END;
    IF parsed IS NULL THEN
        RAISE EXCEPTION 'setting "%" must be true or false, not "%"', name, coalesce(value, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give ''true'' or ''false''.';
    END IF;
    UPDATE webhooks.settings s SET value = parsed::text, updated_at = now() WHERE s.name = set_setting.name;
    -- An add-on switched: its event types are taken, or no longer taken, from now on. Switched
    -- off, its queued deliveries are not sent either: they fail, saying why, and relays hand
    -- back the ones they hold.
    IF set_setting.name LIKE '%\_addon' THEN
        PERFORM webhooks._sync_subscription_periods(e.id) FROM webhooks.endpoints e ORDER BY e.id;
        IF NOT parsed THEN
            -- (Run again when a delivery a relay finished meanwhile has left the pending
            -- deliveries' partition under it: _run_again_after_a_move.)
            LOOP
                BEGIN
                    UPDATE webhooks.deliveries d
                       SET status = 'failed', finished_at = now(), leased_by = NULL, leased_until = NULL,
                           last_error = format('not sent: the %s add-on was turned off', left(set_setting.name, -6))
                      FROM webhooks.events ev, webhooks.event_types t
                     WHERE ev.id = d.event_id AND t.name = ev.event_type
                       AND t.addon || '_addon' = set_setting.name
                       AND d.status = 'pending';
                    EXIT;
                EXCEPTION WHEN serialization_failure THEN
                    PERFORM webhooks._run_again_after_a_move();
                END;
            END LOOP;
            PERFORM webhooks._endpoint_changed(e.id)
               FROM webhooks.endpoints e
              WHERE EXISTS (SELECT FROM webhooks.subscriptions s JOIN webhooks.event_types t ON t.name = s.event_type
                             WHERE s.endpoint_id = e.id AND t.addon || '_addon' = set_setting.name)
              ORDER BY e.id;
        END IF;
    END IF;
    -- Plain http was allowed when these endpoints were made; from now on it is not, so they
    -- stop getting requests (resume_endpoint refuses them until their URL is https).
    IF set_setting.name = 'allow_http' AND NOT parsed THEN
        PERFORM webhooks.disable_endpoint(e.id, 'plain http is no longer allowed (the allow_http setting was turned off)')
           FROM webhooks.endpoints e
          WHERE e.status <> 'disabled' AND e.url LIKE 'http:%'
          ORDER BY e.id;
    END IF;
    RETURN parsed::text;
END
$$;

COMMENT ON FUNCTION webhooks.set_setting(text, text) IS 'Change a database-wide setting: the switches allow_http and outreach_addon, and the retention and partition_period durations. Admin only. Turning allow_http off disables every plain-http endpoint.';
CREATE OR REPLACE FUNCTION webhooks._set_duration_setting(name text, value text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    parsed interval;
    longest interval := CASE WHEN name = 'partition_period' THEN interval '31 days' END;
BEGIN
    BEGIN
        parsed := value::interval;
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
        parsed := NULL;
    END;
    IF parsed IS NULL OR parsed < interval '1 minute' OR parsed > longest THEN
        RAISE EXCEPTION 'setting "%" must be a duration of at least 1 minute%, not "%"', name,
                        coalesce(' and at most ' || longest, ''), coalesce(value, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give an interval such as ''30 days'' or ''12 hours''.';
    END IF;
    UPDATE webhooks.settings s SET value = parsed::text, updated_at = now() WHERE s.name = _set_duration_setting.name;
    RETURN parsed::text;
END
$$;

COMMENT ON FUNCTION webhooks._set_duration_setting(text, text) IS 'Internal: set a retention or the partition period (set_setting''s part for durations).';
CREATE OR REPLACE FUNCTION webhooks.list_event_types()
RETURNS TABLE (name text, category text, description text, addon text, available boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT t.name, t.category, t.description, t.addon,
           t.addon IS NULL OR webhooks._setting_enabled(t.addon || '_addon')
      FROM webhooks.event_types t
     ORDER BY t.category = 'test', t.category, t.name
$$;

COMMENT ON FUNCTION webhooks.list_event_types() IS 'Every event type with its category, description, required add-on and whether it is available now.';
CREATE OR REPLACE FUNCTION webhooks.create_endpoint(
    url            text,
    events         text[],
    name           text DEFAULT NULL,
    description    text DEFAULT NULL,
    secret         text DEFAULT NULL,
    rate_limit     integer DEFAULT NULL,
    backfill_since timestamptz DEFAULT NULL,
    failure_window interval DEFAULT '24 hours')
RETURNS TABLE (endpoint_id bigint, signing_secret text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    types   text[] := webhooks._resolve_event_selection(events);
    created webhooks.endpoints;
BEGIN
    INSERT INTO webhooks.endpoints AS e (name, description, url, secret, events, rate_limit, failure_window)
    VALUES (coalesce(nullif(btrim(create_endpoint.name), ''), 'endpoint-' || gen_random_uuid()),
            nullif(create_endpoint.description, ''),
            webhooks._checked_url(create_endpoint.url),
            CASE WHEN create_endpoint.secret IS NULL THEN webhooks.generate_secret()
                 ELSE webhooks._check_secret(create_endpoint.secret) END,
            create_endpoint.events,
            webhooks._check_rate_limit(create_endpoint.rate_limit),
            webhooks._check_failure_window(create_endpoint.failure_window))
    RETURNING * INTO created;

    IF create_endpoint.name IS NULL OR btrim(create_endpoint.name) = '' THEN
        UPDATE webhooks.endpoints e
           SET name = substring(created.url FROM '^[a-z]+://([^/:?#]+)') || ' #' || created.id
         WHERE e.id = created.id
        RETURNING * INTO created;
    END IF;

    PERFORM webhooks._set_subscriptions(created.id, types);

    PERFORM webhooks._record_history(created.id, 'created', jsonb_build_object(
        'name', created.name, 'url', created.url, 'events', created.events,
        'description', created.description, 'rate_limit', created.rate_limit,
        'failure_window', created.failure_window));

    IF backfill_since IS NOT NULL THEN
        PERFORM webhooks._queue_from_log(created.id, backfill_since, now() + interval '1 microsecond', NULL);
    END IF;

    RETURN QUERY SELECT created.id, created.secret;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an endpoint named "%" already exists', create_endpoint.name
        USING ERRCODE = 'unique_violation', HINT = 'Endpoint names are unique; choose another name.';
END
$$;

COMMENT ON FUNCTION webhooks.create_endpoint(text, text[], text, text, text, integer, timestamptz, interval) IS 'Create an endpoint subscribed to event types and/or categories (''application.*''). Returns its id and signing secret. backfill_since queues past events from the log.';
CREATE OR REPLACE FUNCTION webhooks._check_endpoint_changes(changes jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    allowed text[] := ARRAY['url', 'name', 'description', 'events', 'rate_limit', 'failure_window'];
    bad_key text;
BEGIN
    IF changes IS NULL OR jsonb_typeof(changes) <> 'object' OR changes = '{}' THEN
        RAISE EXCEPTION 'changes must be a non-empty JSON object, not %', coalesce(changes::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''{"url": "https://example.com/hook", "events": ["offer.*"]}''. Keys: ' || array_to_string(allowed, ', ') || '.';
    END IF;
    SELECT min(k) INTO bad_key FROM jsonb_object_keys(changes) k WHERE k <> ALL (allowed);
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION 'endpoint field "%" cannot be changed here', bad_key
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Changeable fields: ' || array_to_string(allowed, ', ') || '. Use rotate_secret, pause_endpoint and resume_endpoint for the rest.';
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._check_endpoint_changes(jsonb) IS 'Internal: refuse an update_endpoint changes object that is not a non-empty JSON object of changeable fields.';
CREATE OR REPLACE FUNCTION webhooks._endpoint_with_changes(ep webhooks.endpoints, changes jsonb)
RETURNS webhooks.endpoints
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    IF changes ? 'url' THEN
        ep.url := webhooks._checked_url(changes ->> 'url');
    END IF;
    IF changes ? 'name' THEN
        IF coalesce(btrim(changes ->> 'name'), '') = '' THEN
            RAISE EXCEPTION 'endpoint name cannot be empty'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a descriptive name such as "ATS Sync Production".';
        END IF;
        ep.name := btrim(changes ->> 'name');
    END IF;
    IF changes ? 'description' THEN
        ep.description := nullif(changes ->> 'description', '');
    END IF;
    IF changes ? 'rate_limit' THEN
        IF jsonb_typeof(changes -> 'rate_limit') NOT IN ('number', 'null') THEN
            RAISE EXCEPTION 'rate limit % is not valid', changes -> 'rate_limit'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give requests per second between 1 and 100000, or null for no limit.';
        END IF;
        ep.rate_limit := webhooks._check_rate_limit((changes ->> 'rate_limit')::numeric::integer);
    END IF;
    IF changes ? 'failure_window' THEN
        ep.failure_window := webhooks._check_failure_window((changes ->> 'failure_window')::interval);
    END IF;
    IF changes ? 'events' THEN
        IF jsonb_typeof(changes -> 'events') <> 'array' THEN
            RAISE EXCEPTION 'events must be a JSON array of event types, not %', changes -> 'events'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ["application.*", "offer.accepted"].';
        END IF;
        ep.events := ARRAY(SELECT jsonb_array_elements_text(changes -> 'events'));
    END IF;
    RETURN ep;
END
$$;

COMMENT ON FUNCTION webhooks._endpoint_with_changes(webhooks.endpoints, jsonb) IS 'Internal: the endpoint with update_endpoint''s changes applied, each value checked; nothing is written.';
CREATE OR REPLACE FUNCTION webhooks.update_endpoint(endpoint_id bigint, changes jsonb)
RETURNS webhooks.endpoint_list
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
BEGIN
    PERFORM webhooks._check_endpoint_changes(changes);
    ep := webhooks._endpoint_with_changes(ep, changes);
    IF changes ? 'events' THEN
        PERFORM webhooks._set_subscriptions(ep.id, webhooks._resolve_event_selection(ep.events));
    END IF;
    UPDATE webhooks.endpoints e
       SET url = ep.url, name = ep.name, description = ep.description,
           rate_limit = ep.rate_limit, failure_window = ep.failure_window,
           events = ep.events, updated_at = now()
     WHERE e.id = ep.id;
    PERFORM webhooks._record_history(ep.id, 'edited', changes);
    PERFORM webhooks._endpoint_changed(ep.id);
    RETURN (SELECT l FROM webhooks.endpoint_list l WHERE l.id = ep.id);
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an endpoint named "%" already exists', changes ->> 'name'
        USING ERRCODE = 'unique_violation', HINT = 'Endpoint names are unique; choose another name.';
END
$$;

COMMENT ON FUNCTION webhooks.update_endpoint(bigint, jsonb) IS 'Change url, name, description, events, rate_limit or failure_window: keys present in the JSON object are changed, others kept. Returns the endpoint as endpoint_list shows it (no secret).';
CREATE OR REPLACE FUNCTION webhooks.pause_endpoint(endpoint_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
BEGIN
    IF ep.status = 'active' THEN
        UPDATE webhooks.endpoints e SET status = 'paused', updated_at = now() WHERE e.id = ep.id;
        PERFORM webhooks._sync_subscription_periods(ep.id);
        PERFORM webhooks._record_history(ep.id, 'paused');
        PERFORM webhooks._endpoint_changed(ep.id);
        RETURN 'paused';
    END IF;
    RETURN ep.status;
END
$$;

COMMENT ON FUNCTION webhooks.pause_endpoint(bigint) IS 'Stop deliveries. Events that fire while paused are not queued; already queued deliveries wait for resume.';
CREATE OR REPLACE FUNCTION webhooks.resume_endpoint(endpoint_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
BEGIN
    -- The URL is checked again under today's settings: plain http may have been turned off
    -- since it was accepted.
    PERFORM webhooks._checked_url(ep.url);
    UPDATE webhooks.endpoints e
       SET status = 'active', disabled_reason = NULL, disabled_at = NULL,
           failures_counted_since = now(), updated_at = now()
     WHERE e.id = ep.id;
    PERFORM webhooks._sync_subscription_periods(ep.id);
    PERFORM webhooks._record_history(ep.id, 'resumed',
        jsonb_build_object('previous_status', ep.status, 'disabled_reason', ep.disabled_reason));
    PERFORM webhooks._wake_relay();
    RETURN 'active';
END
$$;

COMMENT ON FUNCTION webhooks.resume_endpoint(bigint) IS 'Re-enable a paused or disabled endpoint and reset its failure counter.';
CREATE OR REPLACE FUNCTION webhooks.disable_endpoint(endpoint_id bigint, reason text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
BEGIN
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION 'a reason is required to disable endpoint %', endpoint_id
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Say why, for example ''receiver answered 410 Gone''.';
    END IF;
    IF ep.status <> 'disabled' THEN
        UPDATE webhooks.endpoints e
           SET status = 'disabled', disabled_reason = reason, disabled_at = now(), updated_at = now()
         WHERE e.id = ep.id;
        PERFORM webhooks._sync_subscription_periods(ep.id);
        PERFORM webhooks._record_history(ep.id, 'disabled', jsonb_build_object('reason', reason));
        PERFORM webhooks._endpoint_changed(ep.id);
    END IF;
    RETURN 'disabled';
END
$$;

COMMENT ON FUNCTION webhooks.disable_endpoint(bigint, text) IS 'Disable an endpoint, recording why. The relay calls it on 410 Gone and on too many failures.';
CREATE OR REPLACE FUNCTION webhooks.rotate_secret(endpoint_id bigint, new_secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
    fresh_secret text := CASE WHEN new_secret IS NULL THEN webhooks.generate_secret()
                              ELSE webhooks._check_secret(new_secret) END;
BEGIN
    UPDATE webhooks.endpoints e SET secret = fresh_secret, updated_at = now() WHERE e.id = ep.id;
    PERFORM webhooks._record_history(ep.id, 'secret_rotated',
        jsonb_build_object('generated', new_secret IS NULL));
    PERFORM webhooks._endpoint_changed(ep.id);
    RETURN fresh_secret;
END
$$;

COMMENT ON FUNCTION webhooks.rotate_secret(bigint, text) IS 'Replace the signing secret (generated, or the one given). The old secret stops signing at once.';
CREATE OR REPLACE FUNCTION webhooks.delete_endpoint(endpoint_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
BEGIN
    -- Deliveries and attempts go with the endpoint, subscriptions by ON DELETE CASCADE; the
    -- log stays. Deliveries first: deleting them waits out record_attempts batches that hold
    -- their rows, and a batch that comes later finds them gone and logs nothing. A batch that
    -- finished deliveries meanwhile moved them to the finished deliveries' partition as new
    -- rows, which the next statement sees, as the attempts' statement, which starts after,
    -- sees every attempt that was recorded. (A delivery that a replay or an add-on switch
    -- moved meanwhile: _run_again_after_a_move.)
    LOOP
        BEGIN
            DELETE FROM webhooks.deliveries d WHERE d.endpoint_id = ep.id;
            EXIT;
        EXCEPTION WHEN serialization_failure THEN
            PERFORM webhooks._run_again_after_a_move();
        END;
    END LOOP;
    DELETE FROM webhooks.deliveries_finished d WHERE d.endpoint_id = ep.id;
    DELETE FROM webhooks.attempts a WHERE a.endpoint_id = ep.id;
    DELETE FROM webhooks.endpoint_activity a WHERE a.endpoint_id = ep.id;
    DELETE FROM webhooks.subscription_periods p WHERE p.endpoint_id = ep.id;
    DELETE FROM webhooks.endpoints e WHERE e.id = ep.id;
    -- Its history goes too (URL, name, every edit); one audit line says that endpoint ep.id
    -- existed and was deleted, by whom and when.
    PERFORM set_config('webhooks.deleting_endpoint', ep.id::text, true);
    DELETE FROM webhooks.endpoint_history h WHERE h.endpoint_id = ep.id;
    PERFORM set_config('webhooks.deleting_endpoint', '', true);
    PERFORM webhooks._record_history(ep.id, 'deleted');
    PERFORM webhooks._endpoint_changed(ep.id);
END
$$;

COMMENT ON FUNCTION webhooks.delete_endpoint(bigint) IS 'Delete an endpoint with its subscriptions, deliveries, attempts and history, leaving one audit line (deleted, by whom, when; no URL or name). The event log stays.';
CREATE OR REPLACE FUNCTION webhooks.send_test_ping(endpoint_id bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep  webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
    event_id bigint;
BEGIN
    IF ep.status <> 'active' THEN
        RAISE EXCEPTION 'endpoint % is %; test pings go to active endpoints only', ep.id, ep.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Resume it first: SELECT webhooks.resume_endpoint(%s).', ep.id);
    END IF;
    INSERT INTO webhooks.events (event_type, data) VALUES ('test.ping', '{}') RETURNING id INTO event_id;
    INSERT INTO webhooks.deliveries (event_id, endpoint_id) VALUES (event_id, ep.id);
    PERFORM webhooks._wake_relay();
    RETURN event_id;
END
$$;

COMMENT ON FUNCTION webhooks.send_test_ping(bigint) IS 'Queue a test.ping event with data {} for this endpoint only. Returns the event id.';
CREATE OR REPLACE FUNCTION webhooks.emit(event_type text, data jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    event_id bigint;
    known    webhooks.event_types;
BEGIN
    SELECT * INTO known FROM webhooks.event_types t WHERE t.name OPERATOR(pg_catalog.=) emit.event_type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown event type "%"', COALESCE(event_type, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT name FROM webhooks.list_event_types() lists the valid event types.';
    END IF;
    IF known.category OPERATOR(pg_catalog.=) 'test' THEN
        RAISE EXCEPTION 'test.ping cannot be emitted'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An admin sends a test ping to one endpoint with SELECT webhooks.send_test_ping(endpoint_id).';
    END IF;
    IF known.addon IS NOT NULL AND NOT EXISTS (
           SELECT FROM webhooks.settings s
            WHERE s.name OPERATOR(pg_catalog.=) (known.addon OPERATOR(pg_catalog.||) '_addon')
              AND s.value OPERATOR(pg_catalog.=) 'true') THEN
        RAISE EXCEPTION 'event type "%" needs the % add-on, which is not enabled for this database', event_type, known.addon
            USING ERRCODE = 'feature_not_supported',
                  HINT = pg_catalog.format('An admin enables it with SELECT webhooks.set_setting(%L, ''true'').', known.addon OPERATOR(pg_catalog.||) '_addon');
    END IF;
    IF data IS NULL OR pg_catalog.jsonb_typeof(data) OPERATOR(pg_catalog.<>) 'object' THEN
        RAISE EXCEPTION 'event data must be a JSON object, not %', COALESCE(pg_catalog.jsonb_typeof(data), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a jsonb object, for example jsonb_build_object(''id'', 42).';
    END IF;

    IF pg_catalog.pg_column_size(data) OPERATOR(pg_catalog.>) webhooks.max_payload_bytes() THEN
        RAISE EXCEPTION 'event data is % bytes; the limit is % KiB', pg_catalog.pg_column_size(data),
                        webhooks.max_payload_bytes() OPERATOR(pg_catalog./) 1024
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Send identifiers and the fields receivers need, not whole documents; receivers can fetch the rest.';
    END IF;

    INSERT INTO webhooks.events (event_type, data) VALUES (emit.event_type, emit.data)
    RETURNING id INTO event_id;

    INSERT INTO webhooks.deliveries (event_id, endpoint_id)
    SELECT event_id, s.endpoint_id
      FROM webhooks.subscriptions s
      JOIN webhooks.endpoints e ON e.id OPERATOR(pg_catalog.=) s.endpoint_id
                               AND e.status OPERATOR(pg_catalog.=) 'active'
     WHERE s.event_type OPERATOR(pg_catalog.=) emit.event_type;
    RETURN event_id;
END
$$;

COMMENT ON FUNCTION webhooks.emit(text, jsonb) IS 'Log an event and queue one delivery per active subscribed endpoint, in the caller''s transaction. Returns the event id. Members of webhooks_emitter only; refuses test.ping and the events of add-ons that are off.';
CREATE OR REPLACE FUNCTION webhooks.replay(endpoint_id bigint, since timestamptz, until timestamptz DEFAULT now(),
                                event_types text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    ep webhooks.endpoints := webhooks._lock_endpoint(endpoint_id);
    unknown text;
BEGIN
    IF since IS NULL OR until IS NULL OR since >= until THEN
        RAISE EXCEPTION 'replay window [%, %) is empty', since, until
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give since < until, for example now() - interval ''1 day'' and now().';
    END IF;
    SELECT min(t) INTO unknown FROM unnest(event_types) t
     WHERE NOT EXISTS (SELECT FROM webhooks.event_types et WHERE et.name = t);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown event type "%"', unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'SELECT name FROM webhooks.list_event_types() lists the valid event types.';
    END IF;
    RETURN webhooks._queue_from_log(ep.id, since, until, event_types);
END
$$;

COMMENT ON FUNCTION webhooks.replay(bigint, timestamptz, timestamptz, text[]) IS 'Queue logged events of [since, until) to an endpoint again, optionally only some types. Returns how many were queued.';
CREATE OR REPLACE FUNCTION webhooks.redeliver(delivery_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    -- A finished delivery may outlive its event (the event_retention setting).
    IF EXISTS (SELECT FROM webhooks.deliveries d WHERE d.id = redeliver.delivery_id
                  AND NOT EXISTS (SELECT FROM webhooks.events ev WHERE ev.id = d.event_id)) THEN
        RAISE EXCEPTION 'the event of delivery % is no longer in the event log', delivery_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Events are kept for %s (the event_retention setting).', webhooks._setting_interval('event_retention'));
    END IF;
    IF webhooks._restart_deliveries(ARRAY[redeliver.delivery_id]) = 0 THEN
        RAISE EXCEPTION 'delivery % does not exist', coalesce(delivery_id::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'SELECT delivery_id, event_type, endpoint_name FROM webhooks.delivery_log shows deliveries.';
    END IF;
    PERFORM webhooks._wake_relay();
END
$$;

COMMENT ON FUNCTION webhooks.redeliver(bigint) IS 'Send one delivery again now, starting a fresh retry schedule.';
COMMENT ON FUNCTION webhooks._lock_fan_out(boolean) IS 'Internal: the transaction-scoped lock that makes fan-out rounds run one at a time, in an advisory lock class no SQL role can take (pg_locks: advisory, objsubid 30568).';
CREATE OR REPLACE FUNCTION webhooks.max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 7;

COMMENT ON FUNCTION webhooks.max_attempts() IS 'Attempts per delivery before it is failed: 7 (the first at once, then six retries).';
CREATE OR REPLACE FUNCTION webhooks.retry_delay(failed_attempt integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY[interval '1 minute', interval '5 minutes', interval '30 minutes',
                  interval '2 hours', interval '8 hours', interval '16 hours'])[failed_attempt]
$$;

COMMENT ON FUNCTION webhooks.retry_delay(integer) IS 'Wait after failed attempt n before the next: 1 min, 5 min, 30 min, 2 h, 8 h, 16 h; NULL after the sixth.';
CREATE OR REPLACE FUNCTION webhooks.attempt_outcome(response_status integer, permanent boolean,
                                         attempt_number integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN response_status BETWEEN 200 AND 299 THEN 'succeeded'
        WHEN coalesce(permanent, false) THEN 'failed'
        WHEN response_status BETWEEN 400 AND 499 AND response_status <> 429 THEN 'failed'
        WHEN attempt_number >= webhooks.max_attempts() THEN 'failed'
        ELSE 'retry'
    END
$$;

COMMENT ON FUNCTION webhooks.attempt_outcome(integer, boolean, integer) IS 'succeeded (2xx), failed (every other 4xx but 429, a refused target, or the last attempt) or retry (429, 5xx, 3xx, timeouts, network and TLS errors).';
CREATE OR REPLACE FUNCTION webhooks.max_lease() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN interval '1 hour';

COMMENT ON FUNCTION webhooks.max_lease() IS 'The longest lease claim_deliveries grants: 1 hour.';
CREATE OR REPLACE FUNCTION webhooks.lease_key(reuse text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    key text := coalesce(reuse, nullif(current_setting('webhooks.lease_key', true), ''));
BEGIN
    IF reuse IS NOT NULL AND reuse !~ '^[0-9a-f]{32}$' THEN
        RAISE EXCEPTION 'a lease key is 32 lowercase hex digits, as webhooks.lease_key() made it'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call webhooks.lease_key() without an argument for a new key; pass back only a key it returned.';
    END IF;
    IF reuse IS NULL AND key ~ '^[0-9a-f]{32}$' THEN
        RETURN key;
    END IF;
    IF key IS NULL OR key !~ '^[0-9a-f]{32}$' THEN
        key := replace(gen_random_uuid()::text, '-', '');
    END IF;
    PERFORM set_config('webhooks.lease_key', key, false);
    RETURN key;
END
$$;

COMMENT ON FUNCTION webhooks.lease_key(text) IS 'Relay only: this session''s lease key (made on first use, or the one given back after a reconnect). Records and releases reach only the leases taken with it.';
CREATE OR REPLACE FUNCTION webhooks._lease_holder() RETURNS text
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT left(encode(sha256(convert_to(webhooks.lease_key(), 'UTF8')), 'hex'), 16)
$$;

COMMENT ON FUNCTION webhooks._lease_holder() IS 'Internal: what deliveries.leased_by holds for this session''s leases: 64 bits of the SHA-256 of the session''s lease key.';
CREATE OR REPLACE FUNCTION webhooks._make_deliveries(event_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    made integer;
BEGIN
    INSERT INTO webhooks.deliveries (event_id, endpoint_id)
    SELECT ev.id, p.endpoint_id
      FROM webhooks.events ev
      JOIN webhooks.subscription_periods p
        ON p.event_type = ev.event_type AND p.since <= ev.created_at
       AND (p.until IS NULL OR ev.created_at < p.until)
      JOIN webhooks.endpoints e ON e.id = p.endpoint_id
     WHERE ev.id = ANY (event_ids)
     ORDER BY ev.id, p.endpoint_id;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;

COMMENT ON FUNCTION webhooks._make_deliveries(bigint[]) IS 'The deliveries of the given events, one per endpoint that took the event''s type at the event''s time (webhooks.subscription_periods) and still exists; fan_out and resume_after_restore use it.';
CREATE OR REPLACE FUNCTION webhooks._mark_log_position() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    INSERT INTO webhooks.fanout_marks (xid, last_id)
    SELECT pg_current_xact_id(), l.last_id
      FROM (SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END AS last_id
              FROM webhooks.events_id_seq s) l
     WHERE (SELECT q.seqcache FROM pg_sequence q
             WHERE q.seqrelid = 'webhooks.events_id_seq'::regclass) = 1
       AND l.last_id > coalesce((SELECT m.last_id FROM webhooks.fanout_marks m
                                  ORDER BY m.xid DESC LIMIT 1), 0)
$$;

COMMENT ON FUNCTION webhooks._mark_log_position() IS 'Internal, a step of fan_out: note how far the event log had come when this transaction started (webhooks.fanout_marks).';
CREATE OR REPLACE FUNCTION webhooks._events_of_round(pos webhooks.fanout_position, max_events integer)
RETURNS bigint[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    RETURN (SELECT coalesce(array_agg(q.id ORDER BY q.id), '{}')
              FROM (SELECT ev.id
                      FROM webhooks.events ev
                     WHERE ev.id > pos.batch_reached
                       AND ev.fanout_xid IS NOT NULL
                       AND webhooks._ended_in(ev.fanout_xid, pos.batch, pos.batch_by)
                       AND NOT webhooks._ended_in(ev.fanout_xid, pos.done, pos.done_by)
                     ORDER BY ev.id
                     LIMIT _events_of_round.max_events) q);
END
$$;

COMMENT ON FUNCTION webhooks._events_of_round(webhooks.fanout_position, integer) IS 'Internal, a step of fan_out: the round''s events, ended in its snapshot and not in the previous one, in log order.';
CREATE OR REPLACE FUNCTION webhooks._advance_fan_out(pos webhooks.fanout_position, fresh boolean,
                                         taken bigint[], max_events integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    mark webhooks.fanout_marks;
BEGIN
    IF cardinality(taken) = max_events THEN
        UPDATE webhooks.fanout_position
           SET batch = pos.batch, batch_by = pos.batch_by, batch_reached = taken[cardinality(taken)];
        RETURN;
    END IF;
    -- The round is complete. Its events not yet ended belong to transactions no older than
    -- the snapshot's oldest running one (or the round's own), so the newest mark older than
    -- that bounds them from below.
    SELECT * INTO mark
      FROM webhooks.fanout_marks m
     WHERE m.xid < least(pg_snapshot_xmin(pos.batch), pos.batch_by)
     ORDER BY m.xid DESC
     LIMIT 1;
    IF fresh AND cardinality(taken) = 0 AND coalesce(mark.last_id, 0) <= pos.floor THEN
        -- Nothing taken and the floor stays: keeping the previous snapshot loses nothing.
        RETURN;
    END IF;
    UPDATE webhooks.fanout_position
       SET done = pos.batch, done_by = pos.batch_by, floor = greatest(pos.floor, mark.last_id),
           batch = NULL, batch_by = NULL, batch_reached = NULL;
    DELETE FROM webhooks.fanout_marks m WHERE m.xid < mark.xid;
END
$$;

COMMENT ON FUNCTION webhooks._advance_fan_out(webhooks.fanout_position, boolean, bigint[], integer) IS 'Internal, the last step of fan_out: record where the round stopped, or close it and move the floor.';
CREATE OR REPLACE FUNCTION webhooks.fan_out(max_events integer DEFAULT 5000) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp SET plan_cache_mode = auto AS $$
DECLARE
    pos      webhooks.fanout_position;
    fresh    boolean;
    taken    bigint[];
    made     integer;
BEGIN
    IF max_events IS NULL OR max_events < 1 THEN
        RAISE EXCEPTION 'max_events must be a positive number, not %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Call webhooks.fan_out() for the default of 5000 events.';
    END IF;
    -- Each statement below must see the rounds committed before it (READ COMMITTED): in an
    -- older snapshot, the position read would be stale and a round would be made twice.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'webhooks.fan_out() runs in READ COMMITTED transactions, not %',
                        current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Call it outside an explicit transaction, or in one begun with ISOLATION LEVEL READ COMMITTED (the default).';
    END IF;
    -- Not the position's row lock: a row lock would give this transaction its id before the
    -- mark below is read. An advisory lock no SQL role can take (extension/src/fan_out_lock.rs).
    IF NOT webhooks._lock_fan_out(wait => false) THEN
        RETURN 0;
    END IF;
    SELECT * INTO STRICT pos FROM webhooks.fanout_position;
    IF pos.restored THEN
        RAISE EXCEPTION 'the webhooks tables were restored from a dump, and tracked events wait for webhooks.resume_after_restore()'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Once the restore is complete, and before applications write again, run SELECT webhooks.resume_after_restore(); (docs/reliability.md, "Backups").';
    END IF;
    -- Nothing logged past the floor and no round under way: nothing can await fan-out (the
    -- sequence's last value bounds every id handed out, cached or not; a value it has been set
    -- to, when the log opens a period, is not handed out yet). Every claim calls this, so the
    -- common case of a quiet log reads one row and one sequence, and plans nothing.
    IF pos.batch IS NULL
       AND (SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END
              FROM webhooks.events_id_seq s) <= pos.floor THEN
        RETURN 0;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        PERFORM webhooks._mark_log_position();
    END IF;
    fresh := pos.batch IS NULL;
    IF fresh THEN
        pos.batch := pg_current_snapshot();
        -- A transaction that has no id yet gets a larger one than any running in the snapshot.
        pos.batch_by := pg_current_xact_id_if_assigned();
        pos.batch_reached := pos.floor;
    END IF;
    taken := webhooks._events_of_round(pos, fan_out.max_events);
    -- _make_deliveries' statement is planned afresh for each array of ids: skip it when empty.
    made := CASE WHEN cardinality(taken) > 0 THEN webhooks._make_deliveries(taken) ELSE 0 END;
    PERFORM webhooks._advance_fan_out(pos, fresh, taken, fan_out.max_events);
    RETURN made;
END
$$;

COMMENT ON FUNCTION webhooks.fan_out(integer) IS 'Make the deliveries of up to max_events committed tracked events (webhooks.events_awaiting_fan_out); every claim runs it first. Returns the number of deliveries made.';
CREATE OR REPLACE FUNCTION webhooks._check_claim(relay_id text, lease interval) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    IF lease IS NULL OR lease <= interval '0' OR lease > webhooks.max_lease() THEN
        RAISE EXCEPTION 'lease % is not valid', coalesce(lease::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give a lease longer than the request timeout and at most ' || webhooks.max_lease() || ' (webhooks.max_lease()).';
    END IF;
    IF coalesce(btrim(relay_id), '') = '' THEN
        RAISE EXCEPTION 'a relay id is required'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Name the relay, for example its host name and process id.';
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._check_claim(text, interval) IS 'Internal: refuse a claim without a relay id or with a lease that is not positive or longer than max_lease().';
CREATE OR REPLACE FUNCTION webhooks._event_body(event_type text, created_at timestamptz, data jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT '{"event":' OPERATOR(pg_catalog.||) pg_catalog.to_json(event_type)::pg_catalog.text
           OPERATOR(pg_catalog.||) ',"created_at":"' OPERATOR(pg_catalog.||) webhooks.iso8601(created_at)
           OPERATOR(pg_catalog.||) '","data":' OPERATOR(pg_catalog.||) data::pg_catalog.text
           OPERATOR(pg_catalog.||) '}'
$$;

COMMENT ON FUNCTION webhooks._event_body(text, timestamptz, jsonb) IS 'The request body as signed and sent: {"event", "created_at", "data"}.';
CREATE OR REPLACE FUNCTION webhooks.claim_deliveries(
    relay_id          text,
    max_deliveries    integer,
    lease             interval,
    per_endpoint      integer DEFAULT 64,
    busy_endpoints    bigint[] DEFAULT '{}',
    busy_in_flight    integer[] DEFAULT '{}'
) RETURNS TABLE (delivery_id bigint, event_id bigint, endpoint_id bigint, attempt_number integer,
                 event_type text, body text, url text, secret text, rate_limit integer,
                 lease_expires_at timestamptz)
-- PL/pgSQL rather than SQL: the statement's plan is then cached for the session, where a SQL
-- function would parse and plan it again on every call. And a generic plan, which is the same
-- plan as a custom one here: left to choose, the plan cache planned the statement afresh on
-- every claim, because the generic plan's estimate for an unknown LIMIT is higher than a
-- custom plan's.
-- A cached plan lasts as long as the relay's connection, so it must suit any size of queue:
-- planned while the tables were nearly empty, it would scan them whole on every claim once a
-- backlog had come in. With sequential scans,
-- hash joins and merge joins ruled out, the only plan left is the right one at every size:
-- index lookups for the few rows a claim touches. fan_out(), called first, inherits this; its
-- statements are index lookups too. JIT is off: the penalty that rules a scan out counts in
-- the plan's cost, which would have every claim compiled for a few milliseconds of work.
-- (What each of these cost when it was measured: docs/benchmarks-history.md, "Figures behind the code".)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
DECLARE
    holder text := webhooks._lease_holder();
    leased_ids bigint[];
    leased_events bigint[];
    leased_endpoints bigint[];
    leased_attempts integer[];
    leased_untils timestamptz[];
BEGIN
    PERFORM webhooks._check_claim(claim_deliveries.relay_id, claim_deliveries.lease);
    -- Tracked events committed since the last claim get their deliveries first, so that this
    -- claim can already take them.
    PERFORM webhooks.fan_out(greatest(claim_deliveries.max_deliveries, 1) * 4);
    WITH claimed AS (
        -- Visit the active endpoints in random order (fair across claims, and the scan can stop
        -- as soon as max_deliveries rows are found) and take each one's oldest due deliveries:
        --   * at most per_endpoint minus what this relay already has in flight there, and at
        --     most one second's worth of its rate limit, so that one endpoint's backlog neither
        --     fills the batch nor waits out its lease behind the rate limiter;
        --   * FOR UPDATE SKIP LOCKED, so concurrent relays split the work instead of queueing
        --     behind each other's row locks.
        -- Paused and disabled endpoints are not visited: their deliveries wait for resume.
        SELECT d.ctid
          FROM (SELECT e.id, e.rate_limit FROM webhooks.endpoints e
                 WHERE e.status = 'active' ORDER BY random()) e
          LEFT JOIN unnest(busy_endpoints, busy_in_flight) AS busy(endpoint_id, in_flight)
                 ON busy.endpoint_id = e.id
          CROSS JOIN LATERAL (
              SELECT d.ctid FROM webhooks.deliveries_pending d
               WHERE d.endpoint_id = e.id AND d.next_attempt_at <= now()
                 AND (d.leased_until IS NULL OR d.leased_until <= now())
               ORDER BY d.next_attempt_at, d.id
               LIMIT greatest(least(per_endpoint - coalesce(busy.in_flight, 0),
                                    coalesce(e.rate_limit, per_endpoint)), 0)
               FOR UPDATE OF d SKIP LOCKED) d
         LIMIT claim_deliveries.max_deliveries
    ), leased AS (
        -- The lease is a visibility timeout: the rows are not claimed again until it runs out,
        -- so no other relay sends them meanwhile, and if this relay dies they come back by
        -- themselves. record_attempts() or release_deliveries() ends the lease early.
        -- The rows are found again by their physical address (stable: they are locked), a
        -- TID scan, instead of a join that the planner may turn into a scan of the table.
        -- (Physical addresses are a table's own, so both statements name the pending
        -- deliveries' partition, not webhooks.deliveries.)
        UPDATE webhooks.deliveries_pending d
           SET leased_until = now() + claim_deliveries.lease, leased_by = holder
         WHERE d.ctid = ANY (ARRAY(SELECT claimed.ctid FROM claimed))
        RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.leased_until
    )
    SELECT array_agg(l.id), array_agg(l.event_id), array_agg(l.endpoint_id), array_agg(l.attempts),
           array_agg(l.leased_until)
      INTO leased_ids, leased_events, leased_endpoints, leased_attempts, leased_untils
      FROM leased l;
    -- A claim that found nothing (an awake relay's poll) ends here, without reading the event
    -- log: a statement that reads it locks and sets up each of its partitions, which cost an
    -- empty claim 0.14 ms more with 34 partitions than with 3.
    IF leased_ids IS NULL THEN
        RETURN;
    END IF;
    -- The body is rendered here, byte for byte what is signed and sent, and once per event: an
    -- event's other deliveries in this claim carry NULL and the relay reuses the first one's.
    -- Rendering is most of the claim's work per row (jsonb's text output).
    RETURN QUERY
    SELECT l.id, l.event_id, l.endpoint_id, l.attempts + 1, ev.event_type,
           CASE WHEN row_number() OVER (PARTITION BY l.event_id) = 1 THEN
               webhooks._event_body(ev.event_type, ev.created_at, ev.data)
           END,
           e.url, e.secret, e.rate_limit, l.leased_until
      FROM unnest(leased_ids, leased_events, leased_endpoints, leased_attempts, leased_untils)
           AS l(id, event_id, endpoint_id, attempts, leased_until)
      JOIN webhooks.events ev ON ev.id = l.event_id
      JOIN webhooks.endpoints e ON e.id = l.endpoint_id;
END
$$;

COMMENT ON FUNCTION webhooks.claim_deliveries(text, integer, interval, integer, bigint[], integer[]) IS 'Relay only: lease up to max_deliveries due deliveries of active endpoints (FOR UPDATE SKIP LOCKED), with the rendered body, URL and secret.';
CREATE OR REPLACE FUNCTION webhooks._apply_attempts(
    relay_id            text,
    holder              text,
    delivery_ids        bigint[],
    attempt_numbers     integer[],
    started_ats         timestamptz[],
    durations_ms        double precision[],
    headers             json[],
    response_statuses   integer[],
    response_bodies     text[],
    errors              text[],
    retry_afters_seconds double precision[],
    permanents          boolean[]
) RETURNS TABLE (endpoint_id bigint, outcome text, response_status integer)
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
-- The result's column names are also the tables' (endpoint_id, outcome): a bare name means the
-- column.
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH reported AS (
        SELECT r.*, webhooks.attempt_outcome(r.response_status, r.permanent, r.attempt_number) AS outcome
          FROM unnest(delivery_ids, attempt_numbers, started_ats, durations_ms, headers,
                      response_statuses, response_bodies, errors, retry_afters_seconds, permanents)
               AS r(delivery_id, attempt_number, started_at, duration_ms, request_headers,
                    response_status, response_body, error, retry_after_seconds, permanent)
         -- In the table's order rather than the order the requests finished in: the deliveries
         -- of one event lie together, and are then finished one page at a time.
         ORDER BY r.delivery_id
    ), retried AS (
        -- Each delivery row is found once, here or in `finished`, and the attempt takes its
        -- endpoint from it. The row lock this takes is also what holds off delete_endpoint,
        -- which deletes an endpoint's deliveries before its attempts: no attempt outlives its
        -- endpoint. A retry waits out the schedule, or longer if the receiver's Retry-After
        -- asked for more (capped at a day, so that a silly header cannot park a delivery for
        -- ever).
        -- Only what this session holds under a live lease: a relay cannot record an attempt
        -- at a delivery it did not claim, or whose lease another relay has taken over since.
        -- Such reports are counted as not_held and nothing of them is kept.
        UPDATE webhooks.deliveries_pending d
           SET attempts = greatest(d.attempts, r.attempt_number),
               next_attempt_at = now() + greatest(
                       webhooks.retry_delay(r.attempt_number),
                       make_interval(secs => least(coalesce(r.retry_after_seconds, 0), 86400))),
               leased_by = NULL,
               leased_until = NULL,
               last_response_status = r.response_status,
               last_error = r.error
          FROM reported r
         WHERE r.outcome = 'retry' AND d.id = r.delivery_id
           AND d.leased_by = _apply_attempts.holder AND d.leased_until > now()
        RETURNING r.*, d.endpoint_id
    ), finished AS (
        -- A finished delivery leaves the queue: deleted from the pending deliveries' partition
        -- and inserted into the finished ones'. Not an UPDATE of its status, which would move
        -- the row itself: a claim that meets a row another transaction has moved to another
        -- partition fails (SQLSTATE 40001), where one that meets a deleted row skips it.
        DELETE FROM webhooks.deliveries_pending d
         USING reported r
         WHERE r.outcome <> 'retry' AND d.id = r.delivery_id
           AND d.leased_by = _apply_attempts.holder AND d.leased_until > now()
        RETURNING r.*, d.endpoint_id, d.event_id, d.attempts AS attempts_before,
                  d.next_attempt_at, d.created_at AS made_at
    ), stored AS (
        INSERT INTO webhooks.deliveries_finished AS d
               (id, event_id, endpoint_id, status, attempts, next_attempt_at,
                last_response_status, last_error, created_at, finished_at)
        OVERRIDING SYSTEM VALUE
        SELECT f.delivery_id, f.event_id, f.endpoint_id, f.outcome,
               greatest(f.attempts_before, f.attempt_number), f.next_attempt_at,
               f.response_status, f.error, f.made_at, now()
          FROM finished f
    ), moved AS (
        SELECT r.delivery_id, r.attempt_number, r.started_at, r.duration_ms, r.request_headers,
               r.response_status, r.response_body, r.error, r.outcome, r.endpoint_id,
               false AS finished
          FROM retried r
        UNION ALL
        SELECT f.delivery_id, f.attempt_number, f.started_at, f.duration_ms, f.request_headers,
               f.response_status, f.response_body, f.error, f.outcome, f.endpoint_id,
               true AS finished
          FROM finished f
    ), logged AS (
        INSERT INTO webhooks.attempts (delivery_id, endpoint_id, attempt_number, started_at,
                                       duration_ms, request_headers, response_status,
                                       response_body, error, outcome, relay_id)
        SELECT m.delivery_id, m.endpoint_id, m.attempt_number, m.started_at, m.duration_ms,
               coalesce(m.request_headers, '{}'::json), m.response_status, m.response_body, m.error,
               m.outcome, _apply_attempts.relay_id
          FROM moved m
    ), counted AS (
        -- The batch's share of endpoint_activity, one row per endpoint, added in endpoint
        -- order so that two relays' batches lock the rows in the same order.
        INSERT INTO webhooks.endpoint_activity AS a (endpoint_id, hour, succeeded, failed, attempts,
                                                     last_attempt_at)
        SELECT m.endpoint_id, date_trunc('hour', now()),
               count(*) FILTER (WHERE m.finished AND m.outcome = 'succeeded'),
               count(*) FILTER (WHERE m.finished AND m.outcome = 'failed'),
               count(*), max(m.started_at)
          FROM moved m
         GROUP BY m.endpoint_id
         ORDER BY m.endpoint_id
            ON CONFLICT (endpoint_id, hour) DO UPDATE
           SET succeeded = a.succeeded + excluded.succeeded,
               failed = a.failed + excluded.failed,
               attempts = a.attempts + excluded.attempts,
               last_attempt_at = greatest(a.last_attempt_at, excluded.last_attempt_at)
    )
    SELECT m.endpoint_id, m.outcome, m.response_status FROM moved m;
END
$$;

COMMENT ON FUNCTION webhooks._apply_attempts(text, text, bigint[], integer[], timestamptz[], double precision[], json[], integer[], text[], text[], double precision[], boolean[]) IS 'Internal, record_attempts'' second step: move each leased delivery on, log its attempt and count it in endpoint_activity. Returns the attempts recorded.';
CREATE OR REPLACE FUNCTION webhooks._disable_failing_endpoints(gone_endpoints bigint[], failed_endpoints bigint[])
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    failing record;
BEGIN
    FOR failing IN
        SELECT e.id FROM webhooks.endpoints e WHERE e.id = ANY (gone_endpoints) AND e.status = 'active'
    LOOP
        PERFORM webhooks.disable_endpoint(failing.id, 'receiver answered 410 Gone');
    END LOOP;
    FOR failing IN
        SELECT f.*
          FROM (SELECT e.id, e.failure_threshold, e.failure_window,
                       webhooks.failed_deliveries_in_window(e) AS failed
                  FROM webhooks.endpoints e
                 WHERE e.id = ANY (failed_endpoints) AND e.status = 'active') f
         WHERE f.failed >= f.failure_threshold
    LOOP
        PERFORM webhooks.disable_endpoint(failing.id,
            format('%s deliveries failed within %s (threshold %s)',
                   failing.failed, failing.failure_window, failing.failure_threshold));
    END LOOP;
END
$$;

COMMENT ON FUNCTION webhooks._disable_failing_endpoints(bigint[], bigint[]) IS 'Internal, record_attempts'' third step: disable the endpoints that answered 410 Gone or reached their failure threshold.';
CREATE OR REPLACE FUNCTION webhooks.record_attempts(
    relay_id            text,
    delivery_ids        bigint[],
    attempt_numbers     integer[],
    started_ats         timestamptz[],
    durations_ms        double precision[],
    headers             json[],
    response_statuses   integer[],
    response_bodies     text[],
    errors              text[],
    retry_afters_seconds double precision[],
    permanents          boolean[]
) RETURNS TABLE (succeeded integer, retried integer, failed integer, not_held integer)
-- Index lookups only, whatever the size of the tables when the relay's connection cached the
-- plan, and no JIT (see claim_deliveries).
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off SET jit = off AS $$
DECLARE
    n                integer := coalesce(cardinality(delivery_ids), 0);
    outcomes         text[];
    gone_endpoints   bigint[];
    failed_endpoints bigint[];
BEGIN
    IF EXISTS (SELECT FROM unnest(ARRAY[cardinality(attempt_numbers), cardinality(started_ats),
                                        cardinality(durations_ms), cardinality(headers),
                                        cardinality(response_statuses), cardinality(response_bodies),
                                        cardinality(errors), cardinality(retry_afters_seconds),
                                        cardinality(permanents)]) AS c(length)
                WHERE coalesce(c.length, 0) <> n) THEN
        RAISE EXCEPTION 'the attempt arrays differ in length (% delivery ids)', n
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Element i of every array describes attempt i; pass NULL elements for absent values.';
    END IF;
    IF array_position(delivery_ids, NULL) IS NOT NULL OR array_position(attempt_numbers, NULL) IS NOT NULL
       OR array_position(started_ats, NULL) IS NOT NULL OR array_position(durations_ms, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'every attempt needs delivery_id, attempt_number, started_at and duration_ms'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Only headers, response status, body, error, retry-after and permanent may be NULL.';
    END IF;

    SELECT array_agg(a.outcome),
           array_agg(DISTINCT a.endpoint_id) FILTER (WHERE a.response_status = 410),
           array_agg(DISTINCT a.endpoint_id) FILTER (WHERE a.outcome = 'failed')
      INTO outcomes, gone_endpoints, failed_endpoints
      FROM webhooks._apply_attempts(record_attempts.relay_id, webhooks._lease_holder(), delivery_ids,
                                   attempt_numbers, started_ats, durations_ms, headers,
                                   response_statuses, response_bodies, errors,
                                   retry_afters_seconds, permanents) a;
    -- A batch in which no delivery failed for good has nothing to check (a 410 always fails
    -- its delivery).
    IF failed_endpoints IS NOT NULL THEN
        PERFORM webhooks._disable_failing_endpoints(gone_endpoints, failed_endpoints);
    END IF;

    RETURN QUERY
    SELECT count(*) FILTER (WHERE o = 'succeeded')::integer,
           count(*) FILTER (WHERE o = 'retry')::integer,
           count(*) FILTER (WHERE o = 'failed')::integer,
           (n - count(o))::integer
      FROM unnest(coalesce(outcomes, '{}')) o;
END
$$;

COMMENT ON FUNCTION webhooks.record_attempts(text, bigint[], integer[], timestamptz[], double precision[], json[], integer[], text[], text[], double precision[], boolean[]) IS 'Relay only: record_attempts with one array per field (element i of each is attempt i); what webhook-relay calls.';
CREATE OR REPLACE FUNCTION webhooks.record_attempts(relay_id text, attempts jsonb)
RETURNS TABLE (succeeded integer, retried integer, failed integer, not_held integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    IF attempts IS NULL OR jsonb_typeof(attempts) <> 'array' THEN
        RAISE EXCEPTION 'attempts must be a JSON array, not %', coalesce(jsonb_typeof(attempts), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass [{"delivery_id": 1, "attempt_number": 1, ...}], one object per attempt.';
    END IF;
    -- The aggregates of one query see the rows in the same order, so the arrays line up.
    RETURN QUERY
    SELECT o.*
      FROM (SELECT array_agg(r.delivery_id) AS ids, array_agg(r.attempt_number) AS numbers,
                   array_agg(r.started_at) AS starts, array_agg(r.duration_ms) AS durations,
                   array_agg(r.request_headers) AS headers, array_agg(r.response_status) AS statuses,
                   array_agg(r.response_body) AS bodies, array_agg(r.error) AS errors,
                   array_agg(r.retry_after_seconds) AS retry_afters, array_agg(r.permanent) AS permanents
              FROM jsonb_to_recordset(attempts) AS r(
                       delivery_id bigint, attempt_number integer, started_at timestamptz,
                       duration_ms double precision, request_headers json, response_status integer,
                       response_body text, error text, retry_after_seconds double precision,
                       permanent boolean)) a
     CROSS JOIN LATERAL webhooks.record_attempts(record_attempts.relay_id, a.ids, a.numbers, a.starts,
                                                 a.durations, a.headers, a.statuses, a.bodies,
                                                 a.errors, a.retry_afters, a.permanents) o;
END
$$;

COMMENT ON FUNCTION webhooks.record_attempts(text, jsonb) IS 'Relay only: log attempts, move their deliveries to succeeded, a scheduled retry or failed, and disable endpoints on 410 Gone or too many failures. Returns the count of each outcome, and of attempts not recorded because this session holds no live lease on their delivery.';
CREATE OR REPLACE FUNCTION webhooks.release_deliveries(relay_id text, delivery_ids bigint[],
                                            delay_ms double precision[] DEFAULT NULL)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    WITH me AS (
        SELECT webhooks._lease_holder() AS holder
    ), released AS (
        UPDATE webhooks.deliveries_pending d
           SET next_attempt_at = now() + make_interval(secs => least(greatest(coalesce(x.delay_ms, 0), 0), 86400000) / 1000.0),
               leased_by = NULL, leased_until = NULL
          FROM unnest(delivery_ids, delay_ms) AS x(delivery_id, delay_ms), me
         WHERE d.id = x.delivery_id
           AND d.leased_by = me.holder
           AND d.leased_until > now()
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;

COMMENT ON FUNCTION webhooks.release_deliveries(text, bigint[], double precision[]) IS 'Relay only: give deliveries this session holds back unattempted, due again after delay_ms (at most a day).';
CREATE OR REPLACE FUNCTION webhooks.work_marker(OUT events bigint, OUT deliveries bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM webhooks.events_id_seq s),
           (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM webhooks.deliveries_id_seq s)
$$;

COMMENT ON FUNCTION webhooks.work_marker() IS 'Relay only: how far the event log''s and the deliveries'' id sequences have come; an idle relay polls it to notice new work without notifications.';
CREATE OR REPLACE FUNCTION webhooks.queue_stats(OUT due bigint, OUT scheduled bigint, OUT endpoints_disabled bigint,
                                     OUT awaiting_fan_out bigint, OUT oldest_pending_seconds double precision,
                                     OUT event_log_bytes bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT count(*) FILTER (WHERE d.next_attempt_at <= now() AND coalesce(d.leased_until <= now(), true)),
           count(*) FILTER (WHERE d.next_attempt_at > now() OR d.leased_until > now()),
           (SELECT count(*) FROM webhooks.endpoints e WHERE e.status = 'disabled'),
           (SELECT count(*) FROM webhooks.events_awaiting_fan_out),
           coalesce(extract(epoch FROM now() - min(d.created_at))::double precision, 0),
           (SELECT sum(pg_total_relation_size(t.relid))::bigint FROM pg_partition_tree('webhooks.events') t)
      FROM webhooks.deliveries_pending d
$$;

COMMENT ON FUNCTION webhooks.queue_stats() IS 'Pending deliveries due now and scheduled for later, disabled endpoints, tracked events awaiting fan-out, the age of the oldest pending delivery and the event log''s size on disk (the relay''s /metrics).';
CREATE OR REPLACE FUNCTION webhooks.retry_now(endpoint_id bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    moved integer;
BEGIN
    UPDATE webhooks.deliveries_pending d SET next_attempt_at = now()
     WHERE d.leased_by IS NULL AND d.next_attempt_at > now()
       AND (retry_now.endpoint_id IS NULL OR d.endpoint_id = retry_now.endpoint_id);
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM webhooks._wake_relay();
    END IF;
    RETURN moved;
END
$$;

COMMENT ON FUNCTION webhooks.retry_now(bigint) IS 'Make waiting retries (of one endpoint, or all when NULL) due now. Returns how many.';
CREATE OR REPLACE FUNCTION webhooks."track_changes"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'track_changes_wrapper';

COMMENT ON FUNCTION webhooks.track_changes() IS 'The tracking trigger webhooks.track attaches: track_changes(kind) fires the kind''s events, reading the people tables recorded in webhooks.tracked_tables, (docs/ats-events.md) and logs them in the writing transaction.';
COMMENT ON FUNCTION webhooks._check_trackable(oid, text, oid, oid) IS 'Used by track: refuses a table whose rule booleans, payload timestamps or people ids have types tracking cannot use.';
COMMENT ON FUNCTION webhooks._session_role() IS 'Internal: the role this session acts as (its user or SET ROLE), whatever security-definer functions stand between; whose rights track() checks.';
COMMENT ON TABLE webhooks.table_kinds IS 'What webhooks.track knows how to track: each kind of ATS table, the columns it needs, and the events it fires.';
CREATE OR REPLACE FUNCTION webhooks._people_columns(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE RETURN CASE kind WHEN 'candidates' THEN '{id,name,email}'::pg_catalog.text[]
                                        WHEN 'job_postings' THEN '{id,title}'::pg_catalog.text[] END;

COMMENT ON FUNCTION webhooks._people_columns(text) IS 'Columns read from the candidates and job_postings tables for payloads.';
COMMENT ON TABLE webhooks.tracked_tables IS 'Tables webhooks.track has attached the tracking trigger to, with their kind and people tables.';
CREATE OR REPLACE FUNCTION webhooks._require_columns(tbl regclass, role text, columns text[]) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    missing text[];
BEGIN
    SELECT array_agg(c ORDER BY ord) INTO missing
      FROM unnest(columns) WITH ORDINALITY AS want(c, ord)
     WHERE NOT EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = want.c AND a.attnum > 0
                          AND NOT a.attisdropped);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'table % cannot be used as %: missing column(s) %', tbl, role,
                        array_to_string(missing, ', ')
            USING ERRCODE = 'undefined_column',
                  HINT = format('As %s, a table needs the columns %s; docs/ats-events.md lists them and sql/ats_schema.sql is a reference schema.',
                                role, array_to_string(columns, ', '));
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._require_columns(regclass, text, text[]) IS 'Raise an error listing the columns a table lacks.';
CREATE OR REPLACE FUNCTION webhooks._check_may_track(table_name regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    owner       oid;
    persistence "char";
BEGIN
    SELECT c.relowner, c.relpersistence INTO owner, persistence
      FROM pg_class c WHERE c.oid = table_name AND c.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a table', coalesce(table_name::text, 'NULL')
            USING ERRCODE = 'wrong_object_type', HINT = 'Track a plain or partitioned table.';
    END IF;
    IF NOT pg_has_role(webhooks._session_role(), owner, 'USAGE') THEN
        RAISE EXCEPTION 'only the owner of % (role %) may track or untrack it', table_name, pg_get_userbyid(owner)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Run it as %s or a member of that role, or ask its owner to.', quote_ident(pg_get_userbyid(owner)));
    END IF;
    IF persistence = 't' THEN
        RAISE EXCEPTION '% is a temporary table', table_name
            USING ERRCODE = 'wrong_object_type', HINT = 'Track the permanent table that holds the data.';
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._check_may_track(regclass) IS 'Internal: refuse to track or untrack a table unless the session''s role is its owner or a member of the owning role, or a temporary table.';
CREATE OR REPLACE FUNCTION webhooks.track(table_name regclass, kind text DEFAULT NULL,
                               candidates regclass DEFAULT NULL,
                               job_postings regclass DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    schema_name text;
    relname     text;
    spec        webhooks.table_kinds;
BEGIN
    PERFORM webhooks._check_may_track(table_name);
    SELECT n.nspname, c.relname INTO schema_name, relname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_name;
    SELECT * INTO spec FROM webhooks.table_kinds k WHERE k.kind = coalesce(track.kind, relname);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot tell what kind of table % is', table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Name the kind: webhooks.track(%L, kind => ...) with one of %s.', table_name,
                                (SELECT string_agg(k.kind, ', ' ORDER BY k.kind) FROM webhooks.table_kinds k));
    END IF;
    PERFORM webhooks._require_columns(table_name, spec.kind, spec.required_columns);
    IF spec.needs_people THEN
        candidates := coalesce(candidates, to_regclass(format('%I.candidates', schema_name)));
        job_postings := coalesce(job_postings, to_regclass(format('%I.job_postings', schema_name)));
        IF candidates IS NULL OR job_postings IS NULL THEN
            RAISE EXCEPTION '% payloads need a candidates and a job_postings table; % has none', spec.kind, schema_name
                USING ERRCODE = 'undefined_table',
                      HINT = 'Pass them: webhooks.track(tbl, candidates => ''my.people'', job_postings => ''my.jobs'').';
        END IF;
        PERFORM webhooks._require_columns(candidates, 'candidates', webhooks._people_columns('candidates'));
        PERFORM webhooks._require_columns(job_postings, 'job_postings', webhooks._people_columns('job_postings'));
    ELSE
        candidates := NULL;
        job_postings := NULL;
    END IF;

    PERFORM webhooks._check_trackable(table_name, spec.kind, candidates, job_postings);

    PERFORM webhooks.untrack(table_name, if_tracked => true);
    -- The trigger names only the kind: it reads the people tables from tracked_tables (by oid,
    -- once per session), so a dump restored elsewhere, where every table has a new oid, keeps
    -- working. It writes the log itself, without privilege checks: a writer with no rights in
    -- the webhooks schema still emits, and the writer's search_path plays no part.
    EXECUTE format('CREATE TRIGGER webhooks_events AFTER INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION webhooks.track_changes(%L)',
                   table_name, spec.kind);
    INSERT INTO webhooks.tracked_tables (table_name, kind, candidates, job_postings)
    VALUES (track.table_name, spec.kind, candidates, job_postings);
    RETURN format('%s tracked as %s: %s', table_name, spec.kind, array_to_string(spec.events, ', '));
END
$$;

COMMENT ON FUNCTION webhooks.track(regclass, text, regclass, regclass) IS 'Emit the documented events from changes to a table: checks its columns (naming any missing) and their types, and attaches the webhooks.track_changes AFTER INSERT OR UPDATE trigger. kind defaults to the table name.';
CREATE OR REPLACE FUNCTION webhooks.untrack(table_name regclass, if_tracked boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    tracked webhooks.tracked_tables;
BEGIN
    PERFORM webhooks._check_may_track(table_name);
    DELETE FROM webhooks.tracked_tables t WHERE t.table_name = untrack.table_name RETURNING * INTO tracked;
    IF NOT FOUND THEN
        IF if_tracked THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'table % is not tracked', table_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM webhooks.tracked_tables lists the tracked tables.';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS webhooks_events ON %s', table_name);
    RETURN true;
END
$$;

COMMENT ON FUNCTION webhooks.untrack(regclass, boolean) IS 'Stop tracking a table: drops its trigger.';
CREATE OR REPLACE FUNCTION webhooks.track_ats(schema_name text DEFAULT 'ats') RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    k webhooks.table_kinds;
    found_any boolean := false;
BEGIN
    FOR k IN SELECT * FROM webhooks.table_kinds ORDER BY kind LOOP
        IF to_regclass(format('%I.%I', schema_name, k.kind)) IS NOT NULL THEN
            found_any := true;
            RETURN NEXT webhooks.track(format('%I.%I', schema_name, k.kind)::regclass);
        END IF;
    END LOOP;
    IF NOT found_any THEN
        RAISE EXCEPTION 'schema % has none of the reference tables', schema_name
            USING ERRCODE = 'undefined_table', HINT = 'Load sql/ats_schema.sql first, or track your own tables with webhooks.track().';
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks.track_ats(text) IS 'Track every reference ATS table (sql/ats_schema.sql) found in a schema.';
CREATE OR REPLACE FUNCTION webhooks._setting_interval(setting text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT s.value::interval FROM webhooks.settings s WHERE s.name = setting
$$;

COMMENT ON FUNCTION webhooks._setting_interval(text) IS 'Internal: a retention or period setting of webhooks.settings, as an interval.';
CREATE OR REPLACE FUNCTION webhooks._period_start(t timestamptz, period interval) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT to_timestamp(floor(extract(epoch FROM t) / extract(epoch FROM period)) * extract(epoch FROM period))
$$;

COMMENT ON FUNCTION webhooks._period_start(timestamptz, interval) IS 'Internal: the start of the period of the given length that holds t (periods aligned to the Unix epoch).';
CREATE OR REPLACE FUNCTION webhooks._time_partitions(parent regclass)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO' AS $$
    SELECT c.oid::regclass, b.m[1]::timestamptz, b.m[2]::timestamptz
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') AS b(m)
     WHERE i.inhparent = parent AND b.m IS NOT NULL
     ORDER BY 2
$$;

COMMENT ON FUNCTION webhooks._time_partitions(regclass) IS 'Internal: the time-range partitions of a table and their bounds.';
CREATE OR REPLACE FUNCTION webhooks._drop_partition(part regclass) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    name text := (SELECT format('%I.%I', n.nspname, c.relname)
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = part);
BEGIN
    IF EXISTS (SELECT FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = part AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION pg_webhooks DROP TABLE %s', part);
    END IF;
    EXECUTE format('DROP TABLE %s', part);
    RETURN name;
END
$$;

COMMENT ON FUNCTION webhooks._drop_partition(regclass) IS 'Internal: drop a partition retention is done with.';
CREATE OR REPLACE FUNCTION webhooks._oldest_filled_partition(parent regclass) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT min(p.lower_bound) FROM webhooks._time_partitions(parent) p
     WHERE pg_relation_size(p.partition) > 0
$$;

COMMENT ON FUNCTION webhooks._oldest_filled_partition(regclass) IS 'Internal: the start of the oldest partition of a time-partitioned table that holds anything.';
CREATE OR REPLACE FUNCTION webhooks._add_time_partition(parent regclass, default_partition regclass, key text,
                                            lower_bound timestamptz, upper_bound timestamptz)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp SET timezone = 'UTC' AS $$
DECLARE
    name text := format('%s_%s', (SELECT c.relname FROM pg_class c WHERE c.oid = parent),
                        to_char(lower_bound, 'YYYYMMDD"_"HH24MISS'));
BEGIN
    EXECUTE format('CREATE TABLE webhooks.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE)',
                   name, default_partition);
    EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *) INSERT INTO webhooks.%I SELECT * FROM moved',
                   default_partition, key, key, name)
        USING lower_bound, upper_bound;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION webhooks.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, name, lower_bound, upper_bound);
    RETURN 'webhooks.' || name;
END
$$;

COMMENT ON FUNCTION webhooks._add_time_partition(regclass, regclass, text, timestamptz, timestamptz) IS 'Internal: add one period partition to a time-partitioned table, moving in what its default partition took for that range.';
CREATE OR REPLACE FUNCTION webhooks._maintain_time_partitions(parent regclass, default_partition regclass, key text,
                                                  retention interval, period interval)
RETURNS TABLE (action text, object text)
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    start timestamptz;
    upper_end timestamptz;
    old record;
    strays bigint;
BEGIN
    SELECT max(p.upper_bound) INTO start FROM webhooks._time_partitions(parent) p;
    -- After a long pause no partitions are made for the periods that have passed: what came
    -- meanwhile is in the default partition.
    IF start IS NULL OR start < webhooks._period_start(now(), period) THEN
        start := webhooks._period_start(now(), period);
    END IF;
    WHILE start < now() + 2 * period LOOP
        upper_end := webhooks._period_start(start, period) + period;
        action := 'created';
        object := webhooks._add_time_partition(parent, default_partition, key, start, upper_end);
        RETURN NEXT;
        start := upper_end;
    END LOOP;
    FOR old IN
        SELECT p.partition FROM webhooks._time_partitions(parent) p
         WHERE p.upper_bound <= now() - retention ORDER BY p.lower_bound
    LOOP
        action := 'dropped';
        object := webhooks._drop_partition(old.partition);
        RETURN NEXT;
    END LOOP;
    EXECUTE format('DELETE FROM %s WHERE %I < $1', default_partition, key) USING now() - retention;
    GET DIAGNOSTICS strays = ROW_COUNT;
    IF strays > 0 THEN
        action := 'deleted';
        object := format('%s rows of webhooks.%s', strays, (SELECT c.relname FROM pg_class c WHERE c.oid = default_partition));
        RETURN NEXT;
    END IF;
END
$$;

COMMENT ON FUNCTION webhooks._maintain_time_partitions(regclass, regclass, text, interval, interval) IS 'Internal: partitions of a time-partitioned table from the current period to two ahead, dropping those past retention.';
CREATE OR REPLACE FUNCTION webhooks._event_log_partition(first_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    name text := format('events_%s', first_id / 4294967296);
BEGIN
    IF to_regclass('webhooks.' || quote_ident(name)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE webhooks.%I (LIKE webhooks.events_kept INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE)', name);
    EXECUTE format('ALTER TABLE webhooks.events ATTACH PARTITION webhooks.%I FOR VALUES FROM (%s) TO (%s)',
                   name, first_id, first_id + 4294967296);
    PERFORM brin_desummarize_range(i.indexrelid, 0)
       FROM pg_index i JOIN pg_am a ON a.oid = (SELECT c.relam FROM pg_class c WHERE c.oid = i.indexrelid)
      WHERE i.indrelid = ('webhooks.' || quote_ident(name))::regclass AND a.amname = 'brin';
    RETURN 'webhooks.' || name;
END
$$;

COMMENT ON FUNCTION webhooks._event_log_partition(bigint) IS 'Internal: make the event log''s partition for the period starting at first_id.';
CREATE OR REPLACE FUNCTION webhooks._maintain_event_log(retention interval, period interval)
RETURNS TABLE (action text, object text)
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    reached bigint := (SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END
                         FROM webhooks.events_id_seq s);
    current_id bigint := greatest(reached, 0) / 4294967296 * 4294967296;
    opened timestamptz;
    ahead regclass;
    old record;
    part regclass;
    carried bigint[];
    made text;
BEGIN
    IF NOT EXISTS (SELECT FROM webhooks.event_log_periods p WHERE p.first_id = current_id) THEN
        -- The sequence was moved by a call whose transaction did not commit.
        INSERT INTO webhooks.event_log_periods VALUES (current_id, now());
    END IF;
    opened := (SELECT p.opened_at FROM webhooks.event_log_periods p WHERE p.first_id = current_id);
    ahead := to_regclass(format('webhooks.events_%s', current_id / 4294967296 + 1));
    IF opened + period <= now() AND ahead IS NOT NULL
       AND (SELECT age(c.xmin) > 0 FROM pg_class c WHERE c.oid = ahead) THEN
        current_id := current_id + 4294967296;
        PERFORM setval('webhooks.events_id_seq', current_id, false);
        INSERT INTO webhooks.event_log_periods VALUES (current_id, now());
        action := 'opened'; object := format('webhooks.events_%s', current_id / 4294967296); RETURN NEXT;
    END IF;
    made := webhooks._event_log_partition(current_id + 4294967296);
    IF made IS NOT NULL THEN action := 'created'; object := made; RETURN NEXT; END IF;

    FOR old IN
        SELECT p.first_id
          FROM webhooks.event_log_periods p
         WHERE p.first_id < current_id
           AND (SELECT n.opened_at FROM webhooks.event_log_periods n
                 WHERE n.first_id > p.first_id ORDER BY n.first_id LIMIT 1) <= now() - retention
         ORDER BY p.first_id
    LOOP
        part := to_regclass(format('webhooks.events_%s', old.first_id / 4294967296));
        IF part IS NOT NULL THEN
            -- Nobody reads or writes the log meanwhile, so that what is carried over is
            -- exactly what is still needed.
            LOCK TABLE webhooks.events IN ACCESS EXCLUSIVE MODE;
            carried := ARRAY(
                SELECT ev.id FROM webhooks.events ev
                 WHERE ev.id >= old.first_id AND ev.id < old.first_id + 4294967296
                   AND (ev.id IN (SELECT d.event_id FROM webhooks.deliveries_pending d)
                        OR ev.id IN (SELECT a.id FROM webhooks.events_awaiting_fan_out a
                                      WHERE a.id >= old.first_id AND a.id < old.first_id + 4294967296)));
            EXECUTE format('ALTER TABLE webhooks.events DETACH PARTITION %s', part);
            EXECUTE format('INSERT INTO webhooks.events OVERRIDING SYSTEM VALUE SELECT * FROM %s WHERE id = ANY ($1)', part)
                USING carried;
            IF cardinality(carried) > 0 THEN
                action := 'kept'; object := format('%s events of webhooks.%s in webhooks.events_kept', cardinality(carried), part);
                RETURN NEXT;
            END IF;
            action := 'dropped'; object := webhooks._drop_partition(part);
            RETURN NEXT;
        END IF;
        DELETE FROM webhooks.event_log_periods p WHERE p.first_id = old.first_id;
    END LOOP;

    -- Carried-over events nothing needs any more.
    PERFORM set_config('webhooks.maintaining', 'on', true);
    DELETE FROM webhooks.events_kept k
     WHERE k.created_at < now() - retention
       AND NOT EXISTS (SELECT FROM webhooks.deliveries_pending d WHERE d.event_id = k.id)
       AND NOT EXISTS (SELECT FROM webhooks.events_awaiting_fan_out a WHERE a.id = k.id);
    PERFORM set_config('webhooks.maintaining', '', true);
END
$$;

COMMENT ON FUNCTION webhooks._maintain_event_log(interval, interval) IS 'Internal: open the event log''s next period when the current one is partition_period old, and drop periods past event_retention, carrying over the events still needed.';
CREATE OR REPLACE FUNCTION webhooks.maintain() RETURNS TABLE (action text, object text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    period interval := webhooks._setting_interval('partition_period');
BEGIN
    IF current_setting('lock_timeout') = '0' THEN
        PERFORM set_config('lock_timeout', '1s', true);
    END IF;
    -- Should its locks ever close a cycle with an application's query, this call is the one
    -- PostgreSQL cancels (the first to look for a deadlock is), and the next call tries again.
    BEGIN
        PERFORM set_config('deadlock_timeout', '100ms', true);
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    -- One call at a time; a concurrent one returns at once. A lock no role without write
    -- rights on the table can take or hold.
    BEGIN
        LOCK TABLE webhooks.event_log_periods IN SHARE ROW EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
        RETURN;
    END;
    RETURN QUERY SELECT * FROM webhooks._maintain_event_log(webhooks._setting_interval('event_retention'), period);
    RETURN QUERY SELECT * FROM webhooks._maintain_time_partitions('webhooks.deliveries_finished', 'webhooks.deliveries_finished_default',
                                                                  'finished_at', webhooks._setting_interval('delivery_retention'), period);
    RETURN QUERY SELECT * FROM webhooks._maintain_time_partitions('webhooks.attempts', 'webhooks.attempts_default',
                                                                  'started_at', webhooks._setting_interval('attempt_retention'), period);
    -- Small tables, pruned row by row: the hourly activity counts past the deliveries'
    -- retention, and the audit lines of endpoints deleted longer ago than theirs.
    DELETE FROM webhooks.endpoint_activity a WHERE a.hour < now() - webhooks._setting_interval('delivery_retention');
    PERFORM set_config('webhooks.maintaining', 'on', true);
    DELETE FROM webhooks.endpoint_history h
     WHERE h.action = 'deleted' AND h.at < now() - webhooks._setting_interval('deleted_endpoint_retention')
       AND NOT EXISTS (SELECT FROM webhooks.endpoints e WHERE e.id = h.endpoint_id);
    PERFORM set_config('webhooks.maintaining', '', true);
END
$$;

COMMENT ON FUNCTION webhooks.maintain() IS 'Retention: make partitions ahead, open the event log''s next period, drop partitions past their retention (carrying over what pending deliveries need), prune strays. Idempotent; one call at a time. Returns what it did.';
CREATE OR REPLACE FUNCTION webhooks.events_kept_since() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT CASE WHEN min(p.first_id) = 0 THEN '-infinity' ELSE min(p.opened_at) END
      FROM webhooks.event_log_periods p
$$;

COMMENT ON FUNCTION webhooks.events_kept_since() IS 'The oldest time from which the event log holds every event (replay and backfill reach no further back).';
CREATE OR REPLACE VIEW webhooks.storage AS
WITH tables (table_name, retention_setting) AS (
    VALUES ('webhooks.events'::regclass, 'event_retention'),
           ('webhooks.deliveries'::regclass, 'delivery_retention'),
           ('webhooks.attempts'::regclass, 'attempt_retention'),
           ('webhooks.endpoint_history'::regclass, 'deleted_endpoint_retention'),
           ('webhooks.endpoint_activity'::regclass, 'delivery_retention')
), sizes AS (
    SELECT t.table_name, t.retention_setting,
           count(*) FILTER (WHERE tree.isleaf AND tree.relid <> t.table_name) AS partitions,
           sum(pg_total_relation_size(c.oid))::bigint AS total_bytes,
           sum(greatest(c.reltuples, 0))::bigint AS row_estimate
      FROM tables t
     -- A table that is not partitioned is its own one leaf.
     CROSS JOIN LATERAL (SELECT x.relid, x.isleaf FROM pg_partition_tree(t.table_name) x
                         UNION ALL
                         SELECT t.table_name, true
                          WHERE NOT EXISTS (SELECT FROM pg_partition_tree(t.table_name))) tree
      JOIN pg_class c ON c.oid = tree.relid
     GROUP BY t.table_name, t.retention_setting
)
SELECT s.table_name::text AS table_name,
       s.partitions,
       s.total_bytes,
       s.row_estimate,
       CASE s.table_name
           WHEN 'webhooks.events'::regclass THEN
               (SELECT ev.created_at FROM webhooks.events ev ORDER BY ev.id LIMIT 1)
           WHEN 'webhooks.deliveries'::regclass THEN
               least((SELECT min(d.created_at) FROM webhooks.deliveries_pending d),
                     webhooks._oldest_filled_partition('webhooks.deliveries_finished'),
                     (SELECT min(d.finished_at) FROM webhooks.deliveries_finished_default d))
           WHEN 'webhooks.attempts'::regclass THEN
               least(webhooks._oldest_filled_partition('webhooks.attempts'),
                     (SELECT min(a.started_at) FROM webhooks.attempts_default a))
           WHEN 'webhooks.endpoint_history'::regclass THEN
               (SELECT min(h.at) FROM webhooks.endpoint_history h)
           ELSE (SELECT min(a.hour) FROM webhooks.endpoint_activity a)
       END AS oldest_row,
       webhooks._setting_interval(s.retention_setting) AS retention,
       now() - webhooks._setting_interval(s.retention_setting) AS horizon
  FROM sizes s;

COMMENT ON VIEW webhooks.storage IS 'Per table: partitions, size on disk with indexes and TOAST, estimated rows, the oldest row (for tables partitioned by time, the start of the oldest partition holding rows), and the retention with its horizon. Pending deliveries and the events they need are kept past the horizon.';
CREATE OR REPLACE FUNCTION webhooks._restore_setting() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.settings s SET value = NEW.value, updated_at = NEW.updated_at
     WHERE s.name = NEW.name;
    RETURN CASE WHEN FOUND THEN NULL ELSE NEW END;
END
$$;

COMMENT ON FUNCTION webhooks._restore_setting() IS 'Trigger: a restored settings row replaces the one CREATE EXTENSION made.';
CREATE OR REPLACE FUNCTION webhooks._restore_event_log_period() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.event_log_periods p SET opened_at = NEW.opened_at WHERE p.first_id = NEW.first_id;
    RETURN CASE WHEN FOUND THEN NULL ELSE NEW END;
END
$$;

COMMENT ON FUNCTION webhooks._restore_event_log_period() IS 'Trigger: a restored event log period replaces the one CREATE EXTENSION made.';
CREATE OR REPLACE FUNCTION webhooks._restore_fanout_position() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.fanout_position
       SET done = NEW.done, done_by = NEW.done_by, floor = NEW.floor, batch = NEW.batch,
           batch_by = NEW.batch_by, batch_reached = NEW.batch_reached, restored = true;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION webhooks._restore_fanout_position() IS 'Trigger: a restored fan-out position replaces the fresh one and is marked restored, so that fan_out waits for resume_after_restore.';
CREATE OR REPLACE FUNCTION webhooks.resume_after_restore() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
DECLARE
    made integer;
BEGIN
    PERFORM webhooks._lock_fan_out(wait => true);
    PERFORM FROM webhooks.fanout_position p WHERE p.restored FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhooks.fanout_position does not come from a restore; there is nothing to resume'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'webhooks.fan_out() runs by itself in every relay claim.';
    END IF;
    made := webhooks._make_deliveries(ARRAY(SELECT a.id FROM webhooks.events_awaiting_fan_out a));
    DELETE FROM webhooks.fanout_marks;
    UPDATE webhooks.fanout_position
       SET done = pg_current_snapshot(), done_by = pg_current_xact_id(),
           floor = coalesce((SELECT max(ev.id) FROM webhooks.events ev), 0),
           batch = NULL, batch_by = NULL, batch_reached = NULL, restored = false;
    RETURN made;
END
$$;

COMMENT ON FUNCTION webhooks.resume_after_restore() IS 'After restoring a dump: make the deliveries of the tracked events the dumped cluster had not fanned out, then restart fan-out at the end of the log. Run once the restore is complete, before applications write again.';

------------------------------------------------------------------------------------------
-- Writers never notify: relays poll webhooks.work_marker() while idle
------------------------------------------------------------------------------------------

DROP TABLE webhooks.sleeping_relays;


------------------------------------------------------------------------------------------
-- An endpoint's history goes with it
------------------------------------------------------------------------------------------

DROP TRIGGER endpoint_history_append_only ON webhooks.endpoint_history;
CREATE TRIGGER endpoint_history_append_only BEFORE UPDATE OR DELETE ON webhooks.endpoint_history
    FOR EACH ROW EXECUTE FUNCTION webhooks._refuse_history_change();

-- Endpoints deleted before this update keep only the audit line delete_endpoint now leaves:
-- that the endpoint existed and was deleted, by whom and when, without its URL or name.
DO $forget$
DECLARE
    gone record;
BEGIN
    FOR gone IN
        SELECT h.endpoint_id, max(h.at) FILTER (WHERE h.action = 'deleted') AS at,
               (array_agg(h.actor ORDER BY h.id DESC) FILTER (WHERE h.action = 'deleted'))[1] AS actor
          FROM webhooks.endpoint_history h
         WHERE NOT EXISTS (SELECT FROM webhooks.endpoints e WHERE e.id = h.endpoint_id)
         GROUP BY h.endpoint_id
    LOOP
        PERFORM pg_catalog.set_config('webhooks.deleting_endpoint', gone.endpoint_id::text, true);
        DELETE FROM webhooks.endpoint_history h WHERE h.endpoint_id = gone.endpoint_id;
        INSERT INTO webhooks.endpoint_history (endpoint_id, action, actor, at)
        VALUES (gone.endpoint_id, 'deleted', coalesce(gone.actor, session_user),
                coalesce(gone.at, now()));
    END LOOP;
    PERFORM pg_catalog.set_config('webhooks.deleting_endpoint', '', true);
END
$forget$;

------------------------------------------------------------------------------------------
-- Retention: a restored dump's event log periods
------------------------------------------------------------------------------------------

CREATE TRIGGER restore_event_log_period BEFORE INSERT ON webhooks.event_log_periods
    FOR EACH ROW EXECUTE FUNCTION webhooks._restore_event_log_period();

------------------------------------------------------------------------------------------
-- The payload limit has one home, webhooks.max_payload_bytes()
------------------------------------------------------------------------------------------

ALTER DOMAIN webhooks.event_data DROP CONSTRAINT event_data_at_most_256_kib;
ALTER DOMAIN webhooks.event_data ADD CONSTRAINT event_data_at_most_256_kib
    CHECK (pg_catalog.pg_column_size(VALUE) OPERATOR(pg_catalog.<=) webhooks.max_payload_bytes());

------------------------------------------------------------------------------------------
-- Privileges: what 0.1.0 granted and 0.2.0 does not, then privileges.sql as 0.2.0 has it
------------------------------------------------------------------------------------------

REVOKE USAGE ON SCHEMA webhooks FROM webhooks_admin, webhooks_relay, webhooks_reader;
REVOKE SELECT ON webhooks.endpoints FROM webhooks_admin;
REVOKE EXECUTE ON FUNCTION webhooks.fan_out(integer), webhooks.disable_endpoint(bigint, text),
                           webhooks.iso8601(timestamptz)
FROM webhooks_relay;
REVOKE SELECT ON webhooks.endpoints, webhooks.events, webhooks.settings FROM webhooks_relay;

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
