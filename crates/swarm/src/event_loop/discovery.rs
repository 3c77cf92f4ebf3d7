//! Dials and relay reservations: the loop side of [`crate::discovery`].
//!
//! Decides whom to dial and when from the bootstrap list, the LAN peers mDNS
//! reports and the relay slot, and hands identify's addresses to the swarm.

use super::EventLoop;
use crate::behaviour::IDENTIFY_PROTOCOL;
use crate::discovery::{MAX_LAN_PEERS, RETRY_MICROS, STALE_DIAL_MICROS, relay_of};
use crate::event::Event;
use firefly_clock::LocalMicros;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, dcutr, identify, mdns, relay};
use std::collections::BTreeMap;

impl EventLoop {
    /// Dials every `--peer` address that is not connected and not being
    /// dialed (a dial unanswered for [`STALE_DIAL_MICROS`] does not count).
    /// A circuit address is dialed only once the node is connected
    /// to its relay (dialing both at once races inside the relay client);
    /// until then the relay itself is dialed.
    pub(crate) fn redial_bootstrap_peers(&mut self, now: LocalMicros) {
        for index in 0..self.bootstrap.len() {
            let entry = &self.bootstrap[index];
            let pending = entry
                .dialing
                .is_some_and(|(_, since)| now - since < STALE_DIAL_MICROS);
            if pending || entry.peer.is_some_and(|p| self.swarm.is_connected(&p)) {
                continue;
            }
            if let Some((relay_addr, relay)) = relay_of(&entry.addr)
                && !self.swarm.is_connected(&relay)
            {
                let opts = DialOpts::peer_id(relay)
                    .addresses(vec![relay_addr])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(err) = self.swarm.dial(opts) {
                    tracing::debug!(%relay, %err, "cannot dial relay");
                }
                continue;
            }
            let opts = DialOpts::from(entry.addr.clone());
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap[index].dialing = Some((id, now)),
                Err(err) => {
                    tracing::debug!(addr = %self.bootstrap[index].addr, %err, "cannot dial peer")
                }
            }
        }
    }

    /// A connection to `peer` was established: if it is a relay, reserve the
    /// slot and dial the `--peer` circuits that were waiting for it.
    pub(crate) fn on_connected_to_relay(&mut self, now: LocalMicros, peer: PeerId) {
        if self.relay.as_ref().is_some_and(|slot| slot.peer == peer) {
            self.reserve_relay_slot(now);
        }
        let waiting = self.bootstrap.iter().any(|entry| {
            entry.dialing.is_none() && relay_of(&entry.addr).is_some_and(|(_, relay)| relay == peer)
        });
        if waiting {
            self.redial_bootstrap_peers(now);
        }
    }

    /// Notes the outcome of a dial that may be a bootstrap dial.
    pub(crate) fn on_dial_outcome(&mut self, connection: ConnectionId, peer: Option<PeerId>) {
        for entry in &mut self.bootstrap {
            if entry.dialing.is_some_and(|(id, _)| id == connection) {
                entry.dialing = None;
                if peer.is_some() {
                    entry.peer = peer;
                }
            }
        }
    }

    /// Opens the `/p2p-circuit` listener on the relay when it is missing and
    /// the retry time has come. The relay is dialed first and the listener
    /// opened once connected: the relay client mishandles a reservation and
    /// a circuit dial that both have to open the first connection.
    pub(crate) fn reserve_relay_slot(&mut self, now: LocalMicros) {
        let Some(slot) = &mut self.relay else { return };
        if slot.listener.is_some() || now < slot.retry_at {
            return;
        }
        if !self.swarm.is_connected(&slot.peer) {
            let opts = DialOpts::peer_id(slot.peer)
                .addresses(vec![slot.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                // Already being dialed: the reservation follows the connection.
                Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                Err(err) => {
                    tracing::debug!(relay = %slot.peer, %err, "cannot dial relay");
                    slot.retry_at = now + RETRY_MICROS;
                }
            }
            return;
        }
        let circuit = slot.addr.clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => slot.listener = Some(id),
            Err(err) => {
                tracing::warn!(%circuit, %err, "cannot listen through the relay");
                slot.retry_at = now + RETRY_MICROS;
            }
        }
    }

    /// A listener closed: if it was the relay circuit, schedule a new reservation.
    pub(crate) fn on_listener_closed(&mut self, now: LocalMicros, listener: ListenerId) {
        if let Some(slot) = &mut self.relay
            && slot.listener == Some(listener)
        {
            tracing::warn!(relay = %slot.peer, "relay reservation lost; retrying");
            slot.listener = None;
            slot.retry_at = now + RETRY_MICROS;
        }
    }

    /// mDNS found peers on the LAN (dial the ones not connected yet) or
    /// forgot them (stop redialing them).
    pub(crate) fn on_mdns_event(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(found) => {
                let mut by_peer: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    tracing::debug!(%peer, ?addrs, "discovered on the LAN");
                    if self.lan_peers.len() < MAX_LAN_PEERS || self.lan_peers.contains_key(&peer) {
                        let known = self.lan_peers.entry(peer).or_default();
                        for addr in &addrs {
                            if !known.contains(addr) {
                                known.push(addr.clone());
                            }
                        }
                    }
                    self.dial_lan_peer(peer, addrs);
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    if let Some(known) = self.lan_peers.get_mut(&peer) {
                        known.retain(|a| *a != addr);
                        if known.is_empty() {
                            self.lan_peers.remove(&peer);
                        }
                    }
                }
            }
        }
    }

    /// Redials LAN peers mDNS still lists but that are not connected (a
    /// first dial can fail; mDNS only reports a peer again when it expires).
    pub(crate) fn redial_lan_peers(&mut self) {
        let lost: Vec<(PeerId, Vec<Multiaddr>)> = self
            .lan_peers
            .iter()
            .filter(|(peer, _)| !self.swarm.is_connected(peer))
            .map(|(peer, addrs)| (*peer, addrs.clone()))
            .collect();
        for (peer, addrs) in lost {
            self.dial_lan_peer(peer, addrs);
        }
    }

    fn dial_lan_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(err) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %err, "cannot dial LAN peer");
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
