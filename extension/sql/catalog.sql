-- pg_webhooks: tables, roles and the event catalog.
--
-- The event log (webhooks.events) is the source of truth and is append-only. Deliveries are
-- the per-endpoint work derived from it; attempts are the per-HTTP-try record the relay
-- writes. Endpoint configuration changes are kept in webhooks.endpoint_history, also
-- append-only. Functions that change anything live in api.sql.

-- Roles are cluster-wide, so a second database that creates the extension reuses them.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_admin') THEN
        CREATE ROLE webhooks_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_relay') THEN
        CREATE ROLE webhooks_relay NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_reader') THEN
        CREATE ROLE webhooks_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'webhooks_emitter') THEN
        CREATE ROLE webhooks_emitter NOLOGIN;
    END IF;
END
$roles$;

CREATE TABLE webhooks.settings (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    description text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO webhooks.settings (name, value, description) VALUES
    ('allow_http', 'false',
     'Accept plain http:// endpoint URLs (local development and tests only).'),
    ('outreach_addon', 'false',
     'The Outreach add-on is enabled: endpoints may subscribe to outreach.* events.'),
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

CREATE TABLE webhooks.event_types (
    name        text PRIMARY KEY,
    category    text NOT NULL,
    description text NOT NULL,
    addon       text CHECK (addon IN ('outreach'))
);

INSERT INTO webhooks.event_types (name, category, description, addon) VALUES
    ('application.submitted',        'application', 'A candidate submits an application', NULL),
    ('application.rejected',         'application', 'An application is rejected', NULL),
    ('application.advanced',         'application', 'An application advances to the next stage', NULL),
    ('application.withdrawn',        'application', 'A candidate withdraws their application', NULL),
    ('application.offer_extended',   'application', 'An offer is extended to a candidate', NULL),
    ('offer.accepted',               'offer', 'An admin accepts an offer', NULL),
    ('offer.declined',               'offer', 'An admin declines an offer', NULL),
    ('offer.candidate_accepted',     'offer', 'A candidate accepts an offer', NULL),
    ('offer.candidate_declined',     'offer', 'A candidate declines an offer', NULL),
    ('offer.revised',                'offer', 'An offer is revised with new terms', NULL),
    ('interview.scheduled',          'interview', 'An interview is scheduled', NULL),
    ('interview.confirmed',          'interview', 'A candidate confirms the interview', NULL),
    ('interview.completed',          'interview', 'An interview is marked as completed', NULL),
    ('interview.cancelled',          'interview', 'An interview is cancelled', NULL),
    ('interview.no_show',            'interview', 'A candidate is marked as a no-show', NULL),
    ('code_assignment.submitted',    'code_assignment', 'A candidate submits their code assignment', NULL),
    ('code_assignment.auto_submitted', 'code_assignment', 'A code assignment is auto-submitted at deadline', NULL),
    ('review.submitted',             'review', 'A team member submits a review', NULL),
    ('job_posting.published',        'job_posting', 'A job posting is published', NULL),
    ('job_posting.paused',           'job_posting', 'A job posting is paused', NULL),
    ('job_posting.closed',           'job_posting', 'A job posting is closed', NULL),
    ('job_posting.reopened',         'job_posting', 'A job posting is reopened', NULL),
    ('outreach.prospect.drafted',    'outreach', 'The AI finished researching a prospect and drafting an email', 'outreach'),
    ('outreach.message.approved',    'outreach', 'An outreach message was approved', 'outreach'),
    ('outreach.message.sent',        'outreach', 'An outreach message was sent', 'outreach'),
    ('outreach.message.bounced',     'outreach', 'An outreach message bounced', 'outreach'),
    ('outreach.message.failed',      'outreach', 'An outreach message failed to send', 'outreach'),
    ('test.ping',                    'test', 'Sent by webhooks.send_test_ping to check an endpoint', NULL);

CREATE TABLE webhooks.endpoints (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                   text NOT NULL UNIQUE,
    description            text,
    url                    text NOT NULL,
    secret                 text NOT NULL,
    -- The selection as the user gave it (types and categories such as 'application.*');
    -- webhooks.subscriptions holds it expanded to event types.
    events                 text[] NOT NULL,
    status                 text NOT NULL DEFAULT 'active'
                           CHECK (status IN ('active', 'paused', 'disabled')),
    disabled_reason        text,
    disabled_at            timestamptz,
    rate_limit             integer CHECK (rate_limit BETWEEN 1 AND 100000),
    failure_window         interval NOT NULL DEFAULT '24 hours',
    failure_threshold      integer NOT NULL DEFAULT 25 CHECK (failure_threshold > 0),
    -- Deliveries failed before this instant do not count towards auto-disable: resume moves it.
    failures_counted_since timestamptz NOT NULL DEFAULT now(),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'disabled') = (disabled_at IS NOT NULL))
);

