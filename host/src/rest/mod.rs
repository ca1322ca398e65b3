//! The REST API of DESIGN.md §3.2 on 127.0.0.1:8080: `GET /health` and `/api/v1/contexts`.

pub mod auth;
pub mod contexts;
pub mod error;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::sandboxes::Manager;

/// The OpenAPI document of this API.
const OPENAPI: &str = include_str!("openapi.json");

/// Builds the router.
pub fn router(state: Arc<contexts::Contexts>, auth: Option<auth::BasicAuth>) -> Router {
    let api = Router::new()
        .route("/contexts", post(contexts::create).get(contexts::list))
        .route(
            "/contexts/{id}",
            axum::routing::delete(contexts::delete).get(contexts::get),
        )
        .route("/contexts/{id}/execute", post(contexts::execute))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require,
        ));
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .nest("/api/v1", api)
        .fallback(|| async { error::RestError::not_found_route() })
}

/// Serves the REST API on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Arc<Manager>,
    auth: Option<auth::BasicAuth>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(contexts::Contexts::new(manager));
    // The sweep asks sandboxes (with deadlines) while the API already answers.
    let sweep = state.clone();
    let serve = async move {
        axum::serve(listener, router(state, auth))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    };
    let (served, ()) = tokio::join!(serve, sweep.sweep_orphans());
    served
}

/// Refuses a non-loopback REST address without credentials (DESIGN.md §3.2).
pub fn check_exposure(addr: SocketAddr, auth: &Option<auth::BasicAuth>) -> Result<(), String> {
    if !addr.ip().is_loopback() && auth.is_none() {
        return Err(format!(
            "refusing to serve the REST API on {addr} without authentication: pass --basic-auth USER:PASSWORD \
             (or AGENT_RUNTIME_BASIC_AUTH), or bind to 127.0.0.1"
        ));
    }
    Ok(())
}
