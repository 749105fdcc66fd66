//! Writing a tracked change's events: one row in `webhooks.events` per event, with the
//! writing transaction's id for `webhooks.fan_out()`, inserted directly into the heap and the
//! table's indexes,
//! as PostgreSQL's own catalog writes do (CatalogTupleInsert). Going through SQL
//! (parse-analysed, planned and run by the executor) costs more than the whole budget a
//! tracked write has (docs/benchmarks-history.md, "Tracking"). No notification: relays notice new events by
//! polling the log's sequence (`webhooks.work_marker()`), so a writer's commit never
//! serialises with other notifying commits.
//!
//! What the executor would have added and this does itself: the identity value, `now()`, and
//! the `webhooks.event_data` domain's checks (the payload is an object by construction, and
//! its size is checked here). The log tables have no insert triggers, rules or foreign keys.

use super::change::cached_attnums;
use super::ffi::raw;
use super::invalidation::generation;
use crate::errors::raise;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;

/// `webhooks.max_payload_bytes()`, the limit of the `event_data_at_most_256_kib` constraint,
/// kept here so that a write never calls SQL for it (a pg_test pins the two together).
pub(crate) const MAX_PAYLOAD_BYTES: usize = 262_144;
/// The columns of the log row, in order.
const EVENT_COLUMNS: [&str; 5] = ["id", "event_type", "created_at", "data", "fanout_xid"];
/// The widest index key write() fills.
const MAX_KEY_COLUMNS: usize = 4;
/// The most indexes on the log that tracking maintains (the extension creates two).
const MAX_INDEXES: usize = 8;

/// How to write `webhooks.events`: its sequence and its indexes,
/// resolved by name and checked once per generation (see `invalidation`), and always after
/// the log has been locked, so that its index list is the one every other writer sees.
struct Plan {
    stamp: u64,
    events: Oid,
    events_id: Oid,
    /// Each index and its IndexInfo as BuildIndexInfo gave it, in `PLAN_CONTEXT`; each write
    /// copies it (an access method may keep a statement's state in its copy).
    indexes: Vec<(Oid, pg_sys::IndexInfo)>,
}

thread_local! {
    /// The last resolved log, also when stale: its oid is the first one tried.
    static EVENTS: Cell<Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
    /// Where the plan's IndexInfos live: one context for the backend's life, emptied when a
    /// plan is built (also one whose building failed).
    static PLAN_CONTEXT: Cell<pg_sys::MemoryContext> = const { Cell::new(std::ptr::null_mut()) };
}

/// Open `webhooks.events` for inserting, resolving it by name when the remembered oid is
/// gone or names another table (the extension has been re-created).
unsafe fn open_events() -> pg_sys::Relation {
    let remembered = EVENTS.get();
    if remembered != pg_sys::InvalidOid {
        let events = pg_sys::try_table_open(remembered, pg_sys::RowExclusiveLock as i32);
        if !events.is_null()
            && CStr::from_ptr((*(*events).rd_rel).relname.data.as_ptr()) == c"events"
        {
            return events;
        }
        if !events.is_null() {
            pg_sys::table_close(events, pg_sys::RowExclusiveLock as i32);
        }
    }
    let events = relation_named(c"events");
    EVENTS.set(events);
    pg_sys::table_open(events, pg_sys::RowExclusiveLock as i32)
}

/// `webhooks.<name>`'s oid; an ERROR if the extension's table is missing.
pub(super) unsafe fn relation_named(name: &CStr) -> Oid {
    let schema = pg_sys::get_namespace_oid(c"webhooks".as_ptr(), false);
    let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
    if oid == pg_sys::InvalidOid {
        pgrx::error!(
            "webhooks.{} is missing; reinstall the pg_webhooks extension",
            name.to_string_lossy()
        );
    }
    oid
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

fn refuse_index(message: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message,
        None,
        format!("Tracked events are written into the log's indexes directly, which works for up to {MAX_INDEXES} plain indexes of up to {MAX_KEY_COLUMNS} columns without a predicate or deferred checks; drop this index."),
        "webhooks.track_changes",
    )
}