-- When each endpoint took each event type: from the moment it was active, subscribed to the
-- type, and the type's add-on (if any) was on, until one of those stopped. A tracked event gets
-- its deliveries when fan_out() reaches it, which may be long after it fired (a relay stopped or
-- behind); who gets one is decided by these periods at the event's time (created_at, its
-- transaction's start), not by the endpoints' state when fan-out gets there. So an event fired
-- while an endpoint was paused is never delivered to it, one fired before a pause still is, a
-- new endpoint gets no earlier events, and a deleted one none at all (its periods go with it).
-- _sync_subscription_periods() keeps them; closed periods are a few rows per configuration change.
CREATE TABLE webhooks.subscription_periods (
    endpoint_id bigint NOT NULL,
    event_type  text NOT NULL,
    since       timestamptz NOT NULL,
    -- NULL while the period lasts.
    until       timestamptz,
    PRIMARY KEY (event_type, since, endpoint_id)
);
COMMENT ON TABLE webhooks.subscription_periods IS 'When each endpoint took each event type (active, subscribed, add-on on): who gets a tracked event is decided at the event''s time, however late fan-out reaches it.';
CREATE INDEX subscription_periods_endpoint ON webhooks.subscription_periods (endpoint_id, event_type);

-- Keyed by event type first: emit() looks up "who subscribes to this type".
CREATE TABLE webhooks.subscriptions (
    event_type  text NOT NULL REFERENCES webhooks.event_types (name),
    endpoint_id bigint NOT NULL REFERENCES webhooks.endpoints (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, endpoint_id)
);
CREATE INDEX subscriptions_endpoint ON webhooks.subscriptions (endpoint_id);

-- The largest event payload, in bytes of its jsonb (pg_column_size): 256 KiB. Receivers must
-- answer within 10 s; a payload this large is a bug upstream, not an event. The event_data
-- domain checks it; emit() and the tracking trigger refuse a larger payload first, with an
-- error that says what to do (the trigger's copy of the number is pinned to this function by
-- a pg_test).
CREATE FUNCTION webhooks.max_payload_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 262144;
COMMENT ON FUNCTION webhooks.max_payload_bytes() IS 'The largest event payload, in bytes of its jsonb: 262144 (256 KiB).';

-- An event's payload: a JSON object of at most max_payload_bytes().
-- A domain rather than CHECK constraints on the table: PostgreSQL 15 parses and plans a
-- table's CHECK constraints again in every statement that inserts into it, while a domain's
-- checks are prepared once per session, which makes every tracked write markedly cheaper
-- (docs/benchmarks-history.md, "Figures behind the code"). The checks name their functions and operators with their
-- schema, although a domain's checks are stored already resolved.
CREATE DOMAIN webhooks.event_data AS jsonb NOT NULL
    CONSTRAINT event_data_is_an_object
        CHECK (pg_catalog.jsonb_typeof(VALUE) OPERATOR(pg_catalog.=) 'object')
    CONSTRAINT event_data_at_most_256_kib
        CHECK (pg_catalog.pg_column_size(VALUE) OPERATOR(pg_catalog.<=) webhooks.max_payload_bytes());
COMMENT ON DOMAIN webhooks.event_data IS 'An event payload: a JSON object of at most 256 KiB.';

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
INSERT INTO webhooks.event_log_periods VALUES (0, now());

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

-- How far webhooks.fan_out() has come through the log. A tracking trigger logs its event with
-- its transaction's id (events.fanout_xid) and nothing else; it does not look up subscribers
-- or insert a delivery for each, nor queue the event in a table of its own: that would add a
-- row and an index entry to every tracked write (docs/benchmarks-history.md, "Tracking"). fan_out(), which every
-- claim runs first, then takes the events of the transactions that ended between the snapshot
-- of its previous round (`done`) and a new one, as PgQ does. One row; a round that stops at
-- max_events resumes from `batch_reached` in its own snapshot (`batch`). A snapshot does not
-- count the transaction that took it as ended, hence `done_by` and `batch_by`.
CREATE TABLE webhooks.fanout_position (
    one_row       boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    -- Every tracked event whose transaction had ended in this snapshot has its deliveries.
    done          pg_snapshot NOT NULL,
    done_by       xid8,
    -- Every tracked event that has not is further along the log than this id (see marks).
    floor         bigint NOT NULL DEFAULT 0,
    batch         pg_snapshot,
    batch_by      xid8,
    batch_reached bigint,
    -- Set when this row came from a dump (docs/reliability.md, "Backups"): its snapshots then
    -- name another cluster's transactions, and fan_out() waits for resume_after_restore().
    restored      boolean NOT NULL DEFAULT false
);
INSERT INTO webhooks.fanout_position (done) VALUES (pg_catalog.pg_current_snapshot());

