//! Writing a tracked change's events: one row in `webhooks.events` per event, with the
//! writing transaction's id for `webhooks.fan_out()`, inserted directly into the heap and the
//! table's indexes,
//! as PostgreSQL's own catalog writes do (CatalogTupleInsert). Going through SQL
//! (parse-analysed, planned and run by the executor) costs more than the whole budget a
//! tracked write has (docs/benchmarks-history.md, "Tracking"). No notification: relays notice new events by
//! polling the log's sequence (`webhooks.work_marker()`), so a writer's commit never
//! serialises with other notifying commits.
//!
//! What the executor would have added and this does itself: the identity value, `now()`, the
//! `webhooks.event_data` domain's checks (the payload is an object by construction, and its
//! size is checked here), and tuple routing: the log is partitioned by id, and each row goes to
//! the partition its id falls in, found as PostgreSQL finds it. The log tables have no insert
//! triggers, rules or foreign keys.

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

/// How to write `webhooks.events`: its sequence and the partition the last event went to,
/// resolved by name and checked once per generation (see `invalidation`), always with the
/// log locked.
struct Plan {
    stamp: u64,
    events: Oid,
    events_id: Oid,
    leaf: Option<Leaf>,
}

/// One partition of the log (webhooks.events is partitioned by id, one partition per period)
/// and its indexes, resolved and checked after the partition has been locked.
struct Leaf {
    oid: Oid,
    /// The ids it holds: lower inclusive, upper exclusive.
    lower: i64,
    upper: i64,
    /// Each index and its IndexInfo as BuildIndexInfo gave it, in `PLAN_CONTEXT`; each write
    /// copies it (an access method may keep a statement's state in its copy).
    indexes: Vec<(Oid, pg_sys::IndexInfo)>,
}

/// The most events one change fires: a change fires each of its kind's events at most once,
/// and a pg_test holds every kind's list to this.
pub(crate) const MAX_FIRED: usize = 8;

