//! The database driver: the calls the relay makes (claim, record, release, and the rarer
//! ones: work marker, queue stats, retention), over one pipelined connection that is
//! re-established on demand after the database goes away.

use crate::delivery::{AttemptReport, Release};
use crate::headers::SentHeaders;
use anyhow::Context;
use bytes::{BufMut, BytesMut};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio_postgres::types::{accepts, to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

/// The columns of `webhooks.claim_deliveries`, read by position: by name, every value of
/// every row would be found by comparing column names. Checked against the statement's
/// columns, names and types, when it is prepared.
mod claim_column {
    use tokio_postgres::types::Type;
    pub const TYPES: [Type; 10] = [
        Type::INT8,
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT4,
        Type::TIMESTAMPTZ,
    ];
    pub const NAMES: [&str; 10] = [
        "delivery_id",
        "event_id",
        "endpoint_id",
        "attempt_number",
        "event_type",
        "body",
        "url",
        "secret",
        "rate_limit",
        "lease_expires_at",
    ];
    pub const DELIVERY_ID: usize = 0;
    pub const EVENT_ID: usize = 1;
    pub const ENDPOINT_ID: usize = 2;
    pub const ATTEMPT_NUMBER: usize = 3;
    pub const EVENT_TYPE: usize = 4;
    pub const BODY: usize = 5;
    pub const URL: usize = 6;
    pub const SECRET: usize = 7;
    pub const RATE_LIMIT: usize = 8;
    pub const LEASE_EXPIRES_AT: usize = 9;
}

/// One row of `webhooks.claim_deliveries`, its columns read in place (delivery.rs makes the
/// deliveries of a claim out of them). The column types were checked when the claim
/// statement was prepared.
pub struct ClaimRow(Row);

impl ClaimRow {
    pub fn delivery_id(&self) -> i64 {
        self.0.get(claim_column::DELIVERY_ID)
    }
    pub fn event_id(&self) -> i64 {
        self.0.get(claim_column::EVENT_ID)
    }
    pub fn endpoint_id(&self) -> i64 {
        self.0.get(claim_column::ENDPOINT_ID)
    }
    pub fn attempt_number(&self) -> i32 {
        self.0.get(claim_column::ATTEMPT_NUMBER)
    }
    pub fn event_type(&self) -> &str {
        self.0.get(claim_column::EVENT_TYPE)
    }
    /// The rendered event, on the first row of each event in a claim only.
    pub fn body(&self) -> Option<&str> {
        self.0.get(claim_column::BODY)
    }
    pub fn url(&self) -> &str {
        self.0.get(claim_column::URL)
    }
    pub fn secret(&self) -> &str {
        self.0.get(claim_column::SECRET)
    }
    pub fn rate_limit(&self) -> Option<i32> {
        self.0.get(claim_column::RATE_LIMIT)
    }
    pub fn lease_expires_at(&self) -> SystemTime {
        self.0.get(claim_column::LEASE_EXPIRES_AT)
    }
}

/// A connection with the relay's statements prepared on it.
struct Session {
    client: Client,
    claim: Statement,
    record: Statement,
    release: Statement,
    work_marker: Statement,
    queue_stats: Statement,
}

/// What `webhooks.record_attempts` made of a batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcomes {
    pub succeeded: u64,
    pub retried: u64,
    pub failed: u64,
    /// Attempts at deliveries this relay no longer held under a live lease (it stalled past
    /// the lease, or lost the connection long enough for another relay to take them over):
    /// the database keeps nothing of them.
    pub not_held: u64,
}

/// Queue depth for /metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueueStats {
    pub due: i64,
    pub scheduled: i64,
    pub endpoints_disabled: i64,
    /// Tracked events whose deliveries are not made yet (webhooks.events_awaiting_fan_out).
    pub awaiting_fan_out: i64,
    /// Seconds the oldest pending delivery has waited since it was made (0 with none).
    pub oldest_pending_seconds: f64,
    /// The event log's size on disk, indexes included.
    pub event_log_bytes: i64,
}

