//! `cargo xtask bench tracking`: what tracking costs the application's writes.
//!
//! One durable (fsync on) throwaway cluster, the reference ATS schema, and pgbench (4 clients,
//! or `--clients N`) running two workloads — INSERT an application (fires
//! `application.submitted`) and UPDATE an application's stage (fires `application.advanced`) —
//! under each variant, in one run, in rounds that alternate the variants' order:
//!
//! - `untracked`: no trigger, the baseline;
//! - `tracked`: `webhooks.track_ats()` with 3 endpoints subscribed. No relay state changes
//!   what a tracked write does (it never notifies and reads nothing about relays), so this is
//!   the cost whether relays are busy, idle, crashed or absent;
//! - `untracked, log-sized rows`: no trigger; the same insert into a copy of the applications
//!   table whose rows are larger by about what a tracked insert writes to the log (every run's
//!   WAL per transaction is printed, to compare). It prices the bytes alone: what any log kept
//!   in the writer's transaction pays before doing any work of its own. Inserts only (an
//!   update's WAL carries only the changed part of a row);
//! - `naive outbox`: the obvious trigger one would write first, for comparison: payload,
//!   1 outbox row + 3 delivery rows, pg_notify;
//! - `naive outbox, no NOTIFY`: the same trigger without pg_notify.

use crate::procstat;
use crate::wait_sampler::WaitSampler;
use anyhow::{Context, Result};
use e2e::cluster::Cluster;
use std::process::Command;
use std::time::Duration;

pub struct Options {
    pub seconds: u32,
    pub clients: u32,
    pub rounds: u32,
    /// Only the instruction counts (crate::instructions), not the pgbench rounds.
    pub instructions_only: bool,
}

/// The insert workload's pgbench script, writing `table`.
fn insert_script(table: &str) -> String {
    format!(
        "\\set c random(1, 100)\n\\set j random(1, 10)\n\
         INSERT INTO {table} (candidate_id, job_posting_id, submitted_at) VALUES (:c, :j, now());\n"
    )
}
const UPDATE: &str = "\\set a random(1, 1000)\n\\set s random(1, 1000000)\n\
UPDATE ats.applications SET current_stage = 'Stage ' || :s WHERE id = :a;\n";

const SEED: &str = "
INSERT INTO ats.candidates (name, email) SELECT 'Candidate ' || g, 'c' || g || '@example.com' FROM generate_series(1, 100) g;
INSERT INTO ats.job_postings (title, status) SELECT 'Job ' || g, 'published' FROM generate_series(1, 10) g;
INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at)
SELECT 1 + g % 100, 1 + g % 10, now() FROM generate_series(1, 1000) g;";

const ENDPOINTS: &str = "
SELECT webhooks.create_endpoint('https://hooks-' || g || '.example.com/ats', ARRAY['application.*'])
  FROM generate_series(1, 3) g;";

