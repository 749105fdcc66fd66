//! The HTTPS client: keep-alive connections shared by every endpoint (pool.rs), redirects
//! never followed, the whole exchange under one timeout, and only the first bytes of a
//! response kept.

use crate::delivery::Failure;
use crate::guard::{Blocked, GuardedResolver, NetworkPolicy};
use crate::headers::SentHeaders;
use crate::pool::{ConnectError, Destination, Pool, Sender};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Response bytes kept in the attempt log.
pub const KEPT_BODY_BYTES: usize = 1024;
/// Response bytes read (and thrown away) so the connection can be reused; past this the
/// connection is dropped instead, so a huge response costs no memory and little time.
const DRAINED_BODY_BYTES: usize = 64 * 1024;
/// Longest Retry-After the relay will honour.
const MAX_RETRY_AFTER: f64 = 86_400.0;

/// What came back from one POST. `status` is None when no response arrived (`failure` says
/// why).
#[derive(Debug, Default)]
pub struct Exchange {
    pub status: Option<u16>,
    pub body_prefix: Option<String>,
    pub retry_after_seconds: Option<f64>,
    pub failure: Option<Failure>,
}

impl Exchange {
    pub fn failed(failure: Failure) -> Self {
        Exchange {
            failure: Some(failure),
            ..Default::default()
        }
    }
}

pub struct HttpClient {
    pool: Pool,
    timeout: Duration,
    policy: Arc<NetworkPolicy>,
}

