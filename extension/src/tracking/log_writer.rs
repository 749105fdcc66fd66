//! Writing a tracked change's events: one row in `webhooks.events` per event, with the
//! writing transaction's id for `webhooks.fan_out()`, inserted directly into the heap and the
//! table's indexes,
//! as PostgreSQL's own catalog writes do (CatalogTupleInsert). Going through SQL
//! (parse-analysed, planned and run by the executor) costs more than the whole budget a
//! tracked write has (docs/benchmarks.md). Then, if a relay sleeps, the `NOTIFY` that wakes it.
//!
//! What the executor would have added and this does itself: the identity value, `now()`, and
//! the `webhooks.event_data` domain's checks (the payload is an object by construction, and
//! its size is checked here). The log tables have no insert triggers, rules or foreign keys.

use super::change::cached_attnums;
use crate::errors::raise;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::PgSqlErrorCode;
use std::cell::Cell;
use std::ffi::CStr;

/// The limit of the `event_data_at_most_256_kib` constraint.
const MAX_PAYLOAD_BYTES: usize = 262_144;
/// The columns of the log row, in order.
const EVENT_COLUMNS: [&str; 5] = ["id", "event_type", "created_at", "data", "fanout_xid"];
/// The widest index key insert() fills.
const MAX_KEY_COLUMNS: usize = 4;
/// A relay counts as asleep for this long after it last registered (webhooks.wake_relay()).
const SLEEPER_TTL_MICROS: i64 = 5 * 60 * 1_000_000;

#[derive(Clone, Copy)]
struct Catalog {
    events: Oid,
    events_id: Oid,
    sleeping_relays: Oid,
}

thread_local! {
    /// Resolved once per backend, and again whenever the extension has been re-created.
    static CATALOG: Cell<Option<Catalog>> = const { Cell::new(None) };
}

unsafe fn resolve() -> Catalog {
    let schema = pg_sys::get_namespace_oid(c"webhooks".as_ptr(), false);
    let relation = |name: &CStr| {
        let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
        if oid == pg_sys::InvalidOid {
            pgrx::error!(
                "webhooks.{} is missing; reinstall the pg_webhooks extension",
                name.to_string_lossy()
            );
        }
        oid
    };
    let events = relation(c"events");
    Catalog {
        events,
        events_id: pg_sys::getIdentitySequence(events, 1, false),
        sleeping_relays: relation(c"sleeping_relays"),
    }
}

/// Open `webhooks.events`, resolving the catalog again if the cached one is stale.
unsafe fn open_events() -> (Catalog, pg_sys::Relation) {
    if let Some(catalog) = CATALOG.get() {
        let events = pg_sys::try_table_open(catalog.events, pg_sys::RowExclusiveLock as i32);
        if !events.is_null()
            && CStr::from_ptr((*(*events).rd_rel).relname.data.as_ptr()) == c"events"
        {
            return (catalog, events);
        }
        if !events.is_null() {
            pg_sys::table_close(events, pg_sys::RowExclusiveLock as i32);
        }
    }
    let catalog = resolve();
    CATALOG.set(Some(catalog));
    (
        catalog,
        pg_sys::table_open(catalog.events, pg_sys::RowExclusiveLock as i32),
    )
}

/// The domain's error, as `emit` raises it (pgrx cannot attach the constraint's name as a
/// field, so the message carries it), with what the domain alone cannot say.
fn refuse_oversized(size: usize, event_type: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
        "value for domain webhooks.event_data violates check constraint \"event_data_at_most_256_kib\"".into(),
        Some(format!("The {event_type} payload of this change is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}.")),
        "Payloads carry the tracked columns as they are: keep long texts out of them, or emit a custom event with webhooks.emit.".into(),
        "webhooks.track_changes",
    )
}

/// A table opened for inserting, with its indexes.
struct Target {
    relation: pg_sys::Relation,
    indexes: Vec<(pg_sys::Relation, *mut pg_sys::IndexInfo)>,
}

