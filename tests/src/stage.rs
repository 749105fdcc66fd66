//! The set-up most delivery tests share: a cluster with the extension, an HTTPS receiver, a
//! login role that has only `webhooks_relay` (so the tests prove those grants suffice), and
//! helpers to create endpoints, emit events and read back deliveries and attempts.

use crate::cluster::Cluster;
use crate::receiver::{Receiver, Recorded};
use crate::relay::Relay;
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_postgres::Client;

pub struct Stage {
    pub cluster: Cluster,
    pub db: Client,
    pub receiver: Receiver,
}

/// A delivery row as operators see it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub status: String,
    pub attempts: i32,
    /// Seconds until the next attempt is due (negative when overdue).
    pub due_in_seconds: f64,
    pub leased_by: Option<String>,
}

/// An attempt row.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt_number: i32,
    pub response_status: Option<i32>,
    pub outcome: String,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub request_headers: serde_json::Value,
    pub duration_ms: f64,
}

impl Stage {
    pub async fn new() -> Result<Stage> {
        Self::with_receiver(Receiver::start().await?).await
    }

    /// The same with a receiver of the caller's (another certificate, say).
    pub async fn with_receiver(receiver: Receiver) -> Result<Stage> {
        let (cluster, db) = Cluster::with_app_database().await?;
        db.batch_execute("CREATE ROLE relay_login LOGIN IN ROLE webhooks_relay")
            .await?;
        Ok(Stage {
            cluster,
            db,
            receiver,
        })
    }

    /// Create an endpoint at the receiver's `path`; `options` are extra named arguments of
    /// create_endpoint such as `rate_limit => 5`. Returns (id, signing secret).
    pub async fn endpoint(
        &self,
        path: &str,
        events: &[&str],
        options: &str,
    ) -> Result<(i64, String)> {
        let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let sql = format!(
            "SELECT endpoint_id, signing_secret FROM webhooks.create_endpoint($1, $2{}{options})",
            if options.is_empty() { "" } else { ", " }
        );
        let row = self
            .db
            .query_one(&sql, &[&self.receiver.url(path), &events])
            .await
            .context("create_endpoint")?;
        Ok((row.get(0), row.get(1)))
    }

    /// The relay as `relay_login`, trusting the receiver's CA, polling every 100 ms, with
    /// loopback opened in its SSRF guard (the receiver lives there).
    pub async fn relay(&self, flags: &[&str]) -> Result<Relay> {
        self.relay_guarded(&[&["--allow-network", "127.0.0.0/8"], flags].concat())
            .await
    }

    /// The relay as [`Stage::relay`] starts it, but with the SSRF guard as `flags` set it.
    pub async fn relay_guarded(&self, flags: &[&str]) -> Result<Relay> {
        let ca = self.receiver.ca_file();
        let mut args = vec!["--ca-file", ca.to_str().unwrap()];
        args.extend_from_slice(&["--poll-interval", "100ms"]);
        args.extend_from_slice(flags);
        Relay::start(&self.cluster.connstr_as("app", "relay_login"), &args).await
    }

    /// Emit one event in its own transaction; returns the event id.
    pub async fn emit(&self, event_type: &str, data: serde_json::Value) -> Result<i64> {
        let row = self
            .db
            .query_one(
                "SELECT webhooks.emit($1, $2::text::jsonb)",
                &[&event_type, &data.to_string()],
            )
            .await
            .context("emit")?;
        Ok(row.get(0))
    }

    /// Emit `n` events of one type in a single transaction, data `{"id": 1..n}`.
    pub async fn emit_many(&self, event_type: &str, n: i32) -> Result<()> {
        self.db
            .execute(
                "SELECT webhooks.emit($1, jsonb_build_object('id', g)) FROM generate_series(1, $2) g",
                &[&event_type, &n],
            )
            .await
            .context("emit_many")?;
        Ok(())
    }