impl HttpClient {
    /// A client trusting the public web roots plus the certificates in `extra_ca_file`, as
    /// issuers and, presented by a receiver as they are, as its certificate (`pinned`).
    pub fn new(
        extra_ca_file: Option<&Path>,
        timeout: Duration,
        idle_per_host: usize,
        policy: NetworkPolicy,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut named = Vec::new();
        if let Some(path) = extra_ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading CA file {}", path.display()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.with_context(|| format!("parsing CA file {}", path.display()))?;
                named.push(cert.clone());
                roots
                    .add(cert)
                    .with_context(|| format!("adding a CA from {}", path.display()))?;
                added += 1;
            }
            anyhow::ensure!(
                added > 0,
                "CA file {} holds no PEM certificates",
                path.display()
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .context("configuring TLS certificate verification")?;
        let verifier = crate::pinned::PinnedOrWebPki::new(
            named,
            webpki,
            provider.signature_verification_algorithms,
        );
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("configuring TLS")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();

        let policy = Arc::new(policy);
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            // Plain http only reaches here when an admin enabled the allow_http setting.
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(HttpClient {
            pool: Pool::new(https, idle_per_host, Duration::from_secs(60)),
            timeout,
            policy,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POST `body` with `headers`; never follows a redirect, never fails: every problem is
    /// described in the returned Exchange.
    pub async fn post(&self, to: &Destination, headers: &SentHeaders, body: Bytes) -> Exchange {
        // The connector skips its resolver for an address literal: check those here.
        if let Some(ip) = to.literal_ip {
            if let Err(blocked) = self.policy.check(to.uri.host().unwrap_or_default(), ip) {
                return Exchange::failed(Failure::Unsendable(blocked.0));
            }
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = to.target.clone();
        let mut header_map = headers.header_map();
        header_map.insert(HOST, to.host.clone());
        *request.headers_mut() = header_map;
        match tokio::time::timeout(self.timeout, self.exchange(to, request)).await {
            Ok(exchange) => exchange,
            Err(_) => Exchange::failed(Failure::NoResponse(format!(
                "timeout: no complete response within {}s",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    async fn exchange(&self, to: &Destination, request: Request<Full<Bytes>>) -> Exchange {
        let (sender, response) = match self.send(to, request).await {
            Ok(sent) => sent,
            Err(failed) => return failed,
        };
        let status = response.status();
        let retry_after_seconds = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                .headers()
                .get(RETRY_AFTER)
                .and_then(parse_retry_after),
            _ => None,
        };
        let closing = response
            .headers()
            .get(CONNECTION)
            .is_some_and(asks_to_close);
        let body = read_capped(response.into_body()).await;
        // Only a connection whose response was read to the end can carry the next request, and
        // not one the receiver is closing: hyper closes it a moment after the response, and a
        // request sent on it meanwhile would fail after it left.
        if body.complete && !closing {
            self.pool.checkin(to, sender);
        }
        Exchange {
            status: Some(status.as_u16()),
            body_prefix: Some(body.kept),
            retry_after_seconds,
            failure: body
                .error
                .map(|e| Failure::BodyIncomplete(format!("response body incomplete: {e}"))),
        }
    }

    /// Send on an idle connection, or on a new one. A request that an idle connection could
    /// not take (the receiver had closed it) goes on another: it never left.
    async fn send(
        &self,
        to: &Destination,
        mut request: Request<Full<Bytes>>,
    ) -> Result<(Sender, Response<Incoming>), Exchange> {
        let mut idle = self.pool.checkout(to);
        loop {
            let fresh = idle.is_none();
            let mut sender = match idle.take() {
                Some(sender) => sender,
                // Boxed: connecting (TCP, TLS, HTTP/1 handshake) is most of this future's state
                // and rare, and the whole future is moved into the timeout of every request.
                None => Box::pin(self.pool.connect(to))
                    .await
                    .map_err(connect_failure)?,
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(request_failed(&e));
                }
                idle = self.pool.checkout(to);
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((sender, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        idle = self.pool.checkout(to);
                    }
                    _ => return Err(request_failed(e.error())),
                },
            }
        }
    }
}

/// A connection that could not be made: refused by the SSRF guard (for good), or failed.
fn connect_failure(error: ConnectError) -> Exchange {
    if let Some(blocked) = find_source::<Blocked>(&*error) {
        return Exchange::failed(Failure::Unsendable(blocked.0.clone()));
    }
    let chain = error_chain(&*error);
    let advice = crate::pinned::advice(&chain)
        .map(|advice| format!(" {advice}"))
        .unwrap_or_default();
    Exchange::failed(Failure::NoResponse(format!(
        "could not connect: {chain}{advice}"
    )))
}

/// A request that a connection did not carry to a response.
fn request_failed(error: &hyper::Error) -> Exchange {
    Exchange::failed(Failure::NoResponse(format!(
        "request failed: {}",
        error_chain(error)
    )))
}

/// What `read_capped` kept of a response body.
struct BodyRead {
    /// The first KEPT_BODY_BYTES, as text PostgreSQL accepts.
    kept: String,
    /// The body was read to its end.
    complete: bool,
    /// Why the body ended early, if it broke off.
    error: Option<String>,
}

/// Keep the first KEPT_BODY_BYTES of the body, read on up to DRAINED_BODY_BYTES, then stop.
async fn read_capped(mut body: Incoming) -> BodyRead {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let (complete, error) = loop {
        if seen >= DRAINED_BODY_BYTES {
            break (false, None);
        }
        match body.frame().await {
            None => break (true, None),
            Some(Err(e)) => break (false, Some(error_chain(&e))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = KEPT_BODY_BYTES.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                    seen += data.len();
                }
            }
        }
    };
    BodyRead {
        kept: printable(&kept),
        complete,
        error,
    }
}

/// Text that PostgreSQL accepts: lossy UTF-8 without NUL bytes.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

/// Whether a `Connection` header holds the `close` option (RFC 9110, 7.6.1).
fn asks_to_close(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Retry-After as seconds from now: delta-seconds or an HTTP date, capped at a day.
fn parse_retry_after(value: &HeaderValue) -> Option<f64> {
    let text = value.to_str().ok()?.trim();
    let seconds = match text.parse::<u64>() {
        Ok(s) => s as f64,
        Err(_) => {
            let at = httpdate::parse_http_date(text).ok()?;
            at.duration_since(SystemTime::now())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        }
    };
    Some(seconds.min(MAX_RETRY_AFTER))
}

/// The first error of type `T` in `error`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        // io::Error::source() skips the error it wraps; look inside explicitly.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<T>())
        {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// "outer: inner: innermost", so that a TLS or DNS failure names its cause.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("120")),
            Some(120.0)
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("99999999")),
            Some(MAX_RETRY_AFTER)
        );
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
        let parsed = parse_retry_after(&HeaderValue::from_str(&soon).unwrap()).unwrap();
        assert!((290.0..=300.0).contains(&parsed), "{parsed}");
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(0.0)
        );
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("soon-ish")),
            None
        );
    }

    #[test]
    fn a_connection_header_asks_to_close_when_it_holds_the_close_option() {
        assert!(asks_to_close(&HeaderValue::from_static("close")));
        assert!(asks_to_close(&HeaderValue::from_static(
            "Keep-Alive, Close"
        )));
        assert!(!asks_to_close(&HeaderValue::from_static("keep-alive")));
        assert!(!asks_to_close(&HeaderValue::from_static("closed")));
    }

    #[test]
    fn kept_text_has_no_nul_bytes() {
        assert_eq!(printable(b"a\0b"), "a\u{FFFD}b");
    }
}
