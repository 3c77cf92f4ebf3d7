//! The `/firefly/control/1` request-response protocol.
//!
//! Node → coordinator: the playback commands (play, pause, resume, seek,
//! next, queue), answered with the resulting [`Session`] or a refusal; a
//! command goes wrapped in [`ControlRequest::InZone`] with the zone it is
//! for, so a coordinator of another zone refuses it.
//! Coordinator → node: *prepare* a track, answered *ready* (saying whether
//! the node holds it). Any node → any node: set the receiver's own volume
//! (volume is per node, so it does not go through the coordinator). CBOR with bounded sizes and a timeout, like every
//! Firefly request-response protocol.
//!
//! The swarm does not interpret requests: an inbound one becomes an
//! [`crate::Event::ControlRequest`] with a [`RequestKey`], and the node answers it
//! with [`crate::Client::respond_control`]. Outbound requests go through
//! [`crate::Client::control`]. This module holds the wire types and
//! [`ControlState`], the parked reply channels with their bounds, which
//! returns an outcome for each inbound request; the event loop
//! (`event_loop::control`) carries it out.

use crate::error::ClientError;
use crate::inbound::{CheckedCbor, Inbound};
use crate::playback::{MAX_QUEUE, RepeatMode, Session};
use crate::status::MAX_VOLUME_PERMILLE;
use firefly_library::TrackId;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tokio::sync::oneshot;

/// The codec: CBOR, with malformed requests handed up to be penalized.
pub type ControlCodec = CheckedCbor<ControlRequest, ControlResponse>;

/// The protocol name.
pub const CONTROL_PROTOCOL: StreamProtocol = StreamProtocol::new("/firefly/control/1");
/// Largest control request or response accepted, in bytes.
pub const MAX_CONTROL_BYTES: u64 = 64 * 1024;
/// Most inbound requests parked awaiting the node's answer; beyond, the
/// oldest closed ones are dropped first, then new requests are refused.
const MAX_PARKED: usize = 256;
/// Most of those from one peer; more at once is a flood, refused and
/// penalized (a person clicking fast on a slow coordinator stays far below).
const MAX_PARKED_PER_PEER: usize = 64;

/// A request on `/firefly/control/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlRequest {
    /// Play `track` from `position_micros`.
    Play {
        /// The track.
        track: TrackId,
        /// Where to start, µs.
        position_micros: u64,
    },
    /// Pause where the music is.
    Pause,
    /// Resume from the paused position.
    Resume,
    /// Move to `position_micros` in the current track.
    Seek {
        /// The new position, µs.
        position_micros: u64,
    },
    /// Skip to the next track in the queue.
    Next,
    /// Append tracks to the queue.
    Queue {
        /// The tracks (at most [`MAX_QUEUE`] in all).
        tracks: Vec<TrackId>,
    },
    /// Go back: to the start of the track, or to the previous one when
    /// the track has only just started.
    Prev,
    /// Stop playback (the track and queue stay).
    Stop,
    /// Play the first of `tracks`; the rest replace the queue (an album,
    /// an artist).
    PlayAll {
        /// The tracks, in play order (at most [`MAX_QUEUE`] + 1).
        tracks: Vec<TrackId>,
    },
    /// Turn shuffle on (the queue is shuffled once) or off.
    Shuffle {
        /// Whether shuffle is on.
        on: bool,
    },
    /// Set the repeat mode.
    Repeat {
        /// The mode.
        mode: RepeatMode,
    },
    /// Insert tracks into the queue at `at` (none: append).
    QueueInsert {
        /// The tracks (at most [`MAX_QUEUE`] in all).
        tracks: Vec<TrackId>,
        /// Where in the queue, 0 first; `None` or past the end appends.
        at: Option<u32>,
    },
    /// Remove the queue entry at `index`.
    QueueRemove {
        /// The index, 0 first.
        index: u32,
    },
    /// Move the queue entry at `from` to `to`.
    QueueMove {
        /// Its index now.
        from: u32,
        /// Its index after the move.
        to: u32,
    },
    /// Empty the queue.
    QueueClear,
    /// Drop `track` from the queue, and stop or move on if it plays (it
    /// left the library).
    TrackGone {
        /// The track.
        track: TrackId,
    },
    /// Coordinator → node: get ready to play `track` in `term`.
    Prepare {
        /// The coordinator's term.
        term: u64,
        /// The track.
        track: TrackId,
    },
    /// Any node → node: set your player's volume.
    Volume {
        /// The volume in thousandths (1000 is unchanged, at most
        /// [`crate::MAX_VOLUME_PERMILLE`]).
        volume_permille: u16,
    },
    /// Play a live source instead of a track (the queue stays).
    PlayLive {
        /// The stream.
        source: crate::live::LiveRef,
    },
    /// Any node → node: change your own placement (move to a zone, take
    /// a zone's settings, a channel map, a delay trim). The receiver is the
    /// placement's only writer: it applies requests one at a time and
    /// answers with its placement after this one.
    Place(PlacementChange),
    /// Node → a zone's coordinator: the playback `command` for `zone`'s
    /// session. The receiver carries it out only if it coordinates `zone`,
    /// and refuses it with [`Refusal::WrongZone`] if it plays in another
    /// (it moved meanwhile, or the sender's view of the zone is stale).
    InZone {
        /// The zone whose session the command is for.
        zone: crate::zones::ZoneId,
        /// The command: one of the playback commands, never a prepare, a
        /// volume, a placement or another `InZone`.
        command: Box<ControlRequest>,
    },
}