impl Target {
    /// Open `relation`'s indexes; its columns must be exactly `columns`.
    unsafe fn open(relation: pg_sys::Relation, columns: &'static [&'static str]) -> Target {
        let name = || super::change::relation_name(relation);
        let attnums = cached_attnums(relation, columns);
        if (*(*relation).rd_att).natts as usize != columns.len()
            || attnums
                .iter()
                .enumerate()
                .any(|(i, &attnum)| attnum as usize != i + 1)
        {
            pgrx::error!(
                "{} has been altered: its columns must be ({})",
                name(),
                columns.join(", ")
            );
        }
        let oids = pgrx::PgList::<Oid>::from_pg(pg_sys::RelationGetIndexList(relation));
        let indexes = oids
            .iter_oid()
            .map(|oid| {
                let index = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as i32);
                let info = pg_sys::BuildIndexInfo(index);
                // Such indexes need the executor (expressions, predicates, exclusion or
                // deferred checks); the extension creates none. insert() fills keys of up to
                // MAX_KEY_COLUMNS columns.
                if !(*info).ii_Expressions.is_null()
                    || !(*info).ii_Predicate.is_null()
                    || !(*info).ii_ExclusionOps.is_null()
                    || !(*(*index).rd_index).indimmediate
                    || (*info).ii_NumIndexAttrs as usize > MAX_KEY_COLUMNS
                {
                    let index_name = CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr());
                    raise(
                        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                        format!("{} has an index that tracking cannot maintain: {}", name(), index_name.to_string_lossy()),
                        None,
                        format!("Tracked events are written into the log's indexes directly, which works for plain indexes of up to {MAX_KEY_COLUMNS} columns without a predicate or deferred checks; drop this index."),
                        "webhooks.track_changes",
                    );
                }
                (index, info)
            })
            .collect();
        Target { relation, indexes }
    }

    /// Insert a row of `values` (none NULL) and its index entries.
    unsafe fn insert(&self, values: &mut [Datum], command: pg_sys::CommandId) {
        let mut nulls = [false; EVENT_COLUMNS.len()];
        let tuple = pg_sys::heap_form_tuple(
            (*self.relation).rd_att,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        pg_sys::heap_insert(self.relation, tuple, command, 0, std::ptr::null_mut());
        for &(index, info) in &self.indexes {
            if !(*info).ii_ReadyForInserts {
                continue;
            }
            let mut key = [Datum::from(0); MAX_KEY_COLUMNS];
            let width = (*info).ii_NumIndexAttrs as usize;
            let attnums = &(&(*info).ii_IndexAttrNumbers)[..width];
            for (slot, &attnum) in key.iter_mut().zip(attnums) {
                *slot = values[attnum as usize - 1];
            }
            let check = if (*info).ii_Unique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            pg_sys::index_insert(
                index,
                key.as_mut_ptr(),
                nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                self.relation,
                check,
                false,
                info,
            );
        }
    }

    unsafe fn close(self) {
        for (index, _) in self.indexes {
            pg_sys::index_close(index, pg_sys::NoLock as i32);
        }
        pg_sys::table_close(self.relation, pg_sys::NoLock as i32);
    }
}

/// Log one event of each type in `fired`, all with `payload`, for fan-out once committed.
pub unsafe fn log(fired: &[&str], payload: *mut pg_sys::Jsonb, snapshot: pg_sys::Snapshot) {
    let (catalog, events) = open_events();
    let size = pgrx::varlena::varsize_any(payload as *const _);
    if size > MAX_PAYLOAD_BYTES {
        refuse_oversized(size, fired[0]);
    }
    let events = Target::open(events, &EVENT_COLUMNS);
    let command = pg_sys::GetCurrentCommandId(true);
    let now = pg_sys::GetCurrentTransactionStartTimestamp();
    // Before any event id is drawn: fan_out()'s marks rely on a transaction's id preceding
    // its event ids. (The tracked row's write has assigned it already.)
    let transaction = pg_sys::GetTopFullTransactionId().value;
    for event_type in fired {
        let id = super::ffi::nextval_internal(catalog.events_id, false);
        let type_text = pg_sys::cstring_to_text_with_len(
            event_type.as_ptr() as *const _,
            event_type.len() as i32,
        );
        events.insert(
            &mut [
                Datum::from(id),
                Datum::from(type_text),
                Datum::from(now),
                Datum::from(payload),
                Datum::from(transaction),
            ],
            command,
        );
    }
    events.close();
    wake_sleeping_relays(catalog, now, snapshot);
}

/// `webhooks.wake_relay()`: NOTIFY only while some relay sleeps, so that a busy write path
/// never pays for NOTIFY (which serialises committing transactions).
unsafe fn wake_sleeping_relays(
    catalog: Catalog,
    now: pg_sys::TimestampTz,
    snapshot: pg_sys::Snapshot,
) {
    let sleepers = pg_sys::table_open(catalog.sleeping_relays, pg_sys::AccessShareLock as i32);
    // Nobody has slept since VACUUM last truncated the table: nothing to read.
    if pg_sys::RelationGetNumberOfBlocksInFork(sleepers, pg_sys::ForkNumber::MAIN_FORKNUM) == 0 {
        pg_sys::table_close(sleepers, pg_sys::NoLock as i32);
        return;
    }
    let since = cached_attnums(sleepers, &["since"])[0];
    let scan = pg_sys::systable_beginscan(
        sleepers,
        pg_sys::InvalidOid,
        false,
        snapshot,
        0,
        std::ptr::null_mut(),
    );
    let mut asleep = false;
    loop {
        let tuple = pg_sys::systable_getnext(scan);
        if tuple.is_null() {
            break;
        }
        let mut is_null = false;
        let at = pg_sys::heap_getattr(tuple, since as i32, (*sleepers).rd_att, &mut is_null);
        if !is_null && at.value() as i64 > now - SLEEPER_TTL_MICROS {
            asleep = true;
            break;
        }
    }
    pg_sys::systable_endscan(scan);
    pg_sys::table_close(sleepers, pg_sys::NoLock as i32);
    if asleep {
        super::ffi::async_notify(c"webhooks_work".as_ptr(), c"".as_ptr());
    }
}
