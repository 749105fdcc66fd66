//! Tracking application tables natively. `webhooks.track()` (extension/sql/tracking.sql)
//! checks a table and attaches `webhooks.track_changes(kind)` as its AFTER INSERT OR UPDATE
//! row trigger. Per change, inside the writing transaction, the trigger
//!
//! 1. runs the kind's rules on OLD and NEW (`kinds`, `change`);
//! 2. if any event fires, builds the payload once, naming the candidate and job posting from
//!    the people tables `track()` recorded (`tracked`, `payload`, `values`, `people`,
//!    `locations`);
//! 3. logs each event with its transaction's id, by which `webhooks.fan_out()` finds it after
//!    commit (`log_writer`).
//!
//! It replaced generated PL/pgSQL trigger functions: the same rules and payloads cost a
//! tracked insert several times less this way (docs/benchmarks-history.md, "Tracking").

mod change;
mod ffi;
mod invalidation;
mod kinds;
mod locations;
mod log_writer;
mod payload;
mod people;
mod tracked;
mod values;

use invalidation::Cache;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::RefCell;
use std::ffi::CStr;

/// The trigger: `EXECUTE FUNCTION webhooks.track_changes('applications')`, as webhooks.track()
/// writes it; the people tables come from webhooks.tracked_tables (`tracked`).
#[pg_trigger]
fn track_changes<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    let row_level = event & pg_sys::TRIGGER_EVENT_ROW != 0;
    let after = event & pg_sys::TRIGGER_EVENT_TIMINGMASK == pg_sys::TRIGGER_EVENT_AFTER;
    let operation = event & pg_sys::TRIGGER_EVENT_OPMASK;
    let is_update = operation == pg_sys::TRIGGER_EVENT_UPDATE;
    if !row_level || !after || !(is_update || operation == pg_sys::TRIGGER_EVENT_INSERT) {
        error!("webhooks.track_changes() must be an AFTER INSERT OR UPDATE ... FOR EACH ROW trigger; attach it with webhooks.track()");
    }
    let kind = kind_argument(trigger.trigger());
    unsafe {
        let relation = data.tg_relation;
        let (new, old) = if is_update {
            (data.tg_newtuple, Some(data.tg_trigtuple))
        } else {
            (data.tg_trigtuple, None)
        };
        let attnums = checked_attnums(relation, kind);
        let change = change::Change::new(kind, (*relation).rd_att, new, old, &attnums);
        let mut fired = Vec::with_capacity(2);
        (kind.rules)(&change, &mut fired);
        debug_assert!(
            fired.iter().all(|event| kind.events.contains(event)),
            "{} fired {fired:?}, not all of them in its events",
            kind.name
        );
        if !fired.is_empty() {
            // As a query in a PL/pgSQL trigger would: see everything this transaction has
            // written so far, including earlier rows of the same statement.
            pg_sys::CommandCounterIncrement();
            let snapshot = pg_sys::GetTransactionSnapshot();
            let people = tracked::people_of(relation);
            let payload = payload::build(&change, &people, snapshot);
            log_writer::log(&fired, payload);
        }
    }
    Ok(None)
}

/// The trigger's one argument, a kind, as written by webhooks.track() (anything else is
/// refused).
fn kind_argument(trigger: &pg_sys::Trigger) -> &'static kinds::Kind {
    if trigger.tgnargs != 1 {
        error!("webhooks.track_changes() takes one argument, the kind; attach it with webhooks.track()");
    }
    let kind = unsafe { CStr::from_ptr(*trigger.tgargs) }
        .to_str()
        .unwrap_or("");
    kinds::find(kind).unwrap_or_else(|| {
        error!("webhooks.track_changes(): unknown kind \"{kind}\"; attach it with webhooks.track()")
    })
}

fn refuse(message: String, hint: String) -> ! {
    crate::errors::raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        message,
        None,
        hint,
        "webhooks.track",
    )
}

thread_local! {
    /// The kind's columns in each tracked table whose types were found usable, until a
    /// relation's cache entry is invalidated (ALTER COLUMN ... TYPE invalidates it).
    static CHECKED: RefCell<Cache<(pg_sys::Oid, usize), change::Attnums>> = const { RefCell::new(Cache::new()) };
}

/// Where the kind's columns are in the tracked table, after checking (once per generation)
/// that their types are still ones the trigger can read. A column's type may have changed since
/// webhooks.track() accepted it; reading its values as the old type would misread memory.
unsafe fn checked_attnums(
    relation: pg_sys::Relation,
    kind: &'static kinds::Kind,
) -> change::Attnums {
    let key = ((*relation).rd_id, kind.columns.as_ptr() as usize);
    CHECKED.with_borrow_mut(|cache| {
        cache.get_or_insert(key, || {
            let attnums = change::find_attnums(relation, kind.columns);
            if let Some((message, hint)) = type_problem(relation, kind, &attnums) {
                crate::errors::raise(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    message,
                    None,
                    format!(
                        "{hint} Or stop tracking the table: SELECT webhooks.untrack('{}').",
                        change::relation_name(relation)
                    ),
                    "webhooks.track_changes",
                );
            }
            attnums
        })
    })
}

