//! The zones part of the API: `GET /api/zones` (the zones, their members,
//! settings and now playing) and the requests that move nodes between them
//! (`POST /api/zones` to create one, `/api/zones/move|merge|split|rename|volume`),
//! plus a node's channel map and delay trim (`POST /api/channel`,
//! `POST /api/trim`), and the `zone` parameter of the playback commands
//! ([`ZoneParam`], [`target_zone`]).
//!
//! Every request is planned here from what this node sees
//! ([`zones`](crate::node::zones): which node gets which placement change)
//! and carried out by the nodes concerned, each of them the only writer of
//! its own placement: this node applies its own change directly, a peer's
//! goes to the peer as a `/firefly/control/1` placement request.

use super::error::{ApiError, ApiJson};
use super::playback::PlaybackReport;
use crate::node::NodeState;
use crate::node::zones::{self, Order, Seat, ZoneError};
use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use firefly_swarm::{
    ChannelMap, ControlRequest, ControlResponse, MAX_VOLUME_PERMILLE, Placement, PlacementChange,
    ZoneId,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a node may take to answer a placement request.
const PLACE_PATIENCE: Duration = Duration::from_secs(5);

/// One member of a zone in `GET /api/zones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MemberReport {
    pub(crate) peer_id: String,
    pub(crate) name: String,
    /// Whether it is the node that answers.
    pub(crate) me: bool,
    pub(crate) channel: ChannelMap,
    pub(crate) delay_ms: i64,
}

/// One zone in `GET /api/zones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZoneReport {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The group volume (1.0 unchanged), on top of each node's own.
    pub(crate) volume: f32,
    pub(crate) coordinator: Option<String>,
    pub(crate) members: Vec<MemberReport>,
    /// Its session as its coordinator last gossiped it; `None` before one came.
    pub(crate) playback: Option<PlaybackReport>,
}

/// `GET /api/zones`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZonesReport {
    /// The zone of the node that answers.
    pub(crate) zone: String,
    pub(crate) zones: Vec<ZoneReport>,
}

/// This node's zone in `GET /api/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlacementReport {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) volume: f32,
    pub(crate) channel: ChannelMap,
    pub(crate) delay_ms: i64,
}

impl PlacementReport {
    pub(crate) fn of(placement: &Placement) -> Self {
        Self {
            id: placement.zone.to_string(),
            name: placement.settings.name.clone(),
            volume: f32::from(placement.settings.volume_permille) / 1000.0,
            channel: placement.channel,
            delay_ms: placement.delay_ms,
        }
    }
}

/// What the zone requests answer: the zone concerned and each node's
/// placement after the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlacedReport {
    pub(crate) zone: String,
    pub(crate) placed: Vec<PlacedNode>,
}

/// One node's placement after a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlacedNode {
    pub(crate) peer_id: String,
    pub(crate) placement: PlacementReport,
}

/// A refused zone request: 404 for an unknown zone or node, else 400.
fn refused(err: ZoneError) -> ApiError {
    match err {
        ZoneError::UnknownZone(_) | ZoneError::UnknownNode(_) => {
            ApiError::NotFound(err.to_string())
        }
        _ => ApiError::BadRequest(err.to_string()),
    }
}

/// Every node this node sees, itself first.
async fn seats(state: &NodeState) -> Result<Vec<Seat>, ApiError> {
    let members = state.swarm.members().await?;
    let me = Seat {
        peer: state.swarm.peer_id(),
        name: state.name.clone(),
        placement: state.placements.get(),
        coordinator: state.control.roles().coordinator,
    };
    Ok(std::iter::once(me)
        .chain(members.iter().map(Seat::of))
        .collect())
}

pub(crate) async fn list(State(state): State<NodeState>) -> Result<Json<ZonesReport>, ApiError> {
    let seats = seats(&state).await?;
    let me = state.swarm.peer_id();
    let mine = state.placements.get().zone;
    let sessions = state.control.zone_sessions();
    let swarm_now = state.audio.timeline.swarm_now().as_micros();
    let zones = zones::zones(&seats)
        .into_iter()
        .map(|zone| {
            let session = if zone.id == mine {
                Some(state.control.session())
            } else {
                sessions.get(&zone.id).cloned()
            };
            ZoneReport {
                id: zone.id.to_string(),
                name: zone.settings.name.clone(),
                volume: f32::from(zone.settings.volume_permille) / 1000.0,
                coordinator: zone.coordinator.map(|c| c.to_string()),
                members: zone
                    .members
                    .iter()
                    .map(|m| MemberReport {
                        peer_id: m.peer.to_string(),
                        name: firefly_library::display_text(&m.name),
                        me: m.peer == me,
                        channel: m.placement.channel,
                        delay_ms: m.placement.delay_ms,
                    })
                    .collect(),
                playback: session.map(|s| PlaybackReport::of(&s, swarm_now)),
            }
        })
        .collect();
    Ok(Json(ZonesReport {
        zone: mine.to_string(),
        zones,
    }))
}

