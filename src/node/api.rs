//! The playback part of the JSON API: state, library and commands.
//!
//! Handlers parse and check input (hex track ids, positions, volumes) and
//! hand commands to the playback driver ([`super::driver::Control`]), which
//! runs them through the coordinator. [`guard`] is the middleware that
//! refuses cross-origin browser requests and, when the node has a token,
//! requests without it. [`ApiJson`] is `Json` whose rejections come back in
//! the API's `{message}` shape.

use super::NodeState;
use super::driver::{CommandFailed, position_ms};
use super::http::ApiError;
use axum::extract::{FromRequest, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use firefly_library::TrackId;
use firefly_swarm::{ControlRequest, ControlResponse, PlaybackState, Session};
use serde::{Deserialize, Serialize};

/// `Json` with rejections as [`ApiError::BadRequest`].
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// The playback routes.
pub(crate) fn routes() -> Router<NodeState> {
    Router::new()
        .route("/api/state", get(state))
        .route("/api/library", get(library))
        .route("/api/catalog", get(catalog))
        .route("/api/play", post(play))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/seek", post(seek))
        .route("/api/next", post(next))
        .route("/api/queue", post(queue))
        .route("/api/volume", post(volume))
        .route("/api/flashes", get(super::events::flashes))
        .route("/api/events", get(super::events::events))
}

/// Refuses cross-origin browser requests, and requests without the token
/// when the node has one.
pub(crate) async fn guard(
    State(state): State<NodeState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return Err(ApiError::CrossOrigin);
        }
    }
    if let Some(token) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

/// The playback part of `GET /api/state` and of command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlaybackReport {
    pub(crate) state: PlaybackState,
    pub(crate) track: Option<String>,
    pub(crate) position_ms: u64,
    pub(crate) queue: Vec<String>,
    pub(crate) term: u64,
    pub(crate) seq: u64,
}

impl PlaybackReport {
    pub(crate) fn of(session: &Session, swarm_now: i64) -> Self {
        Self {
            state: session.state,
            track: session.track.map(|t| t.to_hex()),
            position_ms: position_ms(session, swarm_now),
            queue: session.queue.iter().map(TrackId::to_hex).collect(),
            term: session.term,
            seq: session.seq,
        }
    }
}

/// One peer in `GET /api/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PeerReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) role: &'static str,
    pub(crate) rtt_us: Option<f64>,
    pub(crate) clock_offset_us: Option<f64>,
    pub(crate) playback: PlaybackState,
    /// How this node reaches the peer: "direct", "relayed" (only through a
    /// relay's circuit) or "indirect" (no connection; its gossip comes
    /// through other peers).
    pub(crate) connection: &'static str,
    /// The peer's volume from its heartbeats (1.0 unchanged); `None` when it
    /// has no output.
    pub(crate) volume: Option<f32>,
}

/// `GET /api/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    pub(crate) role: &'static str,
    pub(crate) coordinator: Option<String>,
    pub(crate) term: u64,
    pub(crate) swarm_time_us: i64,
    pub(crate) clock_synced: bool,
    pub(crate) skew_ppm: f64,
    pub(crate) sync_error_us: Option<f64>,
    pub(crate) playback: PlaybackReport,
    /// This node's volume (1.0 unchanged); `None` when it has no output.
    pub(crate) volume: Option<f32>,
    /// How this node's output is timed, its underruns; `None` without output.
    pub(crate) output: Option<super::audio::OutputReport>,
    pub(crate) peers: Vec<PeerReport>,
}

/// "direct" when any connection to `peer` is direct, "relayed" when all go
/// through a relay, "indirect" when there is none.
fn connection_kind(links: &[firefly_swarm::Link], peer: firefly_swarm::PeerId) -> &'static str {
    let mut kinds = links.iter().filter(|l| l.peer == peer).map(|l| l.relayed);
    match kinds.next() {
        None => "indirect",
        Some(first) if kinds.all(|relayed| relayed == first) && first => "relayed",
        Some(_) => "direct",
    }
}

fn role_of(
    peer: firefly_swarm::PeerId,
    coordinator: Option<firefly_swarm::PeerId>,
) -> &'static str {
    if coordinator == Some(peer) {
        "coordinator"
    } else {
        "follower"
    }
}

