//! One row change as the rules see it: NEW and OLD column values by name, compared the way
//! SQL compares them (`IS DISTINCT FROM` with the column type's `=` and collation).

use super::invalidation::Cache;
use super::kinds::Kind;
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;

/// Most columns a kind, a people table's payload or the log names.
const MAX_COLUMNS: usize = 12;

/// The attribute numbers of some columns of one table, in the order they were named.
#[derive(Clone, Copy)]
pub struct Attnums {
    count: usize,
    numbers: [pg_sys::AttrNumber; MAX_COLUMNS],
}

impl std::ops::Deref for Attnums {
    type Target = [pg_sys::AttrNumber];
    fn deref(&self) -> &Self::Target {
        &self.numbers[..self.count]
    }
}

thread_local! {
    /// Per (table, column list), until a relation's cache entry is invalidated: a renamed,
    /// dropped or re-added column is then looked up again rather than read at a stale
    /// position.
    static ATTNUMS: RefCell<Cache<(pg_sys::Oid, usize), Attnums>> = const { RefCell::new(Cache::new()) };
}

pub struct Change<'a> {
    pub kind: &'static Kind,
    desc: pg_sys::TupleDesc,
    new: Row,
    /// None on INSERT: every OLD column reads as NULL.
    old: Option<Row>,
    attnums: &'a Attnums,
    /// The last column looked up (its name's address) and its attribute number: the rules
    /// and the payload mostly read a column's value and then its type, or OLD then NEW.
    last_lookup: Cell<(usize, pg_sys::AttrNumber)>,
}

/// A row's columns, taken apart once (in the current memory context): the rules and the
/// payload read a dozen of them, and reading each from the tuple walks the columns before it.
#[derive(Clone, Copy)]
struct Row {
    values: *mut pg_sys::Datum,
    nulls: *mut bool,
}

impl Row {
    unsafe fn deform(tuple: pg_sys::HeapTuple, desc: pg_sys::TupleDesc) -> Row {
        let natts = (*desc).natts as usize;
        let values =
            pg_sys::palloc(natts * std::mem::size_of::<pg_sys::Datum>()) as *mut pg_sys::Datum;
        let nulls = pg_sys::palloc(natts) as *mut bool;
        pg_sys::heap_deform_tuple(tuple, desc, values, nulls);
        Row { values, nulls }
    }

    unsafe fn get(self, attnum: pg_sys::AttrNumber) -> Option<pg_sys::Datum> {
        let i = attnum as usize - 1;
        (!*self.nulls.add(i)).then(|| *self.values.add(i))
    }
}

/// The column's attribute (its name, type and collation).
unsafe fn attribute(
    desc: pg_sys::TupleDesc,
    attnum: pg_sys::AttrNumber,
) -> &'static pg_sys::FormData_pg_attribute {
    &*(*desc).attrs.as_ptr().add(attnum as usize - 1)
}

unsafe fn attribute_is(desc: pg_sys::TupleDesc, attnum: pg_sys::AttrNumber, name: &str) -> bool {
    if attnum < 1 || attnum as i32 > (*desc).natts {
        return false;
    }
    let attr = attribute(desc, attnum);
    !attr.attisdropped && CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes() == name.as_bytes()
}

/// `schema.table`, for messages.
pub unsafe fn relation_name(relation: pg_sys::Relation) -> String {
    let schema = CStr::from_ptr(pg_sys::get_namespace_name(
        (*(*relation).rd_rel).relnamespace,
    ));
    let name = CStr::from_ptr((*(*relation).rd_rel).relname.data.as_ptr());
    format!("{}.{}", schema.to_string_lossy(), name.to_string_lossy())
}

/// Where each of `columns` is in the relation; a missing column is an ERROR naming it.
pub unsafe fn find_attnums(relation: pg_sys::Relation, columns: &[&str]) -> Attnums {
    assert!(
        columns.len() <= MAX_COLUMNS,
        "at most {MAX_COLUMNS} columns"
    );
    let desc = (*relation).rd_att;
    let mut attnums = Attnums {
        count: columns.len(),
        numbers: [0; MAX_COLUMNS],
    };
    for (slot, column) in attnums.numbers.iter_mut().zip(columns) {
        *slot = (1..=(*desc).natts as pg_sys::AttrNumber)
            .find(|&attnum| attribute_is(desc, attnum, column))
            .unwrap_or_else(|| {
                let table = relation_name(relation);
                pgrx::error!(
                    "table {table} has no column \"{column}\" any more; restore the column, or run webhooks.untrack() on the tracked table"
                )
            });
    }
    attnums
}

