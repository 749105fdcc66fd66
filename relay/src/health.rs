//! `/healthz`: 200 while the relay holds its database connection, 503 otherwise.

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
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &state)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn respond(req: &Request<Incoming>, state: &RelayState) -> Response<Full<Bytes>> {
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
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
