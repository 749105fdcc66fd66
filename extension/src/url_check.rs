//! Endpoint URL validation, done with a real URL parser rather than a regular expression.

use crate::errors::invalid_parameter;
use pgrx::prelude::*;

const FUNCTION: &str = "webhooks.check_endpoint_url";

/// Why a URL is not acceptable as a webhook endpoint.
#[derive(Debug, PartialEq)]
pub enum UrlProblem {
    Unparsable(String),
    NoHost,
    Scheme(String),
    Credentials,
}

/// Parse `raw` and return it normalised, or the reason it cannot be an endpoint.
pub fn validate(raw: &str, allow_http: bool) -> Result<String, UrlProblem> {
    let raw = raw.trim();
    let parsed = url::Url::parse(raw).map_err(|e| UrlProblem::Unparsable(e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        other => return Err(UrlProblem::Scheme(other.to_string())),
    }
    // The URL standard repairs `https:///nohost` and `https:nohost` into `https://nohost/`:
    // a host must be written where it belongs, right after `//`.
    let written_host = raw
        .split_once("://")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|first| !matches!(first, '/' | '\\' | '?' | '#'));
    if !written_host || parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlProblem::NoHost);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    Ok(parsed.to_string())
}

/// Validate an endpoint URL; returns it normalised or raises an ERROR naming the problem.
#[pg_extern(immutable, parallel_safe)]
pub fn check_endpoint_url(url: &str, allow_http: default!(bool, false)) -> String {
    match validate(url, allow_http) {
        Ok(normalised) => normalised,
        Err(UrlProblem::Unparsable(why)) => invalid_parameter(
            format!("endpoint URL \"{url}\" is not a valid URL: {why}"),
            "Give an absolute URL such as https://example.com/webhooks.",
            FUNCTION,
        ),
        Err(UrlProblem::NoHost) => invalid_parameter(
            format!("endpoint URL \"{url}\" has no host"),
            "Give an absolute URL with a host name, such as https://example.com/webhooks.",
            FUNCTION,
        ),
        Err(UrlProblem::Scheme(scheme)) => invalid_parameter(
            format!("endpoint URL \"{url}\" uses scheme \"{scheme}\"; only https is allowed"),
            if scheme == "http" {
                "Use https. For local development an admin can allow http with SELECT webhooks.set_setting('allow_http', 'true')."
            } else {
                "Use an https:// URL."
            },
            FUNCTION,
        ),
        Err(UrlProblem::Credentials) => invalid_parameter(
            format!("endpoint URL \"{url}\" contains a user name or password"),
            "Remove the credentials from the URL; receivers authenticate deliveries by their signature.",
            FUNCTION,
        ),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn accepts_https_and_normalises() {
        assert_eq!(
            validate("https://Example.com", false),
            Ok("https://example.com/".into())
        );
    }

    #[test]
    fn refuses_http_unless_allowed() {
        assert_eq!(
            validate("http://x.test/", false),
            Err(UrlProblem::Scheme("http".into()))
        );
        assert!(validate("http://x.test/", true).is_ok());
    }

    #[test]
    fn refuses_garbage_hostless_and_credentials() {
        assert!(matches!(
            validate("not a url", false),
            Err(UrlProblem::Unparsable(_))
        ));
        assert!(matches!(
            validate("https://", false),
            Err(UrlProblem::Unparsable(_))
        ));
        assert_eq!(
            validate("https://u:p@x.test/", false),
            Err(UrlProblem::Credentials)
        );
        assert_eq!(
            validate("ftp://x.test/", true),
            Err(UrlProblem::Scheme("ftp".into()))
        );
        for hostless in [
            "https:///nohost",
            "https:nohost",
            "https:/nohost",
            "https://\\nohost",
        ] {
            assert_eq!(
                validate(hostless, false),
                Err(UrlProblem::NoHost),
                "{hostless}"
            );
        }
        assert!(validate("  https://host.test/a  ", false).is_ok());
    }
}
