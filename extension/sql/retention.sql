-- pg_webhooks: retention. The event log, finished deliveries and attempts are partitioned by
-- period (the partition_period setting, a day by default); webhooks.maintain() creates the
-- partitions ahead of time and drops whole partitions once they are older than their
-- retention setting. Nothing is deleted row by row but strays (rows that landed in a default
-- partition, a few audit lines, the hourly activity counts), and nothing pending is dropped:
-- pending deliveries live in their own partition, and the events they (or fan-out) still need
-- are carried over into webhooks.events_kept before their period goes.
--
-- Who calls maintain(): every webhook-relay, on a timer (--maintenance-interval, a minute by
-- default), and/or pg_cron (docs/sql-api.md, "Retention"). It is idempotent, and one call runs
-- at a time: a concurrent call returns at once.

-- A retention or period setting, as an interval.
CREATE FUNCTION webhooks._setting_interval(setting text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT s.value::interval FROM webhooks.settings s WHERE s.name = setting
$$;
COMMENT ON FUNCTION webhooks._setting_interval(text) IS 'Internal: a retention or period setting of webhooks.settings, as an interval.';

-- The start of the period that holds `t`: periods are aligned to the Unix epoch (UTC
-- midnights for a day).
CREATE FUNCTION webhooks._period_start(t timestamptz, period interval) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT to_timestamp(floor(extract(epoch FROM t) / extract(epoch FROM period)) * extract(epoch FROM period))
$$;
COMMENT ON FUNCTION webhooks._period_start(timestamptz, interval) IS 'Internal: the start of the period of the given length that holds t (periods aligned to the Unix epoch).';

-- The time-range partitions of a table, with their bounds (read from the catalog, so that
-- nothing else has to be kept in step with it).
CREATE FUNCTION webhooks._time_partitions(parent regclass)
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

-- Drop a partition, whether maintain() made it or CREATE EXTENSION did (its member then).
CREATE FUNCTION webhooks._drop_partition(part regclass) RETURNS text
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

-- The start of the oldest partition of a time-partitioned table that holds anything (on
-- disk): the oldest row it can have, without reading the rows.
CREATE FUNCTION webhooks._oldest_filled_partition(parent regclass) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT min(p.lower_bound) FROM webhooks._time_partitions(parent) p
     WHERE pg_relation_size(p.partition) > 0
$$;
COMMENT ON FUNCTION webhooks._oldest_filled_partition(regclass) IS 'Internal: the start of the oldest partition of a time-partitioned table that holds anything.';

-- Add the partition [lower_bound, upper_bound) of a time-partitioned table, with the indexes
-- and constraints of its default partition. Rows the default partition took for that range
-- meanwhile move into it first (ATTACH would refuse them).
CREATE FUNCTION webhooks._add_time_partition(parent regclass, default_partition regclass, key text,
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

-- A time-partitioned table's partitions from the current period to two periods ahead, and
-- none older than its retention. Returns what it did.
CREATE FUNCTION webhooks._maintain_time_partitions(parent regclass, default_partition regclass, key text,
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

-- The event log's partition for ids from first_id (made if missing), with the indexes of
-- events_kept and its BRIN range desummarized (see webhooks.events). Made, then attached:
-- attaching stops no writer, and readers only while events_kept is checked for rows of the
-- new range (CREATE TABLE ... PARTITION OF would stop every writer of the log meanwhile).
CREATE FUNCTION webhooks._event_log_partition(first_id bigint) RETURNS text
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

-- The event log: open a new period once the current one is partition_period old, and drop the
-- periods older than event_retention, carrying over the events pending deliveries or fan-out
-- still need.
-- The sequence moves on its own (setval is not undone when the transaction rolls back), so it
-- only ever moves into a partition an earlier transaction made and committed: the one ahead,
-- made by the previous call. Whatever happens to this transaction, every id it can hand out has
-- its partition. The current period is the one the sequence is in.
CREATE FUNCTION webhooks._maintain_event_log(retention interval, period interval)
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

-- Partitions made ahead, whole partitions dropped once past their retention, strays deleted.
-- Dropping a partition takes its table's lock for a moment; rather than queue the
-- application's writes behind a long transaction, the call gives up after lock_timeout (a
-- second, unless the caller set one for its transaction) and the next call tries again.
CREATE FUNCTION webhooks.maintain() RETURNS TABLE (action text, object text)
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

-- The oldest time from which the event log still holds every event: replay and backfill reach
-- no further back.
-- -infinity while the log's first period is kept: nothing has been dropped.
CREATE FUNCTION webhooks.events_kept_since() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, webhooks, pg_temp AS $$
    SELECT CASE WHEN min(p.first_id) = 0 THEN '-infinity' ELSE min(p.opened_at) END
      FROM webhooks.event_log_periods p
$$;
COMMENT ON FUNCTION webhooks.events_kept_since() IS 'The oldest time from which the event log holds every event (replay and backfill reach no further back).';

-- What each table holds: size on disk (with indexes and TOAST), estimated rows, oldest row,
-- and how long it is kept. For tables partitioned by time, the oldest row is the start of the
-- oldest partition that holds any (reading the rows would mean reading the partition).
CREATE VIEW webhooks.storage AS
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