    pub async fn scalar<T>(&self, sql: &str) -> Result<T>
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        Ok(self
            .db
            .query_one(sql, &[])
            .await
            .with_context(|| sql.to_string())?
            .get(0))
    }

    pub async fn delivery(&self, event_id: i64, endpoint_id: i64) -> Result<Delivery> {
        let row = self
            .db
            .query_one(
                "SELECT status, attempts, extract(epoch FROM next_attempt_at - now())::float8, leased_by
                   FROM webhooks.deliveries WHERE event_id = $1 AND endpoint_id = $2",
                &[&event_id, &endpoint_id],
            )
            .await
            .context("reading the delivery")?;
        Ok(Delivery {
            status: row.get(0),
            attempts: row.get(1),
            due_in_seconds: row.get(2),
            leased_by: row.get(3),
        })
    }

    pub async fn attempts(&self, event_id: i64, endpoint_id: i64) -> Result<Vec<Attempt>> {
        let rows = self
            .db
            .query(
                "SELECT a.attempt_number, a.response_status, a.outcome, a.error, a.response_body,
                        a.request_headers::text, a.duration_ms
                   FROM webhooks.attempts a JOIN webhooks.deliveries d ON d.id = a.delivery_id
                  WHERE d.event_id = $1 AND d.endpoint_id = $2 ORDER BY a.id",
                &[&event_id, &endpoint_id],
            )
            .await
            .context("reading attempts")?;
        Ok(rows
            .iter()
            .map(|row| Attempt {
                attempt_number: row.get(0),
                response_status: row.get(1),
                outcome: row.get(2),
                error: row.get(3),
                response_body: row.get(4),
                request_headers: serde_json::from_str(row.get::<_, &str>(5)).unwrap(),
                duration_ms: row.get(6),
            })
            .collect())
    }

    /// Wait until the delivery has `n` attempts recorded; returns them.
    pub async fn wait_for_attempts(
        &self,
        event_id: i64,
        endpoint_id: i64,
        n: usize,
    ) -> Vec<Attempt> {
        crate::eventually(
            std::time::Duration::from_secs(20),
            &format!("{n} recorded attempts of event {event_id}"),
            || async {
                let seen = self.attempts(event_id, endpoint_id).await.ok()?;
                (seen.len() >= n).then_some(seen)
            },
        )
        .await
    }

    /// Make waiting retries due now (the schedule's waits are checked before calling this).
    pub async fn retry_now(&self, endpoint_id: i64) -> Result<i32> {
        let row = self
            .db
            .query_one("SELECT webhooks.retry_now($1)", &[&endpoint_id])
            .await?;
        Ok(row.get(0))
    }
}

/// Verify a delivery's signature the way a receiver would, with nothing from the relay's code:
/// HMAC-SHA256(secret, "<X-Webhook-Timestamp>.<raw body>") as lowercase hex.
pub fn signature_is_valid(secret: &str, request: &Recorded) -> bool {
    let (Some(timestamp), Some(signature)) = (
        request.header("x-webhook-timestamp"),
        request.header("x-webhook-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let Ok(claimed) = hex::decode(signature) else {
        return false;
    };
    signature == signature.to_lowercase() && mac.verify_slice(&claimed).is_ok()
}

/// The request body as JSON.
pub fn body_json(request: &Recorded) -> serde_json::Value {
    serde_json::from_slice(&request.body).expect("the body is JSON")
}

/// One `review.submitted` event sent by a running relay to an endpoint at `path` that
/// answers with `replies`, up to its first recorded attempt.
pub struct OneEvent {
    pub stage: Stage,
    pub relay: Relay,
    pub endpoint: i64,
    pub secret: String,
    pub event_id: i64,
    pub first: Attempt,
}

impl OneEvent {
    pub async fn run(
        path: &str,
        replies: Vec<crate::receiver::Reply>,
        relay_flags: &[&str],
    ) -> Result<OneEvent> {
        let stage = Stage::new().await?;
        let (endpoint, secret) = stage.endpoint(path, &["review.*"], "").await?;
        stage.receiver.script(replies);
        let relay = stage.relay(relay_flags).await?;
        let event_id = stage
            .emit("review.submitted", serde_json::json!({"id": 1}))
            .await?;
        let first = stage
            .wait_for_attempts(event_id, endpoint, 1)
            .await
            .remove(0);
        Ok(OneEvent {
            stage,
            relay,
            endpoint,
            secret,
            event_id,
            first,
        })
    }

    pub async fn delivery(&self) -> Delivery {
        self.stage
            .delivery(self.event_id, self.endpoint)
            .await
            .unwrap()
    }
}
