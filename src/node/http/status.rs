//! `GET /api/status`: the node, its members and the swarm catalog (what
//! `firefly status` prints), and the member names every view shows.

use super::error::ApiError;
use crate::node::NodeState;
use axum::Json;
use axum::extract::State;
use firefly_library::{TrackMeta, display_text};
use serde::{Deserialize, Serialize};

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
    /// Absent from older nodes' answers.
    #[serde(default)]
    pub(crate) album: Option<String>,
    /// Track number within the album, if tagged.
    #[serde(default)]
    pub(crate) number: Option<u32>,
    #[serde(default)]
    pub(crate) duration_ms: Option<u64>,
    pub(crate) size: u64,
    pub(crate) holders: Vec<String>,
    /// Whether the track has a cover picture (`GET /api/cover/{track}`):
    /// this node's own, or one its metadata names that a holder serves.
    #[serde(default)]
    pub(crate) cover: bool,
}

impl CatalogEntry {
    /// The entry of a track with no holders yet.
    pub(crate) fn of(track: firefly_library::TrackId, size: u64, meta: &TrackMeta) -> Self {
        Self {
            track: track.to_hex(),
            title: display_text(&meta.title),
            artist: meta.artist.as_deref().map(display_text),
            album: meta.album.as_deref().map(display_text),
            number: meta.track,
            duration_ms: meta.duration_ms,
            size,
            holders: Vec::new(),
            // A picture named in the metadata can be fetched from a holder.
            cover: meta.cover.is_some(),
        }
    }
}

/// The names to show for `members`, in their order: each member's name, or,
/// when another member or this node (`me`) has the same name, the name with
/// the end of the member's peer id (`alpha (…3fa9c1)`), so that every name
/// in a view is unique.
pub(crate) fn shown_names(
    me: (firefly_swarm::PeerId, &str),
    members: &[firefly_swarm::Member],
) -> Vec<String> {
    members
        .iter()
        .map(|m| {
            let name = display_text(&m.name);
            let clash = name == me.1
                || members
                    .iter()
                    .any(|other| other.peer != m.peer && display_text(&other.name) == name);
            if clash {
                let id = m.peer.to_string();
                let tail = &id[id.len().saturating_sub(6)..];
                format!("{name} (…{tail})")
            } else {
                name
            }
        })
        .collect()
}

pub(crate) async fn status(State(state): State<NodeState>) -> Result<Json<StatusReport>, ApiError> {
    let members = state.swarm.members().await?;
    let connected = state.swarm.connected_peers().await?;
    let listen = state.swarm.listen_addrs().await?;
    let clock = state.swarm.clock().await?;
    let library = state.library.clone();
    let (version, covers) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((library.version()?, library.tracks_with_cover()?))
    })
    .await??;
    let me = state.swarm.peer_id().to_string();
    // The union of every member's library, this node's included.
    let catalog = state
        .swarm
        .catalog()
        .await?
        .into_iter()
        .map(|entry| {
            let s = &entry.summary;
            let mut shown = CatalogEntry::of(s.track, s.size, &s.meta);
            shown.holders = entry.holders.iter().map(ToString::to_string).collect();
            shown.cover |= covers.contains(&s.track);
            shown
        })
        .collect();
    Ok(Json(StatusReport {
        peer_id: me.clone(),
        name: state.name.clone(),
        listen_addrs: listen.iter().map(ToString::to_string).collect(),
        connected_peers: connected.iter().map(ToString::to_string).collect(),
        members: members
            .iter()
            .zip(shown_names((state.swarm.peer_id(), &state.name), &members))
            .map(|(m, name)| MemberReport {
                peer_id: m.peer.to_string(),
                name,
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
