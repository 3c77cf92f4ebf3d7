//! The [`EventLoop`]: owns the libp2p `Swarm` and drives it.
//!
//! [`EventLoop::run`] is one `tokio::select!` over swarm events, client
//! commands and one timer armed from the earliest deadline any part of the
//! loop has (next heartbeat, next time exchange, next member expiry, next
//! retry). It ends when every [`crate::Client`] is dropped. Each
//! sub-behaviour's events go to a function in that protocol's own module
//! (`membership`, `time_exchange`, `discovery`, `gossip`); this module only
//! dispatches, answers commands and keeps connection bookkeeping. Every
//! timestamp comes from the one `now` hook in the config.

mod control;
mod discovery;
mod gossip;
mod membership;
mod penalty;
mod playback;
mod time;
mod transfer;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::client::Command;
use crate::config::Now;
use crate::discovery::{Discovery, is_relayed};
use crate::error::ClientError;
use crate::event::{Event, Stats};
use crate::membership::Membership;
use crate::penalty::Penalties;
use crate::status::NodeStatus;
use crate::stream_gate::Gated;
use crate::time_exchange::clock_status;
use crate::time_stream::TimeStreams;
use crate::transfer::service::Transfer;
use firefly_clock::{LocalMicros, SwarmClock, SwarmMicros};
use futures::StreamExt;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Drives a node's swarm; see the module doc. Build it with [`crate::new`].
pub struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pub(crate) now: Now,
    pub(crate) name: String,
    pub(crate) started_at: LocalMicros,
    pub(crate) status: NodeStatus,
    /// The player's report, stamped into every heartbeat.
    pub(crate) playout: crate::status::Playout,
    /// The live sources heartbeats offer ([`crate::Client::set_live_sources`]).
    pub(crate) live_sources: Vec<crate::live::LiveSourceInfo>,
    /// Every open connection, and whether it goes through a relay.
    links: HashMap<ConnectionId, crate::client::Link>,
    pub(crate) membership: Membership,
    pub(crate) transfer: Transfer,
    pub(crate) stats: Stats,
    pub(crate) time_streams: TimeStreams,
    pub(crate) time_datagrams: crate::time_datagram::TimeDatagrams,
    pub(crate) time_socket: crate::time_socket::TimeSocket,
    /// The configured listen addresses (where the time socket binds).
    pub(crate) listen: Vec<Multiaddr>,
    pending_dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, ClientError>>>,
    pub(crate) discovery: Discovery,
    pub(crate) clock: SwarmClock<PeerId>,
    pub(crate) mapping: crate::ClockMapping,
    pub(crate) control: crate::control::ControlState,
    pub(crate) penalties: Penalties,
    /// Peers' gossipsub scores at the latest reading ([`crate::gossip_score`]).
    pub(crate) gossip_scores: crate::gossip_score::ScoreWatch,
    pub(crate) log_limiter: crate::penalty::LogLimiter,
    heartbeat_interval: i64,
    /// Set by [`crate::Client::leave`]; every heartbeat from then on says so.
    pub(crate) leaving: bool,
    next_heartbeat: LocalMicros,
    /// When the latest heartbeat went out.
    last_heartbeat: LocalMicros,
}

