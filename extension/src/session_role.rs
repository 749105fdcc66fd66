//! Who is calling a security-definer function. Inside one, `current_user` is the function's
//! owner; `session_user` ignores SET ROLE. The role the session acts as (its user, or the
//! role it SET ROLE to) is PostgreSQL's "outer" user id, which security-definer functions in
//! between do not change: the role whose rights `webhooks.track()` checks.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// The role this session acts as, whatever security-definer functions stand between.
#[pg_extern(stable, parallel_safe, name = "_session_role")]
fn session_role() -> pg_sys::Oid {
    // SAFETY: a backend global, set at login and by SET ROLE.
    unsafe { pg_sys::GetOuterUserId() }
}
