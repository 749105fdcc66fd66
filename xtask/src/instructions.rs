//! `cargo xtask bench tracking`, last part: the CPU instructions one application write costs
//! under each variant, counted by valgrind.
//!
//! tps and CPU time swing several-fold here with the VM's neighbours; an instruction count
//! repeats to about 0.1%, so its ratios show changes of a few percent that pgbench cannot. It
//! leaves out what is not an instruction of PostgreSQL's: waits, the kernel's work (the WAL
//! flush), cache misses, and contention between clients. It is therefore a floor for what tracking costs
//! when CPU is the limit, and the pgbench figures remain the measure of throughput.
//!
//! How: the server is stopped, and each workload runs in PostgreSQL's single-user mode under
//! cachegrind (no cache simulation), once with N writes and once with 5N, each write in its own
//! transaction. The difference divided by 4N is one write, without start-up and shutdown.

use crate::bench_tracking::{enter, VARIANTS};
use anyhow::{bail, Context, Result};
use e2e::cluster::Cluster;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

/// Writes in the shorter of the two counts of a workload.
const WRITES: usize = 50;

/// Write `i` of count number `count`, as one SQL line.
type Statement = fn(usize, usize) -> String;

/// The pgbench workloads of bench_tracking, as literal statements (single-user mode has no
/// variables). Every update sets a stage the row has never had, so that each one fires
/// `application.advanced` when tracked.
const WORKLOADS: [(&str, Statement); 2] = [
    ("insert", |i, _| {
        format!(
            "INSERT INTO ats.applications (candidate_id, job_posting_id, submitted_at) VALUES ({}, {}, now());",
            1 + i % 100,
            1 + i % 10
        )
    }),
    ("update", |i, count| {
        format!(
            "UPDATE ats.applications SET current_stage = 'Stage {count}.{i}' WHERE id = {};",
            1 + i % 1000
        )
    }),
];

pub fn count(cluster: &Cluster) -> Result<()> {
    let Some(valgrind) = find_on_path("valgrind") else {
        println!(
            "\n==> instruction counts skipped: valgrind is not installed (apt-get install valgrind)"
        );
        return Ok(());
    };
    let valgrind = valgrind.to_str().context("valgrind's path")?.to_owned();
    println!(
        "\n==> CPU instructions per write (valgrind, single-user mode; {WRITES} and {} writes per count)",
        5 * WRITES
    );
    // counts[variant][workload]
    let mut counts = Vec::new();
    let mut count_number = 0;
    for variant in VARIANTS {
        enter(cluster, variant)?;
        cluster.stop()?;
        // The stop is immediate: the first single-user start replays the WAL since the
        // checkpoint. Let that happen outside the counts.
        run_single_user(cluster, None, "")?;
        let mut per_workload = Vec::new();
        for (workload, statement) in WORKLOADS {
            if !variant.measures(workload) {
                per_workload.push(f64::NAN);
                continue;
            }
            let mut script = |n: usize| {
                count_number += 1;
                (0..n)
                    .map(|i| {
                        statement(i, count_number).replace("ats.applications", variant.table) + "\n"
                    })
                    .collect::<String>()
            };
            let few = script(WRITES);
            let many = script(5 * WRITES);
            let few = run_single_user(cluster, Some(&valgrind), &few)?;
            let many = run_single_user(cluster, Some(&valgrind), &many)?;
            let per_write = many.saturating_sub(few) as f64 / (4 * WRITES) as f64;
            println!(
                "    {workload:<7} {:<28} {per_write:>9.0} instructions",
                variant.name
            );
            per_workload.push(per_write);
        }
        counts.push(per_workload);
        cluster.pg_ctl_start()?;
    }
    println!(
        "\n| variant | insert: instructions | × untracked | update: instructions | × untracked |"
    );
    println!("|---|---|---|---|---|");
    for (variant, row) in VARIANTS.iter().zip(&counts) {
        let cells: Vec<String> = row
            .iter()
            .zip(&counts[0])
            .map(|(count, base)| match count.is_nan() {
                true => "— | —".to_string(),
                false => format!("{count:.0} | {:.2}", base / count),
            })
            .collect();
        println!("| {} | {} |", variant.name, cells.join(" | "));
    }
    Ok(())
}

/// Feed `script` to a single-user backend of the `bench` database, under valgrind if given;
/// returns the instructions valgrind counted (0 without it). Any SQL error fails the count.
fn run_single_user(cluster: &Cluster, valgrind: Option<&str>, script: &str) -> Result<u64> {
    let wrapper: Vec<&str> = match valgrind {
        Some(v) => vec![
            v,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ],
        None => Vec::new(),
    };
    let mut child = cluster
        .single_user(&wrapper, "bench")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting PostgreSQL in single-user mode")?;
    child
        .stdin
        .take()
        .context("single-user stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || log.contains("ERROR:") {
        bail!("single-user PostgreSQL failed ({}):\n{log}", out.status);
    }
    if valgrind.is_none() {
        return Ok(0);
    }
    // "==1234== I   refs:      577,050,123"
    log.lines()
        .find_map(|line| {
            line.split_once("I   refs:")
                .map(|(_, n)| n.trim().replace(',', ""))
        })
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no instruction count in valgrind's output:\n{log}"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
