//! Keep-alive connections per origin (scheme, host and port), on hyper's HTTP/1 connection API.
//!
//! hyper-util's pooled client did this job before, with more work per request than the request
//! itself needed: it hashed its pool key (with SipHash) twice, built the Host header from the
//! URL and rewrote the URL to its path every time, and went through several layers of futures
//! and a one-shot channel to check a connection out. Here a [`Destination`] is worked out once
//! per endpoint and claim, and a request takes an idle connection from a short list under a
//! lock, or makes one.
//!
//! Why it is hand-written: with it, the relay spent less CPU per drained delivery and drained
//! faster against the same receiver than with hyper-util's client, measured with `cargo xtask
//! bench relay` on both (docs/benchmarks-history.md, "Figures behind the code"). What it
//! does beyond that client: it hands a connection back only after its response was read to the
//! end, closes one idle for 60 s, and sends a request that a pooled connection could not take
//! (the receiver had closed it; the request never left) on a new connection.

use crate::guard::GuardedResolver;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tower_service::Service;

pub type Sender = SendRequest<Full<Bytes>>;
type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// Where an endpoint's requests go, worked out once from its URL.
#[derive(Debug)]
pub struct Destination {
    /// The absolute URL: what the connector resolves and connects to.
    pub uri: Uri,
    /// The request target as sent: path and query.
    pub target: Uri,
    /// The Host header: the host, and the port unless it is the scheme's default.
    pub host: HeaderValue,
    /// The host, if it is an address literal: the connector does not resolve those, so the
    /// SSRF guard is asked about them before the request.
    pub literal_ip: Option<IpAddr>,
    /// The pool's key: scheme, host and port.
    origin: Box<str>,
}

impl Destination {
    /// An absolute http or https URL, or why it is not one.
    pub fn parse(url: &str) -> Result<Destination, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("invalid endpoint URL: {e}"))?;
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return Err(format!(
                "invalid endpoint URL: {url} is not an absolute http(s) URL"
            ));
        };
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            other => return Err(format!("invalid endpoint URL: unsupported scheme {other}")),
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let target = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("invalid endpoint URL: {e}"))?;
        Ok(Destination {
            literal_ip: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok(),
            host: HeaderValue::from_str(&host_header)
                .map_err(|e| format!("invalid endpoint URL: host: {e}"))?,
            origin: format!("{scheme}://{host}:{port}").into_boxed_str(),
            target,
            uri,
        })
    }
}

/// An idle connection and when it became idle.
struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
struct Idlers {
    by_origin: FxHashMap<Box<str>, Vec<Idle>>,
    last_sweep: Option<Instant>,
}

pub struct Pool {
    connector: Connector,
    idle: Mutex<Idlers>,
    max_idle_per_origin: usize,
    idle_timeout: Duration,
}

/// Why no connection could be had: DNS, the SSRF guard, TCP, TLS or the HTTP/1 handshake.
pub type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl Pool {
    pub fn new(connector: Connector, max_idle_per_origin: usize, idle_timeout: Duration) -> Self {
        Pool {
            connector,
            idle: Mutex::new(Idlers::default()),
            max_idle_per_origin,
            idle_timeout,
        }
    }

    /// The most recently used idle connection to `to` that is still open, if any.
    pub fn checkout(&self, to: &Destination) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("the pool's lock is never poisoned");
        let list = idle.by_origin.get_mut(&to.origin)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    /// Put a connection whose exchange finished back for reuse (dropped, and so closed, if the
    /// origin already has as many idle connections as allowed).
    pub fn checkin(&self, to: &Destination, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("the pool's lock is never poisoned");
        // Now and then, close what has idled too long, so that the connections to endpoints
        // no longer sent to do not stay open for ever.
        if idle
            .last_sweep
            .is_none_or(|at| now.duration_since(at) >= self.idle_timeout)
        {
            idle.last_sweep = Some(now);
            let timeout = self.idle_timeout;
            idle.by_origin.retain(|_, list| {
                list.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) < timeout);
                !list.is_empty()
            });
        }
        let list = match idle.by_origin.get_mut(&to.origin) {
            Some(list) => list,
            None => idle.by_origin.entry(to.origin.clone()).or_default(),
        };
        if list.len() < self.max_idle_per_origin {
            list.push(Idle { sender, since: now });
        }
    }

    /// A new connection to `to`, its HTTP/1 state machine running in a task of its own.
    pub async fn connect(&self, to: &Destination) -> Result<Sender, ConnectError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(to.uri.clone()).await?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_names_a_port_only_when_it_is_not_the_default() {
        let plain = Destination::parse("https://hooks.example.com/in?x=1").unwrap();
        assert_eq!(plain.host, "hooks.example.com");
        assert_eq!(plain.target, "/in?x=1");
        assert_eq!(&*plain.origin, "https://hooks.example.com:443");
        let ported = Destination::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(ported.host, "127.0.0.1:8443");
        assert_eq!(ported.target, "/");
        let v6 = Destination::parse("http://[::1]:80/x").unwrap();
        assert_eq!(v6.host, "[::1]");
        assert_eq!(&*v6.origin, "http://[::1]:80");
        assert_eq!(v6.literal_ip, Some("::1".parse().unwrap()));
        assert_eq!(ported.literal_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(plain.literal_ip, None);
    }

    #[test]
    fn a_url_that_is_not_absolute_http_is_refused() {
        for url in ["/relative", "ftp://example.com/x", "not a url"] {
            let error = Destination::parse(url).unwrap_err();
            assert!(error.starts_with("invalid endpoint URL"), "{url}: {error}");
        }
    }
}
