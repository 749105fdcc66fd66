//! Updating the extension in place. A database made with 0.1.0 (the extension as of commit
//! b97595e, whose install script is kept in `extension/releases/`), with data in its tables,
//! is updated with `ALTER EXTENSION pg_webhooks UPDATE`: it must then equal a fresh install of
//! the current version object for object, deliver what was pending, and go on tracking.

use e2e::stage::Stage;
use std::time::Duration;

/// Every object of the extension, one line each, in a form two databases can be compared by:
/// functions with their result, security, volatility, settings, grants, language, body (a
/// digest) and comment; relations with kind, grants, options, comment and view definition;
/// columns, constraints, indexes, triggers, the schema's grants, types, the extension's version
/// and configuration tables, and its members (but for the `tests` schema of `#[pg_test]`
/// functions that `cargo pgrx test` leaves installed, and the partitions `webhooks.maintain()`
/// makes as time goes by, which are not the extension's).
const CATALOG: &str = r#"WITH runtime AS (
  SELECT c.oid FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
   JOIN pg_class t ON t.oid = coalesce(i.indrelid, c.oid)
   WHERE c.relnamespace = 'webhooks'::regnamespace AND t.relispartition
     AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = t.oid AND d.deptype = 'e'))
SELECT 'fn ' || p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid) || ' secdef=' || p.prosecdef
       || ' vol=' || p.provolatile::text || ' par=' || p.proparallel::text || ' strict=' || p.proisstrict
       || ' cfg=' || coalesce(p.proconfig::text, '') || ' acl=' || coalesce(p.proacl::text, '')
       || ' lang=' || l.lanname || ' src=' || md5(coalesce(p.prosrc, '') || coalesce(pg_get_function_sqlbody(p.oid), ''))
       || ' args=' || pg_get_function_arguments(p.oid)
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.pronamespace = 'webhooks'::regnamespace
UNION ALL
SELECT 'rel ' || c.relname || ' kind=' || c.relkind::text || ' persist=' || c.relpersistence::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' opts=' || coalesce(c.reloptions::text, '') || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || CASE WHEN c.relkind = 'v' THEN ' def=' || md5(pg_get_viewdef(c.oid)) ELSE '' END
  FROM pg_class c WHERE c.relnamespace = 'webhooks'::regnamespace AND c.oid NOT IN (SELECT oid FROM runtime)
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' acl=' || coalesce(a.attacl::text, '') || ' def=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'webhooks'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped AND c.oid NOT IN (SELECT oid FROM runtime)
UNION ALL
SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'webhooks'::regnamespace AND conrelid NOT IN (SELECT oid FROM runtime)
UNION ALL
SELECT 'idx ' || indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'webhooks'::regnamespace AND c.oid NOT IN (SELECT oid FROM runtime)
UNION ALL
SELECT 'trg ' || tgrelid::regclass || ' ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'webhooks'::regnamespace AND NOT t.tgisinternal AND c.oid NOT IN (SELECT oid FROM runtime)
UNION ALL
SELECT 'nsp ' || nspname || ' acl=' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'webhooks'
UNION ALL
SELECT 'typ ' || t.typname || ' ' || t.typtype::text FROM pg_type t WHERE t.typnamespace = 'webhooks'::regnamespace AND NOT EXISTS (SELECT FROM runtime r WHERE r.oid IN (t.typrelid, (SELECT e.typrelid FROM pg_type e WHERE e.oid = t.typelem)))
UNION ALL
SELECT 'ext ' || extname || ' ' || extversion || ' cfg=' || coalesce((SELECT array_agg(x::regclass::text ORDER BY x::regclass::text) FROM unnest(extconfig) x)::text, '') FROM pg_extension WHERE extname = 'pg_webhooks'
UNION ALL
SELECT 'dep ' || pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass WHERE e.extname = 'pg_webhooks' AND d.deptype = 'e'
   AND pg_describe_object(d.classid, d.objid, d.objsubid) NOT IN ('schema tests')
   AND pg_describe_object(d.classid, d.objid, d.objsubid) NOT LIKE 'function tests.%'
ORDER BY 1"#;

