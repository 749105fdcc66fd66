//! `cargo xtask bench relay`: how fast the relay delivers, in one run on one box (PostgreSQL,
//! relay and receiver share the 2 vCPUs).
//!
//! 1. Raw capacity: a plain keep-alive HTTPS client (16 connections) against the receiver,
//!    posting a bare request.
//! 2. Throughput, in three rounds: the raw capacity again, with the relay's headers, then a
//!    backlog of `--backlog` deliveries over 4 endpoints drained by the relay with every
//!    attempt recorded. The ratio is taken between the medians of the rounds. The relay is
//!    warmed up first as the raw client is (a small backlog drained, uncounted), and each
//!    drain's clock runs from its backlog's commit to its last recorded attempt.
//! 3. Latency: events committed one per transaction at `--rate`/s; commit → receipt
//!    p50/p95/p99.
//!
//! Everything is built in release mode; the outer invocation re-runs itself with `--release`.

use crate::procstat::cpu_seconds;
use anyhow::{Context, Result};
use bytes::Bytes;
use e2e::cluster::Cluster;
use e2e::receiver::Receiver;
use e2e::relay::Relay;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Options {
    pub backlog: u32,
    pub rate: u32,
    pub seconds: u32,
}

/// Build the release binaries and run the measurement in a release build of this command.
pub fn run(args: &[String]) -> Result<()> {
    crate::run::measure_in_release("bench-relay-inner", args)
}

pub fn measure(options: &Options) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure_async(options))
}

