//! The health server: `/healthz` (200 while the relay holds its database connection, 503
//! otherwise) and `/metrics` (written by metrics.rs).

use crate::db::Database;
use crate::shutdown::Shutdown;
use crate::state::RelayState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Bind the health server; returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: Arc<RelayState>,
    db: Arc<Database>,
    mut shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (socket, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => { tracing::warn!(error = %e, "health server accept failed"); continue; }
                },
                _ = shutdown.requested() => return,
            };
            let (state, db) = (state.clone(), db.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (state, db) = (state.clone(), db.clone());
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &state, &db).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn respond(
    req: &Request<Incoming>,
    state: &RelayState,
    db: &Database,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" {
        return text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::render(state, db.queue_stats().await),
        );
    }
    let (status, body) = match req.uri().path() {
        "/healthz" if state.database_connected() => (
            StatusCode::OK,
            format!(
                "{{\"status\":\"ok\",\"database\":\"connected\",\"wakeups\":{}}}\n",
                state.wakeups()
            ),
        ),
        "/healthz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"unavailable\",\"database\":\"disconnected\"}\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "{\"error\":\"not found\"}\n".to_string(),
        ),
    };
    text(status, "application/json", body)
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