thread_local! {
    /// The last resolved log, also when stale: its oid is the first one tried.
    static EVENTS: Cell<Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
    /// Where the leaf's IndexInfos live: one context for the backend's life, emptied when a
    /// leaf is built (also one whose building failed).
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

/// The log's (or a partition's) columns must be those the rows are formed for, in order.
unsafe fn check_columns(relation: pg_sys::Relation) {
    let attnums = cached_attnums(relation, &EVENT_COLUMNS);
    if (*(*relation).rd_att).natts as usize != EVENT_COLUMNS.len()
        || attnums
            .iter()
            .enumerate()
            .any(|(i, &attnum)| attnum as usize != i + 1)
    {
        pgrx::error!(
            "{} has been altered: its columns must be ({})",
            super::change::relation_name(relation),
            EVENT_COLUMNS.join(", ")
        );
    }
}

impl Plan {
    /// Resolve and check the log, open and locked as `events`: partitioned by range of its
    /// first column, `id`, a bigint (so that its partition bounds are read as bigints).
    unsafe fn build(events: pg_sys::Relation) -> Plan {
        check_columns(events);
        let id_type = (*(*events).rd_att).attrs.as_slice(1)[0].atttypid;
        // A plain table is the log of pg_webhooks 0.1.0, which this library also serves until
        // the extension is updated: the rows go into it.
        let key = match (*(*events).rd_rel).relkind as u8 {
            pg_sys::RELKIND_RELATION => true,
            pg_sys::RELKIND_PARTITIONED_TABLE => {
                !pg_sys::RelationGetPartitionDesc(events, true).is_null()
                    && CStr::from_ptr(pg_sys::pg_get_partkeydef_columns((*events).rd_id, false))
                        == c"id"
            }
            _ => false,
        };
        if id_type != pg_sys::INT8OID || !key {
            pgrx::error!(
                "{} has been altered: it must be partitioned by range of its bigint id",
                super::change::relation_name(events)
            );
        }
        let events_oid = (*events).rd_id;
        Plan {
            stamp: generation(),
            events: events_oid,
            events_id: pg_sys::getIdentitySequence(events_oid, 1, false),
            leaf: None,
        }
    }
}

/// The partition of the log that holds `id`, with the ids it holds, as PostgreSQL's own tuple
/// routing finds it (get_partition_for_tuple): the last bound at or below the id starts the
/// partition, else the default partition takes it. An unpartitioned log holds every id.
unsafe fn route(events: pg_sys::Relation, id: i64) -> (Oid, i64, i64) {
    if (*(*events).rd_rel).relkind as u8 == pg_sys::RELKIND_RELATION {
        return ((*events).rd_id, i64::MIN, i64::MAX);
    }
    let desc = pg_sys::RelationGetPartitionDesc(events, true);
    let bounds = (*desc).boundinfo;
    let none = || -> ! {
        pgrx::error!(
            "no partition of webhooks.events holds event id {id}; run SELECT webhooks.maintain()"
        )
    };
    if bounds.is_null() || (*bounds).strategy as u8 != pg_sys::PARTITION_STRATEGY_RANGE {
        none();
    }
    // Range bounds of one column, in order; infinite ones (MINVALUE, MAXVALUE) carry no value.
    let count = (*bounds).ndatums as usize;
    let bound = |i: usize| -> i64 {
        match **(*bounds).kind.add(i) {
            pg_sys::PartitionRangeDatumKind::PARTITION_RANGE_DATUM_MINVALUE => i64::MIN,
            pg_sys::PartitionRangeDatumKind::PARTITION_RANGE_DATUM_MAXVALUE => i64::MAX,
            _ => (**(*bounds).datums.add(i)).value() as i64,
        }
    };
    let below = (0..count).take_while(|&i| bound(i) <= id).count();
    let index = *(*bounds).indexes.add(below);
    if index >= 0 {
        let lower = if below == 0 {
            i64::MIN
        } else {
            bound(below - 1)
        };
        let upper = if below == count {
            i64::MAX
        } else {
            bound(below)
        };
        return (*(*desc).oids.add(index as usize), lower, upper);
    }
    if (*bounds).default_index >= 0 {
        return (
            *(*desc).oids.add((*bounds).default_index as usize),
            id,
            id.saturating_add(1),
        );
    }
    none()
}

impl Leaf {
    /// Check the partition, open and locked as `leaf`, and collect its indexes. The previous
    /// leaf's memory is freed: call it only with no leaf in use.
    unsafe fn build(leaf: pg_sys::Relation, lower: i64, upper: i64) -> Leaf {
        let name = || super::change::relation_name(leaf);
        check_columns(leaf);
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
        let oids = pgrx::PgList::<Oid>::from_pg(pg_sys::RelationGetIndexList(leaf));
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
        Leaf {
            oid: (*leaf).rd_id,
            lower,
            upper,
            indexes,
        }
    }
}

/// The partition for `id`, open and locked: the remembered one while it holds the id and
/// nothing has been invalidated since, else routed afresh.
unsafe fn open_leaf(plan: &mut Plan, events: pg_sys::Relation, id: i64) -> pg_sys::Relation {
    if let Some(relation) = open_remembered_leaf(plan, &[id]) {
        return relation;
    }
    plan.leaf = None;
    if plan.stamp != generation() {
        *plan = Plan::build(events);
    }
    let (oid, lower, upper) = route(events, id);
    let relation = pg_sys::table_open(oid, pg_sys::RowExclusiveLock as i32);
    plan.leaf = Some(Leaf::build(relation, lower, upper));
    plan.stamp = generation();
    relation
}

/// Log one event of each type in `fired`, all with `payload`, for fan-out once committed.
pub unsafe fn log(fired: &[&str], payload: *mut pg_sys::Jsonb) {
    let size = pgrx::varlena::varsize_any(payload as *const _);
    if size > MAX_PAYLOAD_BYTES {
        refuse_oversized(size, fired[0]);
    }
    assert!(
        fired.len() <= MAX_FIRED,
        "a change fires at most {MAX_FIRED} events"
    );
    PLAN.with_borrow_mut(|plan| {
        // Usually every id falls in the partition the last event went to, and only it is
        // locked, as `INSERT INTO` that partition would: the partitioned log itself is locked
        // (and its partitions looked up) only when the ids fall elsewhere or something has
        // been invalidated.
        let mut drawn = None;
        if let Some(current) = plan
            .as_mut()
            .filter(|p| p.stamp == generation() && p.leaf.is_some())
        {
            let (ids, transaction) = draw_ids(current.events_id, fired.len());
            if let Some(leaf) = open_remembered_leaf(current, &ids[..fired.len()]) {
                let held = current.leaf.as_ref().expect("just opened");
                write(held, leaf, fired, &ids[..fired.len()], transaction, payload);
                return;
            }
            drawn = Some((current.events_id, ids, transaction));
        }
        let events = open_events();
        let current = plan
            .as_ref()
            .is_some_and(|p| p.stamp == generation() && p.events == (*events).rd_id);
        if !current {
            *plan = None;
            *plan = Some(Plan::build(events));
        }
        let plan = plan.as_mut().expect("just built");
        let (ids, transaction) = match drawn {
            Some((sequence, ids, transaction)) if sequence == plan.events_id => (ids, transaction),
            _ => draw_ids(plan.events_id, fired.len()),
        };
        // The events of one change go to one partition, unless a new period began between them.
        let mut first = 0;
        while first < fired.len() {
            let leaf = open_leaf(plan, events, ids[first]);
            let held = plan.leaf.as_ref().expect("just opened");
            let count = ids[first..fired.len()]
                .iter()
                .take_while(|&&id| held.lower <= id && id < held.upper)
                .count();
            let range = first..first + count;
            write(
                held,
                leaf,
                &fired[range.clone()],
                &ids[range],
                transaction,
                payload,
            );
            first += count;
        }
        pg_guard_ffi_boundary(|| raw::table_close(events, pg_sys::NoLock as i32));
    });
}

/// The remembered partition, open and locked, if it holds every one of `ids` and nothing has
/// been invalidated since it was resolved (locking it has taken in any invalidation, a
/// detached partition's among them).
unsafe fn open_remembered_leaf(plan: &Plan, ids: &[i64]) -> Option<pg_sys::Relation> {
    let leaf = plan
        .leaf
        .as_ref()
        .filter(|l| ids.iter().all(|&id| l.lower <= id && id < l.upper))?;
    let relation = pg_sys::try_table_open(leaf.oid, pg_sys::RowExclusiveLock as i32);
    if relation.is_null() {
        return None;
    }
    if plan.stamp == generation() {
        return Some(relation);
    }
    pg_sys::table_close(relation, pg_sys::RowExclusiveLock as i32);
    None
}

/// The transaction's id, then `count` event ids: fan_out()'s marks rely on a transaction's id
/// preceding its event ids. (The tracked row's write has assigned it already.)
unsafe fn draw_ids(sequence: Oid, count: usize) -> ([i64; MAX_FIRED], u64) {
    let mut ids = [0i64; MAX_FIRED];
    // Nothing in this closure has a destructor or can panic (see ffi::raw).
    let transaction = pg_guard_ffi_boundary(|| {
        let transaction = raw::GetTopFullTransactionId().value;
        for id in ids.iter_mut().take(count) {
            *id = raw::nextval_internal(sequence, false);
        }
        transaction
    });
    (ids, transaction)
}

/// Insert the rows and their index entries into the partition `leaf` and close it: one
/// guarded call into PostgreSQL instead of a dozen and more.
unsafe fn write(
    plan: &Leaf,
    events: pg_sys::Relation,
    fired: &[&str],
    ids: &[i64],
    transaction: u64,
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
    let oids = plan.indexes.iter().map(|(oid, _)| *oid);
    // Nothing in this closure has a destructor or can panic (see ffi::raw).
    pg_guard_ffi_boundary(|| {
        let command = raw::GetCurrentCommandId(true);
        let now = raw::GetCurrentTransactionStartTimestamp();
        for (slot, oid) in indexes.iter_mut().zip(oids) {
            *slot = raw::index_open(oid, pg_sys::RowExclusiveLock as i32);
        }
        for (event_type, &id) in fired.iter().zip(ids) {
            let type_text = raw::cstring_to_text_with_len(
                event_type.as_ptr() as *const _,
                event_type.len() as i32,
            );
            let mut values = [
                Datum::from(id),
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
