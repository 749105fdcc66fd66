//! PostgreSQL functions the tracker calls that pgrx's bindings leave out (their headers are
//! not in its binding set), guarded like every binding: an ERROR raised inside one becomes a
//! Rust panic instead of a longjmp across Rust frames.

use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::pg_sys::{Datum, Oid};
use std::ffi::{c_char, c_int};

mod raw {
    use super::*;
    unsafe extern "C-unwind" {
        pub fn nextval_internal(relid: Oid, check_permissions: bool) -> i64;
        pub fn Async_Notify(channel: *const c_char, payload: *const c_char);
        pub fn datum_image_eq(
            value1: Datum,
            value2: Datum,
            typ_by_val: bool,
            typ_len: c_int,
        ) -> bool;
    }
}

/// commands/sequence.h: the next value of a sequence, without a privilege check (the tracker
/// writes the log as the extension, whatever the writer may do).
pub unsafe fn nextval_internal(relid: Oid, check_permissions: bool) -> i64 {
    pg_guard_ffi_boundary(|| raw::nextval_internal(relid, check_permissions))
}

/// commands/async.h: what `pg_notify()` does.
pub unsafe fn async_notify(channel: *const c_char, payload: *const c_char) {
    pg_guard_ffi_boundary(|| raw::Async_Notify(channel, payload))
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
