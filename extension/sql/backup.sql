-- pg_webhooks: what pg_dump carries, and coming back from a restore (docs/reliability.md,
-- "Backups").
--
-- pg_dump leaves an extension's tables out of a dump unless they are marked as configuration
-- tables. These hold the user's data: settings, endpoints with their secrets and
-- subscriptions and subscription periods, the event log and its periods, deliveries, attempts,
-- endpoint activity and history, the tracked tables, and the fan-out position. Each is marked,
-- with its identity sequence (PostgreSQL's rule: marking a table does not carry its sequence's
-- state). Of the partitioned tables, the partitions CREATE EXTENSION makes are marked (the
-- rows are in the partitions); those webhooks.maintain() made later are not the extension's,
-- so pg_dump carries them whole, rows and all.
-- Left out on purpose: the event catalog and the table kinds (the extension's own, which
-- CREATE EXTENSION makes again) and fanout_marks (transaction ids of the dumped cluster, of no
-- use elsewhere).
-- One statement each: every call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('webhooks.settings', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.subscription_periods', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_0', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_kept', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.event_log_periods', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_pending', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_finished_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.deliveries_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempts_default', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.attempts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoint_activity', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoint_history', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.endpoint_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.tracked_tables', '');
SELECT pg_catalog.pg_extension_config_dump('webhooks.fanout_position', '');

-- A restore loads the dumped rows into tables CREATE EXTENSION has just filled with its own:
-- the settings, the event log's first period and the fan-out position. The dumped row replaces the fresh one.
CREATE FUNCTION webhooks._restore_setting() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.settings s SET value = NEW.value, updated_at = NEW.updated_at
     WHERE s.name = NEW.name;
    RETURN CASE WHEN FOUND THEN NULL ELSE NEW END;
END
$$;
COMMENT ON FUNCTION webhooks._restore_setting() IS 'Trigger: a restored settings row replaces the one CREATE EXTENSION made.';
CREATE TRIGGER restore_setting BEFORE INSERT ON webhooks.settings
    FOR EACH ROW EXECUTE FUNCTION webhooks._restore_setting();

-- The event log's first period, which CREATE EXTENSION has just made, takes the dumped
-- opening time.
CREATE FUNCTION webhooks._restore_event_log_period() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.event_log_periods p SET opened_at = NEW.opened_at WHERE p.first_id = NEW.first_id;
    RETURN CASE WHEN FOUND THEN NULL ELSE NEW END;
END
$$;
COMMENT ON FUNCTION webhooks._restore_event_log_period() IS 'Trigger: a restored event log period replaces the one CREATE EXTENSION made.';
CREATE TRIGGER restore_event_log_period BEFORE INSERT ON webhooks.event_log_periods
    FOR EACH ROW EXECUTE FUNCTION webhooks._restore_event_log_period();

-- The dumped position's snapshots name the dumped cluster's transactions; here they mean
-- nothing, so the row is kept as it was and marked, and fan_out() waits for
-- resume_after_restore().
CREATE FUNCTION webhooks._restore_fanout_position() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, webhooks, pg_temp AS $$
BEGIN
    UPDATE webhooks.fanout_position
       SET done = NEW.done, done_by = NEW.done_by, floor = NEW.floor, batch = NEW.batch,
           batch_by = NEW.batch_by, batch_reached = NEW.batch_reached, restored = true;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION webhooks._restore_fanout_position() IS 'Trigger: a restored fan-out position replaces the fresh one and is marked restored, so that fan_out waits for resume_after_restore.';
CREATE TRIGGER restore_fanout_position BEFORE INSERT ON webhooks.fanout_position
    FOR EACH ROW EXECUTE FUNCTION webhooks._restore_fanout_position();

-- After a restore: the tracked events the dumped cluster had not fanned out get their
-- deliveries (all of them committed there, or they would not be in the dump), and fan-out
-- starts over at the end of the log with this cluster's transactions. Run it once the restore
-- is complete and before applications write again: an event logged in between would be read
-- as one of the dumped cluster's.
CREATE FUNCTION webhooks.resume_after_restore() RETURNS integer
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
