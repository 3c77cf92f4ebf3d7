//! The relay node run by `firefly relay`: a circuit-relay v2 server.
//!
//! Nodes on networks that cannot reach each other reserve a slot here and
//! are then reachable at `<relay addr>/p2p-circuit/p2p/<their id>`. libp2p's
//! default limits cap a circuit at 128 KiB and 2 minutes, far too little for
//! audio chunks and a listening session, so [`relay_config`] raises them. The
//! relay is not a swarm member: it runs only relay, identify and ping, and
//! takes part in no gossip.

use crate::behaviour::{BuildError, IDENTIFY_PROTOCOL, private_tcp};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, ping, relay, tcp, yamux};
use std::net::Ipv4Addr;
use std::time::Duration;

/// Longest a relayed circuit may last (12 hours: a long listening session).
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(12 * 60 * 60);
/// Most bytes a relayed circuit may carry in each direction (8 GiB: many
/// albums of lossless audio).
pub const MAX_CIRCUIT_BYTES: u64 = 8 << 30;

/// The relay limits Firefly uses: libp2p's defaults with circuits allowed to
/// last [`MAX_CIRCUIT_DURATION`] and carry [`MAX_CIRCUIT_BYTES`], and room for
/// more circuits per peer (a node talks to every member through the relay).
pub fn relay_config() -> relay::Config {
    relay::Config {
        max_circuit_duration: MAX_CIRCUIT_DURATION,
        max_circuit_bytes: MAX_CIRCUIT_BYTES,
        max_circuits: 256,
        max_circuits_per_peer: 32,
        ..relay::Config::default()
    }
}

#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// Something the relay did, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// The relay listens on this address (with its `/p2p/<id>` suffix).
    Listening(Multiaddr),
    /// A node reserved a slot.
    Reserved(PeerId),
    /// A circuit between two nodes opened.
    CircuitOpened {
        /// The dialing node.
        src: PeerId,
        /// The node dialed.
        dst: PeerId,
    },
    /// A circuit closed.
    CircuitClosed {
        /// The dialing node.
        src: PeerId,
        /// The node dialed.
        dst: PeerId,
    },
}

/// A running relay server; drive it with [`RelayServer::run`].
pub struct RelayServer {
    swarm: Swarm<RelayBehaviour>,
}

impl RelayServer {
    /// Builds the relay and binds `listen` (default: TCP and QUIC on port 4001
    /// of every interface; TCP only with a swarm key, which makes it a relay
    /// for that private swarm only).
    pub fn new(
        keypair: Keypair,
        listen: Vec<Multiaddr>,
        swarm_key: Option<PreSharedKey>,
    ) -> Result<Self, BuildError> {
        let behaviour = |key: &Keypair| {
            let peer_id = key.public().to_peer_id();
            let mut relay = relay::Behaviour::new(peer_id, relay_config());
            // Serve reservations from the start rather than waiting for a
            // confirmed external address, which a LAN relay may never get.
            relay.set_status(Some(relay::Status::Enable));
            RelayBehaviour {
                relay,
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                        .with_agent_version(format!("firefly-relay/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::new(ping::Config::new()),
            }
        };
        let transport_error = |err: &dyn std::fmt::Display| BuildError::Transport(err.to_string());
        let private = swarm_key.is_some();
        let mut swarm = match swarm_key {
            None => SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .map_err(|e| transport_error(&e))?
                .with_quic()
                .with_behaviour(behaviour)
                .map_err(|e| BuildError::Behaviour(e.to_string()))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build(),
            Some(psk) => SwarmBuilder::with_existing_identity(keypair)
                .with_tokio()
                .with_other_transport(|key| {
                    private_tcp(key, psk, tcp::Config::default().nodelay(true))
                })
                .map_err(|e| transport_error(&e))?
                .with_behaviour(behaviour)
                .map_err(|e| BuildError::Behaviour(e.to_string()))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build(),
        };
        let listen = if listen.is_empty() {
            let any = Multiaddr::empty().with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED));
            let mut addrs = vec![any.clone().with(Protocol::Tcp(4001))];
            if !private {
                addrs.push(any.with(Protocol::Udp(4001)).with(Protocol::QuicV1));
            }
            addrs
        } else {
            listen
        };
        for addr in listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|err| BuildError::Listen {
                    addr,
                    reason: err.to_string(),
                })?;
        }
        Ok(Self { swarm })
    }

    /// The relay's peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Serves reservations and circuits forever, reporting what happens to
    /// `on_event`. Cancel it by dropping the future.
    pub async fn run(mut self, mut on_event: impl FnMut(RelayEvent)) {
        let local = self.peer_id();
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    // A relay exists to be reached at the addresses it
                    // listens on, and a client refuses a reservation that
                    // names none, so each one is an external address.
                    self.swarm.add_external_address(address.clone());
                    on_event(RelayEvent::Listening(address.with(Protocol::P2p(local))));
                }
                SwarmEvent::Behaviour(RelayBehaviourEvent::Identify(
                    identify::Event::Received { info, .. },
                )) => {
                    // How a client reached us is an address others can use
                    // too; reservations hand these out.
                    self.swarm.add_external_address(info.observed_addr);
                }
                SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(event)) => match event {
                    relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                        on_event(RelayEvent::Reserved(src_peer_id));
                    }
                    relay::Event::CircuitReqAccepted {
                        src_peer_id,
                        dst_peer_id,
                    } => on_event(RelayEvent::CircuitOpened {
                        src: src_peer_id,
                        dst: dst_peer_id,
                    }),
                    relay::Event::CircuitClosed {
                        src_peer_id,
                        dst_peer_id,
                        ..
                    } => on_event(RelayEvent::CircuitClosed {
                        src: src_peer_id,
                        dst: dst_peer_id,
                    }),
                    other => tracing::debug!(?other, "relay event"),
                },
                other => tracing::trace!(?other, "relay swarm event"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_raised_for_audio() {
        let config = relay_config();
        assert!(config.max_circuit_bytes >= 1 << 30);
        assert!(config.max_circuit_duration >= Duration::from_secs(3600));
        // The relay protocol sends the duration as u32 seconds.
        assert!(MAX_CIRCUIT_DURATION.as_secs() <= u64::from(u32::MAX));
    }
}
