//! The playback part of the API: `GET /api/state` and the commands
//! (`POST /api/play|pause|resume|seek|next|prev|stop|shuffle|repeat|volume`,
//! the queue's `POST|DELETE /api/queue…`), which go through the playback
//! driver to the coordinator (volume excepted: it is per node).

use super::error::{ApiError, ApiJson};
use super::status::shown_names;
use super::zones::{ZoneParam, target_zone};
use crate::node::NodeState;
use crate::node::driver::{CommandFailed, position_ms};
use axum::Json;
use axum::extract::State;
use firefly_library::TrackId;
use firefly_swarm::{ControlRequest, ControlResponse, PlaybackState, RepeatMode, Session};
use serde::{Deserialize, Serialize};

/// The playback part of `GET /api/state` and of command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlaybackReport {
    pub(crate) state: PlaybackState,
    pub(crate) track: Option<String>,
    pub(crate) position_ms: u64,
    /// The current track's length, if known.
    pub(crate) duration_ms: Option<u64>,
    /// Track ids to play after the current one.
    pub(crate) queue: Vec<String>,
    pub(crate) shuffle: bool,
    pub(crate) repeat: RepeatMode,
    pub(crate) term: u64,
    pub(crate) seq: u64,
    /// The swarm instant (µs) the session is anchored at: where its
    /// position sounds (or sounded); for a pause or a stop, where the fade
    /// ends on every node.
    #[serde(default)]
    pub(crate) anchor_swarm_us: i64,
}

impl PlaybackReport {
    pub(crate) fn of(session: &Session, swarm_now: i64) -> Self {
        let duration_ms = session.duration_micros.map(|d| d / 1000);
        let position_ms = position_ms(session, swarm_now);
        Self {
            state: session.state,
            track: session.track.map(|t| t.to_hex()),
            // Between a track's end and the next session, not past it.
            position_ms: duration_ms.map_or(position_ms, |d| position_ms.min(d)),
            duration_ms,
            queue: session.queue.iter().map(TrackId::to_hex).collect(),
            shuffle: session.shuffle,
            repeat: session.repeat,
            term: session.term,
            seq: session.seq,
            anchor_swarm_us: session.start,
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
    /// The path bias already removed from `clock_offset_us`, µs (see
    /// `firefly_clock::PeerInfo::path_bias_micros`). Absent from older nodes.
    #[serde(default)]
    pub(crate) clock_path_bias_us: Option<f64>,
    pub(crate) playback: PlaybackState,
    /// How this node reaches the peer: "direct", "relayed" (only through a
    /// relay's circuit) or "indirect" (no connection; its gossip comes
    /// through other peers).
    pub(crate) connection: &'static str,
    /// The peer's volume from its heartbeats (1.0 unchanged); `None` when it
    /// has no output.
    pub(crate) volume: Option<f32>,
    /// The id of the zone it plays in.
    #[serde(default)]
    pub(crate) zone: String,
}

/// This node's swarm clock against the wall clock, in `GET /api/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClockReading {
    /// Microseconds since the UNIX epoch on the system's wall clock, read
    /// around `swarm_us` (the middle of the two reads).
    pub(crate) wall_us: i64,
    /// The swarm clock at that instant, µs.
    pub(crate) swarm_us: i64,
    /// The two wall reads lay this far apart, µs (how exact the pair is).
    pub(crate) read_us: i64,
    /// Drift compensation: the swarm clock's rate against the local clock
    /// without the phase slew, ppm.
    pub(crate) drift_ppm: f64,
    /// Phase slew in progress, ppm.
    pub(crate) slew_ppm: f64,
    /// What happened to the time samples so far (accepted, refused, windows
    /// shrunk, peer clock jumps, own steps).
    pub(crate) stats: firefly_clock::Stats,
}

impl ClockReading {
    fn read(
        timeline: &crate::node::timeline::NodeTimeline,
        clock: &firefly_swarm::ClockStatus,
    ) -> Self {
        let wall = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        };
        let before = wall();
        let swarm_us = timeline.swarm_now().as_micros();
        let after = wall();
        Self {
            wall_us: before + (after - before) / 2,
            swarm_us,
            read_us: after - before,
            drift_ppm: clock.drift_ppm,
            slew_ppm: clock.slew_ppm,
            stats: clock.stats.clone(),
        }
    }
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
    /// The swarm clock read against the system's wall clock, and what its
    /// rate is made of (for benchmarks: nodes on one machine share its
    /// wall clock). Absent from older nodes' answers.
    #[serde(default)]
    pub(crate) clock: Option<ClockReading>,
    pub(crate) playback: PlaybackReport,
    /// This node's volume (1.0 unchanged); `None` when it has no output.
    pub(crate) volume: Option<f32>,
    /// How this node's output is timed, its underruns; `None` without output.
    pub(crate) output: Option<crate::node::audio::OutputReport>,
    pub(crate) peers: Vec<PeerReport>,
    /// This node's zone, channel map and delay trim.
    pub(crate) zone: super::zones::PlacementReport,
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

pub(crate) async fn state(State(state): State<NodeState>) -> Result<Json<StateReport>, ApiError> {
    let roles = state.control.roles();
    let clock = state.swarm.clock().await?;
    let members = state.swarm.members().await?;
    let links = state.swarm.links().await?;
    let swarm_now = state.audio.timeline.swarm_now().as_micros();
    let me = state.swarm.peer_id();
    let names = shown_names((me, &state.name), &members);
    let peers = members
        .into_iter()
        .zip(names)
        .map(|(m, name)| {
            let info = clock
                .peers
                .iter()
                .find(|(p, _)| *p == m.peer)
                .map(|(_, i)| i);
            PeerReport {
                peer_id: m.peer.to_string(),
                name,
                role: role_of(m.peer, roles.coordinator),
                rtt_us: info.and_then(|i| i.delay_micros),
                clock_offset_us: info.and_then(|i| i.offset_micros),
                clock_path_bias_us: info.and_then(|i| i.path_bias_micros),
                playback: m.status.playback.state,
                connection: connection_kind(&links, m.peer),
                volume: m
                    .status
                    .playout
                    .volume_permille
                    .map(|v| f32::from(v) / 1000.0),
                zone: m.status.placement.zone.to_string(),
            }
        })
        .collect();
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
        clock: Some(ClockReading::read(&state.audio.timeline, &clock)),
        playback: PlaybackReport::of(&state.control.session(), swarm_now),
        volume: state.audio.player().is_some().then(|| state.volume.get()),
        output,
        peers,
        zone: super::zones::PlacementReport::of(&state.placements.get()),
    }))
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

