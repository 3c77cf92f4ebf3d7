//! `GET /metrics`: the node's state in the Prometheus/OpenMetrics text
//! format, for a monitoring system to scrape.
//!
//! Values are read at scrape time from the same handles `/api/state` reads
//! (swarm client, clock, roles, player, transfer), so the two always agree;
//! only the API request counter ([`ApiRequests`]) lives between scrapes. The
//! route sits behind the same Host, origin and token guards as the API.
//! Encoding is `prometheus-client`'s; labels are bounded (peer ids of
//! members, route templates, status codes), never a client's raw path.

use super::error::ApiError;
use crate::node::NodeState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use firefly_swarm::transfer::PeerTraffic;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The matched route (`/api/state`), or `unmatched`.
    route: String,
    /// The response's status code.
    status: u16,
}

/// Labels of a per-peer series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    /// The peer's id.
    peer: String,
}

/// API requests served, by route and status; kept between scrapes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiRequests(Family<RequestLabels, Counter>);

/// Counts every request by its matched route and its response's status.
pub(crate) async fn count_requests(
    State(state): State<NodeState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    state
        .api_requests
        .0
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = FloatGauge::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter: Counter = Counter::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn per_peer(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (String, f64)>,
) {
    let family = Family::<PeerLabels, FloatGauge>::default();
    for (peer, value) in values {
        family.get_or_create(&PeerLabels { peer }).set(value);
    }
    registry.register(name, help, family);
}

fn per_peer_counter(
    registry: &mut Registry,
    name: &str,
    help: &str,
    traffic: &[(firefly_swarm::PeerId, PeerTraffic)],
    pick: fn(&PeerTraffic) -> u64,
) {
    let family = Family::<PeerLabels, Counter>::default();
    for (peer, t) in traffic {
        family
            .get_or_create(&PeerLabels {
                peer: peer.to_string(),
            })
            .inc_by(pick(t));
    }
    registry.register(name, help, family);
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<NodeState>) -> Result<Response, ApiError> {
    let roles = state.control.roles();
    let clock = state.swarm.clock().await?;
    let members = state.swarm.members().await?;
    let stats = state.swarm.stats().await?;
    let transfer = state.swarm.transfer_stats().await?;
    let downloads = state.swarm.downloads().await?;
    let traffic = state.swarm.transfer_traffic().await?;
    let me = state.swarm.peer_id();
    let output = state.audio.output_report();
    let latest_flash = state.audio.flashes.all().last().copied();

    let mut r = Registry::default();
    gauge(
        &mut r,
        "firefly_members",
        "Other members of the swarm",
        members.len() as f64,
    );
    gauge(
        &mut r,
        "firefly_coordinator",
        "1 when this node is the coordinator",
        flag(roles.coordinator == Some(me)),
    );
    gauge(
        &mut r,
        "firefly_has_coordinator",
        "1 when this node follows a coordinator (itself or another)",
        flag(roles.coordinator.is_some()),
    );
    gauge(
        &mut r,
        "firefly_term",
        "The coordinator's term",
        roles.term as f64,
    );
    gauge(
        &mut r,
        "firefly_clock_synced",
        "1 when the swarm clock follows the swarm's timeline",
        flag(clock.synced),
    );
    gauge(
        &mut r,
        "firefly_clock_skew_ppm",
        "Rate of the swarm clock against the local clock, ppm",
        clock.skew_ppm,
    );
    if let Some(error) = clock.sync_error_micros {
        gauge(
            &mut r,
            "firefly_clock_sync_error_seconds",
            "Estimated distance from the peers' consensus timeline (one sigma)",
            error / 1e6,
        );
    }
    per_peer(
        &mut r,
        "firefly_peer_clock_offset_seconds",
        "The peer's swarm clock minus this node's",
        clock
            .peers
            .iter()
            .filter_map(|(p, i)| Some((p.to_string(), i.offset_micros? / 1e6))),
    );
    per_peer(
        &mut r,
        "firefly_peer_clock_error_seconds",
        "One-sigma uncertainty of the peer's clock offset",
        clock
            .peers
            .iter()
            .filter_map(|(p, i)| Some((p.to_string(), i.uncertainty_micros? / 1e6))),
    );
    per_peer(
        &mut r,
        "firefly_peer_rtt_seconds",
        "Smallest round trip to the peer in the clock's window",
        clock
            .peers
            .iter()
            .filter_map(|(p, i)| Some((p.to_string(), i.delay_micros? / 1e6))),
    );
    if let Some(flash) = latest_flash {
        gauge(
            &mut r,
            "firefly_playback_error_frames",
            "How far the latest sounded position was from the timeline's (source frames, + ahead)",
            flash.error_frames,
        );
    }
    gauge(
        &mut r,
        "firefly_output_present",
        "1 when the node has a sound output",
        flag(output.is_some()),
    );
    if let Some(output) = &output {
        counter(
            &mut r,
            "firefly_output_underruns",
            "Times the device ran dry",
            output.underruns,
        );
        counter(
            &mut r,
            "firefly_output_periods",
            "Device periods played",
            output.periods,
        );
        counter(
            &mut r,
            "firefly_output_reopens",
            "Times the device was reopened",
            output.reopens,
        );
        counter(
            &mut r,
            "firefly_output_bad_delays",
            "Delay reports from the device ignored as nonsense",
            output.bad_delays,
        );
        gauge(
            &mut r,
            "firefly_output_reported_timing",
            "1 when the device reports its playback instants",
            flag(output.timing == "reported"),
        );
        if let Some(delay) = output.delay_us {
            gauge(
                &mut r,
                "firefly_output_device_latency_seconds",
                "The last delay the device reported until a frame is heard",
                delay as f64 / 1e6,
            );
        }
        if let Some(ppm) = output.device_rate_ppm {
            gauge(
                &mut r,
                "firefly_output_device_rate_ppm",
                "The device's frame rate against this node's clock, ppm off nominal",
                ppm,
            );
        }
        gauge(
            &mut r,
            "firefly_output_jitter_seconds",
            "Scatter of the device's playback instants around their fit",
            output.jitter_us / 1e6,
        );
    }
    counter(
        &mut r,
        "firefly_chunks_served",
        "Chunks sent to peers",
        transfer.chunks_served,
    );
    counter(
        &mut r,
        "firefly_chunk_bytes_served",
        "Chunk bytes sent to peers",
        transfer.bytes_served,
    );
    counter(
        &mut r,
        "firefly_chunks_received",
        "Chunks received from peers and verified",
        transfer.chunks_received,
    );
    counter(
        &mut r,
        "firefly_chunks_corrupt",
        "Chunks received whose bytes did not match their id",
        transfer.chunks_corrupt,
    );
    per_peer_counter(
        &mut r,
        "firefly_peer_chunks_served",
        "Chunks sent to the member since it joined",
        &traffic,
        |t| t.chunks_served,
    );
    per_peer_counter(
        &mut r,
        "firefly_peer_chunk_bytes_served",
        "Chunk bytes sent to the member since it joined",
        &traffic,
        |t| t.bytes_served,
    );
    per_peer_counter(
        &mut r,
        "firefly_peer_chunks_received",
        "Chunks received from the member and verified since it joined",
        &traffic,
        |t| t.chunks_received,
    );
    gauge(
        &mut r,
        "firefly_downloads_in_flight",
        "Tracks downloading",
        downloads.len() as f64,
    );
    counter(
        &mut r,
        "firefly_penalties",
        "Strikes given to peers for bad input",
        stats.strikes,
    );
    counter(
        &mut r,
        "firefly_transfer_penalties",
        "Peers penalized for wrong bytes or malformed transfer responses",
        transfer.peers_penalized,
    );
    counter(
        &mut r,
        "firefly_bans",
        "Peers banned for repeated bad input",
        stats.peers_banned,
    );
    counter(
        &mut r,
        "firefly_gossip_rejected",
        "Gossip messages rejected as malformed, oversized or of an unknown version",
        stats.gossip_rejected,
    );
    counter(
        &mut r,
        "firefly_time_failures",
        "Time exchanges that failed (timeouts, malformed answers, closed streams, unanswered datagrams)",
        stats.time_failures,
    );
    counter(
        &mut r,
        "firefly_time_datagram_samples",
        "Time samples taken from datagram answers",
        stats.time_datagram_samples,
    );
    counter(
        &mut r,
        "firefly_time_datagrams_refused",
        "Time datagrams dropped: malformed, unknown key, bad MAC, replayed or unexpected",
        stats.time_datagrams_refused,
    );
    r.register(
        "firefly_api_requests",
        "API requests served, by route and status",
        state.api_requests.0.clone(),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r)
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("encoding the metrics: {err}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
