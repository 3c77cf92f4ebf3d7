//! The node's HTTP side, served with axum (documented in `docs/API.md`),
//! cut by concern: [`guard`] (Host allowlist, origin and token), [`error`]
//! (the one error type), [`status`], [`playback`] (state and commands),
//! [`library`] (library and catalog), [`sources`] (live sources), [`zones`]
//! (zones, channel maps, trims), [`stream`] (the live event stream)
//! and [`metrics`] (`GET /metrics` for Prometheus).
//! The arrows run one way: this module assembles the routes; the parts use
//! the error type and the node's handles, never each other in a circle.
//!
//! [`router`] is separate from [`serve`] so tests drive it with `oneshot` and
//! no socket. Requests a browser sends from another origin or under another
//! host name are refused; when the node has a token (it is bound to a
//! non-loopback address) every request must carry it.

pub(crate) mod error;
pub(crate) mod guard;
pub(crate) mod library;
pub(crate) mod metrics;
pub(crate) mod playback;
pub(crate) mod sources;
pub(crate) mod status;
pub(crate) mod stream;
pub(crate) mod zones;

pub(crate) use status::{CatalogEntry, StatusReport};

use super::NodeState;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use std::time::Duration;

/// Every API route (under the guard) and the UI's.
pub(crate) fn router(state: NodeState) -> Router {
    Router::new()
        .route("/api/status", get(status::status))
        .route("/api/state", get(playback::state))
        .route("/api/library", get(library::library))
        .route("/api/catalog", get(library::catalog))
        .route("/api/scan", post(library::scan))
        .route("/api/cover/{track}", get(library::cover))
        .route("/api/play", post(playback::play))
        .route("/api/pause", post(playback::pause))
        .route("/api/resume", post(playback::resume))
        .route("/api/seek", post(playback::seek))
        .route("/api/next", post(playback::next))
        .route("/api/prev", post(playback::prev))
        .route("/api/stop", post(playback::stop))
        .route("/api/shuffle", post(playback::shuffle))
        .route("/api/repeat", post(playback::repeat))
        .route(
            "/api/queue",
            post(playback::queue).delete(playback::queue_clear),
        )
        .route("/api/queue/move", post(playback::queue_move))
        .route("/api/queue/{index}", delete(playback::queue_remove))
        .route("/api/volume", post(playback::volume))
        .route("/api/sources", get(sources::list).post(sources::add))
        .route("/api/sources/play", post(sources::play))
        .route("/api/sources/{name}", delete(sources::remove))
        .route("/api/zones", get(zones::list).post(zones::create))
        .route("/api/zones/move", post(zones::move_node))
        .route("/api/zones/merge", post(zones::merge))
        .route("/api/zones/split", post(zones::split))
        .route("/api/zones/rename", post(zones::rename))
        .route("/api/zones/volume", post(zones::volume))
        .route("/api/channel", post(zones::channel))
        .route("/api/trim", post(zones::trim))
        .route("/api/flashes", get(stream::flashes))
        .route("/api/events", get(stream::events))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .merge(super::ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::host_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: NodeState) {
    if let Err(err) = axum::serve(listener, router(state)).await {
        tracing::error!(%err, "the API server stopped");
    }
}

#[cfg(test)]
mod tests;