/// What a [`ControlRequest::Place`] changes; `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementChange {
    /// Move to this zone.
    pub zone: Option<crate::zones::ZoneId>,
    /// Take these zone settings (a move names the new zone's; a rename or a
    /// group volume sends them to every member). Kept only if they
    /// supersede the node's own when it stays in its zone.
    pub settings: Option<crate::zones::ZoneSettings>,
    /// Play these channels.
    pub channel: Option<crate::zones::ChannelMap>,
    /// Use this delay trim, ms.
    pub delay_ms: Option<i64>,
}

impl ControlRequest {
    /// Whether this is a playback command for a zone's coordinator (not a
    /// prepare, a volume, a placement or an [`ControlRequest::InZone`]
    /// wrapper).
    pub fn is_playback_command(&self) -> bool {
        !matches!(
            self,
            Self::Prepare { .. } | Self::Volume { .. } | Self::Place(_) | Self::InZone { .. }
        )
    }

    /// Checks bounds a well-formed request may still break.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::InZone { command, .. } if !command.is_playback_command() => {
                Err("only a playback command can be sent to a zone".to_string())
            }
            Self::InZone { command, .. } => command.check(),
            Self::Queue { tracks } | Self::QueueInsert { tracks, .. }
                if tracks.len() > MAX_QUEUE =>
            {
                Err(format!(
                    "a queue of {} tracks is longer than {MAX_QUEUE}",
                    tracks.len()
                ))
            }
            Self::PlayAll { tracks } if tracks.len() > MAX_QUEUE + 1 => Err(format!(
                "{} tracks are more than {} to play at once",
                tracks.len(),
                MAX_QUEUE + 1
            )),
            Self::Volume { volume_permille } if *volume_permille > MAX_VOLUME_PERMILLE => Err(
                format!("a volume of {volume_permille} thousandths is above {MAX_VOLUME_PERMILLE}"),
            ),
            Self::PlayLive { source } => source.check().map_err(|e| e.to_string()),
            Self::Place(change) => {
                if let Some(settings) = &change.settings {
                    settings.check()?;
                }
                match change.delay_ms {
                    Some(ms) if ms.abs() > crate::zones::MAX_DELAY_MS => Err(format!(
                        "delay {ms} ms is beyond ±{} ms",
                        crate::zones::MAX_DELAY_MS
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// A response on `/firefly/control/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlResponse {
    /// The command was applied; this is the session now.
    Session(Box<Session>),
    /// Answer to a prepare.
    Ready {
        /// Whether this node holds the track (else it sits the track out).
        has_track: bool,
    },
    /// Answer to a volume request: the volume the node's player now has.
    Volume {
        /// In thousandths.
        volume_permille: u16,
    },
    /// The request was refused, and why.
    Refused(Refusal),
    /// Answer to a placement change: the node's placement after it.
    Placed(Box<crate::zones::Placement>),
}

/// Why a node refused a control request: a kind the sender can act on (a
/// command refused with [`Refusal::NotCoordinator`] is retried elsewhere),
/// with a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The receiver is not the coordinator (commands go there).
    #[error("not the coordinator")]
    NotCoordinator,
    /// The sender is not (yet) a member of the swarm.
    #[error("not a member of this swarm")]
    NotAMember,
    /// The sender has too many requests under way.
    #[error("too many requests at once")]
    TooMany,
    /// The receiver has too many requests under way.
    #[error("the node is busy")]
    Busy,
    /// The request breaks a bound ([`ControlRequest::check`]).
    #[error("{0}")]
    Invalid(String),
    /// Pause, resume, seek or stop with nothing loaded.
    #[error("nothing is playing")]
    NothingPlaying,
    /// Next with nothing after the current track.
    #[error("the queue is empty")]
    EmptyQueue,
    /// The queue would grow past its bound.
    #[error("the queue is full ({max} tracks)")]
    QueueFull {
        /// The bound.
        max: u32,
    },
    /// A queue index past the end of the queue.
    #[error("no queue entry {index} (the queue has {len})")]
    NoSuchEntry {
        /// The index asked for.
        index: u32,
        /// The queue's length.
        len: u32,
    },
    /// No alive node holds the track.
    #[error("no node holds track {0}")]
    NoHolder(TrackId),
    /// A start position past the end of the track.
    #[error("position {position_ms} ms is past the end of the track ({duration_ms} ms)")]
    PastTheEnd {
        /// The position asked for.
        position_ms: u64,
        /// The track's duration.
        duration_ms: u64,
    },
    /// A request that is not a command sent as one (a prepare to the
    /// coordinator, say).
    #[error("not a playback command")]
    NotACommand,
    /// The receiver has no audio output (volume).
    #[error("{0}")]
    NoOutput(String),
    /// A command for one zone reached the coordinator of another (or a
    /// node that plays in another): the sender asks that zone's coordinator
    /// again.
    #[error("this node plays in zone {mine}, not in zone {asked}")]
    WrongZone {
        /// The zone the command was for.
        asked: crate::zones::ZoneId,
        /// The zone the receiver plays in.
        mine: crate::zones::ZoneId,
    },
}

/// Names an inbound request until the node answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey(u64);

/// The commands a [`crate::Client`] sends for this protocol and for gossip of sessions.
#[derive(Debug)]
pub(crate) enum ControlCommand {
    Send {
        peer: PeerId,
        request: ControlRequest,
        reply: oneshot::Sender<Result<ControlResponse, ClientError>>,
    },
    Respond {
        key: RequestKey,
        response: ControlResponse,
    },
    Publish {
        session: Box<Session>,
    },
}

/// Where the answer to one of this node's requests goes.
pub(crate) type ControlReply = oneshot::Sender<Result<ControlResponse, ClientError>>;

/// The protocol's state: parked reply channels, both ways. Sans-IO: the
/// event loop (`event_loop::control`) feeds it and carries out its
/// outcomes.
#[derive(Debug, Default)]
pub(crate) struct ControlState {
    next_key: u64,
    /// Inbound requests waiting for the node's answer. Invariant: at most
    /// [`MAX_PARKED`], at most [`MAX_PARKED_PER_PEER`] of one peer.
    inbound: HashMap<RequestKey, (PeerId, ResponseChannel<ControlResponse>)>,
    outbound: HashMap<OutboundRequestId, ControlReply>,
}

pub(crate) type ControlEvent = request_response::Event<Inbound<ControlRequest>, ControlResponse>;

/// What became of an inbound request ([`ControlState::handle_request`]).
#[derive(Debug)]
pub(crate) enum InboundOutcome {
    /// Parked until the node answers: it is told with `key`.
    Parked {
        key: RequestKey,
        request: ControlRequest,
    },
    /// Refused at once; `strike` names the bad input when the sender is to
    /// be penalized for it.
    Refused {
        channel: ResponseChannel<ControlResponse>,
        refusal: Refusal,
        strike: Option<&'static str>,
    },
    /// The request did not decode (the sender is to be penalized); the
    /// stream is dropped unanswered.
    Malformed(String),
}

impl ControlState {
    /// Takes a request from `peer` (a member or not, as membership says):
    /// checks its bounds and the sender, and parks its channel for the
    /// node's answer, within [`MAX_PARKED`] in all and
    /// [`MAX_PARKED_PER_PEER`] per peer.
    pub(crate) fn handle_request(
        &mut self,
        peer: PeerId,
        is_member: bool,
        request: Inbound<ControlRequest>,
        channel: ResponseChannel<ControlResponse>,
    ) -> InboundOutcome {
        let request = match request {
            Inbound::Request(request) => request,
            Inbound::Malformed(reason) => return InboundOutcome::Malformed(reason),
        };
        if let Err(reason) = request.check() {
            return InboundOutcome::Refused {
                channel,
                refusal: Refusal::Invalid(reason),
                strike: Some("invalid control request"),
            };
        }
        if !is_member {
            // Commands, prepares and volumes come from members only.
            return InboundOutcome::Refused {
                channel,
                refusal: Refusal::NotAMember,
                strike: None,
            };
        }
        if self.inbound.len() >= MAX_PARKED / 2 {
            self.inbound.retain(|_, (_, channel)| channel.is_open());
        }
        let from_peer = self.inbound.values().filter(|(p, _)| *p == peer).count();
        if from_peer >= MAX_PARKED_PER_PEER {
            // An honest node has a few commands, a prepare and a volume
            // under way at a time: this is a flood.
            return InboundOutcome::Refused {
                channel,
                refusal: Refusal::TooMany,
                strike: Some("too many control requests at once"),
            };
        }
        if self.inbound.len() >= MAX_PARKED {
            return InboundOutcome::Refused {
                channel,
                refusal: Refusal::Busy,
                strike: None,
            };
        }
        let key = RequestKey(self.next_key);
        // A name, not a counter of the rules: 2^64 requests never come, and
        // wrapping is explicit rather than a debug-build panic.
        self.next_key = self.next_key.wrapping_add(1);
        self.inbound.insert(key, (peer, channel));
        InboundOutcome::Parked { key, request }
    }

    /// The channel parked under `key`, to answer on (once).
    pub(crate) fn take_inbound(
        &mut self,
        key: RequestKey,
    ) -> Option<ResponseChannel<ControlResponse>> {
        self.inbound.remove(&key).map(|(_, channel)| channel)
    }

    /// Parks the reply to this node's request `id` until its answer.
    pub(crate) fn park_outbound(&mut self, id: OutboundRequestId, reply: ControlReply) {
        self.outbound.insert(id, reply);
    }

    /// The reply waiting for the answer to request `id`.
    pub(crate) fn take_outbound(&mut self, id: OutboundRequestId) -> Option<ControlReply> {
        self.outbound.remove(&id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oversized_queues_are_refused() {
        let ok = ControlRequest::Queue {
            tracks: vec![TrackId([0; 32]); 3],
        };
        assert!(ok.check().is_ok());
        let long = ControlRequest::Queue {
            tracks: vec![TrackId([0; 32]); MAX_QUEUE + 1],
        };
        assert!(long.check().is_err_and(|e| e.contains("longer")));
    }

    proptest::proptest! {
        /// Random bytes never panic the control decoder: they are a request
        /// to check, or malformed (and penalized), never a crash.
        #[test]
        fn random_bytes_never_panic_the_control_decoder(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)
        ) {
            if let crate::inbound::Inbound::Request(request) =
                crate::inbound::decode_request::<ControlRequest>(&bytes, MAX_CONTROL_BYTES as usize)
            {
                let _ = request.check();
            }
        }
    }

    #[test]
    fn zone_commands_carry_playback_commands_only() {
        let zone = crate::zones::ZoneId::default();
        let wrap = |command| ControlRequest::InZone {
            zone: zone.clone(),
            command: Box::new(command),
        };
        assert!(wrap(ControlRequest::Pause).check().is_ok());
        let long = wrap(ControlRequest::Queue {
            tracks: vec![TrackId([0; 32]); MAX_QUEUE + 1],
        });
        assert!(long.check().is_err_and(|e| e.contains("longer")));
        for inner in [
            ControlRequest::Volume {
                volume_permille: 10,
            },
            ControlRequest::Prepare {
                term: 1,
                track: TrackId([0; 32]),
            },
            ControlRequest::Place(PlacementChange::default()),
            wrap(ControlRequest::Pause),
        ] {
            assert!(
                wrap(inner)
                    .check()
                    .is_err_and(|e| e.contains("only a playback")),
                "a wrapped non-command passed the check"
            );
        }
    }

    #[test]
    fn out_of_range_volumes_are_refused() {
        let ok = ControlRequest::Volume {
            volume_permille: MAX_VOLUME_PERMILLE,
        };
        assert!(ok.check().is_ok());
        let loud = ControlRequest::Volume {
            volume_permille: MAX_VOLUME_PERMILLE + 1,
        };
        assert!(loud.check().is_err_and(|e| e.contains("above")));
    }
}
