//! Live sources: `GET /api/sources` (every node's, and what this node plays
//! live), `POST /api/sources` (add one here), `DELETE /api/sources/{name}`,
//! and `POST /api/sources/play` (the session plays a source).

use super::error::{ApiError, ApiJson};
use super::playback::{PlaybackReport, command_in};
use super::zones::ZoneParam;
use crate::node::NodeState;
use crate::node::live::{AddError, LiveStatus, SourceView};
use axum::Json;
use axum::extract::{Path, State};
use firefly_swarm::ControlRequest;
use serde::{Deserialize, Serialize};

/// `GET /api/sources`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SourcesReport {
    /// This node's sources first, then the members'.
    pub(crate) sources: Vec<SourceView>,
    /// What this node plays live, and why the last live stream stopped.
    pub(crate) live: LiveStatus,
}

pub(crate) async fn list(State(state): State<NodeState>) -> Json<SourcesReport> {
    Json(SourcesReport {
        sources: state.live.list(&state.name).await,
        live: state.live.status(),
    })
}

/// `POST /api/sources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddBody {
    name: String,
    spec: String,
    /// Capture to sound, ms (default: the node's `--live-buffer-ms`).
    buffer_ms: Option<u32>,
}

pub(crate) async fn add(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<AddBody>,
) -> Result<Json<SourceView>, ApiError> {
    if body.buffer_ms.is_some_and(|ms| !(60..=5000).contains(&ms)) {
        return Err(ApiError::BadRequest("buffer_ms must be 60 to 5000".into()));
    }
    let buffer = body.buffer_ms.map(|ms| i64::from(ms) * 1000);
    let live = state.live.clone();
    let added = tokio::task::spawn_blocking(move || live.add(&body.name, &body.spec, buffer))
        .await
        .map_err(anyhow::Error::from)?;
    match added {
        Ok(view) => Ok(Json(view)),
        Err(err @ AddError::Exists(_)) => Err(ApiError::Refused(err.to_string())),
        Err(err) => Err(ApiError::BadRequest(err.to_string())),
    }
}

pub(crate) async fn remove(
    State(state): State<NodeState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.live.remove(&name) {
        Ok(Json(serde_json::json!({ "removed": name })))
    } else {
        Err(ApiError::BadRequest(format!(
            "no live source named {:?} on this node",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// `POST /api/sources/play`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlayBody {
    name: String,
    /// The node (peer id or name) when several have a source of that name.
    node: Option<String>,
    /// The zone whose session plays it (as the `zone` query parameter);
    /// default: this node's.
    zone: Option<String>,
}

pub(crate) async fn play(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<PlayBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    let zone = zone.with_body(body.zone.clone())?;
    let sources = state.live.list(&state.name).await;
    let matching: Vec<&SourceView> = sources
        .iter()
        .filter(|s| s.name == body.name)
        .filter(|s| {
            body.node
                .as_ref()
                .is_none_or(|n| *n == s.node || *n == s.node_name)
        })
        .collect();
    let source = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(ApiError::NotFound(format!(
                "no live source named {:?} in the swarm",
                body.name.chars().take(64).collect::<String>()
            )));
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "several nodes have a source named {:?}: say which with node",
                body.name
            )));
        }
    };
    if source.ended {
        return Err(ApiError::Refused(format!(
            "the source {:?} ended: {}",
            source.name,
            source.problem.as_deref().unwrap_or("no reason given")
        )));
    }
    command_in(
        &state,
        zone,
        ControlRequest::PlayLive {
            source: source.stream.clone(),
        },
    )
    .await
}