/// Why the kind's rules or payload cannot read one of the table's columns as it is typed now:
/// the rules' booleans must be boolean and the payload's timestamps timestamps (or domains
/// over them). Every other column is read as whatever type it has.
unsafe fn type_problem(
    table: pg_sys::Relation,
    spec: &kinds::Kind,
    attnums: &change::Attnums,
) -> Option<(String, String)> {
    let name = change::relation_name(table);
    let kind = spec.name;
    for column in spec.booleans.iter().copied() {
        let (declared, base) = column_type(table, spec, attnums, column);
        if base != pg_sys::BOOLOID {
            return Some((
                format!(
                    "{name}.{column} is {}, but the {kind} rules read it as boolean",
                    type_name(declared)
                ),
                format!("ALTER TABLE {name} ALTER COLUMN {column} TYPE boolean USING ..."),
            ));
        }
    }
    for column in spec.times() {
        let (declared, base) = column_type(table, spec, attnums, column);
        if ![
            pg_sys::TIMESTAMPTZOID,
            pg_sys::TIMESTAMPOID,
            pg_sys::DATEOID,
        ]
        .contains(&base)
        {
            return Some((
                format!(
                    "{name}.{column} is {}, but {kind} payloads send it as a timestamp",
                    type_name(declared)
                ),
                format!("Make {name}.{column} a timestamptz (or timestamp, or date)."),
            ));
        }
    }
    None
}

/// The declared type of one of the kind's columns and the type it is a domain over (or itself).
unsafe fn column_type(
    table: pg_sys::Relation,
    spec: &kinds::Kind,
    attnums: &change::Attnums,
    column: &str,
) -> (pg_sys::Oid, pg_sys::Oid) {
    let position = spec
        .columns
        .iter()
        .position(|c| *c == column)
        .expect("a column of the kind");
    let attr = &*(*(*table).rd_att)
        .attrs
        .as_ptr()
        .add(attnums[position] as usize - 1);
    (attr.atttypid, pg_sys::getBaseType(attr.atttypid))
}

unsafe fn type_name(oid: pg_sys::Oid) -> String {
    CStr::from_ptr(pg_sys::format_type_be(oid))
        .to_string_lossy()
        .into_owned()
}

/// The checks webhooks.track() makes after the column check, so that no tracked write can
/// fail on a column's type: the rules' booleans are boolean, the payload's timestamps are
/// timestamps, and the people tables can be searched by the ids the table holds. (The trigger
/// checks the first two again whenever the table's definition may have changed.)
#[pg_extern(stable, name = "_check_trackable")]
fn check_trackable(
    table_name: pg_sys::Oid,
    kind: &str,
    candidates: Option<pg_sys::Oid>,
    job_postings: Option<pg_sys::Oid>,
) {
    let Some(spec) = kinds::find(kind) else {
        error!("unknown kind \"{kind}\"")
    };
    unsafe {
        let table = pg_sys::table_open(table_name, pg_sys::AccessShareLock as i32);
        let name = change::relation_name(table);
        let attnums = change::find_attnums(table, spec.columns);
        if let Some((message, hint)) = type_problem(table, spec, &attnums) {
            refuse(message, hint);
        }
        for (people, reference) in [
            (candidates, "candidate_id"),
            (job_postings, "job_posting_id"),
        ] {
            let Some(people) = people.filter(|_| spec.needs_people()) else {
                continue;
            };
            let columns = if reference == "candidate_id" {
                tracked::CANDIDATE_COLUMNS
            } else {
                tracked::JOB_POSTING_COLUMNS
            };
            let owner = (*(*table).rd_rel).relowner;
            if let Some(why) = tracked::unreadable_by(owner, people, columns) {
                crate::errors::raise(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("{name} cannot be tracked with these people tables: {why}"),
                    None,
                    "Payloads name the candidate and job posting as the tracked table's owner may read them: grant its owner SELECT on them, or name people tables it may read.".into(),
                    "webhooks.track",
                );
            }
            let people = pg_sys::table_open(people, pg_sys::AccessShareLock as i32);
            let id = change::find_attnums(people, &["id"])[0];
            let (reference_type, _) = column_type(table, spec, &attnums, reference);
            if let Err(why) = people::probe(people, id, reference_type) {
                refuse(
                    format!("{name}.{reference} cannot be looked up: {why}"),
                    format!("Give {name}.{reference} the type of the id it refers to."),
                );
            }
            pg_sys::table_close(people, pg_sys::NoLock as i32);
        }
        pg_sys::table_close(table, pg_sys::NoLock as i32);
    }
}

/// The column lists here and in webhooks.table_kinds, for the pg_test that keeps them equal.
#[cfg(any(test, feature = "pg_test"))]
pub fn kind_columns() -> Vec<(&'static str, Vec<&'static str>)> {
    kinds::KINDS
        .iter()
        .map(|kind| (kind.name, kind.columns.to_vec()))
        .collect()
}

/// The events each kind can fire, for the pg_test that keeps them equal to
/// webhooks.table_kinds.events.
#[cfg(any(test, feature = "pg_test"))]
pub fn kind_events() -> Vec<(&'static str, Vec<&'static str>)> {
    kinds::KINDS
        .iter()
        .map(|kind| (kind.name, kind.events.to_vec()))
        .collect()
}

/// The most events the log writer takes from one change, for the pg_test that holds every
/// kind's list of events to it.
#[cfg(any(test, feature = "pg_test"))]
pub fn max_fired() -> usize {
    log_writer::MAX_FIRED
}

/// The payload limit the log writer applies, for the pg_test that pins it to
/// webhooks.max_payload_bytes().
#[cfg(any(test, feature = "pg_test"))]
pub fn max_payload_bytes() -> usize {
    log_writer::MAX_PAYLOAD_BYTES
}

/// The columns a kind reads as a boolean or a timestamp, for the pg_test of altered columns.
#[cfg(any(test, feature = "pg_test"))]
pub fn kind_reads(kind: &str) -> Vec<&'static str> {
    let spec = kinds::find(kind).expect("a kind");
    spec.booleans.iter().copied().chain(spec.times()).collect()
}