/// Runs `request` on the session of the zone `zone` names (this node's
/// when none), through that zone's coordinator.
pub(crate) async fn command_in(
    state: &NodeState,
    zone: ZoneParam,
    request: ControlRequest,
) -> Result<Json<PlaybackReport>, ApiError> {
    let zone = target_zone(state, zone).await?;
    let session = state
        .control
        .command_in(zone, request)
        .await
        .map_err(|err| match err {
            CommandFailed::Refused(refusal) => ApiError::from_refusal(refusal),
            CommandFailed::Unavailable(message) => ApiError::Unavailable(message),
        })?;
    let swarm_now = state.audio.timeline.swarm_now().as_micros();
    Ok(Json(PlaybackReport::of(&session, swarm_now)))
}

/// `POST /api/play`: a track (from `position_ms`), or an album or an
/// artist's tracks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlayBody {
    track: Option<String>,
    position_ms: Option<u64>,
    album: Option<String>,
    artist: Option<String>,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn play(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<PlayBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    match (&body.track, &body.album, &body.artist) {
        (Some(track), None, None) => {
            let track = track_id(track)?;
            let position_micros = position_micros(body.position_ms.unwrap_or(0))?;
            command_in(
                &state,
                zone.with_body(body.zone.clone())?,
                ControlRequest::Play {
                    track,
                    position_micros,
                },
            )
            .await
        }
        (None, album, artist) if album.is_some() || artist.is_some() => {
            if body.position_ms.is_some() {
                return Err(ApiError::BadRequest(
                    "position_ms goes with track, not with album or artist".into(),
                ));
            }
            let tracks = albums::tracks_of(&state, album.as_deref(), artist.as_deref()).await?;
            if tracks.is_empty() {
                return Err(ApiError::BadRequest(format!(
                    "no track in the swarm's catalog has {}",
                    albums::describe(album.as_deref(), artist.as_deref())
                )));
            }
            if tracks.len() > firefly_swarm::playback::MAX_QUEUE + 1 {
                return Err(ApiError::BadRequest(format!(
                    "{} has {} tracks; at most {} play at once",
                    albums::describe(album.as_deref(), artist.as_deref()),
                    tracks.len(),
                    firefly_swarm::playback::MAX_QUEUE + 1
                )));
            }
            command_in(&state, zone.with_body(body.zone.clone())?, ControlRequest::PlayAll { tracks }).await
        }
        _ => Err(ApiError::BadRequest(
            "give a track (and optionally position_ms), or an album (and optionally its artist), or an artist"
                .into(),
        )),
    }
}

pub(crate) async fn prev(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::Prev).await
}

pub(crate) async fn stop(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::Stop).await
}

/// `POST /api/shuffle`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShuffleBody {
    on: bool,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn shuffle(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<ShuffleBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(
        &state,
        zone.with_body(body.zone.clone())?,
        ControlRequest::Shuffle { on: body.on },
    )
    .await
}

/// `POST /api/repeat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepeatBody {
    mode: RepeatMode,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn repeat(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<RepeatBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(
        &state,
        zone.with_body(body.zone.clone())?,
        ControlRequest::Repeat { mode: body.mode },
    )
    .await
}

