-- pg_webhooks: tracking application tables. webhooks.track() checks a table's columns and
-- attaches an AFTER INSERT OR UPDATE trigger whose function is generated for that table (static
-- SQL, so its plans are cached) and emits the documented events inside the writing transaction.

-- What each kind of table must have, and which events its changes fire.
CREATE TABLE webhooks.table_kinds (
    kind             text PRIMARY KEY,
    required_columns text[] NOT NULL,
    -- Payloads with candidate {id, name, email} and job_posting {id, title} read them from
    -- the tables given to track() (by default <schema>.candidates and <schema>.job_postings).
    needs_people     boolean NOT NULL,
    events           text[] NOT NULL
);

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
CREATE FUNCTION webhooks.people_columns(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE RETURN CASE kind WHEN 'candidates' THEN '{id,name,email}'::text[]
                                        WHEN 'job_postings' THEN '{id,title}'::text[] END;

CREATE TABLE webhooks.tracked_tables (
    table_name       regclass PRIMARY KEY,
    kind             text NOT NULL REFERENCES webhooks.table_kinds,
    candidates       regclass,
    job_postings     regclass,
    trigger_function text NOT NULL,
    tracked_at       timestamptz NOT NULL DEFAULT now(),
    tracked_by       text NOT NULL DEFAULT session_user
);

-- Fail, listing every missing column, unless tbl has all of columns.
CREATE FUNCTION webhooks.require_columns(tbl regclass, role text, columns text[]) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks AS $$
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

-- The body of a table's trigger function: which changes fire which events (in the order of
-- the event reference), then one payload for all of them.
--
-- The function runs as its owner (SECURITY DEFINER) but without SET search_path: on
-- PostgreSQL 15 that SET costs a tracked write about 12% of its database CPU
-- (docs/benchmarks.md). So nothing in the body may depend on the writer's
-- search_path, which the writer controls: every function, operator and type is named with its
-- schema (OPERATOR(pg_catalog.=) rather than =; IS DISTINCT FROM and IN would look their
-- operators up on the path). tests/tests/ats_events.rs runs every event with a writer whose
-- search_path leads to look-alike operators and functions that fail when run as the owner.
CREATE FUNCTION webhooks.tracker_body(kind text, people regclass, postings regclass) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, webhooks AS $$
DECLARE
    person  text := format('(SELECT pg_catalog.jsonb_build_object(''id'', c.id, ''name'', c.name, ''email'', c.email) FROM %s c WHERE c.id OPERATOR(pg_catalog.=) NEW.candidate_id)', people);
    posting text := format('(SELECT pg_catalog.jsonb_build_object(''id'', j.id, ''title'', j.title) FROM %s j WHERE j.id OPERATOR(pg_catalog.=) NEW.job_posting_id)', postings);
    ts      text := 'webhooks.iso8601(NEW.%s)';
    -- OLD.col IS DISTINCT FROM NEW.col (on INSERT, OLD is all NULL).
    changed text := 'NOT coalesce(OLD.%1$s OPERATOR(pg_catalog.=) NEW.%1$s, OLD.%1$s IS NULL AND NEW.%1$s IS NULL)';
    -- NEW.status IN (...), for a status of any type that casts to text (text, varchar, enums).
    status_in text := 'NEW.status::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%L::pg_catalog.text[])';
    -- Fire an event type named by a literal, or by an expression.
    fire_literal text := 'fire := pg_catalog.array_append(fire, %L);';
    append  text := 'fire := pg_catalog.array_append(fire, %s);';
    rules   text;
    payload text;
