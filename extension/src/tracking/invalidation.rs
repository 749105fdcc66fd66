//! When the tracker's per-backend caches (column positions, people-table probes) must be
//! rebuilt: a generation number that moves whenever PostgreSQL invalidates a relation's cache
//! entry in this backend. Renaming, dropping or adding a column, creating or dropping an
//! index, or re-creating the extension all do; so do GRANT and REVOKE on a table (they rewrite
//! its pg_class row) and, through the role caches' callbacks registered here, changes to roles
//! and role membership, which decide who may read a people table. Row writes do not.
//!
//! PostgreSQL delivers invalidations while a lock is being taken (and at command and
//! transaction boundaries), so a cache read after its table has been opened and locked is
//! never stale. Checking the generation costs a comparison per tracked write, where checking
//! each cached entry against the catalog cost a catalog lookup per entry and write.

use pgrx::pg_guard;
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::Cell;

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_invalidated(_argument: Datum, _relation: Oid) {
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

#[pg_guard]
unsafe extern "C-unwind" fn role_invalidated(_argument: Datum, _cache: i32, _hash: u32) {
    GENERATION.set(GENERATION.get().wrapping_add(1));
}

/// The current generation. Caches stamped with another one are out of date.
pub fn generation() -> u64 {
    if !REGISTERED.get() {
        // SAFETY: called from the backend's thread; the callback lives as long as the library.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relation_invalidated), Datum::from(0));
            for cache in [
                pg_sys::SysCacheIdentifier::AUTHOID,
                pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(
                    cache as i32,
                    Some(role_invalidated),
                    Datum::from(0),
                );
            }
        };
        REGISTERED.set(true);
        // Whatever was cached before the callback existed may be stale.
        GENERATION.set(GENERATION.get().wrapping_add(1));
    }
    GENERATION.get()
}

/// A per-backend cache of values by key, emptied whenever the generation moves. Few keys
/// (one per tracked table and column list), so a vector beats a hash map.
pub struct Cache<K, V> {
    stamp: u64,
    entries: Vec<(K, V)>,
}

impl<K: PartialEq, V: Copy> Cache<K, V> {
    pub const fn new() -> Self {
        Cache {
            stamp: u64::MAX,
            entries: Vec::new(),
        }
    }

    /// The value cached for `key` in this generation, else `make()`'s, which is then cached.
    pub fn get_or_insert(&mut self, key: K, make: impl FnOnce() -> V) -> V {
        let now = generation();
        if self.stamp != now {
            self.entries.clear();
            self.stamp = now;
        }
        if let Some((_, value)) = self.entries.iter().find(|(k, _)| *k == key) {
            return *value;
        }
        let value = make();
        self.entries.push((key, value));
        value
    }
}
