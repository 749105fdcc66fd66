//! A throwaway PostgreSQL 15 cluster for one test.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI, this machine) every
//! server command runs through `sudo -u postgres`. The cluster lives in a fresh directory
//! `/tmp/pgwh-XXXXXX` (data, log and a private socket directory), listens on a free port on
//! 127.0.0.1 with trust authentication, and is stopped and removed on drop. Set
//! `PGWH_KEEP_CLUSTER=1` to keep it running for debugging; its address is printed.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Cluster {
    root: PathBuf,
    port: u16,
    bindir: PathBuf,
    keep: bool,
    fsync: bool,
}

/// Are we root (so that server commands must go through `sudo -u postgres`)?
pub fn running_as_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false)
}

/// Run a server-side command, as `postgres` when we are root.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut c = Command::new("sudo");
        c.args(["-n", "-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn checked(mut command: Command, what: &str) -> Result<Output> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn pg_bindir() -> Result<PathBuf> {
    let out = checked(
        {
            let mut c = Command::new("/usr/bin/pg_config");
            c.arg("--bindir");
            c
        },
        "pg_config --bindir",
    )?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

impl Cluster {
    /// initdb, start and wait until the server accepts connections. fsync is off: tests do
    /// not need durability and run faster without it.
    pub fn start() -> Result<Cluster> {
        Cluster::start_configured(false)
    }

    /// A cluster with PostgreSQL's default durability (fsync on), for benchmarks whose figures
    /// must be comparable with a production server's.
    pub fn start_durable() -> Result<Cluster> {
        Cluster::start_configured(true)
    }

    fn start_configured(fsync: bool) -> Result<Cluster> {
        let bindir = pg_bindir()?;
        let root = tempfile::Builder::new()
            .prefix("pgwh-")
            .tempdir_in("/tmp")?
            .keep();
        let cluster = Cluster {
            root,
            port: crate::free_port(),
            bindir,
            keep: std::env::var("PGWH_KEEP_CLUSTER").is_ok_and(|v| v == "1"),
            fsync,
        };
        std::fs::create_dir_all(cluster.socket_dir())?;
        if running_as_root() {
            checked(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&cluster.root);
                    c
                },
                "chown of the cluster directory",
            )?;
        }
        let mut initdb = as_server_user(&cluster.bindir.join("initdb"));
        initdb.arg("-D").arg(cluster.data_dir()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        checked(initdb, "initdb")?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sockets")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Start (or restart after [`Cluster::stop`]) the server and wait until it is ready.
    pub fn pg_ctl_start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.socket_dir().display(),
            if self.fsync { "on" } else { "off" }
        );
        let mut start = as_server_user(&self.bindir.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        checked(start, "pg_ctl start").map(drop).with_context(|| {
            format!(
                "server log:\n{}",
                std::fs::read_to_string(self.log_file()).unwrap_or_default()
            )
        })
    }

    /// Stop the server immediately (crash-like); the data directory stays.
    pub fn stop(&self) -> Result<()> {
        let mut stop = as_server_user(&self.bindir.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", "immediate", "stop"]);
        checked(stop, "pg_ctl stop").map(drop)
    }

    /// PostgreSQL in single-user mode on `database`, run by `wrapper` (a program and its
    /// arguments, e.g. valgrind) as the server's user. The server must be stopped. It reads
    /// commands from stdin, one per line, each in its own transaction.
    pub fn single_user(&self, wrapper: &[&str], database: &str) -> Command {
        let postgres = self.bindir.join("postgres");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = as_server_user(Path::new(program));
                c.args(args).arg(&postgres);
                c
            }
            None => as_server_user(&postgres),
        };
        command
            .arg("--single")
            .arg("-D")
            .arg(self.data_dir())
            .arg(database);
        command
    }

    /// A libpq/tokio-postgres connection string for `database` as the superuser.
    pub fn connstr(&self, database: &str) -> String {
        self.connstr_as(database, "postgres")
    }

    pub fn connstr_as(&self, database: &str, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={database} connect_timeout=10",
            self.port
        )
    }

    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client> {
        self.connect_as(database, "postgres").await
    }

    pub async fn connect_as(&self, database: &str, user: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.connstr_as(database, user), tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to {database} as {user}"))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The usual start of a test: a cluster, database `app` with the extension, a connection.
    pub async fn with_app_database() -> Result<(Cluster, tokio_postgres::Client)> {
        let cluster = Cluster::start()?;
        cluster.create_database_with_extension("app").await?;
        let client = cluster.connect("app").await?;
        Ok((cluster, client))
    }

    /// Create `database` with the extension installed in it.
    pub async fn create_database_with_extension(&self, database: &str) -> Result<()> {
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await?;
        let db = self.connect(database).await?;
        db.batch_execute("CREATE EXTENSION pg_webhooks").await.context(
            "CREATE EXTENSION pg_webhooks failed: is the extension installed? \
             `cargo xtask test` installs it (cargo pgrx install --sudo --pg-config /usr/bin/pg_config)",
        )?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "PGWH_KEEP_CLUSTER=1: cluster kept at {} — psql -h 127.0.0.1 -p {} -U postgres",
                self.root.display(),
                self.port
            );
            return;
        }
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
