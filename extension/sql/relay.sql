-- pg_webhooks: the relay's side of the queue. A relay claims due deliveries under a lease,
-- sends them, and reports every attempt back here; the delivery rules (what is retried, when,
-- and when an endpoint is disabled) live in this file so that a DBA can read them with \sf.
--
-- The path of a tracked INSERT to its receiver, in the order of this file:
--   1. the tracking trigger (webhooks.track_changes, tracking.sql) logs the event in
--      webhooks.events with its transaction's id, in the writer's transaction;
--   2. fan_out(), which every claim runs first, takes the events of the transactions that
--      have committed since its last round, and _make_deliveries() makes one delivery per
--      endpoint that took the event's type at the event's time;
--   3. claim_deliveries() leases due deliveries to a relay, with their rendered bodies
--      (_event_body());
--   4. the relay signs and POSTs each one, and record_attempts() moves it on: succeeded,
--      retried (retry_delay()), or failed (attempt_outcome()), disabling the endpoint when the
--      rules say so (_disable_failing_endpoints()).
-- An emitted event (webhooks.emit, api.sql) gets its deliveries in the emitting transaction
-- and joins the path at step 3.

-- Native functions this file uses (extension/src/), described here.
COMMENT ON FUNCTION webhooks._lock_fan_out(boolean) IS 'Internal: the transaction-scoped lock that makes fan-out rounds run one at a time, in an advisory lock class no SQL role can take (pg_locks: advisory, objsubid 30568).';

------------------------------------------------------------------------------------------
-- Delivery rules
------------------------------------------------------------------------------------------

-- Attempts in all: the first at once, then the six retries of retry_delay().
CREATE FUNCTION webhooks.max_attempts() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 7;
COMMENT ON FUNCTION webhooks.max_attempts() IS 'Attempts per delivery before it is failed: 7 (the first at once, then six retries).';

-- The rules below are called once per attempt inside record_attempts' statement. They have
-- no SET clause (and name everything with its schema) so that the planner inlines them: a SET
-- clause would make every call save and restore search_path.

-- How long to wait after failed attempt n before attempt n + 1; NULL once attempts run out.
CREATE FUNCTION webhooks.retry_delay(failed_attempt integer) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY[interval '1 minute', interval '5 minutes', interval '30 minutes',
                  interval '2 hours', interval '8 hours', interval '16 hours'])[failed_attempt]
$$;
COMMENT ON FUNCTION webhooks.retry_delay(integer) IS 'Wait after failed attempt n before the next: 1 min, 5 min, 30 min, 2 h, 8 h, 16 h; NULL after the sixth.';

