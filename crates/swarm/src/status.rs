//! What a node tells the swarm about itself in each heartbeat.
//!
//! The node fills a [`NodeStatus`] (library version, role view, playback
//! summary, load) and hands it to [`crate::Client::set_status`]; the event
//! loop stamps it with the node's name and uptime and gossips it every
//! heartbeat period. The types here are plain serde data that travel on the
//! wire; they are checked by [`crate::membership`] on arrival.
//!
//! [`Playout`] is the exception to "the node fills it": the node hands it to
//! [`crate::Client::set_playout`] separately (its player's latest flashes and
//! volume change faster than the rest), and the event loop stamps it into
//! every heartbeat it sends.

use firefly_library::TrackId;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Longest node name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

pub use crate::wire::{MAX_COUNTER, MAX_VOLUME_PERMILLE};

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

/// Most flashes one heartbeat carries.
pub const MAX_PLAYOUT_FLASHES: usize = 8;

/// One flash of a node's player: source frame `frame` of its track number
/// `track` sounded when its swarm clock read `swarm_us`. Two flashes of one
/// track give its frame rate, so no rate travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayoutFlash {
    /// The player's track number (grows with every start; a change means a new start).
    pub track: u64,
    /// The source frame heard.
    pub frame: u64,
    /// When, on the node's swarm clock, µs.
    pub swarm_us: i64,
    /// How far the frame was from where the node's timeline says it should
    /// be, in source frames (positive: ahead): its playback sync error.
    #[serde(default)]
    pub error_frames: i32,
}

/// What a node's player is doing, as its heartbeats report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Playout {
    /// The player's volume in thousandths (1000 is unchanged); `None` when
    /// the node has no output.
    pub volume_permille: Option<u16>,
    /// The player's latest flashes, oldest first (at most
    /// [`MAX_PLAYOUT_FLASHES`], swarm instants strictly increasing); empty
    /// while it plays nothing.
    pub flashes: Vec<PlayoutFlash>,
}

impl Playout {
    /// Checks the bounds a well-formed report from a peer may still break.
    pub fn check(&self) -> Result<(), String> {
        if self
            .volume_permille
            .is_some_and(|v| v > MAX_VOLUME_PERMILLE)
        {
            return Err(format!("volume above {MAX_VOLUME_PERMILLE} thousandths"));
        }
        if self.flashes.len() > MAX_PLAYOUT_FLASHES {
            return Err(format!(
                "{} flashes, more than {MAX_PLAYOUT_FLASHES}",
                self.flashes.len()
            ));
        }
        if self
            .flashes
            .windows(2)
            .any(|w| w[1].swarm_us <= w[0].swarm_us)
        {
            return Err("flashes are not in time order".into());
        }
        Ok(())
    }
}

impl RoleView {
    /// Checks the bounds a well-formed view from a peer may still break.
    pub fn check(&self) -> Result<(), String> {
        if self.term > MAX_COUNTER {
            return Err(format!("term {} is above {MAX_COUNTER}", self.term));
        }
        Ok(())
    }
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
    /// What its player is doing (stamped by the event loop from
    /// [`crate::Client::set_playout`]; absent in older heartbeats).
    #[serde(default)]
    pub playout: Playout,
    /// The live sources this node offers (at most [`crate::live::MAX_SOURCES`]).
    #[serde(default)]
    pub live: Vec<crate::live::LiveSourceInfo>,
    /// Where the node plays and how (its zone, channel map, delay trim);
    /// the default zone in older heartbeats.
    #[serde(default)]
    pub placement: crate::zones::Placement,
}
