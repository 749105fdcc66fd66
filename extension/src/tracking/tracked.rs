//! Which people tables a tracked table's payloads read: its row in `webhooks.tracked_tables`,
//! where `webhooks.track()` records them as `regclass`. The trigger's own arguments carry only
//! the kind, so that `pg_dump` and a restore (which give every table a new oid, and restore
//! `regclass` values by name) leave a working trigger, and renaming a people table changes
//! nothing.
//!
//! Read once per relcache generation (see `invalidation`): `track()` and `untrack()` drop and
//! create the trigger, which invalidates the tracked table's cache entry.

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
    PEOPLE.with_borrow_mut(|cache| cache.get_or_insert(oid, || recorded(table)))
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
