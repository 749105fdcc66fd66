-- pg_webhooks: tracking application tables. webhooks.track() checks a table's columns and
-- attaches an AFTER INSERT OR UPDATE trigger, webhooks.track_changes(kind), that emits the documented events inside the writing transaction. The trigger
-- is native code (extension/src/tracking/): its rules and payloads are those of
-- docs/ats-events.md, and it writes the log without running SQL, because SQL costs more than
-- an application's write can spare (docs/benchmarks-history.md, "Tracking").

-- Native functions this file uses (extension/src/), described here.
COMMENT ON FUNCTION webhooks.track_changes() IS 'The tracking trigger webhooks.track attaches: track_changes(kind) fires the kind''s events, reading the people tables recorded in webhooks.tracked_tables, (docs/ats-events.md) and logs them in the writing transaction.';
COMMENT ON FUNCTION webhooks._check_trackable(oid, text, oid, oid) IS 'Used by track: refuses a table whose rule booleans, payload timestamps or people ids have types tracking cannot use.';
COMMENT ON FUNCTION webhooks._session_role() IS 'Internal: the role this session acts as (its user or SET ROLE), whatever security-definer functions stand between; whose rights track() checks.';

-- What each kind of table must have, and which events its changes fire.
CREATE TABLE webhooks.table_kinds (
    kind             text PRIMARY KEY,
    required_columns text[] NOT NULL,
    -- Payloads with candidate {id, name, email} and job_posting {id, title} read them from
    -- the tables given to track() (by default <schema>.candidates and <schema>.job_postings).
    needs_people     boolean NOT NULL,
    events           text[] NOT NULL
);
COMMENT ON TABLE webhooks.table_kinds IS 'What webhooks.track knows how to track: each kind of ATS table, the columns it needs, and the events it fires.';

INSERT INTO webhooks.table_kinds VALUES
('applications', '{id,candidate_id,job_posting_id,current_stage,submitted_at,rejected,withdrawn,offered}', true,
 '{application.submitted,application.rejected,application.advanced,application.withdrawn,application.offer_extended}'),
('offers', '{id,candidate_id,job_posting_id,status,details,extended_at,expires_at,accepted_at,declined_at}', true,
 '{offer.accepted,offer.declined,offer.candidate_accepted,offer.candidate_declined,offer.revised}'),
('interviews', '{id,candidate_id,job_posting_id,status,scheduled_at,duration_minutes}', true,
 '{interview.scheduled,interview.confirmed,interview.completed,interview.cancelled,interview.no_show}'),
('code_assignments', '{id,candidate_id,job_posting_id,repo_url,submitted_at,deadline_at,auto_submitted}', true,
 '{code_assignment.submitted,code_assignment.auto_submitted}'),
('reviews', '{id,candidate_id,job_posting_id,recommendation,reviewer,stage}', true,
 '{review.submitted}'),
('job_postings', '{id,title,status,location,department,employment_type,published_at,closed_at,public_url}', false,
 '{job_posting.published,job_posting.paused,job_posting.closed,job_posting.reopened}'),
('outreach_prospects', '{id,campaign_id,company_name,display_name,status}', false,
 '{outreach.prospect.drafted}'),
('outreach_messages', '{id,campaign_id,prospect_id,step_number,subject,status,sent_at,approved_at,retry_count,last_error_code}', false,
 '{outreach.message.approved,outreach.message.sent,outreach.message.bounced,outreach.message.failed}');

-- The columns candidate and job posting payloads read.
CREATE FUNCTION webhooks._people_columns(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE RETURN CASE kind WHEN 'candidates' THEN '{id,name,email}'::pg_catalog.text[]
                                        WHEN 'job_postings' THEN '{id,title}'::pg_catalog.text[] END;
COMMENT ON FUNCTION webhooks._people_columns(text) IS 'Columns read from the candidates and job_postings tables for payloads.';

CREATE TABLE webhooks.tracked_tables (
    table_name       regclass PRIMARY KEY,
    kind             text NOT NULL REFERENCES webhooks.table_kinds,
    candidates       regclass,
    job_postings     regclass,
    tracked_at       timestamptz NOT NULL DEFAULT now(),
    tracked_by       text NOT NULL DEFAULT session_user
);
COMMENT ON TABLE webhooks.tracked_tables IS 'Tables webhooks.track has attached the tracking trigger to, with their kind and people tables.';

-- Fail, listing every missing column, unless tbl has all of columns.
CREATE FUNCTION webhooks._require_columns(tbl regclass, role text, columns text[]) RETURNS void
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

-- Tracking a table sends its rows, and the people they name, to every subscribed endpoint, so
-- only the table's owner (or a member of the owning role) may track or untrack it, and only
-- with people tables that owner may read (_check_trackable). A temporary table is nobody's
-- hiring data and vanishes with its session: it is refused.
CREATE FUNCTION webhooks._check_may_track(table_name regclass) RETURNS void
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

CREATE FUNCTION webhooks.track(table_name regclass, kind text DEFAULT NULL,
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

CREATE FUNCTION webhooks.untrack(table_name regclass, if_tracked boolean DEFAULT false) RETURNS boolean
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

-- Track every table of the reference schema (sql/ats_schema.sql) found in schema_name.
CREATE FUNCTION webhooks.track_ats(schema_name text DEFAULT 'ats') RETURNS SETOF text
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