pub(crate) async fn pause(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::Pause).await
}

pub(crate) async fn resume(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::Resume).await
}

pub(crate) async fn next(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::Next).await
}

/// `POST /api/seek`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeekBody {
    position_ms: u64,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn seek(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<SeekBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    let position_micros = position_micros(body.position_ms)?;
    command_in(
        &state,
        zone.with_body(body.zone.clone())?,
        ControlRequest::Seek { position_micros },
    )
    .await
}

/// `POST /api/queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueBody {
    tracks: Vec<String>,
    /// Where to insert them (0 first); default: appended.
    at: Option<u32>,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn queue(
    State(state): State<NodeState>,
    zone: ZoneParam,
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
    command_in(
        &state,
        zone.with_body(body.zone.clone())?,
        ControlRequest::QueueInsert {
            tracks,
            at: body.at,
        },
    )
    .await
}

/// `DELETE /api/queue/{index}`.
pub(crate) async fn queue_remove(
    State(state): State<NodeState>,
    zone: ZoneParam,
    axum::extract::Path(index): axum::extract::Path<String>,
) -> Result<Json<PlaybackReport>, ApiError> {
    let index = index.parse::<u32>().map_err(|_| {
        ApiError::BadRequest(format!(
            "a queue index is a number from 0, not {:?}",
            index.chars().take(40).collect::<String>()
        ))
    })?;
    command_in(&state, zone, ControlRequest::QueueRemove { index }).await
}

/// `POST /api/queue/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveBody {
    from: u32,
    to: u32,
    /// The zone whose session it is for (as the `zone` query parameter).
    zone: Option<String>,
}

pub(crate) async fn queue_move(
    State(state): State<NodeState>,
    zone: ZoneParam,
    ApiJson(body): ApiJson<MoveBody>,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(
        &state,
        zone.with_body(body.zone.clone())?,
        ControlRequest::QueueMove {
            from: body.from,
            to: body.to,
        },
    )
    .await
}

/// `DELETE /api/queue`.
pub(crate) async fn queue_clear(
    State(state): State<NodeState>,
    zone: ZoneParam,
) -> Result<Json<PlaybackReport>, ApiError> {
    command_in(&state, zone, ControlRequest::QueueClear).await
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

pub(crate) async fn volume(
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
                crate::node::events::VolumeError::NoOutput => ApiError::Refused(err.to_string()),
                crate::node::events::VolumeError::Player(_) => ApiError::Internal(err.into()),
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
        Ok(Ok(ControlResponse::Refused(refusal))) => Err(ApiError::from_refusal(refusal)),
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

/// Albums and artists: the catalog's tracks they name, in play order.
mod albums {
    use super::super::error::ApiError;
    use crate::node::NodeState;
    use firefly_library::{TrackId, TrackMeta};
    use std::collections::BTreeMap;

    /// "album X by Y", "artist Y", for messages.
    pub(super) fn describe(album: Option<&str>, artist: Option<&str>) -> String {
        match (album, artist) {
            (Some(album), Some(artist)) => format!("the album {album:?} by {artist:?}"),
            (Some(album), None) => format!("the album {album:?}"),
            (None, Some(artist)) => format!("the artist {artist:?}"),
            (None, None) => "nothing".into(),
        }
    }

    /// Whether a tag names what was asked (ignoring case and outer spaces).
    fn names(tag: Option<&str>, asked: &str) -> bool {
        tag.is_some_and(|t| t.trim().to_lowercase() == asked.trim().to_lowercase())
    }

    /// The tracks of the swarm (this node's and its peers') whose tags match
    /// `album` and `artist`, by album, track number, then title.
    pub(super) async fn tracks_of(
        state: &NodeState,
        album: Option<&str>,
        artist: Option<&str>,
    ) -> Result<Vec<TrackId>, ApiError> {
        let library = state.library.clone();
        let local = tokio::task::spawn_blocking(move || library.tracks()).await??;
        let mut metas: BTreeMap<TrackId, TrackMeta> = local
            .into_iter()
            .map(|t| (t.manifest.track, t.manifest.meta))
            .collect();
        for remote in state.swarm.catalog().await? {
            metas
                .entry(remote.summary.track)
                .or_insert_with(|| remote.summary.meta.clone());
        }
        let mut found: Vec<(TrackId, TrackMeta)> = metas
            .into_iter()
            .filter(|(_, m)| {
                album.is_none_or(|a| names(m.album.as_deref(), a))
                    && artist.is_none_or(|a| names(m.artist.as_deref(), a))
            })
            .collect();
        found.sort_by(|(_, a), (_, b)| {
            (&a.album, a.track.unwrap_or(u32::MAX), &a.title).cmp(&(
                &b.album,
                b.track.unwrap_or(u32::MAX),
                &b.title,
            ))
        });
        Ok(found.into_iter().map(|(t, _)| t).collect())
    }
}