/// Sends each order to its node (this node's applied here), all at once.
async fn carry_out(
    state: &NodeState,
    zone: &ZoneId,
    orders: Vec<Order>,
) -> Result<Json<PlacedReport>, ApiError> {
    let me = state.swarm.peer_id();
    let asks = orders.into_iter().map(|order| async move {
        if order.peer == me {
            return Ok((order.peer, state.placements.apply(&order.change).await));
        }
        let asked = state
            .swarm
            .control(order.peer, ControlRequest::Place(order.change));
        match tokio::time::timeout(PLACE_PATIENCE, asked).await {
            Ok(Ok(ControlResponse::Placed(placement))) => Ok((order.peer, *placement)),
            Ok(Ok(ControlResponse::Refused(refusal))) => Err(format!("{}: {refusal}", order.peer)),
            Ok(Ok(other)) => Err(format!("{} answered {other:?}", order.peer)),
            Ok(Err(err)) => Err(format!("cannot reach {}: {err}", order.peer)),
            Err(_) => Err(format!(
                "{} did not answer within {} s",
                order.peer,
                PLACE_PATIENCE.as_secs()
            )),
        }
    });
    let results = futures::future::join_all(asks).await;
    let mut placed = Vec::new();
    let mut failed = Vec::new();
    for result in results {
        match result {
            Ok((peer, placement)) => placed.push(PlacedNode {
                peer_id: peer.to_string(),
                placement: PlacementReport::of(&placement),
            }),
            Err(err) => failed.push(err),
        }
    }
    if !failed.is_empty() {
        return Err(ApiError::Unavailable(format!(
            "not every node took the change ({} did): {}",
            placed.len(),
            failed.join("; ")
        )));
    }
    Ok(Json(PlacedReport {
        zone: zone.to_string(),
        placed,
    }))
}

/// `POST /api/zones`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
    nodes: Vec<String>,
}

pub(crate) async fn create(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(&state).await?;
    let (zone, orders) =
        zones::plan_create(&seats, &body.name, &body.nodes, rand::random()).map_err(refused)?;
    carry_out(&state, &zone, orders).await
}

/// `POST /api/zones/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveBody {
    node: String,
    zone: String,
}

pub(crate) async fn move_node(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<MoveBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(&state).await?;
    let orders = zones::plan_move(&seats, &body.node, &body.zone).map_err(refused)?;
    let zone = zone_of(&orders);
    carry_out(&state, &zone, orders).await
}

/// `POST /api/zones/merge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MergeBody {
    from: String,
    into: String,
}

pub(crate) async fn merge(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(&state).await?;
    let orders = zones::plan_merge(&seats, &body.from, &body.into).map_err(refused)?;
    let zone = zone_of(&orders);
    carry_out(&state, &zone, orders).await
}

/// `POST /api/zones/split`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SplitBody {
    zone: String,
    name: String,
    nodes: Vec<String>,
}

pub(crate) async fn split(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<SplitBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(&state).await?;
    let (zone, orders) =
        zones::plan_split(&seats, &body.zone, &body.name, &body.nodes, rand::random())
            .map_err(refused)?;
    carry_out(&state, &zone, orders).await
}

/// `POST /api/zones/rename`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameBody {
    zone: String,
    name: String,
}

pub(crate) async fn rename(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(&state).await?;
    let (_, orders) =
        zones::plan_settings(&seats, &body.zone, Some(&body.name), None).map_err(refused)?;
    let zone = zones::find_zone(&zones::zones(&seats), &body.zone)
        .map_err(refused)?
        .id
        .clone();
    carry_out(&state, &zone, orders).await
}

/// `POST /api/zones/volume`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ZoneVolumeBody {
    zone: String,
    volume: f32,
}

