//! `cargo xtask <command>`: the two commands of the README, plus the steps they are made of.
//!
//! - `cargo xtask demo`  — set up what is missing, then run the demo end to end.
//! - `cargo xtask test`  — set up what is missing, then fmt, clippy and every test.
//! - `cargo xtask setup` — only the set-up (apt packages, cargo-pgrx 0.18.0, pgrx init).
//! - `cargo xtask bench tracking [--seconds N] [--rounds N] [--clients N] [--instructions-only]`
//!   — the cost of tracking to application writes, in tps, CPU time and (with valgrind)
//!   instructions per write (docs/benchmarks.md).
//! - `cargo xtask bench relay [--backlog N] [--rate N] [--seconds N]` — relay throughput
//!   against a raw client, and commit → receipt latency (docs/benchmarks.md).
//! - `cargo xtask bench soak [--minutes N] [--rate N]` — retention under steady load:
//!   throughput, latency and size on disk, minute by minute (docs/benchmarks.md).

mod bench_relay;
mod bench_soak;
mod bench_tracking;
mod demo;
mod instructions;
mod procstat;
mod run;
mod setup;
mod suite;
mod wait_sampler;

const USAGE: &str = "usage: cargo xtask <demo|test|setup|bench tracking|bench relay>
  test [--skip-lint] [FILTER]  FILTER runs only e2e tests whose name contains it
  bench tracking [--seconds N] [--rounds N] [--clients N] [--instructions-only]
  bench relay [--backlog N] [--rate N] [--seconds N]
  bench soak [--minutes N] [--rate N]";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::ensure_all(),
        Some("test") => setup::ensure_all().and_then(|()| suite::run(&args[1..])),
        Some("demo") => setup::ensure_all().and_then(|()| demo::run()),
        Some("bench") if args.get(1).map(String::as_str) == Some("relay") => {
            setup::ensure_all().and_then(|()| bench_relay::run(&args[2..]))
        }
        Some("bench-relay-inner") => bench_relay::measure(&bench_relay::Options {
            backlog: flag(&args, "--backlog", 100_000),
            rate: flag(&args, "--rate", 500),
            seconds: flag(&args, "--seconds", 10),
        }),
        Some("bench") if args.get(1).map(String::as_str) == Some("soak") => {
            setup::ensure_all().and_then(|()| bench_soak::run(&args[2..]))
        }
        Some("bench-soak-inner") => bench_soak::measure(&bench_soak::Options {
            minutes: flag(&args, "--minutes", 8),
            rate: flag(&args, "--rate", 300),
        }),
        Some("bench") if args.get(1).map(String::as_str) == Some("tracking") => {
            let options = bench_tracking::Options {
                seconds: flag(&args, "--seconds", 15),
                rounds: flag(&args, "--rounds", 1),
                clients: flag(&args, "--clients", 4),
                instructions_only: args.iter().any(|a| a == "--instructions-only"),
            };
            setup::ensure_all().and_then(|()| bench_tracking::run(&options))
        }
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The number after `name` in `args`, or `default`.
fn flag(args: &[String], name: &str, default: u32) -> u32 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