/// A naive outbox trigger, for comparison: it builds the payload, inserts one outbox row and one
/// delivery row per endpoint, and notifies, in every writing transaction.
const NAIVE_OUTBOX: &str = "
CREATE TABLE IF NOT EXISTS bench_outbox (id bigserial PRIMARY KEY, event_type text, payload jsonb, created_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS bench_outbox_deliveries (id bigserial PRIMARY KEY, outbox_id bigint REFERENCES bench_outbox, endpoint int, status text DEFAULT 'pending');
CREATE OR REPLACE FUNCTION bench_naive_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE outbox_id bigint;
BEGIN
    INSERT INTO bench_outbox (event_type, payload)
    SELECT 'application.submitted', jsonb_build_object('id', NEW.id,
           'candidate', jsonb_build_object('id', c.id, 'name', c.name, 'email', c.email),
           'job_posting', jsonb_build_object('id', j.id, 'title', j.title),
           'current_stage', NEW.current_stage, 'submitted_at', NEW.submitted_at,
           'rejected', NEW.rejected, 'withdrawn', NEW.withdrawn, 'offered', NEW.offered)
      FROM ats.candidates c, ats.job_postings j WHERE c.id = NEW.candidate_id AND j.id = NEW.job_posting_id
    RETURNING id INTO outbox_id;
    INSERT INTO bench_outbox_deliveries (outbox_id, endpoint) SELECT outbox_id, g FROM generate_series(1, 3) g;
    PERFORM pg_notify('bench_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER bench_naive_outbox AFTER INSERT OR UPDATE ON ats.applications
    FOR EACH ROW EXECUTE FUNCTION bench_naive_outbox();";

/// The line that the "no NOTIFY" variant of the naive outbox leaves out.
const NAIVE_NOTIFY: &str = "PERFORM pg_notify('bench_outbox', '');";

pub(crate) struct Variant {
    pub(crate) name: &'static str,
    /// Whether `ats.applications` is tracked by pg_webhooks.
    tracked: bool,
    /// Whether the naive outbox trigger is installed, and with or without its NOTIFY.
    naive: Option<Notify>,
    /// Whether the variant means anything for updates (see the module's comment).
    updates: bool,
    /// The table the insert workload writes.
    pub(crate) table: &'static str,
}

impl Variant {
    /// Whether the variant runs `workload` ("insert" or "update").
    pub(crate) fn measures(&self, workload: &str) -> bool {
        workload == "insert" || self.updates
    }
}

/// The table the log-sized rows variant inserts into: a copy of ats.applications (its key,
/// identity and foreign keys) whose stage defaults to 480 bytes more than 'Applied', about what
/// a tracked insert adds to the WAL (the command prints every run's WAL per transaction, to
/// check). A table of its own, so that no other variant's inserts fill the space its larger
/// rows leave in each page (which would write every such page in full to the WAL once more).
const LOG_SIZED_APPLICATIONS: &str = "bench_log_sized_applications";
const LOG_SIZED_TABLE: &str = "
CREATE TABLE bench_log_sized_applications (LIKE ats.applications INCLUDING ALL,
    FOREIGN KEY (candidate_id) REFERENCES ats.candidates,
    FOREIGN KEY (job_posting_id) REFERENCES ats.job_postings);
ALTER TABLE bench_log_sized_applications ALTER current_stage SET DEFAULT 'Applied' || repeat(' ', 480);";

#[derive(Clone, Copy)]
enum Notify {
    Every,
    Never,
}
pub(crate) const VARIANTS: &[Variant] = &[
    Variant {
        name: "untracked",
        tracked: false,
        naive: None,
        updates: true,
        table: "ats.applications",
    },
    Variant {
        name: "tracked, 3 endpoints",
        tracked: true,
        naive: None,
        updates: true,
        table: "ats.applications",
    },
    Variant {
        name: "untracked, log-sized rows",
        tracked: false,
        naive: None,
        updates: false,
        table: LOG_SIZED_APPLICATIONS,
    },
    Variant {
        name: "naive outbox",
        tracked: false,
        naive: Some(Notify::Every),
        updates: true,
        table: "ats.applications",
    },
    Variant {
        name: "naive outbox, no NOTIFY",
        tracked: false,
        naive: Some(Notify::Never),
        updates: true,
        table: "ats.applications",
    },
];

/// Put the database in `variant`'s state, vacuumed and checkpointed.
pub(crate) fn enter(cluster: &Cluster, variant: &Variant) -> Result<()> {
    psql(
        cluster,
        "DROP TRIGGER IF EXISTS bench_naive_outbox ON ats.applications",
    )?;
    psql(
        cluster,
        if variant.tracked {
            "SELECT webhooks.track('ats.applications')"
        } else {
            "SELECT webhooks.untrack('ats.applications', if_tracked => true)"
        },
    )?;
    if let Some(notify) = variant.naive {
        psql(cluster, &naive_outbox(notify))?;
    }
    psql(cluster, "VACUUM ANALYZE")?;
    psql(cluster, "CHECKPOINT")
}

fn naive_outbox(notify: Notify) -> String {
    assert!(NAIVE_OUTBOX.contains(NAIVE_NOTIFY));
    match notify {
        Notify::Every => NAIVE_OUTBOX.to_string(),
        Notify::Never => NAIVE_OUTBOX.replace(NAIVE_NOTIFY, ""),
    }
}

pub fn run(options: &Options) -> Result<()> {
    crate::setup::install_extension()?;
    let cluster = Cluster::start_durable()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let backend = runtime.block_on(async {
        cluster.create_database_with_extension("bench").await?;
        let db = cluster.connect("bench").await?;
        e2e::ats::load_and_track(&db).await?;
        db.batch_execute(SEED).await?;
        db.batch_execute(ENDPOINTS).await?;
        db.batch_execute(LOG_SIZED_TABLE).await?;
        let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        anyhow::Ok(pid as u32)
    })?;
    if options.instructions_only {
        return crate::instructions::count(&cluster);
    }
    let postmaster = procstat::parent_pid(backend).context("finding the postmaster's pid")?;
    let sampler_db = std::sync::Arc::new(runtime.block_on(cluster.connect("bench"))?);
    // The server's own processes (and the sampler's), once the set-up connection has gone.
    std::thread::sleep(Duration::from_secs(1));
    let idle_children = procstat::child_count(postmaster);
    let scripts = tempfile::tempdir()?;
    // scripts_of[variant][workload]
    let update = scripts.path().join("update.sql");
    std::fs::write(&update, UPDATE)?;
    let mut scripts_of = Vec::new();
    for variant in VARIANTS {
        let insert = scripts
            .path()
            .join(format!("insert into {}.sql", variant.table));
        std::fs::write(&insert, insert_script(variant.table))?;
        scripts_of.push([insert, update.clone()]);
    }

    println!(
        "\n==> pgbench, {} clients, {} s per run, {} round(s); fsync on",
        options.clients, options.seconds, options.rounds
    );
    // runs[variant][workload][round]. Within a round the variants of one workload run back to
    // back, in the listed order in odd rounds and in reverse in even ones (ABBA), so the
    // baseline and the tracked run are neighbours and a drift of the host over a round moves
    // both alike. Each ratio compares runs of one round; the report takes the median ratio
    // over rounds and its interquartile range, which a disturbed run cannot move much.
    // tps moves with the disk's fsync latency, which varies several-fold on this VM. CPU per
    // transaction does not, so its ratio shows what tracking costs when CPU is the limit.
    let workloads = ["insert", "update"];
    let mut runs: Vec<Vec<Vec<Run>>> = (0..VARIANTS.len())
        .map(|_| (0..workloads.len()).map(|_| Vec::new()).collect())
        .collect();
    for round in 1..=options.rounds {
        for (w, workload) in workloads.iter().enumerate() {
            let mut order: Vec<usize> = (0..VARIANTS.len())
                .filter(|&v| VARIANTS[v].measures(workload))
                .collect();
            if round % 2 == 0 {
                order.reverse();
            }
            for &v in &order {
                enter(&cluster, &VARIANTS[v])?;
                // enter()'s psql sessions and pgbench's backends must be reaped before each
                // reading, or their CPU lands in the neighbouring run.
                procstat::wait_for_children(postmaster, idle_children, Duration::from_secs(5));
                let cpu_before = procstat::cluster_cpu_seconds(postmaster);
                let wal_before = runtime.block_on(wal_position(&sampler_db))?;
                let sampler = WaitSampler::start(&runtime, sampler_db.clone());
                let (tps, transactions) = pgbench(&cluster, &scripts_of[v][w], options)?;
                let waits = sampler.finish(&runtime);
                let wal = runtime.block_on(wal_position(&sampler_db))? - wal_before;
                procstat::wait_for_children(postmaster, idle_children, Duration::from_secs(5));
                let per_tx = |total: f64| total / transactions.max(1) as f64;
                runs[v][w].push(Run {
                    tps,
                    cpu: per_tx((procstat::cluster_cpu_seconds(postmaster) - cpu_before) * 1e6),
                    wal: per_tx(wal),
                    waits,
                });
            }
            let r = round as usize - 1;
            let base = &runs[0][w][r];
            for &v in &order {
                let run = &runs[v][w][r];
                println!(
                    "    round {round}  {workload:<7} {:<28} {:>9.0} tps  × {:.2}   PostgreSQL CPU {:>4.0} µs/tx  × {:.2}   WAL {:>4.0} B/tx   [{}]",
                    VARIANTS[v].name,
                    run.tps,
                    run.tps / base.tps,
                    run.cpu,
                    base.cpu / run.cpu,
                    run.wal,
                    run.waits
                );
            }
        }
    }
    println!("\n| variant | insert tps (mean) | × untracked (median, quartiles) | CPU µs/tx | CPU × untracked | WAL B/tx | update tps (mean) | × untracked (median, quartiles) | CPU µs/tx | CPU × untracked | WAL B/tx |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (v, variant) in VARIANTS.iter().enumerate() {
        let cells: Vec<String> = (0..workloads.len())
            .map(|w| summary(&runs[v][w], &runs[0][w]))
            .collect();
        println!("| {} | {} |", variant.name, cells.join(" | "));
    }
    let db = runtime.block_on(cluster.connect("bench"))?;
    runtime.block_on(fan_out_tracked_events(&db, postmaster))?;
    drop(db);
    crate::instructions::count(&cluster)
}

/// The other half of a tracked write: the deliveries that `webhooks.fan_out()` makes after
/// commit (a relay's claims run it). Fans out what the tracked runs logged, as a relay would.
async fn fan_out_tracked_events(db: &tokio_postgres::Client, postmaster: u32) -> Result<()> {
    let awaiting: i64 = db
        .query_one("SELECT count(*) FROM webhooks.events_awaiting_fan_out", &[])
        .await?
        .get(0);
    let cpu_before = procstat::cluster_cpu_seconds(postmaster);
    let started = std::time::Instant::now();
    let mut made = 0i64;
    loop {
        let batch: i32 = db
            .query_one("SELECT webhooks.fan_out(2000)", &[])
            .await?
            .get(0);
        if batch == 0 {
            break;
        }
        made += i64::from(batch);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = procstat::cluster_cpu_seconds(postmaster) - cpu_before;
    println!(
        "\n==> fan-out of the tracked runs' {awaiting} events (2,000 per call, as claims do): \
         {made} deliveries in {seconds:.1} s = {:.0} deliveries/s, PostgreSQL CPU {:.1} µs per delivery",
        made as f64 / seconds.max(1e-9),
        cpu * 1e6 / made.max(1) as f64
    );
    Ok(())
}

/// One pgbench run: tps, and PostgreSQL's CPU (µs) and WAL (bytes) per transaction.
struct Run {
    tps: f64,
    cpu: f64,
    wal: f64,
    waits: String,
}

/// A variant's cells of the report for one workload, against the baseline's runs of the same
/// rounds; dashes where the variant did not run.
fn summary(runs: &[Run], baseline: &[Run]) -> String {
    if runs.is_empty() {
        return "— | — | — | — | —".to_string();
    }
    let ratios = |of: fn(&Run) -> f64, inverse: bool| -> Vec<f64> {
        runs.iter()
            .zip(baseline)
            .map(|(x, base)| {
                if inverse {
                    of(base) / of(x)
                } else {
                    of(x) / of(base)
                }
            })
            .collect()
    };
    let mean_of = |of: fn(&Run) -> f64| mean(&runs.iter().map(of).collect::<Vec<_>>());
    let (low, middle, high) = quartiles(ratios(|r| r.tps, false));
    format!(
        "{:.0} | {middle:.2} ({low:.2}–{high:.2}) | {:.0} | {:.2} | {:.0}",
        mean_of(|r| r.tps),
        mean_of(|r| r.cpu),
        quartiles(ratios(|r| r.cpu, true)).1,
        mean_of(|r| r.wal)
    )
}

/// The server's WAL insert position, in bytes.
async fn wal_position(db: &tokio_postgres::Client) -> Result<f64> {
    let row = db
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The lower quartile, median and upper quartile (each the middle value, or the mean of the
/// two middle values, of its half; the median's own half includes it when the count is odd).
fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = |part: &[f64]| -> f64 {
        let mid = part.len() / 2;
        match part.len() {
            0 => f64::NAN,
            n if n.is_multiple_of(2) => (part[mid - 1] + part[mid]) / 2.0,
            _ => part[mid],
        }
    };
    let half = values.len().div_ceil(2);
    (
        median(&values[..half]),
        median(&values),
        median(&values[values.len() - half..]),
    )
}

fn psql(cluster: &Cluster, sql: &str) -> Result<()> {
    let out = Command::new(cluster.bindir().join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &cluster.connstr("bench"),
            "-c",
            sql,
        ])
        .output()
        .context("running psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// tps and the number of transactions of one pgbench run.
fn pgbench(cluster: &Cluster, script: &std::path::Path, options: &Options) -> Result<(f64, u64)> {
    let out = Command::new(cluster.bindir().join("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
        ])
        .args(["-c", &options.clients.to_string(), "-j", "2"])
        .args(["-T", &options.seconds.to_string()])
        .arg("-f")
        .arg(script)
        .arg("bench")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))?;
    // "number of transactions actually processed: 51234" (or "51234/51234" with -t).
    let transactions = text
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed:"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no transaction count in pgbench output:\n{text}"))?;
    Ok((tps, transactions))
}

#[cfg(test)]
mod tests {
    use super::quartiles;

    #[test]
    fn quartiles_of_odd_even_and_single_counts() {
        assert_eq!(quartiles(vec![0.9]), (0.9, 0.9, 0.9));
        assert_eq!(quartiles(vec![3.0, 1.0, 2.0]), (1.5, 2.0, 2.5));
        assert_eq!(quartiles(vec![4.0, 1.0, 3.0, 2.0]), (1.5, 2.5, 3.5));
        assert_eq!(quartiles(vec![5.0, 1.0, 4.0, 2.0, 3.0]), (2.0, 3.0, 4.0));
    }
}