async fn measure_async(options: &Options) -> Result<()> {
    let cluster = Cluster::start_durable()?;
    cluster.create_database_with_extension("bench").await?;
    let db = cluster.connect("bench").await?;
    // Time spent in each SQL function, printed at the end (pg_stat_user_functions).
    db.batch_execute("ALTER DATABASE bench SET track_functions = 'all'")
        .await?;
    let receiver = Receiver::start().await?;

    println!(
        "\n==> 1. raw keep-alive capacity of the receiver, bare request (plain client, 16 connections, 5 s after 1 s of warm-up)"
    );
    let bare = raw_capacity(&receiver, Duration::from_secs(5), Shape::Bare).await?;
    println!("    {bare:.0} requests/s (content type and body only)");

    for n in 1..=4 {
        db.execute(
            "SELECT webhooks.create_endpoint($1, ARRAY['application.submitted'])",
            &[&receiver.url(&format!("/throughput/{n}"))],
        )
        .await?;
    }
    let events = (options.backlog / 4) as i32;
    let delivered = events as f64 * 4.0;
    let ca = receiver.ca_file();
    let flags = [
        "--ca-file",
        ca.to_str().context("CA path")?,
        "--allow-network",
        "127.0.0.0/8",
        "--concurrency",
        "128",
        "--batch-size",
        "2000",
        "--max-in-flight-per-endpoint",
        "512",
    ];
    let mut relay = Relay::start(&cluster.connstr("bench"), &flags).await?;
    warm_up(&db, &receiver).await?;

    println!(
        "\n==> 2. {ROUNDS} rounds, each the raw capacity with the relay's headers (as in 1) and then a drain of {} deliveries over 4 endpoints",
        options.backlog
    );
    let mut raws = Vec::new();
    let mut throughputs = Vec::new();
    for round in 1..=ROUNDS {
        let raw = raw_capacity(&receiver, Duration::from_secs(5), Shape::Webhook).await?;
        let drain = drain_once(&db, &receiver, &relay, events).await?;
        let throughput = delivered / drain.time.as_secs_f64();
        println!(
            "    round {round}: raw {raw:.0} requests/s; {delivered:.0} deliveries in {:.2} s = {throughput:.0} deliveries/s, ratio {:.2} ({} attempts recorded, {} requests received)",
            drain.time.as_secs_f64(),
            throughput / raw,
            drain.attempts,
            drain.requests
        );
        println!(
            "             CPU seconds while draining: PostgreSQL {:.1}, relay {:.1}, receiver {:.1} (of {:.1} available on 2 vCPUs)",
            drain.cpu.postgres,
            drain.cpu.relay,
            drain.cpu.receiver,
            drain.time.as_secs_f64() * 2.0
        );
        println!(
            "             claims read {:.1} index entries and {:.1} rows per delivery; {:.0}% of leases were HOT updates",
            drain.walk.index_entries / delivered,
            drain.walk.rows / delivered,
            drain.walk.hot_updates * 100.0 / delivered
        );
        raws.push(raw);
        throughputs.push(throughput);
    }
    let raw = median(&mut raws);
    let throughput = median(&mut throughputs);
    println!(
        "    medians: raw {raw:.0} requests/s, relay {throughput:.0} deliveries/s, ratio {:.2}",
        throughput / raw
    );

    println!(
        "\n==> 3. latency at {} events/s for {} s (one event per committed transaction)",
        options.rate, options.seconds
    );
    db.batch_execute("SELECT webhooks.pause_endpoint(id) FROM webhooks.endpoints")
        .await?;
    db.execute(
        "SELECT webhooks.create_endpoint($1, ARRAY['review.submitted'])",
        &[&receiver.url("/latency")],
    )
    .await?;
    receiver.forget_requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = emit_steadily(&cluster, options.rate, options.seconds).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commit_times: std::collections::HashMap<i64, Instant> = committed.iter().copied().collect();
    let mut latencies: Vec<f64> = receiver
        .requests()
        .iter()
        .filter_map(|r| {
            let id: i64 = r.header("x-webhook-id")?.parse().ok()?;
            let at_commit = commit_times.get(&id)?;
            Some(r.at.saturating_duration_since(*at_commit).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "    {} of {} events received; commit → receipt p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        committed.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );

    println!(
        "\n==> 3b. sparse events: one every {SPARSE_GAP:?} into an idle relay ({SPARSE_EVENTS} events), then {IDLE_SPELL:?} idle"
    );
    let (sparse, idle_cpu) = sparse_and_idle(&cluster, &receiver, relay.pid()).await?;
    let sparse_pct = |p: f64| sparse[((sparse.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "    commit → receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; idle: PostgreSQL {:.1}%, relay {:.1}% of one CPU",
        sparse_pct(0.50),
        sparse_pct(0.99),
        sparse.last().copied().unwrap_or(f64::NAN),
        idle_cpu.postgres / IDLE_SPELL.as_secs_f64() * 100.0,
        idle_cpu.relay / IDLE_SPELL.as_secs_f64() * 100.0
    );

    println!("\n==> 2b. the same backlog drained by two relays");
    db.batch_execute(
        "SELECT webhooks.pause_endpoint(id) FROM webhooks.endpoints WHERE url LIKE '%/latency';
         SELECT webhooks.resume_endpoint(id) FROM webhooks.endpoints WHERE url LIKE '%/throughput/%';",
    )
    .await?;
    let mut second = Relay::start(&cluster.connstr("bench"), &flags).await?;
    warm_up(&db, &receiver).await?;
    queue_uncommitted(&db, events).await?;
    let two = delivered
        / drain_from_commit(&db, &receiver, events)
            .await?
            .as_secs_f64();
    println!(
        "    {two:.0} deliveries/s with two relays ({:.2}× one relay)",
        two / throughput
    );
    second.stop(Duration::from_secs(20)).await?;
    relay.stop(Duration::from_secs(20)).await?;

    print_function_times(&db).await?;

    println!("\n==> 4. claim cost against the size of the backlog (relay stopped)");
    let (small, large) = claim_cost(&db).await?;
    println!(
        "    claiming 500: {small:.2} ms with 1,000 pending, {large:.2} ms with 1,000,000 pending"
    );

    println!("\n| figure | value |\n|---|---|");
    println!(
        "| raw keep-alive requests/s (plain client, the relay's headers; median of {ROUNDS}) | {raw:.0} |"
    );
    println!("| raw keep-alive requests/s (plain client, bare request) | {bare:.0} |");
    println!(
        "| relay deliveries/s, {} backlog, every attempt recorded (median of {ROUNDS}) | {throughput:.0} |",
        options.backlog
    );
    println!(
        "| ratio relay / raw (medians; against the bare request) | {:.2}; {:.2} |",
        throughput / raw,
        throughput / bare
    );
    println!(
        "| two relays: deliveries/s (× one relay) | {two:.0} ({:.2}×) |",
        two / throughput
    );
    println!(
        "| latency p50 / p95 / p99 at {}/s | {:.1} / {:.1} / {:.1} ms |",
        options.rate,
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
    println!(
        "| sparse events into an idle relay, commit → receipt p50 / p99 | {:.1} / {:.1} ms |",
        sparse_pct(0.50),
        sparse_pct(0.99)
    );
    println!(
        "| an idle relay's cost: PostgreSQL / relay CPU | {:.1}% / {:.1}% of one CPU |",
        idle_cpu.postgres / IDLE_SPELL.as_secs_f64() * 100.0,
        idle_cpu.relay / IDLE_SPELL.as_secs_f64() * 100.0
    );
    println!("| claim of 500, 1k pending / 1M pending | {small:.2} / {large:.2} ms |");
    Ok(())
}

/// Sparse events: how many, how far apart (longer than the relay's --stay-awake, so that each
/// finds it idle), and how long the idle relay is watched for its own cost.
const SPARSE_EVENTS: usize = 15;
const SPARSE_GAP: Duration = Duration::from_secs(2);
const IDLE_SPELL: Duration = Duration::from_secs(10);

/// Commit → receipt of sparse events into an idle relay (sorted, ms), and the CPU an idle
/// relay and PostgreSQL use meanwhile (it polls the work marker; nobody notifies it).
async fn sparse_and_idle(
    cluster: &Cluster,
    receiver: &e2e::receiver::Receiver,
    relay_pid: u32,
) -> Result<(Vec<f64>, CpuSpent)> {
    let db = cluster.connect("bench").await?;
    let mut latencies = Vec::new();
    for n in 0..SPARSE_EVENTS {
        tokio::time::sleep(SPARSE_GAP).await;
        receiver.forget_requests();
        db.query_one(
            "SELECT webhooks.emit('review.submitted', jsonb_build_object('id', $1::int))",
            &[&(n as i32)],
        )
        .await?;
        let committed = Instant::now();
        let request = receiver
            .wait_for(1, Duration::from_secs(10))
            .await
            .remove(0);
        latencies.push(
            request
                .at
                .saturating_duration_since(committed)
                .as_secs_f64()
                * 1000.0,
        );
    }
    latencies.sort_by(f64::total_cmp);
    tokio::time::sleep(SPARSE_GAP).await;
    let before = CpuSplit::now(Some(relay_pid));
    tokio::time::sleep(IDLE_SPELL).await;
    let idle = CpuSplit::now(Some(relay_pid)).minus(&before);
    Ok((latencies, idle))
}

/// Where PostgreSQL spent the relays' time, per delivery attempted in phases 2, 2b and 3.
async fn print_function_times(db: &tokio_postgres::Client) -> Result<()> {
    // Relays that just disconnected have flushed their statistics; give the collector a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = db
        .query(
            "SELECT f.funcname::text, f.calls, f.total_time,
                    f.total_time * 1000 / (SELECT count(*) FROM webhooks.attempts)
               FROM pg_stat_user_functions f
              WHERE f.schemaname = 'webhooks'
                AND f.funcname IN ('claim_deliveries', 'record_attempts')
              ORDER BY f.total_time DESC",
            &[],
        )
        .await?;
    println!("\n==> time inside the relay's SQL functions (all phases so far, including the claims that walked a backlog not yet committed)");
    for row in rows {
        let (name, calls, total, per): (String, i64, f64, f64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        println!("    {name:<17} {calls:>6} calls  {total:>8.0} ms  {per:>6.1} µs per attempt");
    }
    Ok(())
}

/// Median time of a claim of 500 (rolled back, so the backlog stays) with 1,000 and then
/// 1,000,000 deliveries pending for one active endpoint.
async fn claim_cost(db: &tokio_postgres::Client) -> Result<(f64, f64)> {
    db.batch_execute(
        "SELECT webhooks.pause_endpoint(id) FROM webhooks.endpoints;
         SELECT webhooks.create_endpoint('https://backlog.example.com/hooks', ARRAY['offer.accepted']);
         SELECT webhooks.emit('offer.accepted', '{\"id\": 1}');",
    )
    .await?;
    // Deliveries of one logged event, as many as needed: claim cost depends on the rows, not
    // on how many events they came from.
    let fill = |n: i32| async move {
        db.execute(
            "INSERT INTO webhooks.deliveries (event_id, endpoint_id)
             SELECT (SELECT max(id) FROM webhooks.events), e.id
               FROM webhooks.endpoints e, generate_series(1, $1) g WHERE e.status = 'active'",
            &[&n],
        )
        .await?;
        db.batch_execute("VACUUM ANALYZE webhooks.deliveries")
            .await?;
        anyhow::Ok(())
    };
    let measure = || async {
        let mut times = Vec::new();
        for _ in 0..15 {
            let started = Instant::now();
            db.batch_execute(
                "BEGIN;
                 SELECT count(*) FROM webhooks.claim_deliveries('bench', 500, interval '1 minute');
                 ROLLBACK;",
            )
            .await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        anyhow::Ok(times[times.len() / 2])
    };
    fill(1_000).await?;
    let small = measure().await?;
    fill(999_000).await?;
    let large = measure().await?;
    Ok((small, large))
}

/// Rounds of phase 2. The raw client and the relay take turns, so that both see the same
/// spells of a busy host (this VM's speed drifts by a fifth within a minute), and the ratio is
/// taken between the medians.
const ROUNDS: usize = 3;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What one drain of phase 2 took and cost.
struct Drain {
    time: Duration,
    attempts: i64,
    requests: usize,
    cpu: CpuSpent,
    walk: ClaimWalk,
}

/// Vacuum the queue, queue a backlog of `events` × 4 deliveries in one transaction and time its
/// drain from the COMMIT, with the CPU each process spent and what the claims read meanwhile.
async fn drain_once(
    db: &tokio_postgres::Client,
    receiver: &Receiver,
    relay: &Relay,
    events: i32,
) -> Result<Drain> {
    let count_attempts = || async {
        let row = db
            .query_one("SELECT count(*) FROM webhooks.attempts", &[])
            .await?;
        anyhow::Ok(row.get::<_, i64>(0))
    };
    // As autovacuum would between bursts. Rounds run seconds apart and autovacuum at most once
    // a minute, so without this each round would walk the dead index entries of the rounds
    // before it. It also leaves the queue vacuumed while empty: the state whose statistics once
    // made recording scan the whole backlog (docs/benchmarks-history.md, "A planner trap").
    db.batch_execute("VACUUM webhooks.deliveries").await?;
    let attempts_before = count_attempts().await?;
    let walk_before = ClaimWalk::read(db).await?;
    queue_uncommitted(db, events).await?;
    let cpu_before = CpuSplit::now(Some(relay.pid()));
    let time = drain_from_commit(db, receiver, events).await?;
    let cpu = CpuSplit::now(Some(relay.pid())).minus(&cpu_before);
    let requests = receiver.request_count();
    let attempts = count_attempts().await? - attempts_before;
    let walk = ClaimWalk::read(db).await?.minus(&walk_before);
    Ok(Drain {
        time,
        attempts,
        requests,
        cpu,
        walk,
    })
}

/// Drain a first, small backlog, uncounted, so that the relays have connected to the
/// receiver (and PostgreSQL) before the count starts, as the raw client has after its warm-up.
async fn warm_up(db: &tokio_postgres::Client, receiver: &Receiver) -> Result<()> {
    let events = 2_000;
    receiver.forget_requests();
    queue_backlog(db, events).await?;
    wait_drained(db, receiver, backlog_size(events), Instant::now()).await?;
    receiver.forget_requests();
    Ok(())
}

/// Queue a backlog of `events` in a transaction left open: `drain_from_commit` commits it.
async fn queue_uncommitted(db: &tokio_postgres::Client, events: i32) -> Result<()> {
    db.batch_execute("BEGIN").await?;
    queue_backlog(db, events).await
}

/// Commit the backlog `queue_uncommitted` left open and time its drain: the clock starts
/// before COMMIT is sent, as the deliveries become visible to the relays.
async fn drain_from_commit(
    db: &tokio_postgres::Client,
    receiver: &Receiver,
    events: i32,
) -> Result<Duration> {
    let started = Instant::now();
    db.batch_execute("COMMIT").await?;
    wait_drained(db, receiver, backlog_size(events), started).await
}

/// Queue `events` application events for the subscribed endpoints.
async fn queue_backlog(db: &tokio_postgres::Client, events: i32) -> Result<()> {
    db.execute(
        "SELECT webhooks.emit('application.submitted', jsonb_build_object(
            'id', g, 'candidate', jsonb_build_object('id', g % 1000, 'name', 'Candidate ' || g, 'email', 'c' || g || '@example.com'),
            'job_posting', jsonb_build_object('id', g % 50, 'title', 'Senior Engineer'),
            'current_stage', 'Applied', 'submitted_at', webhooks.iso8601(now()),
            'rejected', false, 'withdrawn', false, 'offered', false))
           FROM generate_series(1, $1) g",
        &[&events],
    )
    .await?;
    Ok(())
}

fn backlog_size(events: i32) -> usize {
    events as usize * 4
}

/// Wait until the receiver has seen `requests` and nothing is pending any more (every attempt
/// recorded); returns the time since `started`. The database is asked only once the requests
/// are in, so that the waiting does not load it during the drain.
async fn wait_drained(
    db: &tokio_postgres::Client,
    receiver: &Receiver,
    requests: usize,
    started: Instant,
) -> Result<Duration> {
    let give_up = Duration::from_secs(600);
    while receiver.request_count() < requests {
        anyhow::ensure!(started.elapsed() < give_up, "drain took over 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let pending: bool = db
            .query_one(
                "SELECT EXISTS (SELECT FROM webhooks.deliveries WHERE status = 'pending')",
                &[],
            )
            .await?
            .get(0);
        if !pending {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < give_up, "drain took over 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the raw client sends: a bare POST (content type and body), or the relay's request
/// (its headers too, with values of the same length, precomputed: a plain client signs
/// nothing). The body is the same either way, a little longer than the relay's.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Bare,
    Webhook,
}

const WEBHOOK_HEADERS: [(&str, &str); 5] = [
    ("user-agent", "Kit-Webhooks/1.0"),
    ("x-webhook-event", "application.submitted"),
    ("x-webhook-id", "1048576"),
    ("x-webhook-timestamp", "2026-11-30T12:00:00Z"),
    (
        "x-webhook-signature",
        "13b10b431010ef40cddb5b30c8039721db76874673ab7a1d2be4525220c91cac",
    ),
];

/// Requests per second a plain keep-alive client gets from the receiver.
async fn raw_capacity(receiver: &Receiver, window: Duration, shape: Shape) -> Result<f64> {
    let client = e2e::receiver::https_client(receiver.ca_pem())?;
    let body = Bytes::from(format!(
        "{{\"event\":\"application.submitted\",\"data\":\"{}\"}}",
        "x".repeat(350)
    ));
    // One second of the same load first, uncounted: connections and their TLS sessions are
    // made, and the freshly started cluster's background work has settled.
    let warm_up = Duration::from_secs(1);
    let done = Arc::new(AtomicU64::new(0));
    let counting_from = Instant::now() + warm_up;
    let deadline = counting_from + window;
    let url: hyper::Uri = receiver.url("/raw").parse()?;
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, body, done, url) =
                (client.clone(), body.clone(), done.clone(), url.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = hyper::Request::post(url.clone())
                        .header("content-type", "application/json");
                    if shape == Shape::Webhook {
                        for (name, value) in WEBHOOK_HEADERS {
                            request = request.header(name, value);
                        }
                    }
                    let request = request
                        .body(Full::new(body.clone()))
                        .expect("valid request");
                    if let Ok(response) = client.request(request).await {
                        let _ = response.into_body().collect().await;
                        if Instant::now() >= counting_from {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    receiver.forget_requests();
    Ok(done.load(Ordering::Relaxed) as f64 / window.as_secs_f64())
}

/// Commit one event per transaction at `rate`/s for `seconds`; returns (event id, commit time).
async fn emit_steadily(cluster: &Cluster, rate: u32, seconds: u32) -> Result<Vec<(i64, Instant)>> {
    // A few connections, so one slow commit does not delay the next tick.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Arc::new(cluster.connect("bench").await?));
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut running = Vec::new();
    for n in 0..(rate * seconds) as usize {
        tick.tick().await;
        let client = clients[n % clients.len()].clone();
        running.push(tokio::spawn(async move {
            let row = client
                .query_one(
                    "SELECT webhooks.emit('review.submitted', jsonb_build_object('id', $1::int))",
                    &[&(n as i32)],
                )
                .await?;
            anyhow::Ok((row.get::<_, i64>(0), Instant::now()))
        }));
    }
    let mut committed = Vec::new();
    for task in running {
        committed.push(task.await??);
    }
    Ok(committed)
}

/// CPU time used so far by PostgreSQL (every process of the postgres user), the relay and
/// this process (the receiver), from /proc.
struct CpuSplit {
    /// CPU seconds of every process of the postgres user, by pid.
    postgres: std::collections::HashMap<String, f64>,
    relay: f64,
    receiver: f64,
}

/// CPU seconds spent between two [`CpuSplit`]s.
struct CpuSpent {
    postgres: f64,
    relay: f64,
    receiver: f64,
}

impl CpuSplit {
    fn now(relay_pid: Option<u32>) -> CpuSplit {
        let postgres_pids = std::process::Command::new("ps")
            .args(["-u", "postgres", "-o", "pid="])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        CpuSplit {
            postgres: postgres_pids
                .split_whitespace()
                .map(|pid| (pid.to_string(), cpu_seconds(pid)))
                .collect(),
            relay: relay_pid.map_or(0.0, |pid| cpu_seconds(&pid.to_string())),
            receiver: cpu_seconds("self"),
        }
    }

    /// Per process, so that backends which started or ended in between count for what they
    /// used in between.
    fn minus(&self, before: &CpuSplit) -> CpuSpent {
        CpuSpent {
            postgres: self
                .postgres
                .iter()
                .map(|(pid, now)| now - before.postgres.get(pid).copied().unwrap_or(0.0))
                .sum(),
            relay: self.relay - before.relay,
            receiver: self.receiver - before.receiver,
        }
    }
}

/// How much of `deliveries` the claims walked (pg_stat_user_indexes on `deliveries_due`), and
/// how many updates of `deliveries` were HOT. A drain updates each delivery twice: the lease,
/// which can be HOT, and the outcome, which cannot (it leaves `deliveries_due`).
struct ClaimWalk {
    index_entries: f64,
    rows: f64,
    hot_updates: f64,
}

impl ClaimWalk {
    async fn read(db: &tokio_postgres::Client) -> Result<ClaimWalk> {
        // Backends report their counts within a second of going idle.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let row = db
            .query_one(
                "SELECT i.idx_tup_read::float8, i.idx_tup_fetch::float8, t.n_tup_hot_upd::float8
                   FROM pg_stat_user_indexes i
                   JOIN pg_stat_user_tables t ON t.relid = i.relid
                  WHERE i.schemaname = 'webhooks' AND i.indexrelname = 'deliveries_due'",
                &[],
            )
            .await?;
        Ok(ClaimWalk {
            index_entries: row.get(0),
            rows: row.get(1),
            hot_updates: row.get(2),
        })
    }

    fn minus(&self, before: &ClaimWalk) -> ClaimWalk {
        ClaimWalk {
            index_entries: self.index_entries - before.index_entries,
            rows: self.rows - before.rows,
            hot_updates: self.hot_updates - before.hot_updates,
        }
    }
}
