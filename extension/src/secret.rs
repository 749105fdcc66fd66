//! Signing secrets: 32 bytes from the server's strong random source, hex encoded.

use pgrx::prelude::*;

/// A fresh signing secret, `whsec_` followed by 64 lowercase hex digits (256 bits).
#[pg_extern(volatile, parallel_safe)]
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    // SAFETY: the buffer is valid for `len` bytes; pg_strong_random only writes into it.
    let ok = unsafe { pgrx::pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) };
    if !ok {
        error!("pg_webhooks: the server's strong random source failed");
    }
    let mut secret = String::with_capacity(6 + 64);
    secret.push_str("whsec_");
    for b in bytes {
        secret.push_str(&format!("{b:02x}"));
    }
    secret
}
