//! Idempotent set-up for a fresh Debian 12 machine: each step checks first and skips what is
//! already there, so running it twice costs a few hundred milliseconds.

use crate::run::{cmd, is_root, output_contains, status};
use anyhow::{Context, Result};

const APT_PACKAGES: &[&str] = &[
    "postgresql-15",
    "postgresql-server-dev-15",
    "libclang-dev",
    "clang",
    "sudo",
    // The receiver snippets in docs/relay.md are run by the tests.
    "python3",
    "nodejs",
    // Makes the self-signed receiver certificates of the demo and the tests.
    "openssl",
];
const PGRX_VERSION: &str = "0.18.0";
pub const PG_CONFIG: &str = "/usr/bin/pg_config";

pub fn ensure_all() -> Result<()> {
    ensure_apt_packages()?;
    ensure_cargo_pgrx()?;
    ensure_pgrx_init()
}

fn installed(package: &str) -> bool {
    output_contains(
        "dpkg-query",
        &["-W", "-f=${Status}", package],
        "install ok installed",
    )
}

fn ensure_apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!("==> apt packages present: {}", APT_PACKAGES.join(" "));
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut c = if is_root() {
            cmd("apt-get", args)
        } else {
            cmd("sudo", &[&["apt-get"], args].concat())
        };
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    status(apt(&["update", "-qq"]))?;
    status(apt(&[
        &["install", "-y", "-qq", "--no-install-recommends"],
        missing.as_slice(),
    ]
    .concat()))
    .context("installing the PostgreSQL 15 server, its headers and clang")
}

fn ensure_cargo_pgrx() -> Result<()> {
    if output_contains(
        "cargo",
        &["pgrx", "--version"],
        &format!("cargo-pgrx {PGRX_VERSION}"),
    ) {
        println!("==> cargo-pgrx {PGRX_VERSION} present");
        return Ok(());
    }
    status(cmd(
        "cargo",
        &[
            "install",
            "cargo-pgrx",
            "--version",
            PGRX_VERSION,
            "--locked",
        ],
    ))
    .context("installing cargo-pgrx (about 5 minutes)")
}

fn ensure_pgrx_init() -> Result<()> {
    let home = std::env::var("PGRX_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".pgrx")
        });
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap_or_default();
    if config.contains(&format!("pg15 = \"{PG_CONFIG}\"")) {
        println!("==> pgrx already initialised for pg15 ({PG_CONFIG})");
        return Ok(());
    }
    status(cmd("cargo", &["pgrx", "init", "--pg15", PG_CONFIG]))
}

/// Build the extension and copy it into the system PostgreSQL 15 (needs sudo when not root).
/// Always a release build: the tracking trigger runs inside every tracked write, and the
/// tests and benchmarks should run what users install.
pub fn install_extension() -> Result<()> {
    let mut c = cmd(
        "cargo",
        &[
            "pgrx",
            "install",
            "--release",
            "--sudo",
            "--pg-config",
            PG_CONFIG,
        ],
    );
    c.current_dir(crate::run::workspace().join("extension"));
    status(c)?;
    install_released_scripts()
}

/// The install scripts of released versions (`extension/releases/`), beside the current one,
/// so that `CREATE EXTENSION pg_webhooks VERSION '0.1.0'` works and the upgrade test can
/// update from it. pgrx only installs the current version's script and the upgrade scripts.
fn install_released_scripts() -> Result<()> {
    let sharedir = std::process::Command::new(PG_CONFIG)
        .arg("--sharedir")
        .output()
        .context("pg_config --sharedir")?;
    let target = format!(
        "{}/extension/",
        String::from_utf8_lossy(&sharedir.stdout).trim()
    );
    let releases = crate::run::workspace().join("extension/releases");
    for entry in
        std::fs::read_dir(&releases).with_context(|| format!("reading {}", releases.display()))?
    {
        let path = entry?.path();
        let path = path.to_str().context("a release script's path")?;
        let c = if is_root() {
            cmd("cp", &[path, &target])
        } else {
            cmd("sudo", &["cp", path, &target])
        };
        status(c)?;
    }
    Ok(())
}
