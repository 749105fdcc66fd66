//! Running child commands: echo what runs, stream its output, fail with context.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (the parent of `xtask/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub use e2e::cluster::running_as_root as is_root;

pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(workspace());
    c
}

fn describe(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run to completion with inherited output; an unsuccessful exit is an error.
pub fn status(mut c: Command) -> Result<()> {
    let what = describe(&c);
    println!("==> {what}");
    let status = c.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// Run, streaming stdout and stderr through, and return every line printed.
pub fn streamed(mut c: Command) -> Result<(bool, Vec<String>)> {
    let what = describe(&c);
    println!("==> {what}");
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().with_context(|| format!("starting {what}"))?;
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("{l}"))
            .collect::<Vec<_>>()
    });
    let mut lines: Vec<String> = BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
        .inspect(|l| println!("{l}"))
        .collect();
    lines.extend(err_thread.join().unwrap_or_default());
    Ok((child.wait()?.success(), lines))
}

/// Does `program --version`-style output contain `needle`?
pub fn output_contains(program: &str, args: &[&str], needle: &str) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(needle))
        .unwrap_or(false)
}

/// Build the extension and the relay in release mode, then run `inner` (a hidden xtask
/// command that measures) in a release build of xtask, with `args` and the release relay.
pub fn measure_in_release(inner: &str, args: &[String]) -> Result<()> {
    crate::setup::install_extension()?;
    status(cmd("cargo", &["build", "--release", "-p", "webhook-relay"]))?;
    let mut run = cmd(
        "cargo",
        &["run", "--release", "--quiet", "-p", "xtask", "--", inner],
    );
    run.args(args);
    run.env(
        "WEBHOOK_RELAY_BIN",
        workspace().join("target/release/webhook-relay"),
    );
    // A debug line per attempt would measure the log file, not the relay.
    run.env("WEBHOOK_RELAY_LOG", "info");
    status(run)
}
