//! Which people tables a tracked table's payloads read: its row in `webhooks.tracked_tables`,
//! where `webhooks.track()` records them as `regclass`. The trigger's own arguments carry only
//! the kind, so that `pg_dump` and a restore (which give every table a new oid, and restore
//! `regclass` values by name) leave a working trigger, and renaming a people table changes
//! nothing.
//!
//! Read once per relcache generation (see `invalidation`): `track()` and `untrack()` drop and
//! create the trigger, which invalidates the tracked table's cache entry.
//!
//! The trigger runs as the writer, who may have no rights on the people tables, and reads them
//! without privilege checks. What makes that safe is that the tracked table's owner may read
//! them: `track()` checks it, and so does every new generation here, so that a REVOKE (which
//! invalidates the people table's cache entry), a change of owner or of role membership stops
//! the payloads from naming people at once.

use super::change::{cached_attnums, relation_name};
use super::invalidation::Cache;
use super::log_writer::relation_named;
use super::payload::People;
use pgrx::pg_sys::{self, Oid};
use std::cell::RefCell;

thread_local! {
    static PEOPLE: RefCell<Cache<Oid, People>> = const { RefCell::new(Cache::new()) };
}

/// The people tables recorded for `table`, which must be open (it is: the trigger fires on
/// it). Tables of kinds that read no people have none.
pub unsafe fn people_of(table: pg_sys::Relation) -> People {
    let oid = (*table).rd_id;
    PEOPLE.with_borrow_mut(|cache| {
        cache.get_or_insert(oid, || {
            let people = recorded(table);
            let owner = (*(*table).rd_rel).relowner;
            for (people_table, columns) in [
                (people.candidates, CANDIDATE_COLUMNS),
                (people.job_postings, JOB_POSTING_COLUMNS),
            ] {
                if people_table == pg_sys::InvalidOid {
                    continue;
                }
                if let Some(why) = unreadable_by(owner, people_table, columns) {
                    let name = relation_name(table);
                    crate::errors::raise(
                        pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                        format!("{name} is tracked, but its payloads cannot name people: {why}"),
                        None,
                        format!("Grant its owner SELECT on those columns, or stop tracking it: SELECT webhooks.untrack('{name}')."),
                        "webhooks.track_changes",
                    );
                }
            }
            people
        })
    })
}

/// The columns of the people tables that payloads read.
pub const CANDIDATE_COLUMNS: &[&str] = &["id", "name", "email"];
pub const JOB_POSTING_COLUMNS: &[&str] = &["id", "title"];

/// Why `owner` may not read `columns` of every row of `people`, if it may not: it needs SELECT
/// on the table or on each column, and no row-level security may apply to it.
pub unsafe fn unreadable_by(owner: Oid, people: Oid, columns: &[&str]) -> Option<String> {
    let table = pg_sys::table_open(people, pg_sys::AccessShareLock as i32);
    let name = relation_name(table);
    let role = || {
        std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(owner, false))
            .to_string_lossy()
            .into_owned()
    };
    let mut why = None;
    let whole_table =
        pg_sys::pg_class_aclcheck(people, owner, pg_sys::ACL_SELECT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK;
    if !whole_table {
        let attnums = super::change::find_attnums(table, columns);
        let denied: Vec<&str> = columns
            .iter()
            .zip(attnums.iter())
            .filter(|&(_, &attnum)| {
                pg_sys::pg_attribute_aclcheck(
                    people,
                    attnum,
                    owner,
                    pg_sys::ACL_SELECT as pg_sys::AclMode,
                ) != pg_sys::AclResult::ACLCHECK_OK
            })
            .map(|(column, _)| *column)
            .collect();
        if !denied.is_empty() {
            why = Some(format!(
                "role {} may not read {name} ({})",
                role(),
                denied.join(", ")
            ));
        }
    }
    if why.is_none()
        && pg_sys::check_enable_rls(people, owner, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    {
        why = Some(format!(
            "row-level security on {name} applies to role {}, and tracking reads rows without policies",
            role()
        ));
    }
    pg_sys::table_close(table, pg_sys::NoLock as i32);
    why
}

unsafe fn recorded(table: pg_sys::Relation) -> People {
    let tracked = pg_sys::table_open(
        relation_named(c"tracked_tables"),
        pg_sys::AccessShareLock as i32,
    );
    let attnums = cached_attnums(tracked, &["table_name", "candidates", "job_postings"]);
    let &[name, candidates, job_postings] = &attnums[..] else {
        unreachable!("three columns asked for")
    };
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        name,
        pg_sys::BTEqualStrategyNumber as u16,
        pg_sys::RegProcedure::from(pg_sys::F_OIDEQ),
        pg_sys::Datum::from((*table).rd_id),
    );
    // The latest committed row, as a catalog is read, not the writer's snapshot: in a
    // REPEATABLE READ transaction older than track(), the trigger already fires (triggers are
    // catalog entries), and its row must be found too.
    let scan = pg_sys::systable_beginscan(
        tracked,
        pg_sys::InvalidOid,
        false,
        std::ptr::null_mut(),
        1,
        &mut key,
    );
    let row = pg_sys::systable_getnext(scan);
    if row.is_null() {
        let name = relation_name(table);
        pgrx::error!(
            "{name} has the tracking trigger but no row in webhooks.tracked_tables; run SELECT webhooks.track('{name}') again"
        );
    }
    let oid_at = |attnum: pg_sys::AttrNumber| {
        let mut is_null = false;
        let datum = pg_sys::heap_getattr(row, attnum as i32, (*tracked).rd_att, &mut is_null);
        if is_null {
            pg_sys::InvalidOid
        } else {
            Oid::from(datum.value() as u32)
        }
    };
    let people = People {
        candidates: oid_at(candidates),
        job_postings: oid_at(job_postings),
    };
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(tracked, pg_sys::NoLock as i32);
    people
}
