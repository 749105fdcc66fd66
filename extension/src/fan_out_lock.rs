//! The lock that makes `webhooks.fan_out()` rounds run one at a time.
//!
//! It must not be a lock any role can take: with `pg_advisory_lock(<key>)` an idle session
//! held every tracked event undelivered. Nor can it be a lock on one of the extension's
//! tables: any role with USAGE on the schema can hold ROW EXCLUSIVE on a table it has no
//! rights on (a `PREPARE`d INSERT keeps the lock its parse analysis took), and a row lock would
//! give the round's transaction its id too early (see `fan_out`). So it is an advisory lock in
//! a class of its own: SQL's advisory functions only reach classes 1 (one bigint key) and 2
//! (two integer keys), and this one uses class 0x7768 ("wh"), which only this code reaches.
//! `pg_locks` shows it as an advisory lock with `objsubid` 30568.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// `objsubid` in `pg_locks`: a class no SQL function can ask for.
const CLASS: u16 = 0x7768;
/// The key within the class: 'webh'.
const KEY: u32 = 0x7765_6268;

/// Take the fan-out lock for the rest of the transaction: wait for it when `wait`, else
/// return false at once if another transaction holds it.
#[pg_extern(volatile, parallel_unsafe, name = "_lock_fan_out")]
fn lock_fan_out(wait: bool) -> bool {
    // SAFETY: a plain C struct filled field by field, as SET_LOCKTAG_ADVISORY does; the
    // database id is a backend global set at connection time.
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: 0,
            locktag_field3: KEY,
            locktag_field4: CLASS,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        let result = pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, !wait);
        result != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }
}
