//! Calling PostgreSQL from the tracker.
//!
//! - Functions pgrx's bindings leave out (their headers are not in its binding set), guarded
//!   like every binding: an ERROR raised inside one becomes a Rust panic instead of a longjmp
//!   across Rust frames.
//! - `raw`: the same declarations pgrx guards one call at a time, unguarded, for the hot path
//!   to make a dozen calls inside one `pg_guard_ffi_boundary`. Each guard costs about 100
//!   instructions, and a tracked write made 35 guarded calls.

use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::pg_sys::Datum;
use std::ffi::c_int;

/// PostgreSQL functions without pgrx's guard. Call them only inside one
/// `pg_guard_ffi_boundary` closure whose frame holds nothing with a destructor and that
/// cannot panic, so that an ERROR's longjmp skips only plain frames (pgrx's documented rule).
pub mod raw {
    use pgrx::pg_sys::*;
    use std::ffi::{c_char, c_int};

    unsafe extern "C-unwind" {
        pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
        pub fn datum_image_eq(value1: Datum, value2: Datum, by_val: bool, len: c_int) -> bool;

        pub fn table_close(relation: Relation, lockmode: LOCKMODE);
        pub fn index_open(relation: Oid, lockmode: LOCKMODE) -> Relation;
        pub fn index_close(relation: Relation, lockmode: LOCKMODE);
        pub fn RelationGetNumberOfBlocksInFork(
            relation: Relation,
            fork: ForkNumber::Type,
        ) -> BlockNumber;

        pub fn GetCurrentCommandId(used: bool) -> CommandId;
        pub fn GetCurrentTransactionStartTimestamp() -> TimestampTz;
        pub fn GetTopFullTransactionId() -> FullTransactionId;

        pub fn cstring_to_text_with_len(s: *const c_char, len: c_int) -> *mut text;
        pub fn heap_form_tuple(desc: TupleDesc, values: *mut Datum, nulls: *mut bool) -> HeapTuple;
        pub fn heap_insert(
            relation: Relation,
            tuple: HeapTuple,
            command: CommandId,
            options: c_int,
            bistate: BulkInsertState,
        );
        pub fn index_insert(
            index: Relation,
            values: *mut Datum,
            nulls: *mut bool,
            heap_tid: ItemPointer,
            heap: Relation,
            check_unique: IndexUniqueCheck::Type,
            index_unchanged: bool,
            info: *mut IndexInfo,
        ) -> bool;

        pub fn ReadBuffer(relation: Relation, block: BlockNumber) -> Buffer;
        pub fn LockBuffer(buffer: Buffer, mode: c_int);
        pub fn ReleaseBuffer(buffer: Buffer);
        pub fn heap_hot_search_buffer(
            tid: ItemPointer,
            relation: Relation,
            buffer: Buffer,
            snapshot: Snapshot,
            tuple: HeapTuple,
            all_dead: *mut bool,
            first_call: bool,
        ) -> bool;
        pub fn heap_copytuple(tuple: HeapTuple) -> HeapTuple;
    }
}

/// utils/datum.h: equality of two values' stored forms.
pub unsafe fn datum_image_eq(
    value1: Datum,
    value2: Datum,
    typ_by_val: bool,
    typ_len: c_int,
) -> bool {
    pg_guard_ffi_boundary(|| raw::datum_image_eq(value1, value2, typ_by_val, typ_len))
}
