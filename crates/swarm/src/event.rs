//! What the swarm tells the node: [`Event`]s on the event stream, and the
//! counters in [`Stats`].

use crate::transfer::TransferEvent;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

/// Something that happened in the swarm, for the node to act on or log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The node is listening on a new address.
    Listening {
        /// The address, without the `/p2p/<id>` suffix.
        addr: Multiaddr,
    },
    /// A connection to a peer was established (it may not be a member yet).
    Connected {
        /// The peer.
        peer: PeerId,
        /// Whether the connection goes through a relay.
        relayed: bool,
    },
    /// The last connection to a peer closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer's first heartbeat arrived: it is a member now.
    PeerJoined {
        /// The peer.
        peer: PeerId,
        /// Its human name.
        name: String,
    },
    /// A member was silent for longer than the member timeout and was removed.
    PeerLeft {
        /// The peer.
        peer: PeerId,
        /// Its last known name.
        name: String,
    },
    /// The swarm clock now follows the swarm's timeline; playback may start.
    ClockSynced,
    /// The swarm clock was stepped; anything scheduled in swarm time must be
    /// re-read.
    ClockStepped {
        /// Size of the step, µs (positive: swarm time jumped forward).
        by_micros: i64,
    },
    /// The relay accepted a reservation: the node is reachable through it.
    RelayReserved {
        /// The relay.
        relay: PeerId,
    },
    /// A playback session arrived on `firefly/playback/1`.
    Session {
        /// Who published it.
        from: PeerId,
        /// The session (checked).
        session: Box<crate::Session>,
    },
    /// A peer sent a `/firefly/control/1` request; answer it with
    /// [`crate::Client::respond_control`].
    ControlRequest {
        /// The peer.
        peer: PeerId,
        /// Names the request for the answer.
        key: crate::RequestKey,
        /// The request (checked).
        request: crate::ControlRequest,
    },
    /// A peer sent bad input too often and is banned for a while
    /// ([`crate::penalty`]): its connections are closed and refused.
    PeerBanned {
        /// The peer.
        peer: PeerId,
        /// The kind of bad input that banned it.
        reason: &'static str,
    },
    /// Library sync or chunk transfer reported something.
    Transfer(TransferEvent),
    /// DCUtR replaced a relayed connection with a direct one.
    DirectConnectionUpgraded {
        /// The peer.
        peer: PeerId,
    },
}

/// Counters of what the node refused or lost, for diagnosis and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Gossip messages rejected as malformed, oversized or of an unknown version.
    pub gossip_rejected: u64,
    /// Heartbeats dropped because a member sent them too fast.
    pub gossip_flooded: u64,
    /// Well-formed gossip ignored because its author is not a member (only
    /// heartbeats, which are how a peer joins, are taken from non-members).
    pub gossip_ignored: u64,
    /// `/firefly/control/1` requests that did not decode or broke their
    /// size limit (the transfer protocols count theirs in their own stats).
    pub requests_malformed: u64,
    /// Strikes given to peers for bad input ([`crate::penalty`]).
    pub strikes: u64,
    /// Time exchanges that failed (timeouts, malformed messages, closed
    /// streams, unanswered datagrams).
    pub time_failures: u64,
    /// Time samples taken from datagram answers (`time_datagram`).
    pub time_datagram_samples: u64,
    /// Time datagrams dropped: malformed, unknown key, bad MAC, replayed,
    /// unexpected, or read while the loop was behind.
    pub time_datagrams_refused: u64,
    /// Events dropped because the event stream was full.
    pub events_dropped: u64,
    /// Peers banned for repeated bad input ([`crate::penalty`]).
    pub peers_banned: u64,
}
