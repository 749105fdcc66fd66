//! `cargo xtask test`: lint, install the extension, then every test — the relay's unit tests,
//! the end-to-end tests in `tests/` and the extension's `#[pg_test]`s — with a count summary.

use crate::run::{cmd, is_root, status, streamed, workspace};
use crate::setup::{install_extension, PG_CONFIG};
use anyhow::{bail, Result};

/// Where `cargo pgrx test` keeps its cluster when it must run as `postgres`.
const PGRX_TEST_PGDATA: &str = "/tmp/pgwh-pgrx-test-data";

#[derive(Default)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    /// Add up cargo's "test result: ok. 3 passed; 0 failed; 1 ignored; ..." lines.
    fn add_from(&mut self, lines: &[String]) {
        for line in lines.iter().filter(|l| l.starts_with("test result:")) {
            let number_before = |word: &str| -> u64 {
                line.split(';')
                    .find(|part| part.trim_end().ends_with(word))
                    .and_then(|part| part.split_whitespace().rev().nth(1))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            self.passed += number_before("passed");
            self.failed += number_before("failed");
            self.ignored += number_before("ignored");
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let skip_lint = args.iter().any(|a| a == "--skip-lint");
    let filter: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    stop_stale_clusters();

    if !skip_lint {
        status(cmd("cargo", &["fmt", "--all", "--", "--check"]))?;
        status(cmd(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ))?;
    }
    install_extension()?;
    status(cmd("cargo", &["build", "-p", "webhook-relay"]))?;

    let mut summary: Vec<(&str, Counts, bool)> = Vec::new();
    let mut workspace_tests = cmd(
        "cargo",
        &["test", "--workspace", "--exclude", "pg_webhooks", "--"],
    );
    workspace_tests.args(&filter);
    let (ok, lines) = streamed(workspace_tests)?;
    let mut counts = Counts::default();
    counts.add_from(&lines);
    summary.push(("relay units + end-to-end (tests/)", counts, ok));

    if filter.is_empty() {
        let (ok, lines) = streamed(pgrx_test_command()?)?;
        let mut counts = Counts::default();
        counts.add_from(&lines);
        summary.push(("extension #[pg_test]s (cargo pgrx test)", counts, ok));
    }

    println!("\n==> test summary");
    let mut all_ok = true;
    for (name, c, ok) in &summary {
        println!(
            "    {name:<42} {:>4} passed {:>3} failed {:>3} ignored  {}",
            c.passed,
            c.failed,
            c.ignored,
            if *ok { "ok" } else { "FAILED" }
        );
        all_ok &= *ok;
    }
    let total: u64 = summary.iter().map(|(_, c, _)| c.passed).sum();
    println!("    {:<42} {total:>4} passed", "total");
    if !all_ok {
        bail!("some tests failed");
    }
    Ok(())
}

fn pgrx_test_command() -> Result<std::process::Command> {
    let mut c = cmd("cargo", &["pgrx", "test", "pg15"]);
    c.current_dir(workspace().join("extension"));
    if is_root() {
        // PostgreSQL refuses to run as root: cargo-pgrx runs it through sudo as postgres,
        // in a data directory postgres owns.
        std::fs::create_dir_all(PGRX_TEST_PGDATA)?;
        status(cmd("chown", &["postgres:postgres", PGRX_TEST_PGDATA]))?;
        c.args(["--runas", "postgres", "--pgdata", PGRX_TEST_PGDATA]);
    }
    c.env("PGRX_PG_CONFIG_PATH", PG_CONFIG);
    Ok(c)
}

/// Clusters left by a test process that was killed before its destructors ran.
fn stop_stale_clusters() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = entry.path().join("data");
        if !name.starts_with("pgwh-") || name == "pgwh-pgrx-test-data" || !data.exists() {
            continue;
        }
        if data.join("postmaster.pid").exists() {
            let pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl";
            let data = data.to_string_lossy().into_owned();
            let mut stop = if is_root() {
                cmd(
                    "sudo",
                    &[
                        "-n",
                        "-u",
                        "postgres",
                        pg_ctl,
                        "-D",
                        &data,
                        "-m",
                        "immediate",
                        "stop",
                    ],
                )
            } else {
                cmd(pg_ctl, &["-D", &data, "-m", "immediate", "stop"])
            };
            let _ = stop.output();
        }
        println!("==> removed stale test cluster {}", entry.path().display());
        let _ = std::fs::remove_dir_all(entry.path());
    }
}