pub(crate) async fn volume(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<ZoneVolumeBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let permille = volume_permille(body.volume)?;
    let seats = seats(&state).await?;
    let (_, orders) =
        zones::plan_settings(&seats, &body.zone, None, Some(permille)).map_err(refused)?;
    let zone = zones::find_zone(&zones::zones(&seats), &body.zone)
        .map_err(refused)?
        .id
        .clone();
    carry_out(&state, &zone, orders).await
}

/// `POST /api/channel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelBody {
    node: Option<String>,
    channel: String,
}

pub(crate) async fn channel(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<ChannelBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let channel: ChannelMap = body.channel.parse().map_err(ApiError::BadRequest)?;
    let change = PlacementChange {
        channel: Some(channel),
        ..PlacementChange::default()
    };
    one_node(&state, body.node.as_deref(), change).await
}

/// `POST /api/trim`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrimBody {
    node: Option<String>,
    delay_ms: i64,
}

pub(crate) async fn trim(
    State(state): State<NodeState>,
    ApiJson(body): ApiJson<TrimBody>,
) -> Result<Json<PlacedReport>, ApiError> {
    let max = firefly_swarm::zones::MAX_DELAY_MS;
    if body.delay_ms.abs() > max {
        return Err(ApiError::BadRequest(format!(
            "delay_ms {} is out of range (-{max} to {max})",
            body.delay_ms
        )));
    }
    let change = PlacementChange {
        delay_ms: Some(body.delay_ms),
        ..PlacementChange::default()
    };
    one_node(&state, body.node.as_deref(), change).await
}

/// Sends `change` to `node` (this node when none).
async fn one_node(
    state: &NodeState,
    node: Option<&str>,
    change: PlacementChange,
) -> Result<Json<PlacedReport>, ApiError> {
    let seats = seats(state).await?;
    let seat = match node {
        Some(node) => zones::find_node(&seats, node).map_err(refused)?,
        // `seats` starts with this node.
        None => &seats[0],
    };
    let zone = seat.placement.zone.clone();
    let orders = vec![Order {
        peer: seat.peer,
        change,
    }];
    carry_out(state, &zone, orders).await
}

/// The zone the orders move nodes into.
fn zone_of(orders: &[Order]) -> ZoneId {
    orders
        .iter()
        .find_map(|o| o.change.zone.clone())
        .unwrap_or_default()
}

fn volume_permille(volume: f32) -> Result<u16, ApiError> {
    let max = f32::from(MAX_VOLUME_PERMILLE) / 1000.0;
    if !(0.0..=max).contains(&volume) {
        return Err(ApiError::BadRequest(format!(
            "volume {volume} is out of range (0.0 to {max}, 1.0 is unchanged)"
        )));
    }
    // In range: at most 4000 thousandths.
    Ok((volume * 1000.0).round() as u16)
}

/// The `zone` query parameter of a playback command (`POST /api/pause?zone=Kitchen`):
/// the zone, by id or name, whose session the command is for.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ZoneParam {
    zone: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ZoneParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<ZoneParam>::from_request_parts(parts, state)
            .await
            .map(|Query(param)| param)
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

impl ZoneParam {
    /// The zone asked for, in the query or in the body (`body_zone`); the
    /// two must agree when both are given.
    pub(crate) fn with_body(self, body_zone: Option<String>) -> Result<Self, ApiError> {
        match (self.zone, body_zone) {
            (Some(query), Some(body)) if query != body => Err(ApiError::BadRequest(format!(
                "the query names zone {:?} and the body zone {:?}: give one",
                query.chars().take(64).collect::<String>(),
                body.chars().take(64).collect::<String>()
            ))),
            (query, body) => Ok(Self {
                zone: query.or(body),
            }),
        }
    }
}

/// The zone a playback command is for: the one `param` names (404 when no
/// node plays in it), or `None` for this node's own.
pub(crate) async fn target_zone(
    state: &NodeState,
    param: ZoneParam,
) -> Result<Option<ZoneId>, ApiError> {
    let Some(asked) = param.zone else {
        return Ok(None);
    };
    let seats = seats(state).await?;
    let zones = zones::zones(&seats);
    let zone = zones::find_zone(&zones, &asked).map_err(|_| {
        let shown: String = asked.chars().take(64).collect();
        ApiError::NotFound(format!("no zone {shown:?} (see GET /api/zones)"))
    })?;
    Ok(Some(zone.id.clone()))
}
