//! Firefly's libp2p swarm.
//!
//! A node calls [`new`] with a [`Config`] and gets three things back, the way
//! rust-libp2p's file-sharing example is shaped: a [`Client`] (cloneable
//! handle whose methods send commands to the loop), a stream of [`Event`]s
//! (peers joining and leaving, time samples, relay reservations), and the
//! [`EventLoop`] that owns the libp2p `Swarm` and must be spawned
//! (`tokio::spawn(event_loop.run())`).
//!
//! What the swarm does: TCP + noise + yamux and QUIC transports (pnet-wrapped
//! TCP only in a private swarm, see [`swarm_key`]); a persistent ed25519
//! identity ([`identity`]); identify and ping on every connection; mDNS and
//! `--peer` discovery; membership from 1 s gossipsub heartbeats with a 5 s
//! timeout ([`membership`]); the `/firefly/time/2` NTP-style exchange feeding
//! the node's [`firefly_clock::SwarmClock`], which the event loop owns
//! ([`time_exchange`], [`Client::clock`]); a circuit-relay v2 client with
//! DCUtR; and a separate
//! relay server ([`relay_server`]) for `firefly relay`. Library sync (the
//! swarm catalog) and verified multi-peer chunk transfer live in
//! [`transfer`].
//!
//! What it is not: it keeps no playback state of its own. The node reports
//! that through [`Client::set_status`] and it travels in heartbeats; the
//! library version in heartbeats comes from the library the node hands over
//! in [`Config::library`].
//!
//! # How the modules depend on each other
//!
//! The arrows run one way (`tests/arrows.rs` fails on a cycle). At the
//! bottom, wire types and bounds ([`wire`], [`status`](NodeStatus),
//! [`zones`], [`live`], [`inbound`]). Above them, one module per protocol
//! owning its state: it takes what arrived through `handle_*` functions and
//! returns an outcome, and never sees the `Swarm` ([`membership`],
//! [`control`], [`playback`], `discovery`, [`transfer`] — which sends
//! through the behaviours the loop lends it —, [`penalty`], `gossip_score`,
//! [`time_exchange`]). On top, `behaviour` composes the libp2p behaviours,
//! [`Client`] sends commands, and the [`EventLoop`] (`event_loop/`, one
//! file per protocol) owns the `Swarm`, feeds the protocols and carries out
//! their outcomes: it emits events, sends responses, strikes peers.
//!
//! # Adding a protocol
//!
//! A new request-response protocol touches few shared lines: a field in
//! `behaviour::Behaviour` (its name becomes a `BehaviourEvent` variant), a
//! module with its wire types and state, one arm in `EventLoop::dispatch`
//! calling its loop side in `event_loop/`, and `Command` variants with
//! `oneshot` replies for its [`Client`] methods. A gossip topic adds one
//! arm in `event_loop/gossip.rs` (and its name in `gossip_score`'s topics).
//! A peer that sends bad input is given a strike with `EventLoop::penalize`
//! ([`penalty`]).

mod behaviour;
mod client;
mod config;
pub mod control;
mod discovery;
mod error;
mod event;
mod event_loop;
mod gossip_score;
pub mod identity;
pub mod inbound;
pub mod live;
mod mapping;
pub mod membership;
pub mod penalty;
pub mod playback;
pub mod relay_server;
mod status;
pub mod stream_gate;
pub mod swarm_key;
mod time_datagram;
pub mod time_exchange;
mod time_socket;
pub mod time_stream;
pub mod transfer;
pub mod wire;
pub mod zones;

pub use behaviour::{BuildError, IDENTIFY_PROTOCOL};
pub use client::{Client, Link};
pub use config::{Config, Now, monotonic_now};
pub use control::{ControlRequest, ControlResponse, PlacementChange, Refusal, RequestKey};
pub use error::ClientError;
pub use event::{Event, Stats};
pub use event_loop::EventLoop;
pub use firefly_clock::{LocalMicros, SwarmMicros};
pub use libp2p::{Multiaddr, PeerId};
pub use live::{LiveControl, LiveRef, LiveSourceInfo};
pub use mapping::{ClockMapping, Mapping};
pub use membership::Member;
pub use playback::{RepeatMode, Session};
pub use status::{
    Load, MAX_COUNTER, MAX_NAME_LEN, MAX_PLAYOUT_FLASHES, MAX_VOLUME_PERMILLE, NodeStatus,
    PlaybackState, PlaybackSummary, Playout, PlayoutFlash, RoleView,
};
pub use time_exchange::{ClockStatus, TimeSample};
pub use transfer::cover;
pub use zones::{ChannelMap, Placement, ZoneId, ZoneSettings};

use discovery::{Discovery, peer_id_of};
use libp2p::gossipsub::IdentTopic;
use membership::{HEARTBEAT_TOPIC, Membership};
use tokio::sync::mpsc;
use transfer::service::Transfer;

/// Capacity of the command channel from clients to the loop.
const COMMAND_CAPACITY: usize = 64;
/// Capacity of the event stream; further events are dropped and counted
/// ([`Stats::events_dropped`]) rather than stalling the network.
const EVENT_CAPACITY: usize = 1024;

/// Builds a node's swarm: binds the listen addresses, queues the `--peer`
/// dials and the relay reservation, and returns the client, the event stream
/// and the event loop to spawn. Must be called inside a tokio runtime.
pub fn new(config: Config) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), BuildError> {
    if config.name.len() > MAX_NAME_LEN || config.name.chars().any(char::is_control) {
        return Err(BuildError::BadName { max: MAX_NAME_LEN });
    }
    let relay = match &config.relay {
        None => None,
        Some(addr) => {
            let peer =
                peer_id_of(addr).ok_or_else(|| BuildError::RelayWithoutPeerId(addr.clone()))?;
            Some((addr.clone(), peer))
        }
    };
    let mut swarm = behaviour::build_swarm(&config)?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&IdentTopic::new(HEARTBEAT_TOPIC))
        .map_err(|err| BuildError::Behaviour(err.to_string()))?;
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&IdentTopic::new(playback::PLAYBACK_TOPIC))
        .map_err(|err| BuildError::Behaviour(err.to_string()))?;
    for addr in config.listen_addrs() {
        swarm
            .listen_on(addr.clone())
            .map_err(|err| BuildError::Listen {
                addr,
                reason: err.to_string(),
            })?;
    }
    if let Some((addr, peer)) = &relay {
        swarm.add_peer_address(*peer, addr.clone());
    }
    let discovery = Discovery::new((config.now)(), &config.peers, relay);
    let peer_id = *swarm.local_peer_id();
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
    let event_loop = EventLoop::new(event_loop::Parts {
        swarm,
        commands: command_rx,
        events: event_tx,
        now: config.now.clone(),
        name: config.name.clone(),
        membership: Membership::new(config.member_timeout, config.heartbeat_interval),
        transfer: Transfer::new(
            peer_id,
            config.library.clone(),
            &config.transfer,
            (config.now)(),
        ),
        discovery,
        heartbeat_interval: config.heartbeat_interval,
        clock_config: config.clock_config.clone(),
        initial_swarm_time: config.initial_swarm(),
        listen: config.listen_addrs(),
    });
    let client = Client {
        live: live::LiveControl(event_loop.swarm.behaviour().time.new_control()),
        sender: command_tx,
        peer_id,
        mapping: event_loop.mapping.clone(),
    };
    Ok((client, event_rx, event_loop))
}