BEGIN
    CASE kind
    WHEN 'applications' THEN
        rules := format($r$
        IF OLD.submitted_at IS NULL AND NEW.submitted_at IS NOT NULL THEN %s END IF;
        IF NOT coalesce(OLD.rejected, false) AND NEW.rejected THEN %s END IF;
        IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND %s THEN %s END IF;
        IF NOT coalesce(OLD.withdrawn, false) AND NEW.withdrawn THEN %s END IF;
        IF NOT coalesce(OLD.offered, false) AND NEW.offered THEN %s END IF;$r$,
            format(fire_literal, 'application.submitted'), format(fire_literal, 'application.rejected'),
            format(changed, 'current_stage'), format(fire_literal, 'application.advanced'),
            format(fire_literal, 'application.withdrawn'), format(fire_literal, 'application.offer_extended'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''candidate'', %s, ''job_posting'', %s, ''current_stage'', NEW.current_stage, ''submitted_at'', %s, ''rejected'', NEW.rejected, ''withdrawn'', NEW.withdrawn, ''offered'', NEW.offered)',
                          person, posting, format(ts, 'submitted_at'));
    WHEN 'offers' THEN
        rules := format($r$
        IF %s AND %s THEN
            %s
        END IF;
        IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND (%s OR %s) THEN %s END IF;$r$,
            format(changed, 'status'), format(status_in, '{accepted,declined,candidate_accepted,candidate_declined}'),
            format(append, 'pg_catalog.concat(''offer.'', NEW.status)'),
            format(changed, 'details'), format(changed, 'expires_at'), format(fire_literal, 'offer.revised'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''status'', NEW.status, ''details'', NEW.details, ''extended_at'', %s, ''expires_at'', %s, ''accepted_at'', %s, ''declined_at'', %s, ''candidate'', %s, ''job_posting'', %s)',
                          format(ts, 'extended_at'), format(ts, 'expires_at'), format(ts, 'accepted_at'), format(ts, 'declined_at'), person, posting);
    WHEN 'interviews' THEN
        rules := format($r$
        IF %s AND %s THEN
            %s
        ELSIF NEW.status OPERATOR(pg_catalog.=) OLD.status AND %s AND %s THEN
            %s  -- moved to another time
        END IF;$r$,
            format(changed, 'status'), format(status_in, '{scheduled,confirmed,completed,cancelled,no_show}'),
            format(append, 'pg_catalog.concat(''interview.'', NEW.status)'),
            format(status_in, '{scheduled,confirmed}'), format(changed, 'scheduled_at'),
            format(fire_literal, 'interview.scheduled'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''status'', NEW.status, ''scheduled_at'', %s, ''duration_minutes'', NEW.duration_minutes, ''candidate'', %s, ''job_posting'', %s)',
                          format(ts, 'scheduled_at'), person, posting);
    WHEN 'code_assignments' THEN
        rules := format($r$
        IF OLD.submitted_at IS NULL AND NEW.submitted_at IS NOT NULL THEN
            %s
        END IF;$r$,
            format(append, 'CASE WHEN NEW.auto_submitted THEN ''code_assignment.auto_submitted'' ELSE ''code_assignment.submitted'' END'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''repo_url'', NEW.repo_url, ''submitted_at'', %s, ''deadline_at'', %s, ''candidate'', %s, ''job_posting'', %s)',
                          format(ts, 'submitted_at'), format(ts, 'deadline_at'), person, posting);
    WHEN 'reviews' THEN
        rules := format($r$
        IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN %s END IF;$r$, format(fire_literal, 'review.submitted'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''recommendation'', NEW.recommendation, ''reviewer'', NEW.reviewer, ''candidate'', %s, ''job_posting'', %s, ''stage'', NEW.stage)',
                          person, posting);
    WHEN 'job_postings' THEN
        rules := format($r$
        IF %s THEN
            IF %s THEN
                %s
            ELSIF %s THEN
                %s
            ELSIF %s THEN
                %s
            END IF;
        END IF;$r$,
            format(changed, 'status'),
            format(status_in, '{published}'),
            format(append, format('CASE WHEN OLD.status::pg_catalog.text OPERATOR(pg_catalog.=) %L THEN %L ELSE %L END', 'closed', 'job_posting.reopened', 'job_posting.published')),
            format(status_in, '{paused}'), format(fire_literal, 'job_posting.paused'),
            format(status_in, '{closed}'), format(fire_literal, 'job_posting.closed'));
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''title'', NEW.title, ''status'', NEW.status, ''location'', NEW.location, ''department'', NEW.department, ''employment_type'', NEW.employment_type, ''published_at'', %s, ''closed_at'', %s, ''public_url'', NEW.public_url)',
                          format(ts, 'published_at'), format(ts, 'closed_at'));
    WHEN 'outreach_prospects' THEN
        rules := format($r$
        IF %s AND %s THEN %s END IF;$r$,
            format(changed, 'status'), format(status_in, '{drafted}'), format(fire_literal, 'outreach.prospect.drafted'));
        -- The prospect's email is never included (encrypted at rest in Kit).
        payload := 'pg_catalog.jsonb_build_object(''id'', NEW.id, ''campaign_id'', NEW.campaign_id, ''company_name'', NEW.company_name, ''display_name'', NEW.display_name, ''status'', NEW.status)';
    WHEN 'outreach_messages' THEN
        rules := format($r$
        IF %s AND %s THEN
            %s
        END IF;$r$,
            format(changed, 'status'), format(status_in, '{approved,sent,bounced,failed}'),
            format(append, 'pg_catalog.concat(''outreach.message.'', NEW.status)'));
        -- The message body is never included (encrypted at rest in Kit).
        payload := format('pg_catalog.jsonb_build_object(''id'', NEW.id, ''campaign_id'', NEW.campaign_id, ''prospect_id'', NEW.prospect_id, ''step_number'', NEW.step_number, ''subject'', NEW.subject, ''status'', NEW.status, ''sent_at'', %s, ''approved_at'', %s, ''retry_count'', NEW.retry_count, ''last_error_code'', NEW.last_error_code)',
                          format(ts, 'sent_at'), format(ts, 'approved_at'));
    END CASE;
    -- The event is logged in the writer's transaction; its deliveries are made by fan_out()
    -- moments after commit, from the queue row written here. Subscriber lookups and a delivery
    -- row per subscriber would double what tracking costs the write (docs/benchmarks.md).
    -- The payload is built inside the first event's INSERT rather than by a statement of its
    -- own: every statement costs a tracked transaction its own snapshot, plan check, locks and
    -- executor start. Further events of the same change reuse it.
    -- On INSERT every OLD column is NULL, so an INSERT gets the rules with OLD folded away
    -- (OLD.col becomes NULL, which the plan of each condition then simplifies, and an UPDATE
    -- test becomes false). PL/pgSQL then does not read OLD at all: about 15,000 CPU
    -- instructions less for every tracked insert (docs/benchmarks.md).
    RETURN format($f$
DECLARE
    fire       pg_catalog.text[] := '{}';
    payload    pg_catalog.jsonb;
    fired_type pg_catalog.text;
    logged_id  bigint;
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN%s
    ELSE%s
    END IF;
    IF pg_catalog.cardinality(fire) OPERATOR(pg_catalog.>) 0 THEN
        FOREACH fired_type IN ARRAY fire LOOP
            IF payload IS NULL THEN
                INSERT INTO webhooks.events (event_type, data) VALUES (fired_type, %s)
                RETURNING id, data INTO logged_id, payload;
            ELSE
                INSERT INTO webhooks.events (event_type, data) VALUES (fired_type, payload)
                RETURNING id INTO logged_id;
            END IF;
            INSERT INTO webhooks.fanout_queue (event_id) VALUES (logged_id);
        END LOOP;
        -- webhooks.wake_relay(), inlined.
        IF EXISTS (SELECT FROM webhooks.sleeping_relays r
                    WHERE r.since OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '5 minutes')) THEN
            PERFORM pg_catalog.pg_notify('webhooks_work', '');
        END IF;
    END IF;
    RETURN NULL;