-- What one attempt means for its delivery: 'succeeded', 'retry' or 'failed'.
--   2xx                              succeeded
--   refused by the relay (permanent) failed (a URL it will not contact: retrying cannot help)
--   4xx other than 429               failed (410 Gone also disables the endpoint)
--   anything else (429, 5xx, timeout, network or TLS error; and 3xx, see docs/relay.md)
--                                    retry, until max_attempts() is reached
CREATE FUNCTION webhooks.attempt_outcome(response_status integer, permanent boolean,
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

------------------------------------------------------------------------------------------
-- Leases
------------------------------------------------------------------------------------------

-- Whose lease is whose. Every member of webhooks_relay may claim, so a relay id (which a
-- relay chooses, and which other relays could guess) cannot be what lets a relay record or
-- release a delivery. Each session that claims has a lease key: a random UUID's 122 bits,
-- made by the server and kept in the session's own setting webhooks.lease_key, which no other
-- session can read. A lease names its holder by a digest of that key (_lease_holder), so that
-- deliveries.leased_by, which operators read, does not give the key away; attempts.relay_id
-- names the relay. The digest is shorter than most relay ids, so a lease still fits on its
-- page (see the fillfactor of webhooks.deliveries_pending).

-- The longest lease a claim may take: a lease is how long a crashed relay's work stays parked.
CREATE FUNCTION webhooks.max_lease() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN interval '1 hour';
COMMENT ON FUNCTION webhooks.max_lease() IS 'The longest lease claim_deliveries grants: 1 hour.';

-- This session's lease key: the one given (a relay that reconnects keeps its leases), else
-- the session's own, made on first use.
CREATE FUNCTION webhooks.lease_key(reuse text DEFAULT NULL) RETURNS text
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

-- What deliveries.leased_by holds for this session's leases: 64 bits of the key's SHA-256.
CREATE FUNCTION webhooks._lease_holder() RETURNS text
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT left(encode(sha256(convert_to(webhooks.lease_key(), 'UTF8')), 'hex'), 16)
$$;
COMMENT ON FUNCTION webhooks._lease_holder() IS 'Internal: what deliveries.leased_by holds for this session''s leases: 64 bits of the SHA-256 of the session''s lease key.';


------------------------------------------------------------------------------------------
-- Fan-out: committed tracked events get their deliveries
------------------------------------------------------------------------------------------

-- The deliveries of events `event_ids`: one per endpoint that, at the event's time, was active
-- and subscribed to its type with the type's add-on on (webhooks.subscription_periods), and
-- still exists. Returns how many were made.
CREATE FUNCTION webhooks._make_deliveries(event_ids bigint[]) RETURNS integer
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

-- Fan-out, in four steps: fan_out checks that a round may run, _mark_log_position notes how
-- far the log had come, _events_of_round takes the round's events and _make_deliveries their
-- deliveries, and _advance_fan_out records how far the rounds have come.

-- The mark: how far the log had come when this transaction started, for the rounds to come
-- (webhooks.fanout_marks). The sequence first, then this transaction's id, so it must run
-- before the transaction has an id. A sequence that hands out cached ranges could give an old
-- value later, so it only counts without a cache. No new mark while the log has not grown, so
-- that an idle round writes nothing.
CREATE FUNCTION webhooks._mark_log_position() RETURNS void
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

-- A round's events: ended in its snapshot and not in the previous one, in log order from
-- where it stopped (along the key), at most max_events.
CREATE FUNCTION webhooks._events_of_round(pos webhooks.fanout_position, max_events integer)
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

-- After a round's deliveries are made: a round stopped short goes on in the same snapshot
-- next time; a complete one becomes the previous round, and the floor moves up to the newest
-- mark that bounds the events not yet ended.
CREATE FUNCTION webhooks._advance_fan_out(pos webhooks.fanout_position, fresh boolean,
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

-- Make the deliveries of committed tracked events (webhooks.events_awaiting_fan_out): one per
-- endpoint that took the event's type at the event's time (_make_deliveries).
-- A round takes, in log order, the events whose transactions ended after the previous round's
-- snapshot and before its own (webhooks.fanout_position explains the bookkeeping). Rounds run
-- one at a time: a concurrent caller returns 0 at once rather than wait, since the round in
-- progress is making the same deliveries. An event and the position past it change in one
-- transaction, so none is made twice or lost. Returns the number of deliveries made.
-- plan_cache_mode is reset here because claim_deliveries, which calls this, forces generic
-- plans: a round's query is better planned for the floor it starts from.
CREATE FUNCTION webhooks.fan_out(max_events integer DEFAULT 5000) RETURNS integer
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

------------------------------------------------------------------------------------------
-- Claim
------------------------------------------------------------------------------------------

-- Refuse a claim without a relay id, or with a lease that is not positive or is longer than
-- max_lease().
CREATE FUNCTION webhooks._check_claim(relay_id text, lease interval) RETURNS void
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

-- The request body, byte for byte what is signed and sent: {"event", "created_at", "data"}
-- (docs/ats-events.md). No SET clause, so that the planner inlines it into the claim; every
-- name is schema-qualified instead.
CREATE FUNCTION webhooks._event_body(event_type text, created_at timestamptz, data jsonb) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT '{"event":' OPERATOR(pg_catalog.||) pg_catalog.to_json(event_type)::pg_catalog.text
           OPERATOR(pg_catalog.||) ',"created_at":"' OPERATOR(pg_catalog.||) webhooks.iso8601(created_at)
           OPERATOR(pg_catalog.||) '","data":' OPERATOR(pg_catalog.||) data::pg_catalog.text
           OPERATOR(pg_catalog.||) '}'
$$;
COMMENT ON FUNCTION webhooks._event_body(text, timestamptz, jsonb) IS 'The request body as signed and sent: {"event", "created_at", "data"}.';

CREATE FUNCTION webhooks.claim_deliveries(
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

------------------------------------------------------------------------------------------
-- Record and release
------------------------------------------------------------------------------------------

-- Recording a batch of attempts takes three steps: record_attempts checks the batch,
-- _apply_attempts moves each delivery on and logs its attempt, and _disable_failing_endpoints
-- applies the rules that switch an endpoint off.

-- Each attempt moves its delivery on (succeeded, failed, or pending again with its retry's
-- due time), is logged in webhooks.attempts, and counts in endpoint_activity; only attempts at
-- deliveries this session holds under a live lease. Returns the attempts it recorded.
CREATE FUNCTION webhooks._apply_attempts(
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

-- The rules that switch an endpoint off after a batch: a 410 Gone (the receiver unsubscribes
-- itself), and too many deliveries failed for good within its window
-- (failed_deliveries_in_window).
CREATE FUNCTION webhooks._disable_failing_endpoints(gone_endpoints bigint[], failed_endpoints bigint[])
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

-- The relay's form: one array per field, element i of each describing attempt i. Typed
-- arrays travel in binary and need no parsing, which matters at thousands of attempts a second.
-- Returns how many of the attempts succeeded, will be retried, and failed for good, and how
-- many were not recorded because this session holds no live lease on their delivery.
CREATE FUNCTION webhooks.record_attempts(
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

-- The same from psql or a relay of your own: a JSON array with one object per attempt,
--   {"delivery_id", "attempt_number", "started_at", "duration_ms", "request_headers",
--    "response_status", "response_body", "error", "retry_after_seconds", "permanent"},
-- unpacked into the arrays above.
CREATE FUNCTION webhooks.record_attempts(relay_id text, attempts jsonb)
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

-- Hand leased deliveries back unattempted (shutdown, or a rate limit that would outlast the
-- lease): they become due after delay_ms (at most a day) and no attempt is counted. Only
-- deliveries this session holds under a live lease.
CREATE FUNCTION webhooks.release_deliveries(relay_id text, delivery_ids bigint[],
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

-- How an idle relay notices new work without anyone notifying it: how far the event log's and
-- the deliveries' id sequences have come. Any new event (tracked or emitted) or delivery moves
-- one of them, already when it is written (before its commit); the relay then claims for a
-- while, long enough for the writing transaction to commit. Two sequence reads, no table.
CREATE FUNCTION webhooks.work_marker(OUT events bigint, OUT deliveries bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM webhooks.events_id_seq s),
           (SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END FROM webhooks.deliveries_id_seq s)
$$;
COMMENT ON FUNCTION webhooks.work_marker() IS 'Relay only: how far the event log''s and the deliveries'' id sequences have come; an idle relay polls it to notice new work without notifications.';

-- Queue depth and disabled endpoints, for the relay's /metrics.
-- oldest_pending_seconds: how long the oldest pending delivery has waited since it was made
-- (0 with none), whatever holds it back (retries, a paused endpoint, no relay).
-- event_log_bytes: the event log's partitions with their indexes and TOAST, on disk.
CREATE FUNCTION webhooks.queue_stats(OUT due bigint, OUT scheduled bigint, OUT endpoints_disabled bigint,
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

------------------------------------------------------------------------------------------
-- Operator controls
------------------------------------------------------------------------------------------

-- Skip the wait: retries (of one endpoint, or all) become due now. For use after a receiver
-- is fixed; the tests also use it to walk the retry schedule without waiting hours.
CREATE FUNCTION webhooks.retry_now(endpoint_id bigint DEFAULT NULL) RETURNS integer
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
