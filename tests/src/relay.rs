//! The real `webhook-relay` binary, started against a test cluster and stopped with SIGTERM.
//!
//! The binary is `$WEBHOOK_RELAY_BIN`, else `target/debug/webhook-relay` of this workspace
//! (`cargo xtask test` builds it before the tests run). Its output goes to a log file that
//! `logs()` returns, so a failing test can show what the relay said.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Relay {
    child: Option<Child>,
    health_port: u16,
    log: tempfile::NamedTempFile,
}

pub fn binary() -> PathBuf {
    std::env::var_os("WEBHOOK_RELAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/webhook-relay")
        })
}

impl Relay {
    /// Start the relay on `database_url` with extra flags, and wait until /healthz says 200.
    pub async fn start(database_url: &str, extra_args: &[&str]) -> Result<Relay> {
        let relay = Relay::spawn(database_url, extra_args)?;
        relay.wait_healthy(Duration::from_secs(20)).await?;
        Ok(relay)
    }

    /// Start the relay without waiting for it to become healthy.
    pub fn spawn(database_url: &str, extra_args: &[&str]) -> Result<Relay> {
        let bin = binary();
        if !bin.exists() {
            bail!(
                "{} does not exist: run `cargo build -p webhook-relay` (cargo xtask test does)",
                bin.display()
            );
        }
        let health_port = crate::free_port();
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(&bin)
            .arg("--database-url")
            .arg(database_url)
            .arg("--health-addr")
            .arg(format!("127.0.0.1:{health_port}"))
            .args(extra_args)
            .env(
                "WEBHOOK_RELAY_LOG",
                std::env::var("WEBHOOK_RELAY_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Relay {
            child: Some(child),
            health_port,
            log,
        })
    }

    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.health_port)
    }

    /// GET /healthz: the status code and body, or an error if nothing answers.
    pub async fn health(&self) -> Result<(u16, String)> {
        http_get(self.health_port, "/healthz").await
    }

    /// GET /metrics: the value of every sample line (`name{labels} value`), by `name{labels}`.
    pub async fn metrics(&self) -> Result<std::collections::HashMap<String, f64>> {
        let (status, body) = http_get(self.health_port, "/metrics").await?;
        anyhow::ensure!(status == 200, "/metrics answered {status}: {body}");
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
            .collect())
    }

    pub async fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.health().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "relay not healthy after {timeout:?}; its log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM, then wait up to `timeout` for the exit status.
    pub async fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .context("relay already stopped")?;
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        match self.exit_within(timeout).await? {
            Some(status) => Ok(status),
            None => {
                self.kill();
                bail!(
                    "relay did not exit within {timeout:?} of SIGTERM; its log:\n{}",
                    self.logs()
                )
            }
        }
    }

    /// Wait up to `timeout` for the relay to exit by itself; its exit status.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match self.exit_within(timeout).await? {
            Some(status) => Ok(status),
            None => bail!(
                "relay still running after {timeout:?}; its log:\n{}",
                self.logs()
            ),
        }
    }

    /// The exit status once the process has exited, or None if it is still running after
    /// `timeout`.
    async fn exit_within(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let child = self.child.as_mut().context("relay already stopped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal plain-HTTP GET against 127.0.0.1, enough for /healthz and /metrics.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut raw)).await??;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP response")?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
