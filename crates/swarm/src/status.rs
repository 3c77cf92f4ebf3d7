//! What a node tells the swarm about itself in each heartbeat.
//!
//! The node fills a [`NodeStatus`] (library version, role view, playback
//! summary, load) and hands it to [`crate::Client::set_status`]; the event
//! loop stamps it with the node's name and uptime and gossips it every
//! heartbeat period. The types here are plain serde data that travel on the
//! wire; they are checked by [`crate::membership`] on arrival.

use firefly_library::TrackId;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Longest node name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// This node's view of the roles in the swarm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    /// The member this node believes is the coordinator, if any.
    pub coordinator: Option<PeerId>,
    /// The coordinator's term as this node knows it (only grows).
    pub term: u64,
}

/// Whether a node is playing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaybackState {
    /// Nothing is playing.
    #[default]
    Stopped,
    /// A track is playing.
    Playing,
    /// A track is paused.
    Paused,
}

/// A short summary of a node's playback, for the UI and for diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackSummary {
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// The current track, if any.
    pub track: Option<TrackId>,
    /// Position in the current track, in milliseconds.
    pub position_ms: u64,
}

/// How busy a node is, so downloads can prefer idle peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Chunk requests this node is serving right now.
    pub uploads: u32,
    /// Chunk requests this node has outstanding right now.
    pub downloads: u32,
}

/// Everything a node reports about itself besides its name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Version of the node's library (grows on every change).
    pub library_version: u64,
    /// Who the node thinks holds which role.
    pub roles: RoleView,
    /// What the node is playing.
    pub playback: PlaybackSummary,
    /// How busy the node is.
    pub load: Load,
}