impl Plan {
    /// Resolve and check the log, open and locked as `events`. The previous plan's memory is
    /// freed: call it only with no plan in use.
    unsafe fn build(events: pg_sys::Relation) -> Plan {
        let name = || super::change::relation_name(events);
        let attnums = cached_attnums(events, &EVENT_COLUMNS);
        if (*(*events).rd_att).natts as usize != EVENT_COLUMNS.len()
            || attnums
                .iter()
                .enumerate()
                .any(|(i, &attnum)| attnum as usize != i + 1)
        {
            pgrx::error!(
                "{} has been altered: its columns must be ({})",
                name(),
                EVENT_COLUMNS.join(", ")
            );
        }
        let mut context = PLAN_CONTEXT.get();
        if context.is_null() {
            context = pg_sys::AllocSetContextCreateInternal(
                pg_sys::TopMemoryContext,
                c"pg_webhooks log writer".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            );
            PLAN_CONTEXT.set(context);
        }
        pg_sys::MemoryContextReset(context);
        let caller = pg_sys::MemoryContextSwitchTo(context);
        let oids = pgrx::PgList::<Oid>::from_pg(pg_sys::RelationGetIndexList(events));
        let mut indexes = Vec::with_capacity(oids.len());
        for oid in oids.iter_oid() {
            let index = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as i32);
            let info = pg_sys::BuildIndexInfo(index);
            // Such indexes need the executor (expressions, predicates, exclusion or deferred
            // checks); the extension creates none.
            if !(*info).ii_Expressions.is_null()
                || !(*info).ii_Predicate.is_null()
                || !(*info).ii_ExclusionOps.is_null()
                || !(*(*index).rd_index).indimmediate
                || (*info).ii_NumIndexAttrs as usize > MAX_KEY_COLUMNS
                || indexes.len() == MAX_INDEXES
            {
                let index_name = CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr());
                pg_sys::MemoryContextSwitchTo(caller);
                refuse_index(format!(
                    "{} has an index that tracking cannot maintain: {}",
                    name(),
                    index_name.to_string_lossy()
                ));
            }
            pg_sys::index_close(index, pg_sys::NoLock as i32);
            indexes.push((oid, *info));
        }
        pg_sys::MemoryContextSwitchTo(caller);
        let events_oid = (*events).rd_id;
        Plan {
            stamp: generation(),
            events: events_oid,
            events_id: pg_sys::getIdentitySequence(events_oid, 1, false),
            indexes,
        }
    }
}

/// Log one event of each type in `fired`, all with `payload`, for fan-out once committed.
pub unsafe fn log(fired: &[&str], payload: *mut pg_sys::Jsonb) {
    let size = pgrx::varlena::varsize_any(payload as *const _);
    if size > MAX_PAYLOAD_BYTES {
        refuse_oversized(size, fired[0]);
    }
    let events = open_events();
    PLAN.with_borrow_mut(|plan| {
        let current = plan
            .as_ref()
            .is_some_and(|p| p.stamp == generation() && p.events == (*events).rd_id);
        if !current {
            *plan = None;
            *plan = Some(Plan::build(events));
        }
        write(plan.as_ref().expect("just built"), events, fired, payload)
    });
}

/// Insert the rows and their index entries and close the log: one guarded call into
/// PostgreSQL instead of a dozen and more.
unsafe fn write(
    plan: &Plan,
    events: pg_sys::Relation,
    fired: &[&str],
    payload: *mut pg_sys::Jsonb,
) {
    let mut indexes = [std::ptr::null_mut(); MAX_INDEXES];
    // SAFETY (of the zeroes): plain C structs; each used one is overwritten below.
    let mut infos: [pg_sys::IndexInfo; MAX_INDEXES] = std::mem::zeroed();
    for (copy, (_, info)) in infos.iter_mut().zip(&plan.indexes) {
        *copy = *info;
        copy.ii_Context = pg_sys::CurrentMemoryContext;
        copy.ii_AmCache = std::ptr::null_mut();
    }
    let count = plan.indexes.len();
    let events_id = plan.events_id;
    let oids = plan.indexes.iter().map(|(oid, _)| *oid);
    // Nothing in this closure has a destructor or can panic (see ffi::raw).
    pg_guard_ffi_boundary(|| {
        let command = raw::GetCurrentCommandId(true);
        let now = raw::GetCurrentTransactionStartTimestamp();
        // Before any event id is drawn: fan_out()'s marks rely on a transaction's id
        // preceding its event ids. (The tracked row's write has assigned it already.)
        let transaction = raw::GetTopFullTransactionId().value;
        for (slot, oid) in indexes.iter_mut().zip(oids) {
            *slot = raw::index_open(oid, pg_sys::RowExclusiveLock as i32);
        }
        for event_type in fired {
            let type_text = raw::cstring_to_text_with_len(
                event_type.as_ptr() as *const _,
                event_type.len() as i32,
            );
            let mut values = [
                Datum::from(raw::nextval_internal(events_id, false)),
                Datum::from(type_text),
                Datum::from(now),
                Datum::from(payload),
                Datum::from(transaction),
            ];
            let mut nulls = [false; EVENT_COLUMNS.len()];
            let tuple =
                raw::heap_form_tuple((*events).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            raw::heap_insert(events, tuple, command, 0, std::ptr::null_mut());
            for (&index, info) in indexes.iter().zip(infos.iter_mut()).take(count) {
                if !info.ii_ReadyForInserts {
                    continue;
                }
                let mut key = [Datum::from(0); MAX_KEY_COLUMNS];
                let attnums = info
                    .ii_IndexAttrNumbers
                    .iter()
                    .take(info.ii_NumIndexAttrs as usize);
                for (slot, &attnum) in key.iter_mut().zip(attnums) {
                    // Attribute numbers 1 to 5: expression columns (0) were refused.
                    *slot = values
                        .get(attnum as usize - 1)
                        .copied()
                        .unwrap_or(Datum::from(0));
                }
                let check = if info.ii_Unique {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
                } else {
                    pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
                };
                raw::index_insert(
                    index,
                    key.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut (*tuple).t_self,
                    events,
                    check,
                    false,
                    info,
                );
            }
        }
        for &index in indexes.iter().take(count) {
            raw::index_close(index, pg_sys::NoLock as i32);
        }
        raw::table_close(events, pg_sys::NoLock as i32);
    })
}
