//! A scripted HTTPS receiver on 127.0.0.1.
//!
//! Its certificate is signed by a throwaway CA made at start-up (rcgen); `ca_file()` is what
//! the relay is told to trust. Every request is recorded (method, path, headers, raw body);
//! replies come from a script queue, then from a default reply (`200 OK` unless a test sets one).

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    /// The first value of a header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            body: String::new(),
            headers: vec![],
        }
    }

    pub fn with_delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn with_body(mut self, body: &str) -> Reply {
        self.body = body.to_string();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    /// The answer once the script is used up (`200 OK` unless a test changes it).
    default_reply: Mutex<Option<Reply>>,
    /// When set, connections bypass HTTP: the request is read and these bytes are written
    /// back as they are, then the connection is closed (garbage, truncated responses).
    raw: Mutex<Option<Vec<u8>>>,
    /// TLS connections accepted so far: how well clients reuse their connections.
    connections: std::sync::atomic::AtomicUsize,
    arrived: Notify,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_file: tempfile::NamedTempFile,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Result<Receiver> {
        let (acceptor, ca_pem) = tls_acceptor()?;
        Self::serve(acceptor, ca_pem).await
    }

    /// A receiver behind a certificate made as most people make one by hand:
    /// `openssl req -x509`, self-signed and marked CA:TRUE, naming 127.0.0.1. `ca_file()` is
    /// that certificate itself.
    pub async fn start_with_openssl_certificate() -> Result<Receiver> {
        let dir = tempfile::tempdir()?;
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("running openssl (apt-get install openssl)")?;
        anyhow::ensure!(
            made.status.success(),
            "openssl req -x509 failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let cert_pem = std::fs::read_to_string(&cert)?;
        let key_pem = std::fs::read(&key)?;
        use rustls::pki_types::pem::PemObject;
        let certificate = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .context("reading openssl's certificate")?;
        let private_key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
            .context("reading openssl's key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate], private_key)?;
        Self::serve(TlsAcceptor::from(Arc::new(config)), cert_pem).await
    }

    async fn serve(acceptor: TlsAcceptor, ca_pem: String) -> Result<Receiver> {
        let mut ca_file = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut ca_file, ca_pem.as_bytes())?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        Ok(Receiver {
            addr,
            shared,
            ca_file,
            ca_pem,
            task,
        })
    }

    /// `https://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.path().to_path_buf()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Queue replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Answer every request the script does not cover with `reply` (instead of `200 OK`).
    pub fn answer_by_default(&self, reply: Reply) {
        *self.shared.default_reply.lock().unwrap() = Some(reply);
    }

    /// Answer every connection from now on with exactly `bytes`, then close it (None: HTTP again).
    pub fn answer_raw(&self, bytes: Option<&[u8]>) {
        *self.shared.raw.lock().unwrap() = bytes.map(<[u8]>::to_vec);
    }

    /// Drop what has been recorded so far (benchmarks reuse one receiver for several phases).
    pub fn forget_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// TLS connections accepted since the receiver started.
    pub fn connection_count(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests have arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "receiver got {} request(s), expected {n} within {timeout:?}",
                    seen.len()
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_acceptor() -> Result<(TlsAcceptor, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
        .signed_by(&leaf_key, &ca, &ca_key)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca.pem()))
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    while let Ok((socket, _)) = listener.accept().await {
        // As real receivers' servers do: a response written in parts (TLS records, headers,
        // body) goes out at once instead of waiting for the client's delayed ACK, which made
        // every delivery to this receiver take 40 ms and more.
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(socket).await else {
                return;
            };
            shared
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let raw = shared.raw.lock().unwrap().clone();
            if let Some(bytes) = raw {
                answer_raw(tls, &bytes, &shared).await;
                return;
            }
            let service = hyper::service::service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Read one request (head and Content-Length body), record it, write `bytes`, close.
async fn answer_raw(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    bytes: &[u8],
    shared: &Shared,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (head_end, length) = loop {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while seen.len() < head_end + length {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&seen[..head_end]).into_owned();
    let mut request_line = head.split_whitespace();
    shared.requests.lock().unwrap().push(Recorded {
        method: request_line.next().unwrap_or_default().to_string(),
        path: request_line.next().unwrap_or_default().to_string(),
        headers: vec![],
        body: Bytes::copy_from_slice(&seen[head_end.min(seen.len())..]),
        at: Instant::now(),
    });
    shared.arrived.notify_waiters();
    let _ = tls.write_all(bytes).await;
    let _ = tls.shutdown().await;
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req.into_body().collect().await?.to_bytes();
    shared.requests.lock().unwrap().push(Recorded {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    });
    shared.arrived.notify_waiters();

    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| shared.default_reply.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::status(200));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body)))
        .expect("scripted reply is a valid response"))
}

/// An HTTPS client (keep-alive, HTTP/1.1) that trusts only `ca_pem`.
pub type TestClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

pub fn https_client(ca_pem: &str) -> Result<TestClient> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(16)
            .build(https),
    )
}

/// POST `body` to `url` trusting only `ca_pem`; returns the status code and response body.
pub async fn https_post(url: &str, ca_pem: &str, body: &str) -> Result<(u16, String)> {
    let client = https_client(ca_pem)?;
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn rustls_pemfile_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    Ok(
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()?,
    )
}
