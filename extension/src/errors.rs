//! SQL errors with a hint: every refusal names the bad value and says what would be valid.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raise `ERROR` with `code`, a message, an optional detail and a hint.
pub fn raise(
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: String,
    function: &'static str,
) -> ! {
    let mut report = ErrorReport::new(code, message, function).set_hint(hint);
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raise `ERROR` with SQLSTATE 22023 (invalid_parameter_value), a message and a hint.
pub fn invalid_parameter(message: String, hint: &str, function: &'static str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        None,
        hint.to_string(),
        function,
    )
}
