//! The candidate and job posting a payload names, read by id through the people table's
//! index on id: one index probe each, without planning or running a query, or, where the row
//! was found before, one read of its remembered heap slot (`locations`).

use super::change::{cached_attnums, relation_name};
use super::invalidation::Cache;
use super::{locations, values};
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::RefCell;
use std::ffi::CStr;

thread_local! {
    /// Probes by (people table, id column, argument type), until a relation's cache entry is
    /// invalidated (creating or dropping one of the table's indexes does that).
    static PROBES: RefCell<Cache<(Oid, pg_sys::AttrNumber, Oid), Probe>> = const { RefCell::new(Cache::new()) };
}

/// How to find a row by id: the index (if any) and the equality function for the id's type.
#[derive(Clone, Copy)]
pub struct Probe {
    index: Oid,
    procedure: pg_sys::RegProcedure,
    subtype: Oid,
    collation: Oid,
    /// The index is unique, immediate and on the id alone, and the id is passed by value in
    /// the column's own type: a row's location may then be remembered (see `locations`).
    unique_by_value: bool,
}

unsafe fn type_name(type_oid: Oid) -> String {
    CStr::from_ptr(pg_sys::format_type_be(type_oid))
        .to_string_lossy()
        .into_owned()
}

/// The first valid b-tree index whose first column is `id_attnum`, preferring the primary key.
unsafe fn index_on_id(
    table: pg_sys::Relation,
    id_attnum: pg_sys::AttrNumber,
) -> Option<pg_sys::Relation> {
    let indexes = pgrx::PgList::<Oid>::from_pg(pg_sys::RelationGetIndexList(table));
    let primary = (*table).rd_pkindex;
    let mut candidates: Vec<Oid> = indexes.iter_oid().collect();
    candidates.sort_by_key(|&oid| oid != primary);
    candidates.into_iter().find_map(|oid| {
        let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as i32);
        let form = &*(*index).rd_index;
        let usable = form.indisvalid
            && (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && form.indkey.values.as_slice(1)[0] == id_attnum
            && (*index).rd_indpred.is_null();
        if usable {
            Some(index)
        } else {
            pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
            None
        }
    })
}

/// How to find rows of `table` whose id equals a value of `argument_type`, or why it cannot.
pub unsafe fn probe(
    table: pg_sys::Relation,
    id_attnum: pg_sys::AttrNumber,
    argument_type: Oid,
) -> Result<Probe, String> {
    let id_attr = &*(*(*table).rd_att)
        .attrs
        .as_ptr()
        .add(id_attnum as usize - 1);
    let (index, family, input_type, collation, unique) = match index_on_id(table, id_attnum) {
        Some(index) => {
            let form = &*(*index).rd_index;
            let found = (
                (*index).rd_id,
                *(*index).rd_opfamily,
                *(*index).rd_opcintype,
                *(*index).rd_indcollation,
                form.indisunique && form.indimmediate && form.indnkeyatts == 1,
            );
            pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
            found
        }
        None => {
            let entry = pg_sys::lookup_type_cache(
                id_attr.atttypid,
                pg_sys::TYPECACHE_BTREE_OPFAMILY as i32,
            );
            (
                pg_sys::InvalidOid,
                (*entry).btree_opf,
                (*entry).btree_opintype,
                id_attr.attcollation,
                false,
            )
        }
    };
    let equal = |right: Oid| {
        pg_sys::get_opfamily_member(
            family,
            input_type,
            right,
            pg_sys::BTEqualStrategyNumber as i16,
        )
    };
    let (operator, subtype) = match equal(argument_type) {
        op if op != pg_sys::InvalidOid => (
            op,
            if argument_type == input_type {
                pg_sys::InvalidOid
            } else {
                argument_type
            },
        ),
        _ if pg_sys::IsBinaryCoercible(argument_type, input_type) => {
            (equal(input_type), pg_sys::InvalidOid)
        }
        _ => (pg_sys::InvalidOid, pg_sys::InvalidOid),
    };
    if family == pg_sys::InvalidOid || operator == pg_sys::InvalidOid {
        return Err(format!(
            "{}.id ({}) cannot be compared with a value of type {}",
            relation_name(table),
            type_name(id_attr.atttypid),
            type_name(argument_type)
        ));
    }
    Ok(Probe {
        index,
        procedure: pg_sys::get_opcode(operator),
        subtype,
        collation,
        unique_by_value: unique && id_attr.attbyval && id_attr.atttypid == argument_type,
    })
}

