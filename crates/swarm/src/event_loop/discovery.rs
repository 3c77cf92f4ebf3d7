//! Dials and relay reservations: the loop side of [`crate::discovery`].
//!
//! Carries out [`crate::discovery::Discovery`]'s dials and relay listener
//! and reports how they went; hands identify's addresses to the swarm and
//! tells the node about relay reservations and hole punches.

use super::EventLoop;
use crate::behaviour::IDENTIFY_PROTOCOL;
use crate::discovery::Action;
use crate::event::Event;
use firefly_clock::LocalMicros;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{PeerId, dcutr, identify, mdns, relay};

impl EventLoop {
    /// The discovery part of the loop's timer.
    pub(crate) fn discovery_timeout(&mut self, now: LocalMicros) {
        let swarm = &self.swarm;
        let actions = self
            .discovery
            .handle_timeout(now, &|peer| swarm.is_connected(peer));
        self.carry_out_discovery(actions);
    }

    /// A connection to `peer` opened (by `connection`).
    pub(crate) fn on_discovery_connected(
        &mut self,
        now: LocalMicros,
        connection: ConnectionId,
        peer: PeerId,
    ) {
        let swarm = &self.swarm;
        let actions = self
            .discovery
            .handle_connected(now, connection, peer, &|p| swarm.is_connected(p));
        self.carry_out_discovery(actions);
    }

    /// A listener closed: the relay slot's, perhaps.
    pub(crate) fn on_listener_closed(&mut self, now: LocalMicros, listener: ListenerId) {
        if let Some(relay) = self.discovery.handle_listener_closed(now, listener) {
            tracing::warn!(%relay, "relay reservation lost; retrying");
        }
    }

    /// mDNS found or forgot peers on the LAN.
    pub(crate) fn on_mdns_event(&mut self, event: mdns::Event) {
        let swarm = &self.swarm;
        let actions = self
            .discovery
            .handle_mdns(event, &|peer| swarm.is_connected(peer));
        self.carry_out_discovery(actions);
    }

    fn carry_out_discovery(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Dial(opts) => {
                    let id = opts.connection_id();
                    match self.swarm.dial(opts) {
                        // Already connected or being dialed: nothing to do.
                        Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                        Err(err) => {
                            tracing::debug!(%err, "cannot dial");
                            self.discovery.handle_dial_failed(id);
                        }
                    }
                }
                Action::ListenOnRelay(circuit) => match self.swarm.listen_on(circuit.clone()) {
                    Ok(id) => self.discovery.handle_relay_listening(Some(id)),
                    Err(err) => {
                        tracing::warn!(%circuit, %err, "cannot listen through the relay");
                        self.discovery.handle_relay_listening(None);
                    }
                },
            }
        }
    }

    /// Identify told us about a peer: remember its addresses for redials.
    pub(crate) fn on_identify_event(&mut self, event: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = event {
            if info.protocol_version != IDENTIFY_PROTOCOL {
                tracing::debug!(peer = %peer_id, version = %info.protocol_version, "peer is not a firefly node");
                return;
            }
            for addr in info.listen_addrs {
                self.swarm.add_peer_address(peer_id, addr);
            }
        }
    }

    /// The relay client reports on reservations and circuits.
    pub(crate) fn on_relay_client_event(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "reserved a slot on the relay");
                    self.emit(Event::RelayReserved {
                        relay: relay_peer_id,
                    });
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "circuit established through the relay");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "inbound circuit through the relay");
            }
        }
    }

    /// DCUtR tried to replace a relayed connection with a direct one.
    pub(crate) fn on_dcutr_event(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                tracing::info!(peer = %event.remote_peer_id, "hole punch succeeded: direct connection");
                self.emit(Event::DirectConnectionUpgraded {
                    peer: event.remote_peer_id,
                });
            }
            Err(err) => {
                tracing::info!(peer = %event.remote_peer_id, %err, "hole punch failed; staying on the relay");
            }
        }
    }
}
