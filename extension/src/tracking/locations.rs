//! Where the row of a candidate or job posting was last found, so that the next payload
//! naming the same id reads that heap slot instead of descending the people table's index.
//!
//! A remembered location is only a hint. The row found there is used only when it is
//! visible to the trigger's snapshot and still holds the id asked for. Under a unique,
//! immediate index on that one column, such a row is the very row the index would give.
//! Anything else falls back to the index probe, which remembers the new location: the row
//! updated out of its HOT chain, deleted, moved by VACUUM FULL or CLUSTER, or its page
//! truncated away.

use super::ffi::raw;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::pg_sys::{self, Datum, Oid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Locations kept per backend before the map starts over: 65,536 entries are about 2 MiB.
const CAPACITY: usize = 65_536;

thread_local! {
    static LOCATIONS: RefCell<HashMap<Key, (pg_sys::BlockNumber, pg_sys::OffsetNumber), Seeded>> =
        RefCell::new(HashMap::with_hasher(Seeded::new()));
}

/// Hashes keys with SplitMix64's finaliser from a per-backend random seed: a fifth of the
/// cost of the standard SipHash, and ids that share their low bits (snowflake ids, multiples
/// of a stride) still spread over the whole map.
struct Seeded(u64);

impl Seeded {
    fn new() -> Self {
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }
}

impl BuildHasher for Seeded {
    type Hasher = Mixer;
    fn build_hasher(&self) -> Mixer {
        Mixer(self.0)
    }
}

struct Mixer(u64);

impl Hasher for Mixer {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(byte as u64);
        }
    }
    fn write_u32(&mut self, word: u32) {
        self.write_u64(word as u64);
    }
    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
    fn write_u64(&mut self, word: u64) {
        let mut z = (self.0 ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A people table and a by-value id: the datum itself is the id, so equal keys are equal ids.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct Key {
    table: Oid,
    id: usize,
}

/// The key under which the row with `id` may be remembered, if the table's probe is one
/// whose answer is unique (see `people::Probe::unique_by_value`). Serializable transactions
/// always take the index probe: it is what takes their predicate locks.
pub fn key(table: Oid, id: Datum, unique_by_value: bool) -> Option<Key> {
    // SAFETY: a backend-global int, only written by PostgreSQL between statements.
    let serializable = unsafe { pg_sys::XactIsoLevel } == pg_sys::XACT_SERIALIZABLE as i32;
    (unique_by_value && !serializable).then_some(Key {
        table,
        id: id.value(),
    })
}

/// Remember that the index led to `tid` (the root of the row's HOT chain) for `key`.
pub fn remember(key: Key, tid: pg_sys::ItemPointerData) {
    let block = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    LOCATIONS.with_borrow_mut(|locations| {
        if locations.len() >= CAPACITY {
            locations.clear();
        }
        locations.insert(key, (block, tid.ip_posid));
    });
}

/// A copy of the row remembered for `key`, if it is still there, visible to `snapshot` and
/// still has the id (column `id_attnum`) the key names.
///
/// # Safety
/// `table` must be open and locked, and `snapshot` an active MVCC snapshot.
pub unsafe fn recall(
    table: pg_sys::Relation,
    key: Key,
    id_attnum: pg_sys::AttrNumber,
    snapshot: pg_sys::Snapshot,
) -> Option<pg_sys::HeapTuple> {
    let (block, offset) = LOCATIONS.with_borrow(|locations| locations.get(&key).copied())?;
    let mut tid = pg_sys::ItemPointerData {
        ip_blkid: pg_sys::BlockIdData {
            bi_hi: (block >> 16) as u16,
            bi_lo: block as u16,
        },
        ip_posid: offset,
    };
    // SAFETY (of the zeroes): a plain C struct, which the search fills.
    let mut found: pg_sys::HeapTupleData = std::mem::zeroed();
    let mut all_dead = false;
    // One guarded call for the whole read; nothing in it has a destructor or can panic.
    let row = pg_guard_ffi_boundary(|| {
        // Reading past the end is an ERROR, and VACUUM may have truncated the remembered
        // page.
        if block >= raw::RelationGetNumberOfBlocksInFork(table, pg_sys::ForkNumber::MAIN_FORKNUM) {
            return std::ptr::null_mut();
        }
        let buffer = raw::ReadBuffer(table, block);
        raw::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
        // Follows the HOT chain from its root to the version this snapshot sees; an offset
        // past the page's end or a reused line pointer simply finds nothing (or another id).
        let visible = raw::heap_hot_search_buffer(
            &mut tid,
            table,
            buffer,
            snapshot,
            &mut found,
            &mut all_dead,
            true,
        );
        let row = if visible {
            raw::heap_copytuple(&mut found)
        } else {
            std::ptr::null_mut()
        };
        raw::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
        raw::ReleaseBuffer(buffer);
        row
    });
    if row.is_null() {
        return None;
    }
    let mut is_null = false;
    let id = pg_sys::heap_getattr(row, id_attnum as i32, (*table).rd_att, &mut is_null);
    if is_null || id.value() != key.id {
        pg_sys::heap_freetuple(row);
        return None;
    }
    Some(row)
}