-- What keeps fan_out's reading of the log short: each round notes the last event id the log's
-- sequence had given out before the round's transaction got its id. A transaction whose id is
-- larger can only log larger event ids (a tracked event's id is drawn after its transaction's
-- id), so once every transaction older than a mark has ended, the events still to come lie
-- beyond the mark's event id: that is `floor`. Old marks are deleted as the floor passes them.
CREATE TABLE webhooks.fanout_marks (
    xid     xid8 PRIMARY KEY,
    last_id bigint NOT NULL
);

-- Whether transaction `xid` had ended in `snapshot`, taken by transaction `taken_by`: a
-- snapshot does not list the transaction that took it as running, yet it has not ended. The one
-- rule of the fan-out's bookkeeping, inlined wherever it is used (hence SQL, no SET clause).
CREATE FUNCTION webhooks._ended_in(xid xid8, snapshot pg_snapshot, taken_by xid8) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN pg_catalog.pg_visible_in_snapshot(xid, snapshot) AND xid IS DISTINCT FROM taken_by;
COMMENT ON FUNCTION webhooks._ended_in(xid8, pg_snapshot, xid8) IS 'Whether a transaction had ended in a snapshot taken by another (or the same) transaction: the rule of webhooks.fan_out''s rounds.';

-- Tracked events whose deliveries are not made yet: committed, and not taken by a fan-out
-- round.
CREATE VIEW webhooks.events_awaiting_fan_out AS
SELECT ev.id, ev.event_type, ev.created_at, ev.fanout_xid
  FROM webhooks.events ev, webhooks.fanout_position p
 WHERE ev.id > p.floor
   AND ev.fanout_xid IS NOT NULL
   AND NOT webhooks._ended_in(ev.fanout_xid, p.done, p.done_by)
   AND NOT (p.batch IS NOT NULL AND ev.id <= p.batch_reached
            AND webhooks._ended_in(ev.fanout_xid, p.batch, p.batch_by));

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

-- What each endpoint's relays recorded, by the hour: deliveries finished (succeeded, failed
-- for good), attempts, and the latest attempt's start. record_attempts adds each batch here,
-- one row per endpoint and hour, so endpoint_status reads a few rows per endpoint instead of
-- every delivery finished in the last day and every attempt ever made; and finishing a
-- delivery needs no index on finished deliveries.
CREATE TABLE webhooks.endpoint_activity (
    endpoint_id     bigint NOT NULL,
    hour            timestamptz NOT NULL,
    succeeded       bigint NOT NULL DEFAULT 0,
    failed          bigint NOT NULL DEFAULT 0,
    attempts        bigint NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    PRIMARY KEY (endpoint_id, hour)
);

CREATE TABLE webhooks.endpoint_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id bigint NOT NULL,
    action      text NOT NULL CHECK (action IN ('created', 'edited', 'paused', 'resumed',
                                                'secret_rotated', 'disabled', 'deleted')),
    detail      jsonb NOT NULL DEFAULT '{}',
    actor       text NOT NULL DEFAULT session_user,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoint_history_endpoint ON webhooks.endpoint_history (endpoint_id, at);

-- Append-only logs: UPDATE, DELETE and TRUNCATE are refused. Retention drops whole
-- partitions (webhooks.maintain(), retention.sql), which no row trigger sees; the one DELETE it
-- runs here is of carried-over events nothing needs any more, and it says so.
CREATE FUNCTION webhooks._refuse_log_change() RETURNS trigger
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

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON webhooks.events
    FOR EACH ROW EXECUTE FUNCTION webhooks._refuse_log_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON webhooks.events
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._refuse_log_change();
-- The endpoint history is append-only too, with one exception: delete_endpoint deletes a
-- webhook's history with it (Kit: deleting a webhook deletes its history) and leaves one audit
-- line. It names the endpoint it is deleting in a transaction-local setting; only the
-- extension's owner can delete rows here at all.
CREATE FUNCTION webhooks._refuse_history_change() RETURNS trigger
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

CREATE TRIGGER endpoint_history_append_only BEFORE UPDATE OR DELETE ON webhooks.endpoint_history
    FOR EACH ROW EXECUTE FUNCTION webhooks._refuse_history_change();
CREATE TRIGGER endpoint_history_no_truncate BEFORE TRUNCATE ON webhooks.endpoint_history
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks._refuse_log_change();

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

