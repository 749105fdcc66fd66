//! webhooks.track(): what it checks, what it attaches, and the transaction rules of the events
//! its triggers emit.

use e2e::ats::PEOPLE;
use e2e::cluster::Cluster;
use e2e::texts;

async fn event_types(db: &tokio_postgres::Client) -> Vec<String> {
    texts(db, "SELECT event_type FROM webhooks.events ORDER BY id").await
}

/// A database with the ATS schema, its people, and one endpoint taking every application event.
async fn database_with_an_endpoint() -> (Cluster, tokio_postgres::Client) {
    let (cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    db.batch_execute(
        "SELECT webhooks.create_endpoint('https://hooks.test/a', ARRAY['application.*'])",
    )
    .await
    .unwrap();
    (cluster, db)
}

#[tokio::test]
async fn several_changes_in_one_update_emit_several_events_in_reference_order() {
    let (_cluster, db) = database_with_an_endpoint().await;
    db.batch_execute(
        "INSERT INTO ats.applications (id, candidate_id, job_posting_id) VALUES (1, 7, 3);
         UPDATE ats.applications
            SET submitted_at = now(), offered = true, current_stage = 'Offer', rejected = true, withdrawn = true;",
    )
    .await
    .unwrap();
    assert_eq!(
        event_types(&db).await,
        [
            "application.submitted",
            "application.rejected",
            "application.advanced",
            "application.withdrawn",
            "application.offer_extended"
        ]
    );
    // One payload for all of them (the row after the change), and, once fanned out, a
    // delivery for each.
    db.batch_execute("SELECT webhooks.fan_out()").await.unwrap();
    let row = db
        .query_one(
            "SELECT count(DISTINCT ev.data), count(d.id), min(ev.data ->> 'current_stage')
               FROM webhooks.events ev LEFT JOIN webhooks.deliveries d ON d.event_id = ev.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        1,
        "the events of one change share one payload"
    );
    assert_eq!(
        row.get::<_, i64>(1),
        5,
        "each event is queued for the subscriber"
    );
    assert_eq!(row.get::<_, String>(2), "Offer");
}

/// The relation locks this session holds in the ats and webhooks schemas, as "name mode".
async fn relation_locks(db: &tokio_postgres::Client) -> Vec<String> {
    texts(
        db,
        "SELECT c.relname::text || ' ' || l.mode
           FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
          WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
            AND c.relnamespace IN ('ats'::regnamespace, 'webhooks'::regnamespace)
          ORDER BY 1",
    )
    .await
}

#[tokio::test]
async fn a_tracked_write_locks_only_the_logs_partition_and_reads_people_under_locks_it_holds() {
    let (_cluster, db) = database_with_an_endpoint().await;
    // The session's first tracked write finds the log's current partition.
    let id: i64 = db
        .query_one(
            "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now()) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let log = [
        "events_0 RowExclusiveLock",
        "events_0_created_at RowExclusiveLock",
        "events_0_pkey RowExclusiveLock",
        "events_id_seq RowExclusiveLock",
    ];
    // An insert: the foreign key checks have locked the people rows' tables in ROW SHARE
    // mode, and the payload reads them under that lock, taking no second one. An update of
    // the stage checks no foreign key: the payload locks what it reads.
    let writes = [
        (
            "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now())".to_string(),
            ["candidates RowShareLock", "job_postings RowShareLock"],
        ),
        (
            format!("UPDATE ats.applications SET current_stage = 'Interview' WHERE id = {id}"),
            ["candidates AccessShareLock", "job_postings AccessShareLock"],
        ),
    ];
    for (write, people) in writes {
        db.batch_execute(&format!("BEGIN; {write}")).await.unwrap();
        let locks = relation_locks(&db).await;
        db.batch_execute("COMMIT").await.unwrap();
        let of = |names: &[&str]| -> Vec<String> {
            locks
                .iter()
                .filter(|l| names.contains(&l.split(' ').next().unwrap()))
                .cloned()
                .collect()
        };
        let log_tables = [
            "events",
            "events_0",
            "events_0_created_at",
            "events_0_pkey",
            "events_id_seq",
        ];
        assert_eq!(of(&log_tables), log, "{write}: {locks:?}");
        assert_eq!(
            of(&["candidates", "job_postings"]),
            people,
            "{write}: {locks:?}"
        );
    }
    assert_eq!(
        event_types(&db).await,
        [
            "application.submitted",
            "application.submitted",
            "application.advanced"
        ]
    );
}

#[tokio::test]
async fn a_rolled_back_write_emits_nothing_and_an_unprivileged_writer_still_emits() {
    let (cluster, db) = database_with_an_endpoint().await;
    db.batch_execute(
        "BEGIN;
         INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now());
         ROLLBACK;",
    )
    .await
    .unwrap();
    assert!(event_types(&db).await.is_empty());

    // An application role with no rights in the webhooks schema at all, not even emit.
    db.batch_execute(
        "REVOKE EXECUTE ON FUNCTION webhooks.emit(text, jsonb) FROM PUBLIC;
         REVOKE USAGE ON SCHEMA webhooks FROM PUBLIC;
         CREATE ROLE ats_app LOGIN;
         GRANT USAGE ON SCHEMA ats TO ats_app;
         GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA ats TO ats_app;",
    )
    .await
    .unwrap();
    let app = cluster.connect_as("app", "ats_app").await.unwrap();
    let refused = app
        .batch_execute("SELECT webhooks.emit('application.submitted', '{}')")
        .await;
    assert!(refused.is_err(), "the role really has no webhooks rights");
    app.batch_execute(
        "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now())",
    )
    .await
    .unwrap();
    assert_eq!(event_types(&db).await, ["application.submitted"]);
    let queued: i32 = db
        .query_one("SELECT webhooks.fan_out()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn tracking_a_table_without_the_needed_columns_names_every_missing_one() {
    let (_cluster, db) = Cluster::with_app_database().await.unwrap();
    db.batch_execute(
        "CREATE TABLE public.people (id int PRIMARY KEY, name text, email text);
         CREATE TABLE public.jobs (id int PRIMARY KEY, title text);
         CREATE TABLE public.apps (id int PRIMARY KEY, candidate_id int, job_posting_id int, current_stage text);",
    )
    .await
    .unwrap();
    let error = db
        .batch_execute("SELECT webhooks.track('public.apps', kind => 'applications', candidates => 'public.people', job_postings => 'public.jobs')")
        .await
        .unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert_eq!(
        db_error.message(),
        "table public.apps cannot be used as applications: missing column(s) submitted_at, rejected, withdrawn, offered"
    );
    assert!(db_error
        .hint()
        .unwrap()
        .contains("current_stage, submitted_at"));

    let unknown = db
        .batch_execute("SELECT webhooks.track('public.jobs')")
        .await
        .unwrap_err();
    assert!(unknown
        .as_db_error()
        .unwrap()
        .message()
        .contains("cannot tell what kind of table"));
}

#[tokio::test]
async fn a_users_own_tables_can_be_tracked_and_untracked() {
    let (_cluster, db) = Cluster::with_app_database().await.unwrap();
    db.batch_execute(
        "CREATE SCHEMA hr;
         CREATE TABLE hr.people (id int PRIMARY KEY, name text, email text, phone text);
         CREATE TABLE hr.jobs (id int PRIMARY KEY, title text);
         CREATE TABLE hr.apps (id int PRIMARY KEY, candidate_id int, job_posting_id int, current_stage text,
                               submitted_at timestamptz, rejected bool DEFAULT false, withdrawn bool DEFAULT false,
                               offered bool DEFAULT false, notes text);
         INSERT INTO hr.people VALUES (1, 'Ann Lee', 'ann@example.com', '555');
         INSERT INTO hr.jobs VALUES (2, 'Data Engineer');
         SELECT webhooks.track('hr.apps', kind => 'applications', candidates => 'hr.people', job_postings => 'hr.jobs');
         INSERT INTO hr.apps (id, candidate_id, job_posting_id, current_stage, submitted_at)
         VALUES (5, 1, 2, 'Applied', '2025-03-01T12:00:00Z');",
    )
    .await
    .unwrap();
    let data: String = db
        .query_one("SELECT data::text FROM webhooks.events", &[])
        .await
        .unwrap()
        .get(0);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data["candidate"],
        serde_json::json!({"id": 1, "name": "Ann Lee", "email": "ann@example.com"})
    );
    assert_eq!(
        data["job_posting"],
        serde_json::json!({"id": 2, "title": "Data Engineer"})
    );
    assert!(data.get("notes").is_none());

    db.batch_execute(
        "SELECT webhooks.untrack('hr.apps');
         UPDATE hr.apps SET rejected = true;",
    )
    .await
    .unwrap();
    let (events, triggers, tracked): (i64, i64, i64) = {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM webhooks.events),
                        (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'hr.apps'::regclass),
                        (SELECT count(*) FROM webhooks.tracked_tables)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((events, triggers, tracked), (1, 0, 0));
}