/// The attribute numbers of `columns` in `relation`, which must be open and locked (so that
/// any invalidation of its cache entry has been received).
pub unsafe fn cached_attnums(
    relation: pg_sys::Relation,
    columns: &'static [&'static str],
) -> Attnums {
    let key = ((*relation).rd_id, columns.as_ptr() as usize);
    ATTNUMS.with_borrow_mut(|cache| cache.get_or_insert(key, || find_attnums(relation, columns)))
}

impl<'a> Change<'a> {
    pub fn new(
        kind: &'static Kind,
        desc: pg_sys::TupleDesc,
        new: pg_sys::HeapTuple,
        old: Option<pg_sys::HeapTuple>,
        attnums: &'a Attnums,
    ) -> Self {
        unsafe {
            Change {
                kind,
                desc,
                new: Row::deform(new, desc),
                old: old.map(|old| Row::deform(old, desc)),
                attnums,
                last_lookup: Cell::new((0, 0)),
            }
        }
    }

    pub fn is_update(&self) -> bool {
        self.old.is_some()
    }

    fn attnum(&self, column: &str) -> pg_sys::AttrNumber {
        let (last, attnum) = self.last_lookup.get();
        if last == column.as_ptr() as usize && attnum != 0 {
            return attnum;
        }
        // The names' lengths mostly differ; the same literal often (not always: the compiler
        // need not merge them) has the same address.
        let position = self.kind.columns.iter().position(|c| {
            c.len() == column.len() && (c.as_ptr() == column.as_ptr() || *c == column)
        });
        let attnum = self.attnums
            [position.unwrap_or_else(|| panic!("{column} is not a column of {}", self.kind.name))];
        self.last_lookup.set((column.as_ptr() as usize, attnum));
        attnum
    }

    /// The column's type and collation.
    pub fn type_of(&self, column: &str) -> (pg_sys::Oid, pg_sys::Oid) {
        let attr = unsafe { attribute(self.desc, self.attnum(column)) };
        (attr.atttypid, attr.attcollation)
    }

    fn get(&self, row: Row, column: &str) -> Option<pg_sys::Datum> {
        unsafe { row.get(self.attnum(column)) }
    }

    pub fn new_value(&self, column: &str) -> Option<pg_sys::Datum> {
        self.get(self.new, column)
    }

    pub fn old_value(&self, column: &str) -> Option<pg_sys::Datum> {
        self.old.and_then(|old| self.get(old, column))
    }

    /// `OLD.column IS DISTINCT FROM NEW.column`.
    pub fn changed(&self, column: &str) -> bool {
        match (self.old_value(column), self.new_value(column)) {
            (None, None) => false,
            (Some(old), Some(new)) => !self.equal(column, old, new),
            _ => true,
        }
    }

    /// `NEW.column = OLD.column` (false when either is NULL).
    pub fn unchanged(&self, column: &str) -> bool {
        match (self.old_value(column), self.new_value(column)) {
            (Some(old), Some(new)) => self.equal(column, old, new),
            _ => false,
        }
    }

    /// `OLD.column IS NULL AND NEW.column IS NOT NULL`.
    pub fn became_set(&self, column: &str) -> bool {
        self.old_value(column).is_none() && self.new_value(column).is_some()
    }

    /// A boolean column that was false or NULL and is now true.
    pub fn became_true(&self, column: &str) -> bool {
        self.old_value(column).is_none_or(|d| d.value() == 0) && self.new_is_true(column)
    }

    pub fn new_is_true(&self, column: &str) -> bool {
        self.new_value(column).is_some_and(|d| d.value() != 0)
    }

    /// `NEW.column::text`, for a column of any type (text, varchar, an enum, ...).
    pub fn new_text(&self, column: &str) -> Option<String> {
        self.new_value(column).map(|d| self.text(column, d))
    }

    pub fn old_text(&self, column: &str) -> Option<String> {
        self.old_value(column).map(|d| self.text(column, d))
    }

    fn text(&self, column: &str, datum: pg_sys::Datum) -> String {
        let (type_oid, _) = self.type_of(column);
        unsafe { super::values::to_text(datum, type_oid) }
    }

    /// The column type's `=`, under the column's collation; types without one compare by
    /// their stored bytes.
    fn equal(&self, column: &str, a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
        let (type_oid, collation) = self.type_of(column);
        unsafe {
            let entry = pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR_FINFO as i32);
            if (*entry).eq_opr_finfo.fn_oid == pg_sys::InvalidOid {
                return super::ffi::datum_image_eq(a, b, (*entry).typbyval, (*entry).typlen as i32);
            }
            pg_sys::FunctionCall2Coll(&mut (*entry).eq_opr_finfo, collation, a, b).value() != 0
        }
    }
}
