//! End-to-end test harness shared by every test in `tests/tests/`.
//!
//! - [`cluster::Cluster`]: a throwaway PostgreSQL 15 cluster run as the `postgres` OS user,
//!   removed on drop (also when the test panics).
//! - [`relay::Relay`]: the real `webhook-relay` binary against that cluster.
//! - [`receiver::Receiver`]: an HTTPS server on 127.0.0.1 with a certificate made at test time,
//!   recording every request and answering as the test scripts it.
//! - [`stage::Stage`]: all three wired together, with helpers for endpoints and deliveries.

pub mod ats;
pub mod cluster;
pub mod receiver;
pub mod relay;
pub mod stage;

use std::time::{Duration, Instant};

/// Poll `check` every 20 ms until it returns `Some`, or fail after `timeout` saying `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `count_sql` (a `SELECT count(*) …`) returns `expected`, or fail after `timeout`.
pub async fn eventually_counts(
    db: &tokio_postgres::Client,
    count_sql: &str,
    expected: i64,
    timeout: Duration,
) {
    eventually(
        timeout,
        &format!("{count_sql} to be {expected}"),
        || async {
            let n: i64 = db.query_one(count_sql, &[]).await.ok()?.get(0);
            (n == expected).then_some(())
        },
    )
    .await
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The first column of every row of `query`, as text.
pub async fn texts(db: &tokio_postgres::Client, query: &str) -> Vec<String> {
    db.query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
