//! The REST router (DESIGN.md §3.2) and its server: `GET /health`, `/api/v1/contexts`, and the
//! OpenAPI document generated from the same routes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::discovery::Contexts;
use super::error::RestError;
use super::{auth, contexts, execute, openapi};
use crate::observe::rest::observe_rest;
use crate::observe::Observe;
use crate::sandboxes::Manager;

/// Liveness: `OK`.
#[utoipa::path(get, path = "/health", operation_id = "health", responses(
    (status = 200, description = "OK", body = String, content_type = "text/plain", example = "OK"),
))]
pub async fn health() -> &'static str {
    "OK"
}

/// The routes, each registered together with its OpenAPI description, so the two cannot differ.
pub fn documented_routes(auth: Option<auth::BasicAuth>) -> OpenApiRouter<Arc<Contexts>> {
    let api = OpenApiRouter::new()
        .routes(routes!(contexts::create, contexts::list))
        .routes(routes!(contexts::get, contexts::delete))
        .routes(routes!(execute::execute))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            auth::require,
        ));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .nest("/api/v1", api)
}

/// Builds the router.
pub fn router(state: Arc<Contexts>, auth: Option<auth::BasicAuth>) -> Router {
    let (routes, doc) = documented_routes(auth).split_for_parts();
    let doc: Arc<str> = openapi::render(&doc).into();
    routes
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
            }),
        )
        .fallback(|| async { RestError::not_found_route() })
        .with_state(state)
}

/// Serves the REST API on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Arc<Manager>,
    auth: Option<auth::BasicAuth>,
    observe: Arc<Observe>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // Prometheus text, behind the same credentials as the API.
    let metrics = Router::new()
        .route(
            "/metrics",
            get({
                let (observe, manager) = (observe.clone(), manager.clone());
                move || async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        observe.metrics.render(&manager),
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth.clone()),
            auth::require,
        ));
    let state = Arc::new(Contexts::new(manager));
    // The sweep asks sandboxes (with deadlines) while the API already answers.
    let sweep = state.clone();
    let serve = async move {
        // Nagle off: small streamed NDJSON lines must not wait for the client's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = router(state, auth)
            .merge(metrics)
            .layer(axum::middleware::from_fn_with_state(observe, observe_rest));
        axum::serve(listener, app)
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