unsafe fn cached_probe(
    table: pg_sys::Relation,
    id_attnum: pg_sys::AttrNumber,
    argument_type: Oid,
) -> Probe {
    let key = ((*table).rd_id, id_attnum, argument_type);
    PROBES.with_borrow_mut(|probes| {
        probes.get_or_insert(key, || {
            probe(table, id_attnum, argument_type).unwrap_or_else(|why| pgrx::error!("{why}"))
        })
    })
}

/// A copy of the row of `table` whose id column (`id_attnum`) equals `id`, or null: the
/// payload is serialised after the scan has let go of its buffer. When `location` is given,
/// where the index led is remembered under it.
unsafe fn index_probe(
    table: pg_sys::Relation,
    probe: &Probe,
    id_attnum: pg_sys::AttrNumber,
    (id, location): (Datum, Option<locations::Key>),
    snapshot: pg_sys::Snapshot,
) -> pg_sys::HeapTuple {
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyEntryInitialize(
        &mut key,
        0,
        id_attnum,
        pg_sys::BTEqualStrategyNumber as u16,
        probe.subtype,
        probe.collation,
        probe.procedure,
        id,
    );
    let use_index = probe.index != pg_sys::InvalidOid;
    let scan = pg_sys::systable_beginscan(table, probe.index, use_index, snapshot, 1, &mut key);
    let found = pg_sys::systable_getnext(scan);
    let mut row = std::ptr::null_mut();
    if !found.is_null() {
        row = pg_sys::heap_copytuple(found);
        if let Some(location) = location.filter(|_| use_index) {
            locations::remember(location, (*(*scan).iscan).xs_heaptid);
        }
    }
    pg_sys::systable_endscan(scan);
    row
}

/// `table_oid` open for reading. The foreign key checks of a tracked insert have usually
/// locked the people table already, in ROW SHARE mode, which conflicts with all that ACCESS
/// SHARE does and more: that lock serves, as a second, weaker lock would cost this read more
/// than the row itself does.
unsafe fn open_for_reading(table_oid: Oid) -> pg_sys::Relation {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: pg_sys::MyDatabaseId.to_u32(),
        locktag_field2: table_oid.to_u32(),
        locktag_field3: 0,
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    let held = pg_sys::LockHeldByMe(&tag, pg_sys::RowShareLock as i32);
    pg_sys::table_open(
        table_oid,
        if held {
            pg_sys::NoLock
        } else {
            pg_sys::AccessShareLock
        } as i32,
    )
}

/// `{fields...}` of the row of `table_oid` whose id is `id`, or null when there is no such
/// row (or no id), as the SQL subquery gives. `fields` must be in jsonb's key order.
pub unsafe fn row(
    table_oid: Oid,
    fields: &'static [&'static str],
    id: Option<(Datum, Oid)>,
    snapshot: pg_sys::Snapshot,
) -> pg_sys::JsonbValue {
    let Some((id, id_type)) = id else {
        return values::null();
    };
    let table = open_for_reading(table_oid);
    let desc = (*table).rd_att;
    let attnums = cached_attnums(table, fields);
    let probe = cached_probe(table, attnums[0], id_type);
    let location = locations::key(table_oid, id, probe.unique_by_value);
    let row = match location.and_then(|key| locations::recall(table, key, attnums[0], snapshot)) {
        Some(row) => row,
        None => index_probe(table, &probe, attnums[0], (id, location), snapshot),
    };
    let mut object = values::null();
    if !row.is_null() {
        let mut columns = Vec::with_capacity(fields.len());
        for (field, &attnum) in fields.iter().zip(attnums.iter()) {
            let mut is_null = false;
            let datum = pg_sys::heap_getattr(row, attnum as i32, desc, &mut is_null);
            let type_oid = (*(*desc).attrs.as_ptr().add(attnum as usize - 1)).atttypid;
            columns.push((
                *field,
                values::to_jsonb((!is_null).then_some(datum), type_oid),
            ));
        }
        object = values::object(&columns);
    }
    pg_sys::table_close(table, pg_sys::NoLock as i32);
    object
}