pub struct Database {
    url: String,
    relay_id: String,
    session: Mutex<Option<Arc<Session>>>,
    lease_key: Arc<LeaseKey>,
}

/// The lease key the database gave this relay's first session (`webhooks.lease_key()`). Only
/// a session with this key may record or release the relay's leases, so every other session
/// of the relay (the recorder's, and any after a reconnect) takes the same key.
#[derive(Default)]
pub struct LeaseKey(Mutex<Option<String>>);

impl Database {
    pub fn new(url: String, relay_id: String, lease_key: Arc<LeaseKey>) -> Self {
        Database {
            url,
            relay_id,
            session: Mutex::new(None),
            lease_key,
        }
    }

    /// The open session, or a new one if there is none or the last one broke.
    async fn session(&self) -> anyhow::Result<Arc<Session>> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            if !session.client.is_closed() {
                return Ok(session.clone());
            }
        }
        *current = None;
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "delivery connection to PostgreSQL lost");
            }
        });
        // The relay's own writes (leases, attempt records) commit without waiting for the WAL
        // flush. A database crash can then forget the last few milliseconds of them, which only
        // means a delivery is sent again (at least once, same X-Webhook-Id): the events and their
        // deliveries were made durable by the writers' own commits. Waiting for a flush on every
        // claim would add a disk round trip to every delivery's latency.
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .context("setting synchronous_commit for the relay's session")?;
        {
            // Held while the key is asked for, so that two sessions connecting at once
            // share the first one's key.
            let mut known_key = self.lease_key.0.lock().await;
            let key: String = client
                .query_one("SELECT webhooks.lease_key($1)", &[&*known_key])
                .await
                .context("taking this relay's lease key (webhooks.lease_key)")?
                .get(0);
            *known_key = Some(key);
        }
        let prepare = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .prepare(sql)
                    .await
                    .with_context(|| format!("preparing {sql} (is pg_webhooks installed, and does this role have webhooks_relay?)"))
            }
        };
        let claim = prepare(
            "SELECT * FROM webhooks.claim_deliveries($1, $2, make_interval(secs => $3), $4, $5, $6)",
        )
        .await?;
        let columns: Vec<(&str, &Type)> = claim
            .columns()
            .iter()
            .map(|c| (c.name(), c.type_()))
            .collect();
        anyhow::ensure!(
            columns.iter().map(|c| c.0).eq(claim_column::NAMES)
                && columns.iter().map(|c| c.1).eq(claim_column::TYPES.iter()),
            "webhooks.claim_deliveries returns {columns:?}, not {:?}: is pg_webhooks the version this relay was built for?",
            claim_column::NAMES.iter().zip(claim_column::TYPES.iter()).collect::<Vec<_>>()
        );
        let session = Arc::new(Session {
            claim,
            record: prepare(
                "SELECT * FROM webhooks.record_attempts($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?,
            release: prepare("SELECT webhooks.release_deliveries($1, $2, $3)").await?,
            work_marker: prepare("SELECT * FROM webhooks.work_marker()").await?,
            queue_stats: prepare("SELECT * FROM webhooks.queue_stats()").await?,
            client,
        });
        *current = Some(session.clone());
        Ok(session)
    }

    /// Lease up to `max` due deliveries. `busy` lists (endpoint, deliveries this relay still
    /// has in flight there) so that no endpoint gets more than `per_endpoint` at once.
    pub async fn claim(
        &self,
        max: u32,
        lease: Duration,
        per_endpoint: u32,
        busy: &[(i64, i32)],
    ) -> anyhow::Result<Vec<ClaimRow>> {
        let session = self.session().await?;
        let (busy_endpoints, busy_counts): (Vec<i64>, Vec<i32>) = busy.iter().copied().unzip();
        let rows = session
            .client
            .query(
                &session.claim,
                &[
                    &self.relay_id,
                    &(max as i32),
                    &lease.as_secs_f64(),
                    &(per_endpoint as i32),
                    &busy_endpoints,
                    &busy_counts,
                ],
            )
            .await
            .context("claiming deliveries")?;
        Ok(rows.into_iter().map(ClaimRow).collect())
    }

    /// Log attempts and let the database move their deliveries on (one round trip). The
    /// batch goes as one typed array per field, binary on the wire: nothing for the server to
    /// parse but the header objects.
    pub async fn record(&self, attempts: &[AttemptReport]) -> anyhow::Result<Outcomes> {
        if attempts.is_empty() {
            return Ok(Outcomes::default());
        }
        fn column<'a, T>(
            attempts: &'a [AttemptReport],
            f: impl Fn(&'a AttemptReport) -> T,
        ) -> Vec<T> {
            attempts.iter().map(f).collect()
        }
        let session = self.session().await?;
        let row = session
            .client
            .query_one(
                &session.record,
                &[
                    &self.relay_id,
                    &column(attempts, |a| a.delivery_id),
                    &column(attempts, |a| a.attempt_number),
                    &column(attempts, |a| a.started_at),
                    &column(attempts, |a| a.duration_ms),
                    &column(attempts, |a| HeaderObject(&a.request_headers)),
                    &column(attempts, |a| a.response_status.map(i32::from)),
                    &column(attempts, |a| a.response_body.as_deref()),
                    &column(attempts, |a| a.failure.as_ref().map(|f| f.message())),
                    &column(attempts, |a| a.retry_after_seconds),
                    &column(attempts, |a| {
                        a.failure.as_ref().is_some_and(|f| f.is_permanent())
                    }),
                ],
            )
            .await
            .context("recording attempts")?;
        let count = |i: usize| row.get::<_, i32>(i).max(0) as u64;
        Ok(Outcomes {
            succeeded: count(0),
            retried: count(1),
            failed: count(2),
            not_held: count(3),
        })
    }

    pub async fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        let session = self.session().await?;
        let row = session
            .client
            .query_one(&session.queue_stats, &[])
            .await
            .context("reading queue depth")?;
        Ok(QueueStats {
            due: row.get(0),
            scheduled: row.get(1),
            endpoints_disabled: row.get(2),
            awaiting_fan_out: row.get(3),
            oldest_pending_seconds: row.get(4),
            event_log_bytes: row.get(5),
        })
    }

    /// Hand deliveries back unattempted.
    pub async fn release(&self, releases: &[Release]) -> anyhow::Result<()> {
        if releases.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = releases.iter().map(|r| r.delivery_id).collect();
        let delays: Vec<f64> = releases
            .iter()
            .map(|r| r.delay.as_secs_f64() * 1000.0)
            .collect();
        let session = self.session().await?;
        session
            .client
            .query_one(&session.release, &[&self.relay_id, &ids, &delays])
            .await
            .context("releasing deliveries")?;
        Ok(())
    }

    /// Run retention once (`webhooks.maintain()`); returns what it did, as (action, object).
    /// Rarely called, so not prepared.
    pub async fn maintain(&self) -> anyhow::Result<Vec<(String, String)>> {
        let session = self.session().await?;
        let rows = session
            .client
            .query("SELECT action, object FROM webhooks.maintain()", &[])
            .await
            .context("running retention (webhooks.maintain())")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// How far the event log's and the deliveries' id sequences have come: it moves whenever
    /// an event or a delivery is written.
    pub async fn work_marker(&self) -> anyhow::Result<(i64, i64)> {
        let session = self.session().await?;
        let row = session
            .client
            .query_one(&session.work_marker, &[])
            .await
            .context("reading webhooks.work_marker()")?;
        Ok((row.get(0), row.get(1)))
    }
}

/// Request headers as the JSON object the attempt log stores, written straight from what was
/// sent, in the order sent, into the statement's parameter buffer.
#[derive(Debug)]
struct HeaderObject<'a>(&'a SentHeaders);

impl ToSql for HeaderObject<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary form is json's text after a version byte.
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        self.0.write_json(out);
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}
