//! `cargo xtask demo`: a throwaway cluster with the extension, the relay connected and
//! listening, and a psql tour of the SQL API. Everything is torn down at the end.

use crate::run::{cmd, status};
use crate::setup::install_extension;
use anyhow::Result;
use e2e::cluster::Cluster;
use e2e::relay::Relay;

pub fn run() -> Result<()> {
    install_extension()?;
    status(cmd("cargo", &["build", "-p", "webhook-relay"]))?;
    tokio::runtime::Runtime::new()?.block_on(story())
}

async fn story() -> Result<()> {
    println!("\n==> starting a throwaway PostgreSQL 15 cluster");
    let cluster = Cluster::start()?;
    cluster.create_database_with_extension("ats").await?;
    println!(
        "    CREATE EXTENSION pg_webhooks: done (port {})",
        cluster.port()
    );

    let mut relay = Relay::start(&cluster.connstr("ats"), &[]).await?;
    let (code, body) = relay.health().await?;
    println!(
        "==> relay connected and listening; GET /healthz -> {code} {}",
        body.trim()
    );

    let psql = |sql: &str| -> Result<()> {
        println!("\nats=# {sql}");
        let mut c = cmd(
            "psql",
            &[
                "-X",
                "-P",
                "pager=off",
                "-d",
                &cluster.connstr("ats"),
                "-c",
                sql,
            ],
        );
        c.env("PGTZ", "UTC");
        status_quiet(c)
    };
    psql("SELECT name, category, available FROM webhooks.list_event_types() LIMIT 8")?;
    psql("SELECT webhooks.set_setting('allow_http', 'false')")?;
    psql("SELECT endpoint_id FROM webhooks.create_endpoint('https://hooks.example.com/kit', ARRAY['application.*', 'offer.accepted'], name => 'ATS Sync Production')")?;
    psql("SELECT id, name, url, status, event_types FROM webhooks.endpoint_list")?;
    psql("SELECT webhooks.emit('application.submitted', '{\"id\": 42}')")?;
    psql(
        "SELECT delivery_id, event_type, endpoint_name, delivery_status FROM webhooks.delivery_log",
    )?;

    let exit = relay.stop(std::time::Duration::from_secs(10)).await?;
    println!("\n==> relay stopped ({exit}); cluster removed. Demo done.");
    Ok(())
}

fn status_quiet(mut c: std::process::Command) -> Result<()> {
    let out = c.output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "psql failed");
    Ok(())
}
