//! `cargo xtask bench soak`: retention under steady load. Tracked inserts (one per committed
//! transaction, `--rate` a second) fan out to two endpoints and are delivered by the relay for
//! `--minutes`, with partitions of one minute and every retention at two, so that partitions
//! are made and dropped all the while (the relay runs `webhooks.maintain()` every 5 s). Each
//! minute it prints what was written and delivered, commit → receipt p99, the partitions, and
//! the webhooks tables' size on disk with indexes and TOAST. Goal: throughput and latency flat,
//! size bounded once retention starts dropping.
//!
//! Everything is built in release mode; the outer invocation re-runs itself with `--release`.

use anyhow::{Context, Result};
use e2e::cluster::Cluster;
use e2e::receiver::Receiver;
use e2e::relay::Relay;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Options {
    pub minutes: u32,
    pub rate: u32,
}

/// Build the release binaries and run the measurement in a release build of this command.
pub fn run(args: &[String]) -> Result<()> {
    crate::run::measure_in_release("bench-soak-inner", args)
}

pub fn measure(options: &Options) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure_async(options))
}

/// Commit time of each application id written so far.
type Commits = Arc<Mutex<HashMap<i64, Instant>>>;

async fn measure_async(options: &Options) -> Result<()> {
    let cluster = Cluster::start_durable()?;
    cluster.create_database_with_extension("soak").await?;
    let db = cluster.connect("soak").await?;
    e2e::ats::load_and_track(&db).await?;
    db.batch_execute(e2e::ats::PEOPLE).await?;
    db.batch_execute(
        "SELECT webhooks.set_setting('partition_period', '1 minute');
         SELECT webhooks.set_setting(name, '2 minutes') FROM webhooks.settings WHERE name LIKE '%\\_retention';",
    )
    .await?;
    let receiver = Receiver::start().await?;
    for n in 1..=2 {
        db.execute(
            "SELECT webhooks.create_endpoint($1, ARRAY['application.submitted'])",
            &[&receiver.url(&format!("/soak/{n}"))],
        )
        .await?;
    }
    let ca = receiver.ca_file();
    let _relay = Relay::start(
        &cluster.connstr("soak"),
        &[
            "--ca-file",
            ca.to_str().context("CA path")?,
            "--allow-network",
            "127.0.0.0/8",
            "--maintenance-interval",
            "5s",
        ],
    )
    .await?;

    println!(
        "\n==> soak: {} tracked inserts/s to 2 endpoints for {} minutes; partitions of 1 minute, every retention 2 minutes, retention run by the relay every 5 s",
        options.rate, options.minutes
    );
    println!("\n| minute | inserts/s | deliveries/s | commit → receipt p99 | partitions (events, finished deliveries, attempts) | webhooks tables on disk |\n|---|---|---|---|---|---|");
    let commits: Commits = Arc::default();
    let writer = tokio::spawn(write_steadily(
        cluster.connstr("soak"),
        options.rate,
        options.minutes * 60,
        commits.clone(),
    ));
    let mut written_before = 0;
    for minute in 1..=options.minutes {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let requests = receiver.requests();
        receiver.forget_requests();
        let elapsed = started.elapsed().as_secs_f64();
        let mut latencies: Vec<f64> = {
            let commits = commits.lock().unwrap();
            requests
                .iter()
                .filter_map(|r| {
                    let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                    let at_commit = commits.get(&body["data"]["id"].as_i64()?)?;
                    Some(r.at.saturating_duration_since(*at_commit).as_secs_f64() * 1000.0)
                })
                .collect()
        };
        latencies.sort_by(f64::total_cmp);
        let p99 = latencies
            .get(((latencies.len() as f64 - 1.0) * 0.99).round() as usize)
            .copied()
            .unwrap_or(f64::NAN);
        let written = commits.lock().unwrap().len();
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks.events'::regclass),
                        (SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks.deliveries_finished'::regclass),
                        (SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks.attempts'::regclass),
                        (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                          WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind = 'r')",
                &[],
            )
            .await?;
        let (events, finished, attempts, bytes): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        println!(
            "| {minute} | {:.0} | {:.0} | {p99:.1} ms | {events}, {finished}, {attempts} | {:.1} MB |",
            (written - written_before) as f64 / elapsed,
            requests.len() as f64 / elapsed,
            bytes as f64 / 1e6
        );
        written_before = written;
    }
    writer.await??;
    Ok(())
}

/// Insert one tracked application per transaction at `rate`/s for `seconds`, over a few
/// connections so that one slow commit does not hold up the next tick; note each commit.
async fn write_steadily(url: String, rate: u32, seconds: u32, commits: Commits) -> Result<()> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        clients.push(Arc::new(client));
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = Vec::new();
    for n in 1..=(rate * seconds) as i64 {
        tick.tick().await;
        let client = clients[n as usize % clients.len()].clone();
        let commits = commits.clone();
        running.push(tokio::spawn(async move {
            client
                .execute(
                    "INSERT INTO ats.applications (id, candidate_id, job_posting_id, submitted_at) VALUES ($1, 7, 3, now())",
                    &[&n],
                )
                .await?;
            commits.lock().unwrap().insert(n, Instant::now());
            anyhow::Ok(())
        }));
        if running.len() >= 10_000 {
            for task in running.drain(..) {
                task.await??;
            }
        }
    }
    for task in running {
        task.await??;
    }
    Ok(())
}