/// The parts of [`EventLoop`] that [`crate::new`] decides.
pub(crate) struct Parts {
    pub(crate) swarm: Swarm<Behaviour>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) now: Now,
    pub(crate) name: String,
    pub(crate) membership: Membership,
    pub(crate) transfer: Transfer,
    pub(crate) discovery: Discovery,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) clock_config: firefly_clock::Config,
    pub(crate) initial_swarm_time: SwarmMicros,
    pub(crate) listen: Vec<Multiaddr>,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl EventLoop {
    pub(crate) fn new(parts: Parts) -> Self {
        let now = (parts.now)();
        let clock = SwarmClock::new(parts.clock_config, now, parts.initial_swarm_time);
        let time_streams = TimeStreams::new(&parts.swarm.behaviour().time, parts.now.clone());
        let time_socket = crate::time_socket::TimeSocket::new(parts.now.clone());
        Self {
            mapping: crate::ClockMapping::new(&clock, now),
            control: Default::default(),
            swarm: parts.swarm,
            commands: parts.commands,
            events: parts.events,
            now: parts.now,
            name: parts.name,
            started_at: now,
            status: NodeStatus::default(),
            playout: Default::default(),
            live_sources: Vec::new(),
            links: HashMap::new(),
            membership: parts.membership,
            transfer: parts.transfer,
            stats: Stats::default(),
            time_streams,
            time_datagrams: Default::default(),
            time_socket,
            listen: parts.listen,
            pending_dials: HashMap::new(),
            discovery: parts.discovery,
            clock,
            penalties: Penalties::default(),
            gossip_scores: Default::default(),
            log_limiter: Default::default(),
            heartbeat_interval: micros(parts.heartbeat_interval).max(1),
            leaving: false,
            next_heartbeat: now,
            last_heartbeat: now,
        }
    }

    /// Runs the node's swarm until every [`crate::Client`] is dropped.
    pub async fn run(mut self) {
        self.start_transfer();
        loop {
            let wait = self.until(self.poll_timeout());
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                Some(done) = self.transfer.next_done() => self.on_transfer_done(done),
                event = self.time_streams.next() => self.on_time_stream_event(event),
                datagram = self.time_socket.next() => self.on_time_datagram(datagram),
                () = tokio::time::sleep(wait) => self.handle_timeout(),
            }
            self.mapping.publish(&self.clock, (self.now)());
        }
        tracing::debug!("swarm event loop stopped: every client was dropped");
    }

    /// The earliest deadline of any part of the loop.
    fn poll_timeout(&self) -> LocalMicros {
        let mut deadline = self.next_heartbeat.min(self.discovery.poll_timeout());
        for at in [
            self.membership.poll_timeout(),
            self.clock.poll_timeout(),
            self.penalties.poll_timeout(),
            self.time_datagrams.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        {
            deadline = deadline.min(at);
        }
        if let Some(at) = self.transfer.poll_timeout() {
            deadline = deadline.min(at);
        }
        deadline
    }

    fn until(&self, deadline: LocalMicros) -> Duration {
        let micros = (deadline - (self.now)()).max(0);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }

    fn handle_timeout(&mut self) {
        let now = (self.now)();
        if now >= self.next_heartbeat {
            self.publish_heartbeat(now);
            self.watch_gossip_scores(now);
            self.last_heartbeat = now;
            self.next_heartbeat = (self.next_heartbeat + self.heartbeat_interval).max(now);
        }
        if now >= self.discovery.poll_timeout() {
            self.discovery_timeout(now);
        }
        self.expire_members(now);
        self.transfer_timeout(now);
        self.drive_clock(now);
        self.end_bans(now);
    }

    /// Sends `event` to the node; drops it (and counts it) if the node is not
    /// keeping up, rather than stalling the network.
    pub(crate) fn emit(&mut self, event: Event) {
        if let Err(err) = self.events.try_send(event) {
            if let mpsc::error::TrySendError::Full(event) = err {
                tracing::warn!(?event, "event stream full; event dropped");
            }
            self.stats.events_dropped += 1;
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Members { reply } => {
                let _ = reply.send(self.membership.members().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::SetStatus { status } => {
                if status.roles != self.status.roles {
                    // A new role view travels at once (a heal settles in a
                    // few hops of it), yet a third of a period after the
                    // previous heartbeat, so receivers never see it as a
                    // flood (membership drops those under a quarter).
                    let soon = self.last_heartbeat + self.heartbeat_interval / 3;
                    self.next_heartbeat = self.next_heartbeat.min(soon);
                }
                self.status = status;
            }
            Command::SetPlayout { playout } => self.playout = playout,
            Command::SetLive { sources } => self.live_sources = sources,
            Command::Links { reply } => {
                let _ = reply.send(self.links.values().copied().collect());
            }
            Command::TimeSample { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    self.request_time(peer, Some(reply));
                } else {
                    let _ = reply.send(Err(ClientError::Request(format!(
                        "{peer} is not connected"
                    ))));
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats);
            }
            Command::Control(command) => self.on_control_command(command),
            Command::Clock { reply } => {
                let _ = reply.send(clock_status(&self.clock, (self.now)()));
            }
            Command::Transfer(command) => self.on_transfer_command(command),
            Command::Penalize { peer, reason } => self.penalize((self.now)(), peer, reason),
            Command::Leave { reply } => {
                self.leaving = true;
                self.publish_heartbeat((self.now)());
                let _ = reply.send(());
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, ClientError>>) {
        let opts = libp2p::swarm::dial_opts::DialOpts::from(addr);
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(id, reply);
            }
            Err(err) => {
                let _ = reply.send(Err(ClientError::Dial(err.to_string())));
            }
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        // Stamped first, before any other work, for the time exchange.
        let arrived = (self.now)();
        match event {
            SwarmEvent::Behaviour(event) => self.dispatch(arrived, event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.on_time_listen_addr(&address);
                self.emit(Event::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.on_discovery_connected(arrived, connection_id, peer_id);
                self.on_time_connected(peer_id, &endpoint);
                let relayed = is_relayed(&endpoint);
                self.links.insert(
                    connection_id,
                    crate::client::Link {
                        peer: peer_id,
                        relayed,
                    },
                );
                if num_established.get() == 1 {
                    tracing::debug!(peer = %peer_id, relayed, "connected");
                    self.emit(Event::Connected {
                        peer: peer_id,
                        relayed,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.links.remove(&connection_id);
                if num_established == 0 {
                    self.on_time_disconnected(&peer_id);
                    tracing::debug!(peer = %peer_id, "disconnected");
                    self.emit(Event::Disconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(ClientError::Dial(error.to_string())));
                }
                self.discovery.handle_dial_failed(connection_id);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed");
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                tracing::debug!(?reason, "listener closed");
                self.on_listener_closed(arrived, listener_id);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    /// Hands each sub-behaviour's event to its protocol's module.
    fn dispatch(&mut self, arrived: LocalMicros, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Blocked(event) | BehaviourEvent::Limits(event) => match event {},
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub_event(arrived, event),
            BehaviourEvent::Mdns(event) => self.on_mdns_event(event),
            BehaviourEvent::Identify(event) => self.on_identify_event(event),
            BehaviourEvent::Ping(event) => {
                if let Ok(rtt) = event.result {
                    tracing::trace!(peer = %event.peer, ?rtt, "ping");
                }
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client_event(event),
            BehaviourEvent::Dcutr(event) => self.on_dcutr_event(event),
            BehaviourEvent::Time(()) => {}
            BehaviourEvent::Control(Gated::Event(event)) => self.on_control_event(event),
            BehaviourEvent::Chunks(Gated::Event(event)) => self.on_chunks_event(arrived, event),
            BehaviourEvent::Manifests(Gated::Event(event)) => self.on_manifest_event(event),
            BehaviourEvent::Library(Gated::Event(event)) => self.on_library_event(event),
            BehaviourEvent::Covers(Gated::Event(event)) => self.on_cover_event(event),
            BehaviourEvent::Control(Gated::Refused(refused))
            | BehaviourEvent::Chunks(Gated::Refused(refused))
            | BehaviourEvent::Manifests(Gated::Refused(refused))
            | BehaviourEvent::Library(Gated::Refused(refused))
            | BehaviourEvent::Covers(Gated::Refused(refused)) => {
                self.penalize(arrived, refused.peer, "request streams over the limit");
            }
        }
    }
}