async fn catalog(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(CATALOG, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn a_0_1_0_database_updates_in_place_to_what_a_fresh_install_makes_and_delivers_on() {
    // `app` holds a fresh install of the current version.
    let stage = Stage::new().await.unwrap();
    let admin = stage.cluster.connect("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE old").await.unwrap();
    let old = stage.cluster.connect("old").await.unwrap();
    old.batch_execute("CREATE EXTENSION pg_webhooks VERSION '0.1.0'")
        .await
        .expect(
            "the 0.1.0 install script is installed (cargo xtask test copies extension/releases/)",
        );
    e2e::ats::load_and_track(&old).await.unwrap();
    old.batch_execute(e2e::ats::PEOPLE).await.unwrap();
    // Data in every table: endpoints (one deleted, with history), emitted events with pending
    // deliveries, an attempt that will be retried, and a tracked event awaiting fan-out.
    let url = stage.receiver.url("/old");
    old.execute(
        "SELECT webhooks.create_endpoint($1, ARRAY['application.*', 'offer.*'])",
        &[&url],
    )
    .await
    .unwrap();
    old.batch_execute(
        "SELECT webhooks.delete_endpoint((SELECT endpoint_id FROM webhooks.create_endpoint('https://gone.test/', ARRAY['offer.*'])));
         SELECT webhooks.emit('offer.accepted', jsonb_build_object('id', g)) FROM generate_series(1, 3) g;
         SELECT webhooks.record_attempts('old-relay', jsonb_build_array(jsonb_build_object(
             'delivery_id', (SELECT min(id) FROM webhooks.deliveries), 'attempt_number', 1,
             'started_at', now(), 'duration_ms', 5, 'response_status', 503)));
         INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now());",
    )
    .await
    .unwrap();

    let version: String = old
        .query_one(
            "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'pg_webhooks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // The current relay refuses the old version, saying what to do, and exits with an error.
    let mut refused =
        e2e::relay::Relay::spawn(&stage.cluster.connstr_as("old", "relay_login"), &[]).unwrap();
    let status = refused
        .wait_for_exit(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{}", refused.logs());
    assert!(
        refused.logs().contains(&format!(
            "pg_webhooks 0.1.0 is installed, and this relay works with pg_webhooks {version} only: update the extension (ALTER EXTENSION pg_webhooks UPDATE TO '{version}')"
        )),
        "{}",
        refused.logs()
    );

    old.batch_execute(&format!(
        "ALTER EXTENSION pg_webhooks UPDATE TO '{version}'"
    ))
    .await
    .unwrap();

    let (updated, fresh) = (catalog(&old).await, catalog(&stage.db).await);
    let only_updated: Vec<&String> = updated.iter().filter(|l| !fresh.contains(l)).collect();
    let only_fresh: Vec<&String> = fresh.iter().filter(|l| !updated.contains(l)).collect();
    assert!(
        only_updated.is_empty() && only_fresh.is_empty(),
        "the updated database differs from a fresh {version} install:\nonly after the update: {only_updated:#?}\nonly in a fresh install: {only_fresh:#?}"
    );
    let history: String = old
        .query_one(
            "SELECT string_agg(action || ' ' || detail::text, ', ' ORDER BY id) FROM webhooks.endpoint_history WHERE endpoint_id = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        history, "deleted {}",
        "a deleted endpoint keeps only its audit line"
    );

    // The current relay delivers what 0.1.0 left pending, and tracking goes on.
    old.batch_execute("SELECT webhooks.retry_now()")
        .await
        .unwrap();
    let _relay = e2e::relay::Relay::start(
        &stage.cluster.connstr_as("old", "relay_login"),
        &[
            "--ca-file",
            stage.receiver.ca_file().to_str().unwrap(),
            "--allow-network",
            "127.0.0.0/8",
            "--poll-interval",
            "100ms",
        ],
    )
    .await
    .unwrap();
    stage.receiver.wait_for(4, Duration::from_secs(20)).await;
    old.batch_execute(
        "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES (7, 3, now())",
    )
    .await
    .unwrap();
    stage.receiver.wait_for(5, Duration::from_secs(20)).await;
    e2e::eventually(
        Duration::from_secs(20),
        "every delivery succeeded",
        || async {
            let pending: i64 = old
                .query_one(
                    "SELECT count(*) FROM webhooks.deliveries WHERE status <> 'succeeded'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (pending == 0).then_some(())
        },
    )
    .await;
}
