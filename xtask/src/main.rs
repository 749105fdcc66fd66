//! `cargo xtask <command>`: the two commands of the README, plus the steps they are made of.
//!
//! - `cargo xtask demo`  — set up what is missing, then run the demo end to end.
//! - `cargo xtask test`  — set up what is missing, then fmt, clippy and every test.
//! - `cargo xtask setup` — only the set-up (apt packages, cargo-pgrx 0.18.0, pgrx init).

mod demo;
mod run;
mod setup;
mod suite;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::ensure_all(),
        Some("test") => setup::ensure_all().and_then(|()| suite::run(&args[1..])),
        Some("demo") => setup::ensure_all().and_then(|()| demo::run()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|setup>\n  test [--skip-lint] [FILTER]  FILTER runs only e2e tests whose name contains it");
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