async fn state(State(state): State<NodeState>) -> Result<Json<StateReport>, ApiError> {
    let roles = state.control.roles();
    let clock = state.swarm.clock().await?;
    let members = state.swarm.members().await?;
    let links = state.swarm.links().await?;
    let swarm_now = state.audio.timeline.swarm_now().as_micros();
    let peers = members
        .into_iter()
        .map(|m| {
            let info = clock
                .peers
                .iter()
                .find(|(p, _)| *p == m.peer)
                .map(|(_, i)| i);
            PeerReport {
                peer_id: m.peer.to_string(),
                name: m.name,
                role: role_of(m.peer, roles.coordinator),
                rtt_us: info.and_then(|i| i.delay_micros),
                clock_offset_us: info.and_then(|i| i.offset_micros),
                playback: m.status.playback.state,
                connection: connection_kind(&links, m.peer),
                volume: m
                    .status
                    .playout
                    .volume_permille
                    .map(|v| f32::from(v) / 1000.0),
            }
        })
        .collect();
    let me = state.swarm.peer_id();
    // Read before the report is built: its `volume` line holds the player's lock.
    let output = state.audio.output_report();
    Ok(Json(StateReport {
        peer_id: me.to_string(),
        name: state.name.clone(),
        role: role_of(me, roles.coordinator),
        coordinator: roles.coordinator.map(|c| c.to_string()),
        term: roles.term,
        swarm_time_us: swarm_now,
        clock_synced: clock.synced,
        skew_ppm: clock.skew_ppm,
        sync_error_us: clock.sync_error_micros,
        playback: PlaybackReport::of(&state.control.session(), swarm_now),
        volume: state.audio.player().is_some().then(|| state.volume.get()),
        output,
        peers,
    }))
}

/// One track in `GET /api/library`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LibraryTrack {
    pub(crate) track: String,
    pub(crate) title: String,
    pub(crate) artist: Option<String>,
    pub(crate) album: Option<String>,
    pub(crate) duration_ms: Option<u64>,
    /// While the track is being downloaded: how much is here.
    pub(crate) download: Option<super::events::DownloadEvent>,
}

/// `GET /api/library`: this node's tracks, then the ones it is downloading
/// (with their progress).
async fn library(State(state): State<NodeState>) -> Result<Json<Vec<LibraryTrack>>, ApiError> {
    let library = state.library.clone();
    let tracks = tokio::task::spawn_blocking(move || library.tracks()).await??;
    let mut out: Vec<LibraryTrack> = tracks
        .into_iter()
        .map(|t| LibraryTrack {
            track: t.manifest.track.to_hex(),
            title: t.manifest.meta.title.clone(),
            artist: t.manifest.meta.artist.clone(),
            album: t.manifest.meta.album.clone(),
            duration_ms: t.manifest.meta.duration_ms,
            download: None,
        })
        .collect();
    let downloads = state.swarm.downloads().await?;
    if !downloads.is_empty() {
        let catalog = state.swarm.catalog().await?;
        for (track, progress) in downloads {
            let hex = track.to_hex();
            if out.iter().any(|t| t.track == hex) {
                continue;
            }
            let meta = catalog
                .iter()
                .find(|e| e.summary.track == track)
                .map(|e| e.summary.meta.clone());
            out.push(LibraryTrack {
                track: hex,
                title: meta.as_ref().map(|m| m.title.clone()).unwrap_or_default(),
                artist: meta.as_ref().and_then(|m| m.artist.clone()),
                album: meta.as_ref().and_then(|m| m.album.clone()),
                duration_ms: meta.as_ref().and_then(|m| m.duration_ms),
                download: Some(super::events::DownloadEvent::of(track, &progress)),
            });
        }
    }
    Ok(Json(out))
}

/// `GET /api/catalog`: every track in the swarm (this node's and its
/// peers'), with the peers that hold it.
async fn catalog(
    State(state): State<NodeState>,
) -> Result<Json<Vec<super::http::CatalogEntry>>, ApiError> {
    let me = state.swarm.peer_id();
    let library = state.library.clone();
    let local = tokio::task::spawn_blocking(move || library.tracks()).await??;
    let mut entries: std::collections::BTreeMap<TrackId, super::http::CatalogEntry> = local
        .into_iter()
        .map(|t| {
            let m = t.manifest;
            let entry = super::http::CatalogEntry {
                track: m.track.to_hex(),
                title: m.meta.title.clone(),
                artist: m.meta.artist.clone(),
                size: m.size,
                holders: vec![me.to_string()],
            };
            (m.track, entry)
        })
        .collect();
    for remote in state.swarm.catalog().await? {
        let s = &remote.summary;
        let entry = entries
            .entry(s.track)
            .or_insert_with(|| super::http::CatalogEntry {
                track: s.track.to_hex(),
                title: s.meta.title.clone(),
                artist: s.meta.artist.clone(),
                size: s.size,
                holders: Vec::new(),
            });
        // The swarm's catalog lists this node too: name each holder once.
        for holder in remote.holders.iter().map(ToString::to_string) {
            if !entry.holders.contains(&holder) {
                entry.holders.push(holder);
            }
        }
    }
    Ok(Json(entries.into_values().collect()))
}

/// Positions beyond this are refused outright (a day of audio).
const MAX_POSITION_MS: u64 = 24 * 3600 * 1000;

fn track_id(hex: &str) -> Result<TrackId, ApiError> {
    hex.parse::<TrackId>().map_err(|_| {
        ApiError::BadRequest(format!(
            "track must be a 64-digit hex track id (see GET /api/library), not {hex:?}"
        ))
    })
}

fn position_micros(ms: u64) -> Result<u64, ApiError> {
    if ms > MAX_POSITION_MS {
        return Err(ApiError::BadRequest(format!(
            "position_ms {ms} is out of range (at most {MAX_POSITION_MS})"
        )));
    }
    Ok(ms * 1000)
}

