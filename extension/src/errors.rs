//! SQL errors with a hint: every refusal names the bad value and says what would be valid.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raise `ERROR` with SQLSTATE 22023 (invalid_parameter_value), a message and a hint.
pub fn invalid_parameter(message: String, hint: &str, function: &'static str) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        function,
    )
    .set_hint(hint)
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
