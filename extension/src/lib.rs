//! `pg_webhooks`: the system of record for webhook deliveries.
//!
//! Almost everything lives in plain SQL (see `extension/sql/`), so a DBA can read it with
//! `\sf`. Rust supplies only what SQL does badly: strict URL parsing, strong secrets, and the
//! tracking trigger, which must cost an application's write as little as possible.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod errors;
mod fan_out_lock;
mod secret;
mod session_role;
mod tracking;
mod url_check;

extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
extension_sql_file!(
    "../sql/api.sql",
    name = "api",
    requires = [
        "catalog",
        url_check::check_endpoint_url,
        secret::generate_secret
    ]
);
extension_sql_file!(
    "../sql/relay.sql",
    name = "relay",
    requires = ["api", fan_out_lock::lock_fan_out]
);
extension_sql_file!(
    "../sql/tracking.sql",
    name = "tracking",
    requires = [
        "relay",
        tracking::track_changes,
        tracking::check_trackable,
        session_role::session_role
    ]
);
extension_sql_file!(
    "../sql/retention.sql",
    name = "retention",
    requires = ["tracking"]
);
extension_sql_file!(
    "../sql/backup.sql",
    name = "backup",
    requires = ["retention"]
);
extension_sql_file!(
    "../sql/privileges.sql",
    name = "privileges",
    requires = ["backup"],
    finalize
);

/// `#[pg_test]`s, run inside a real PostgreSQL by `cargo pgrx test`, one transaction each.
/// `#[pg_schema]` needs an inline module, so the topic files are included.
#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    include!("tests/support.rs");
    include!("tests/catalog.rs");
    include!("tests/endpoints.rs");
    include!("tests/events.rs");
    include!("tests/privileges.rs");
    include!("tests/relay.rs");
    include!("tests/retention.rs");
    include!("tests/secrets.rs");
    include!("tests/security.rs");
    include!("tests/tracking.rs");
}

/// Required by `cargo pgrx test`: one-off setup and the test cluster's settings.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