async fn command(
    state: &NodeState,
    request: ControlRequest,
) -> Result<Json<PlaybackReport>, ApiError> {
    let session = state
        .control
        .command(request)
        .await
        .map_err(|err| match err {
            CommandFailed::Refused(message) => ApiError::Refused(message),
            CommandFailed::Unavailable(message) => ApiError::Unavailable(message),
        })?;
    let swarm_now = state.audio.timeline.swarm_now().as_micros();
    Ok(Json(PlaybackReport::of(&session, swarm_now)))
}

/// `POST /api/play`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlayBody {
    track: String,
    position_ms: Option<u64>,
}

async fn play(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<PlayBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    let track = track_id(&body.track)?;
    let position_micros = position_micros(body.position_ms.unwrap_or(0))?;
    command(
        &state,
        ControlRequest::Play {
            track,
            position_micros,
        },
    )
    .await
}

async fn pause(State(state): State<NodeState>) -> Result<Json<PlaybackReport>, ApiError> {
    command(&state, ControlRequest::Pause).await
}

async fn resume(State(state): State<NodeState>) -> Result<Json<PlaybackReport>, ApiError> {
    command(&state, ControlRequest::Resume).await
}

async fn next(State(state): State<NodeState>) -> Result<Json<PlaybackReport>, ApiError> {
    command(&state, ControlRequest::Next).await
}

/// `POST /api/seek`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeekBody {
    position_ms: u64,
}

async fn seek(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<SeekBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    let position_micros = position_micros(body.position_ms)?;
    command(&state, ControlRequest::Seek { position_micros }).await
}

/// `POST /api/queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueBody {
    tracks: Vec<String>,
}

async fn queue(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<QueueBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    if body.tracks.len() > firefly_swarm::playback::MAX_QUEUE {
        return Err(ApiError::BadRequest(format!(
            "at most {} tracks may be queued",
            firefly_swarm::playback::MAX_QUEUE
        )));
    }
    let tracks = body
        .tracks
        .iter()
        .map(|t| track_id(t))
        .collect::<Result<Vec<_>, _>>()?;
    command(&state, ControlRequest::Queue { tracks }).await
}

/// `POST /api/volume`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeBody {
    node: Option<String>,
    volume: f32,
}

/// What `POST /api/volume` answers.
#[derive(Debug, Serialize)]
pub(crate) struct VolumeReport {
    node: String,
    volume: f32,
}

/// How long a peer may take to answer a volume request.
const VOLUME_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

async fn volume(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<VolumeBody>,
) -> Result<Json<VolumeReport>, ApiError> {
    if !(0.0..=4.0).contains(&body.volume) {
        return Err(ApiError::BadRequest(format!(
            "volume {} is out of range (0.0 to 4.0, 1.0 is unchanged)",
            body.volume
        )));
    }
    let me = state.swarm.peer_id();
    let target = match body.node.as_deref() {
        None => me,
        Some(node) if node == me.to_string() || node == state.name => me,
        Some(node) => {
            let members = state.swarm.members().await?;
            let by_id = members.iter().find(|m| m.peer.to_string() == node);
            let by_name: Vec<_> = members.iter().filter(|m| m.name == node).collect();
            match (by_id, by_name.as_slice()) {
                (Some(m), _) => m.peer,
                (None, [m]) => m.peer,
                (None, []) => {
                    return Err(ApiError::BadRequest(format!(
                        "no alive node has the id or name {node:?} (see GET /api/state)"
                    )));
                }
                (None, _) => {
                    return Err(ApiError::BadRequest(format!(
                        "several nodes are named {node:?}: give its peer id"
                    )));
                }
            }
        }
    };
    if target == me {
        state
            .volume
            .set(&state.audio, body.volume)
            .map_err(|err| match err {
                super::events::VolumeError::NoOutput => ApiError::Refused(err.to_string()),
                super::events::VolumeError::Player(_) => ApiError::Internal(err.into()),
            })?;
        return Ok(Json(VolumeReport {
            node: me.to_string(),
            volume: state.volume.get(),
        }));
    }
    // In range (checked above): at most 4000 thousandths.
    let volume_permille = (body.volume * 1000.0).round() as u16;
    let asked = state
        .swarm
        .control(target, ControlRequest::Volume { volume_permille });
    match tokio::time::timeout(VOLUME_PATIENCE, asked).await {
        Ok(Ok(ControlResponse::Volume { volume_permille })) => Ok(Json(VolumeReport {
            node: target.to_string(),
            volume: f32::from(volume_permille) / 1000.0,
        })),
        Ok(Ok(ControlResponse::Refused { reason })) => Err(ApiError::Refused(reason)),
        Ok(Ok(other)) => Err(ApiError::Unavailable(format!(
            "{target} answered the volume request with {other:?}"
        ))),
        Ok(Err(err)) => Err(ApiError::Unavailable(format!(
            "cannot reach {target}: {err}"
        ))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "{target} did not answer within {} s",
            VOLUME_PATIENCE.as_secs()
        ))),
    }
}