#[tokio::test]
async fn a_write_whose_payload_would_exceed_256_kib_is_refused_and_leaves_nothing() {
    let (_cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    let error = db
        .batch_execute(
            "INSERT INTO ats.reviews (candidate_id, job_posting_id, recommendation, reviewer, stage)
             VALUES (7, 3, repeat('very long ', 30000), 'Alex Johnson', 'Technical Interview')",
        )
        .await
        .unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert_eq!(
        db_error.code(),
        &tokio_postgres::error::SqlState::CHECK_VIOLATION
    );
    assert!(
        db_error
            .message()
            .contains("\"event_data_at_most_256_kib\""),
        "{}",
        db_error.message()
    );
    assert!(
        db_error
            .detail()
            .unwrap()
            .contains("review.submitted payload"),
        "{:?}",
        db_error.detail()
    );
    assert!(db_error.hint().is_some());
    let reviews: i64 = db
        .query_one("SELECT count(*) FROM ats.reviews", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reviews, 0, "the write and its event fail together");
    assert!(event_types(&db).await.is_empty());
}

/// The candidate name in the payload of a new application for candidate `id`, written on `db`
/// (one backend, so one set of remembered row locations throughout the test).
async fn candidate_named_by_a_new_application(db: &tokio_postgres::Client, id: i64) -> String {
    db.execute(
        "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
              VALUES ($1, 3, now())",
        &[&id],
    )
    .await
    .unwrap();
    db.query_one(
        "SELECT data -> 'candidate' ->> 'name' FROM webhooks.events ORDER BY id DESC LIMIT 1",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Run each statement in its own transaction (VACUUM cannot share one).
async fn each(db: &tokio_postgres::Client, statements: &[&str]) {
    for statement in statements {
        db.batch_execute(statement).await.unwrap();
    }
}

async fn block_and_slot(db: &tokio_postgres::Client, id: i64) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT (ctid::text::point)[0]::bigint, (ctid::text::point)[1]::bigint
               FROM ats.candidates WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn payloads_name_people_as_they_are_now_wherever_their_rows_have_moved() {
    let (_cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    db.batch_execute(
        "INSERT INTO ats.candidates (id, name, email)
              SELECT g, 'Filler', 'f@example.com' FROM generate_series(1000, 3999) g;
         INSERT INTO ats.candidates (id, name, email) VALUES (5000, 'Ada', 'ada@example.com');",
    )
    .await
    .unwrap();
    let (ada_block, _) = block_and_slot(&db, 5000).await;
    assert_eq!(candidate_named_by_a_new_application(&db, 5000).await, "Ada");

    // Renamed in place (a HOT update), renamed again inside a transaction, which then rolls
    // back: each payload names the version the writer sees.
    for (statement, expected) in [
        (
            "UPDATE ats.candidates SET name = 'Ada Two' WHERE id = 5000",
            "Ada Two",
        ),
        (
            "BEGIN; UPDATE ats.candidates SET name = 'Ada Three' WHERE id = 5000",
            "Ada Three",
        ),
        ("ROLLBACK", "Ada Two"),
    ] {
        db.batch_execute(statement).await.unwrap();
        let named = candidate_named_by_a_new_application(&db, 5000).await;
        assert_eq!(named, expected, "after {statement}");
    }

    // Deleted, the table truncated by VACUUM below the page it was on, and inserted again.
    each(
        &db,
        &[
            "DELETE FROM ats.applications WHERE candidate_id >= 1000",
            "DELETE FROM ats.candidates WHERE id >= 1000",
            "VACUUM ats.candidates",
            "INSERT INTO ats.candidates (id, name, email) VALUES (5000, 'Ada Four', 'ada@example.com')",
        ],
    )
    .await;
    let blocks: i64 = db
        .query_one("SELECT pg_relation_size('ats.candidates') / 8192", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        blocks <= ada_block,
        "VACUUM left {blocks} pages; Ada was on page {ada_block}"
    );
    assert_eq!(
        candidate_named_by_a_new_application(&db, 5000).await,
        "Ada Four"
    );

    // Deleted, and its line pointer reused by another candidate before it comes back.
    db.batch_execute(
        "INSERT INTO ats.candidates (id, name, email) VALUES (6000, 'Bo', 'bo@example.com')",
    )
    .await
    .unwrap();
    let bo_location = block_and_slot(&db, 6000).await;
    assert_eq!(candidate_named_by_a_new_application(&db, 6000).await, "Bo");
    each(
        &db,
        &[
            "DELETE FROM ats.applications WHERE candidate_id = 6000",
            "DELETE FROM ats.candidates WHERE id = 6000",
            "VACUUM ats.candidates",
            "INSERT INTO ats.candidates (id, name, email) VALUES (6001, 'Cy', 'cy@example.com')",
            "INSERT INTO ats.candidates (id, name, email) VALUES (6000, 'Bo Two', 'bo@example.com')",
        ],
    )
    .await;
    assert_eq!(
        block_and_slot(&db, 6001).await,
        bo_location,
        "Cy took Bo's old slot"
    );
    assert_eq!(
        candidate_named_by_a_new_application(&db, 6000).await,
        "Bo Two"
    );
}

/// Run `statements` on `db`, then read the payload of the newest event.
async fn payload_after(db: &tokio_postgres::Client, statements: &str) -> serde_json::Value {
    db.batch_execute(statements).await.unwrap();
    let data: String = db
        .query_one(
            "SELECT data::text FROM webhooks.events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&data).unwrap()
}

#[tokio::test]
async fn a_writing_session_follows_columns_and_indexes_that_ddl_has_moved() {
    // One connection writes throughout: the tracker caches where columns are per backend,
    // and must notice each change below in the very session that has cached them.
    let (cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    let payload = payload_after(
        &db,
        "INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at)
              VALUES (1, 7, 3, now());
         UPDATE ats.applications SET current_stage = 'Screen' WHERE id = 1;",
    )
    .await;
    assert_eq!(payload["current_stage"], "Screen");
    // A value PostgreSQL stores compressed is sent as its text.
    let payload = payload_after(
        &db,
        "UPDATE ats.applications SET current_stage = repeat('Screen ', 500) WHERE id = 1",
    )
    .await;
    assert_eq!(payload["current_stage"], "Screen ".repeat(500));

    // Another session adds an index to the log: the writer must fill it from now on.
    let other = cluster.connect("app").await.unwrap();
    other
        .batch_execute(
            "CREATE EXTENSION amcheck;
             CREATE INDEX events_by_type ON webhooks.events (event_type);",
        )
        .await
        .unwrap();

    // The tracked table's column dropped and added again: it has a new position.
    let payload = payload_after(
        &db,
        "ALTER TABLE ats.applications DROP COLUMN current_stage;
         ALTER TABLE ats.applications ADD COLUMN current_stage text;
         UPDATE ats.applications SET current_stage = 'Onsite' WHERE id = 1;",
    )
    .await;
    assert_eq!(payload["current_stage"], "Onsite", "{payload}");
    assert_eq!(payload["candidate"]["name"], "Jane Smith", "{payload}");

    // The same for a people table's column, and the job postings' key index replaced.
    let payload = payload_after(
        &db,
        "ALTER TABLE ats.candidates DROP COLUMN name;
         ALTER TABLE ats.candidates ADD COLUMN name text;
         UPDATE ats.candidates SET name = 'Jane Doe' WHERE id = 7;
         ALTER TABLE ats.job_postings DROP CONSTRAINT job_postings_pkey CASCADE;
         CREATE UNIQUE INDEX job_postings_by_id ON ats.job_postings (id);
         UPDATE ats.applications SET current_stage = 'Offer' WHERE id = 1;",
    )
    .await;
    assert_eq!(payload["current_stage"], "Offer", "{payload}");
    assert_eq!(payload["candidate"]["name"], "Jane Doe", "{payload}");
    assert_eq!(
        payload["job_posting"]["title"], "Senior Engineer",
        "{payload}"
    );

    // Every row the writer logged since is in the other session's index (in each partition's
    // share of it).
    other
        .batch_execute(
            "SELECT bt_index_check(i.relid::regclass, heapallindexed => true)
               FROM pg_partition_tree('webhooks.events_by_type') i WHERE i.isleaf",
        )
        .await
        .unwrap();

    // A column the payload needs renamed away: the write is refused, naming it.
    db.batch_execute("ALTER TABLE ats.candidates RENAME COLUMN email TO mail")
        .await
        .unwrap();
    let refused = db
        .batch_execute("UPDATE ats.applications SET current_stage = 'Hired' WHERE id = 1")
        .await
        .unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_owned());
    assert_eq!(
        message.as_deref(),
        Some("table ats.candidates has no column \"email\" any more; restore the column, or run webhooks.untrack() on the tracked table"),
    );
}

#[tokio::test]
async fn a_repeatable_read_transaction_older_than_track_logs_its_writes() {
    let (cluster, db) = e2e::ats::database().await.unwrap();
    db.batch_execute(PEOPLE).await.unwrap();
    db.batch_execute("SELECT webhooks.untrack('ats.applications')")
        .await
        .unwrap();
    // The writer's snapshot predates track(): the trigger fires all the same (PostgreSQL reads
    // triggers as catalog entries), and the tracker must find the table's people tables too.
    let writer = cluster.connect("app").await.unwrap();
    writer
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ats.candidates")
        .await
        .unwrap();
    db.batch_execute("SELECT webhooks.track('ats.applications')")
        .await
        .unwrap();
    writer
        .batch_execute(
            "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
                  VALUES (7, 3, now());
             COMMIT",
        )
        .await
        .unwrap();
    assert_eq!(event_types(&db).await, ["application.submitted"]);
}
