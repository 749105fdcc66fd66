// Helpers shared by the #[pg_test]s (included into the inline `tests` module).

/// The single value of `sql`, which must not be NULL.
fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).unwrap_or_else(|| panic!("{sql}: NULL"))
}

fn count(sql: &str) -> i64 {
    one::<i64>(&format!("SELECT count(*) FROM {sql}"))
}

fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Create an endpoint on https://hooks.test/<name> subscribed to `events` (an SQL array).
fn endpoint(name: &str, events: &str) -> i64 {
    one(&format!(
        "SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.test/{name}', {events}, name => '{name}')"
    ))
}

#[derive(Debug)]
struct SqlError {
    sqlstate: String,
    message: String,
    hint: String,
}

/// Run `stmt` (as `role`, if given) in a subtransaction that is always rolled back, and
/// return the error it raised, if any. Nothing it did survives either way.
fn error_as(role: Option<&str>, stmt: &str) -> Option<SqlError> {
    run(r#"
        CREATE OR REPLACE FUNCTION pg_temp.error_of(role text, stmt text) RETURNS text[]
        LANGUAGE plpgsql AS $$
        DECLARE m text; h text; c text;
        BEGIN
            IF role IS NOT NULL THEN EXECUTE format('SET LOCAL ROLE %I', role); END IF;
            EXECUTE stmt;
            RAISE EXCEPTION USING ERRCODE = 'P0099', MESSAGE = 'no error';
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT, c = RETURNED_SQLSTATE;
            IF c = 'P0099' THEN RETURN NULL; END IF;
            RETURN ARRAY[c, m, coalesce(h, '')];
        END $$"#);
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let role = role.map(quoted).unwrap_or_else(|| "NULL".into());
    let parts = Spi::get_one::<Vec<String>>(&format!("SELECT pg_temp.error_of({role}, {})", quoted(stmt)))
        .unwrap_or_else(|e| panic!("{stmt}: {e}"))?;
    Some(SqlError { sqlstate: parts[0].clone(), message: parts[1].clone(), hint: parts[2].clone() })
}

/// `stmt` fails with a message containing `message` and a hint containing `hint`.
fn expect_error(stmt: &str, message: &str, hint: &str) -> SqlError {
    let err = error_as(None, stmt).unwrap_or_else(|| panic!("expected an error from: {stmt}"));
    assert!(err.message.contains(message), "message {:?} lacks {message:?} ({stmt})", err.message);
    assert!(err.hint.contains(hint), "hint {:?} lacks {hint:?} ({stmt})", err.hint);
    err
}

fn succeeds_as(role: &str, stmt: &str) -> bool {
    match error_as(Some(role), stmt) {
        None => true,
        Some(e) if e.sqlstate == "42501" => false,
        Some(e) => panic!("{stmt} as {role}: unexpected error {e:?}"),
    }
}

/// Lease every due delivery to this session, as a relay's claim does: a relay records and
/// releases only deliveries its session holds.
fn claim_all() -> i64 {
    count("webhooks.claim_deliveries('r', 100000, interval '10 minutes', 100000)")
}

/// Record one attempt at `delivery` answered with `status`, as a relay reports it; returns
/// "succeeded,retried,failed,not_held".
fn report_attempt(delivery: i64, status: i32) -> String {
    one::<String>(&format!(
        r#"SELECT concat_ws(',', succeeded, retried, failed, not_held) FROM webhooks.record_attempts('r', '[{{
            "delivery_id": {delivery}, "attempt_number": 1, "started_at": "2026-11-30T10:00:00Z",
            "duration_ms": 4, "response_status": {status}}}]')"#
    ))
}