END
$f$, replace(regexp_replace(rules, 'OLD\.[a-z_]+', 'NULL', 'g'), 'TG_OP OPERATOR(pg_catalog.=) ''UPDATE''', 'false'),
      rules, payload);
END
$$;

CREATE FUNCTION webhooks.track(table_name regclass, kind text DEFAULT NULL,
                               candidates regclass DEFAULT NULL,
                               job_postings regclass DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks AS $$
DECLARE
    schema_name text;
    relname     text;
    spec        webhooks.table_kinds;
    fn          text;
BEGIN
    SELECT n.nspname, c.relname INTO schema_name, relname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_name AND c.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a table', table_name
            USING ERRCODE = 'wrong_object_type', HINT = 'Track a plain or partitioned table.';
    END IF;
    SELECT * INTO spec FROM webhooks.table_kinds k WHERE k.kind = coalesce(track.kind, relname);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot tell what kind of table % is', table_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Name the kind: webhooks.track(%L, kind => ...) with one of %s.', table_name,
                                (SELECT string_agg(k.kind, ', ' ORDER BY k.kind) FROM webhooks.table_kinds k));
    END IF;
    PERFORM webhooks.require_columns(table_name, spec.kind, spec.required_columns);
    IF spec.needs_people THEN
        candidates := coalesce(candidates, to_regclass(format('%I.candidates', schema_name)));
        job_postings := coalesce(job_postings, to_regclass(format('%I.job_postings', schema_name)));
        IF candidates IS NULL OR job_postings IS NULL THEN
            RAISE EXCEPTION '% payloads need a candidates and a job_postings table; % has none', spec.kind, schema_name
                USING ERRCODE = 'undefined_table',
                      HINT = 'Pass them: webhooks.track(tbl, candidates => ''my.people'', job_postings => ''my.jobs'').';
        END IF;
        PERFORM webhooks.require_columns(candidates, 'candidates', webhooks.people_columns('candidates'));
        PERFORM webhooks.require_columns(job_postings, 'job_postings', webhooks.people_columns('job_postings'));
    ELSE
        candidates := NULL;
        job_postings := NULL;
    END IF;

    PERFORM webhooks.untrack(table_name, if_tracked => true);
    fn := format('webhooks.%I', 'on_' || spec.kind || '_' || table_name::oid);
    -- SECURITY DEFINER: a writer with no rights in the webhooks schema still emits. No SET
    -- search_path: see tracker_body.
    EXECUTE format('CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS %L',
                   fn, webhooks.tracker_body(spec.kind, candidates, job_postings));
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', fn,
                   format('Emits %s events for %s (generated by webhooks.track).', spec.kind, table_name));
    EXECUTE format('CREATE TRIGGER webhooks_events AFTER INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s()',
                   table_name, fn);
    INSERT INTO webhooks.tracked_tables (table_name, kind, candidates, job_postings, trigger_function)
    VALUES (track.table_name, spec.kind, candidates, job_postings, fn);
    RETURN format('%s tracked as %s: %s', table_name, spec.kind, array_to_string(spec.events, ', '));
END
$$;

CREATE FUNCTION webhooks.untrack(table_name regclass, if_tracked boolean DEFAULT false) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks AS $$
DECLARE
    tracked webhooks.tracked_tables;
BEGIN
    DELETE FROM webhooks.tracked_tables t WHERE t.table_name = untrack.table_name RETURNING * INTO tracked;
    IF NOT FOUND THEN
        IF if_tracked THEN
            RETURN false;
        END IF;
        RAISE EXCEPTION 'table % is not tracked', table_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM webhooks.tracked_tables lists the tracked tables.';
    END IF;
    EXECUTE format('DROP TRIGGER IF EXISTS webhooks_events ON %s', table_name);
    EXECUTE format('DROP FUNCTION IF EXISTS %s()', tracked.trigger_function);
    RETURN true;
END
$$;

-- Track every table of the reference schema (sql/ats_schema.sql) found in schema_name.
CREATE FUNCTION webhooks.track_ats(schema_name text DEFAULT 'ats') RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, webhooks AS $$
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
