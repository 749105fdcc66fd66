-- pg_webhooks: the SQL API. Every function that changes state is SECURITY DEFINER with a
-- pinned search_path, so callers need only EXECUTE on it, never rights on the tables.

-- Native functions this file uses (extension/src/), described here.
COMMENT ON FUNCTION webhooks.generate_secret() IS 'A new 256-bit signing secret (whsec_ + 64 hex digits).';
COMMENT ON FUNCTION webhooks.check_endpoint_url(text, boolean) IS 'Validate and normalise an endpoint URL; raises an error naming the problem.';

------------------------------------------------------------------------------------------
-- Internal helpers (not granted to anyone)
------------------------------------------------------------------------------------------

CREATE FUNCTION webhooks._setting_enabled(setting text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT coalesce((SELECT value::boolean FROM webhooks.settings WHERE name = setting), false)
$$;
COMMENT ON FUNCTION webhooks._setting_enabled(text) IS 'Internal: whether a boolean setting of webhooks.settings is on.';

-- ISO 8601 UTC with whole seconds and a Z, whatever the session's TimeZone.
-- Inlinable, so that payload expressions pay for to_char and nothing more: no SET clause (the
-- names are schema-qualified instead) and STABLE like to_char itself (an IMMUTABLE wrapper of
-- a STABLE function is never inlined, and a called SQL function costs more than the rest of
-- a payload).
CREATE FUNCTION webhooks.iso8601(ts timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', ts), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;
COMMENT ON FUNCTION webhooks.iso8601(timestamptz) IS 'Format a timestamp as ISO 8601 UTC with whole seconds and Z, as in webhook payloads.';

-- Expand a subscription (event types and 'category.*' patterns) to event types.
CREATE FUNCTION webhooks._resolve_event_selection(selection text[]) RETURNS text[]
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

-- Lock an endpoint row for a change, or fail naming the id.
CREATE FUNCTION webhooks._lock_endpoint(endpoint_id bigint) RETURNS webhooks.endpoints
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

CREATE FUNCTION webhooks._record_history(endpoint_id bigint, action text, detail jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    INSERT INTO webhooks.endpoint_history (endpoint_id, action, detail) VALUES ($1, $2, $3)
$$;
COMMENT ON FUNCTION webhooks._record_history(bigint, text, jsonb) IS 'Internal: append an endpoint configuration change to webhooks.endpoint_history.';

-- An operator's own secret must be as hard to guess as a generated one is: at least 24
-- characters, and at least 128 bits by the Shannon estimate of its characters (length times
-- the entropy of their frequencies). 'aaaaaaaaaaaaaaaaaaaaaaaa' has 0 bits, a word repeated
-- has few; 32 random hex digits have 128, a generated secret about 290.
-- Bring an endpoint's subscription periods up to date with what it takes from now on: the types
-- it subscribes to while it is active, without those whose add-on is off (none once it is
-- deleted). Every function that changes any of that calls it, in the same transaction.
CREATE FUNCTION webhooks._sync_subscription_periods(endpoint_id bigint) RETURNS void
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

-- An endpoint's subscriptions become exactly these event types, and its subscription periods
-- follow (create_endpoint, update_endpoint).
CREATE FUNCTION webhooks._set_subscriptions(endpoint_id bigint, event_types text[]) RETURNS void
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

CREATE FUNCTION webhooks._check_secret(secret text) RETURNS text
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

CREATE FUNCTION webhooks._check_rate_limit(rate_limit integer) RETURNS integer
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

CREATE FUNCTION webhooks._check_failure_window(failure_window interval) RETURNS interval
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

CREATE FUNCTION webhooks._checked_url(url text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT webhooks.check_endpoint_url(url, webhooks._setting_enabled('allow_http'))
$$;
COMMENT ON FUNCTION webhooks._checked_url(text) IS 'Internal: an endpoint URL checked by check_endpoint_url, with plain http allowed only when the allow_http setting is on.';

-- Wake relays at commit after an operator's action made work due without a new event or
-- delivery (redeliver, retry_now, resume, replay of existing deliveries). Writers never call
-- it: a notifying commit serialises with every other notifying commit in the cluster, and
-- relays notice new events and deliveries by polling webhooks.work_marker() instead.
CREATE FUNCTION webhooks._wake_relay() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT pg_notify('webhooks_work', '')
$$;
COMMENT ON FUNCTION webhooks._wake_relay() IS 'Internal: NOTIFY webhooks_work at commit, after an operator''s action made existing deliveries due; writers never notify.';

-- Tell relays, at commit, that an endpoint's URL, secret, rate limit or state changed: a relay
-- then sends none of the deliveries it holds for it with what its claim said, and hands them
-- back instead (docs/relay.md, "Configuration changes").
CREATE FUNCTION webhooks._endpoint_changed(endpoint_id bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT pg_notify('webhooks_endpoint_changed', endpoint_id::text)
$$;
COMMENT ON FUNCTION webhooks._endpoint_changed(bigint) IS 'Internal: NOTIFY webhooks_endpoint_changed with the endpoint id at commit, so that relays stop using what their claims said about it.';

-- A row a statement waited for was moved to another partition meanwhile (a delivery that
-- finished), which an UPDATE or DELETE cannot follow: SQLSTATE 40001. In READ COMMITTED the
-- caller runs the statement again, whose new snapshot finds the row where it went; a stricter
-- isolation level cannot, and the whole transaction must be retried.
CREATE FUNCTION webhooks._run_again_after_a_move() RETURNS void
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

-- A delivery starts a new round: pending and due now, no attempts counted, no lease, not
-- finished (replay, backfill and redeliver). Returns how many deliveries were restarted.
-- A delivery that a relay finishes while this waits for its row has moved to the finished
-- deliveries' partition (_run_again_after_a_move).
CREATE FUNCTION webhooks._restart_deliveries(delivery_ids bigint[]) RETURNS integer
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

-- Queue deliveries of logged events to one endpoint; existing ones start a new round. Callers
-- hold the endpoint's row lock (_lock_endpoint), so two replays cannot both insert a pair.
CREATE FUNCTION webhooks._queue_from_log(endpoint_id bigint, since timestamptz, until timestamptz,
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
-- What auto-disable counts: an endpoint's deliveries failed for good within its failure
-- window, since it was last resumed. Attempts that will be retried do not count, so a receiver
-- down for a minute during a burst is not switched off. endpoint_status shows the count and
-- record_attempts compares it with the threshold. No SET clause, so that the planner inlines
-- it into both; every name is schema-qualified instead.
CREATE FUNCTION webhooks.failed_deliveries_in_window(endpoint webhooks.endpoints) RETURNS bigint
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

------------------------------------------------------------------------------------------
-- Views for operators
------------------------------------------------------------------------------------------

CREATE VIEW webhooks.endpoint_list AS
SELECT e.id, e.name, e.description, e.url, e.events,
       ARRAY(SELECT s.event_type FROM webhooks.subscriptions s WHERE s.endpoint_id = e.id ORDER BY 1) AS event_types,
       e.status, e.disabled_reason, e.disabled_at, e.rate_limit, e.failure_window, e.failure_threshold,
       e.created_at, e.updated_at
  FROM webhooks.endpoints e;
COMMENT ON VIEW webhooks.endpoint_list IS 'Endpoints without their secrets.';

-- The 24-hour counts come from endpoint_activity's hourly rows: the current hour and the 23
-- before it. Everything here is an index lookup of a few rows per endpoint, however many
-- deliveries and attempts the endpoint has had.
CREATE VIEW webhooks.endpoint_status AS
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

-- A finished delivery may outlive its event (event_retention shorter than
-- delivery_retention): it is still listed, with its event's type and time NULL.
CREATE VIEW webhooks.delivery_log AS
SELECT d.id AS delivery_id, d.event_id, ev.event_type, ev.created_at AS event_created_at,
       e.id AS endpoint_id, e.name AS endpoint_name, d.status AS delivery_status,
       a.attempt_number, a.started_at, a.duration_ms, a.outcome, a.response_status,
       a.error, a.request_headers, a.response_body, a.relay_id, d.next_attempt_at
  FROM webhooks.deliveries d
  LEFT JOIN webhooks.events ev ON ev.id = d.event_id
  JOIN webhooks.endpoints e ON e.id = d.endpoint_id
  LEFT JOIN webhooks.attempts a ON a.delivery_id = d.id;
COMMENT ON VIEW webhooks.delivery_log IS 'Every delivery with its event, endpoint and attempts (request headers, response status, timing).';

------------------------------------------------------------------------------------------
-- Settings and catalog
------------------------------------------------------------------------------------------

CREATE FUNCTION webhooks.set_setting(name text, value text) RETURNS text
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

-- A retention (at least a minute) or the partition period (a minute to 31 days), as an
-- interval. Takes effect at the next webhooks.maintain().
CREATE FUNCTION webhooks._set_duration_setting(name text, value text) RETURNS text
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

CREATE FUNCTION webhooks.list_event_types()
RETURNS TABLE (name text, category text, description text, addon text, available boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT t.name, t.category, t.description, t.addon,
           t.addon IS NULL OR webhooks._setting_enabled(t.addon || '_addon')
      FROM webhooks.event_types t
     ORDER BY t.category = 'test', t.category, t.name
$$;
COMMENT ON FUNCTION webhooks.list_event_types() IS 'Every event type with its category, description, required add-on and whether it is available now.';

------------------------------------------------------------------------------------------
-- Endpoints
------------------------------------------------------------------------------------------

CREATE FUNCTION webhooks.create_endpoint(
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

-- Refuse a changes object that update_endpoint cannot apply: not a non-empty JSON object, or
-- a key that is not a changeable field.
CREATE FUNCTION webhooks._check_endpoint_changes(changes jsonb) RETURNS void
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

-- The endpoint with the changes applied, each new value checked; nothing is written.
CREATE FUNCTION webhooks._endpoint_with_changes(ep webhooks.endpoints, changes jsonb)
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

-- Returns the endpoint as webhooks.endpoint_list shows it: never the secret, which is shown
-- once, by create_endpoint and rotate_secret.
CREATE FUNCTION webhooks.update_endpoint(endpoint_id bigint, changes jsonb)
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

CREATE FUNCTION webhooks.pause_endpoint(endpoint_id bigint) RETURNS text
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

CREATE FUNCTION webhooks.resume_endpoint(endpoint_id bigint) RETURNS text
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

-- Used by the relay (410 Gone, too many failures) and available to admins.
CREATE FUNCTION webhooks.disable_endpoint(endpoint_id bigint, reason text) RETURNS text
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

CREATE FUNCTION webhooks.rotate_secret(endpoint_id bigint, new_secret text DEFAULT NULL) RETURNS text
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

CREATE FUNCTION webhooks.delete_endpoint(endpoint_id bigint) RETURNS void
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

CREATE FUNCTION webhooks.send_test_ping(endpoint_id bigint) RETURNS bigint
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

------------------------------------------------------------------------------------------
-- Events
------------------------------------------------------------------------------------------

-- Applications call this from their own triggers, so it is on their write path. Like the
-- tracking triggers it runs as its owner without a search_path clause, which would cost every call a
-- save and restore of the path. It sends no notification: relays notice the new deliveries by
-- polling webhooks.work_marker(). Every relation, operator and function is named with its
-- schema instead, so a caller's search_path (temporary look-alikes included) cannot redirect
-- it (tests/tests/ats_events.rs and the look-alike pg_test call it through look-alikes).
-- Only members of webhooks_emitter may call it: an event is signed with every subscribed
-- endpoint's secret, so emitting is a right the DBA grants. test.ping is the operator's
-- (send_test_ping), and an add-on's events exist only while the add-on is enabled.
CREATE FUNCTION webhooks.emit(event_type text, data jsonb) RETURNS bigint
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

CREATE FUNCTION webhooks.replay(endpoint_id bigint, since timestamptz, until timestamptz DEFAULT now(),
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

CREATE FUNCTION webhooks.redeliver(delivery_id bigint) RETURNS void
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
