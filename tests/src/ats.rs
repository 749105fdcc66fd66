//! The reference ATS schema (sql/ats_schema.sql), loaded and tracked in a throwaway cluster.

use crate::cluster::Cluster;
use anyhow::{Context, Result};

pub const SCHEMA: &str = include_str!("../../sql/ats_schema.sql");

/// The candidate (7) and job posting (3) that tests' applications refer to.
pub const PEOPLE: &str =
    "INSERT INTO ats.candidates (id, name, email) VALUES (7, 'Jane Smith', 'jane@example.com');
    INSERT INTO ats.job_postings (id, title) VALUES (3, 'Senior Engineer');";

/// Load the reference schema into `db` and track all of it.
pub async fn load_and_track(db: &tokio_postgres::Client) -> Result<()> {
    db.batch_execute(SCHEMA)
        .await
        .context("loading sql/ats_schema.sql")?;
    db.batch_execute("SELECT webhooks.track_ats('ats')")
        .await
        .context("webhooks.track_ats")?;
    Ok(())
}

/// A cluster with the extension and the tracked reference schema in database `app`.
pub async fn database() -> Result<(Cluster, tokio_postgres::Client)> {
    let (cluster, db) = Cluster::with_app_database().await?;
    load_and_track(&db).await?;
    Ok((cluster, db))
}
