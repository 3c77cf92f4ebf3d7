//! The node's JSON API (for now `GET /api/status`), served with axum.
//!
//! [`router`] is separate from [`serve`] so tests drive it with `oneshot` and
//! no socket. Errors come back as `{ "message": … }` with a 4xx for bad input
//! and a generic 500 for internal failures (details go to the log).

use super::NodeState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What `GET /api/status` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) listen_addrs: Vec<String>,
    pub(crate) connected_peers: Vec<String>,
    pub(crate) members: Vec<MemberReport>,
    pub(crate) library_version: u64,
    pub(crate) clock: ClockReport,
    pub(crate) catalog: Vec<CatalogEntry>,
}

/// The swarm clock in the status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClockReport {
    /// Swarm time when the report was made, µs.
    pub(crate) swarm_time_us: i64,
    pub(crate) synced: bool,
    pub(crate) skew_ppm: f64,
    pub(crate) sync_error_us: Option<f64>,
}

/// One member in the status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) library_version: u64,
    pub(crate) uptime_ms: u64,
}

/// One track of the swarm catalog and the peers that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CatalogEntry {
    pub(crate) track: String,
    pub(crate) title: String,
    pub(crate) artist: Option<String>,
    pub(crate) size: u64,
    pub(crate) holders: Vec<String>,
}

/// The API's one error type.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// Something on the node failed; the details are logged, not returned.
    Internal(anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Internal(err) => {
                tracing::error!(err = %format!("{err:#}"), "api request failed");
                let body = serde_json::json!({ "message": "internal error" });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(err: E) -> Self {
        ApiError::Internal(err.into())
    }
}

/// The API's routes.
pub(crate) fn router(state: NodeState) -> Router {
    Router::new()
        .route("/api/status", get(status))
        .merge(super::ui::routes())
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

async fn status(State(state): State<NodeState>) -> Result<Json<StatusReport>, ApiError> {
    let members = state.swarm.members().await?;
    let connected = state.swarm.connected_peers().await?;
    let listen = state.swarm.listen_addrs().await?;
    let clock = state.swarm.clock().await?;
    let library = state.library.clone();
    let version = tokio::task::spawn_blocking(move || library.version()).await??;
    let me = state.swarm.peer_id().to_string();
    // The union of every member's library, this node's included.
    let catalog = state
        .swarm
        .catalog()
        .await?
        .into_iter()
        .map(|entry| CatalogEntry {
            track: entry.summary.track.to_hex(),
            title: entry.summary.meta.title,
            artist: entry.summary.meta.artist,
            size: entry.summary.size,
            holders: entry.holders.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(Json(StatusReport {
        peer_id: me.clone(),
        name: state.name.clone(),
        listen_addrs: listen.iter().map(ToString::to_string).collect(),
        connected_peers: connected.iter().map(ToString::to_string).collect(),
        members: members
            .into_iter()
            .map(|m| MemberReport {
                peer_id: m.peer.to_string(),
                name: m.name,
                library_version: m.status.library_version,
                uptime_ms: m.uptime_ms,
            })
            .collect(),
        library_version: version,
        clock: ClockReport {
            swarm_time_us: clock.now.as_micros(),
            synced: clock.synced,
            skew_ppm: clock.skew_ppm,
            sync_error_us: clock.sync_error_micros,
        },
        catalog,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use firefly_library::{Library, LibraryConfig};
    use tower::ServiceExt;

    async fn state(dir: &std::path::Path) -> NodeState {
        let keypair = firefly_swarm::identity::load_or_create(dir).unwrap();
        let mut config = firefly_swarm::Config::new(keypair, "test-node");
        config
            .mdns(false)
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap());
        let (client, _events, event_loop) = firefly_swarm::new(config).unwrap();
        tokio::spawn(event_loop.run());
        let library = Library::open(&LibraryConfig::new(dir)).unwrap();
        NodeState {
            swarm: client,
            library,
            name: "test-node".into(),
        }
    }

    #[tokio::test]
    async fn status_reports_the_node_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path()).await;
        let me = state.swarm.peer_id().to_string();
        let response = router(state)
            .oneshot(Request::get("/api/status").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let report: StatusReport = serde_json::from_slice(&body).unwrap();
        assert_eq!(report.peer_id, me);
        assert_eq!(report.name, "test-node");
        assert!(report.members.is_empty());
        assert!(report.catalog.is_empty());
        assert!(report.clock.swarm_time_us > 0);
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let response = router(state(dir.path()).await)
            .oneshot(Request::get("/api/nothing").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
