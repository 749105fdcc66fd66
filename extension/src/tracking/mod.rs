//! Tracking application tables natively. `webhooks.track()` (extension/sql/tracking.sql)
//! checks a table and attaches `webhooks.track_changes(kind)` as its AFTER INSERT OR UPDATE
//! row trigger. Per change, inside the writing transaction, the trigger
//!
//! 1. runs the kind's rules on OLD and NEW (`kinds`, `change`);
//! 2. if any event fires, builds the payload once, naming the candidate and job posting from
//!    the people tables `track()` recorded (`tracked`, `payload`, `values`, `people`,
//!    `locations`);
//! 3. logs each event with its transaction's id, by which `webhooks.fan_out()` finds it after
//!    commit, then wakes a sleeping relay (`log_writer`).
//!
//! It replaced generated PL/pgSQL trigger functions: the same rules and payloads add about
//! 65,000 CPU instructions to a tracked insert this way, against 320,000 (docs/benchmarks.md).

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

use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};
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
        let attnums = change::cached_attnums(relation, kind.columns);
        let change = change::Change::new(kind, (*relation).rd_att, new, old, &attnums);
        let mut fired = Vec::with_capacity(2);
        (kind.rules)(&change, &mut fired);
        if !fired.is_empty() {
            // As a query in a PL/pgSQL trigger would: see everything this transaction has
            // written so far, including earlier rows of the same statement.
            pg_sys::CommandCounterIncrement();
            let snapshot = pg_sys::GetTransactionSnapshot();
            let people = tracked::people_of(relation);
            let payload = payload::build(&change, &people, snapshot);
            log_writer::log(&fired, payload, snapshot);
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

/// The checks webhooks.track() makes after the column check, so that no tracked write can
/// fail on a column's type: the rules' booleans are boolean, the payload's timestamps are
/// timestamps, and the people tables can be searched by the ids the table holds.
#[pg_extern(stable)]
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
        let type_of = |column: &str| {
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
        };
        let type_name = |oid| {
            CStr::from_ptr(pg_sys::format_type_be(oid))
                .to_string_lossy()
                .into_owned()
        };
        for column in spec.booleans {
            let (declared, base) = type_of(column);
            if base != pg_sys::BOOLOID {
                refuse(
                    format!(
                        "{name}.{column} is {}, but the {kind} rules read it as boolean",
                        type_name(declared)
                    ),
                    format!("ALTER TABLE {name} ALTER COLUMN {column} TYPE boolean USING ..."),
                );
            }
        }
        for column in spec.times() {
            let (declared, base) = type_of(column);
            if ![
                pg_sys::TIMESTAMPTZOID,
                pg_sys::TIMESTAMPOID,
                pg_sys::DATEOID,
            ]
            .contains(&base)
            {
                refuse(
                    format!(
                        "{name}.{column} is {}, but {kind} payloads send it as a timestamp",
                        type_name(declared)
                    ),
                    format!("Make {name}.{column} a timestamptz (or timestamp, or date)."),
                );
            }
        }
        for (people, reference) in [
            (candidates, "candidate_id"),
            (job_postings, "job_posting_id"),
        ] {
            let Some(people) = people.filter(|_| spec.needs_people()) else {
                continue;
            };
            let people = pg_sys::table_open(people, pg_sys::AccessShareLock as i32);
            let id = change::find_attnums(people, &["id"])[0];
            if let Err(why) = people::probe(people, id, type_of(reference).0) {
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
