//! The node's one [`NetworkBehaviour`] and the transport stack under it.
//!
//! [`Behaviour`] composes the standard libp2p behaviours a Firefly node runs:
//! a block list (banned peers, see [`crate::penalty`]) and connection
//! limits, gossipsub (heartbeats and other gossip), mDNS (LAN discovery), identify and
//! ping (on every connection), the circuit-relay v2 client and DCUtR (bridging
//! networks), and one request-response behaviour per Firefly protocol, each
//! behind a [`Gate`] that bounds its streams per connection. Field
//! names become the variants of the generated `BehaviourEvent`, which the
//! event loop hands to each protocol's own module.
//!
//! [`build_swarm`] puts it on TCP + noise + yamux and QUIC, or, with a swarm
//! key, on pnet-wrapped TCP only. This module holds no protocol logic.

use crate::config::Config;
use crate::stream_gate::Gate;
use crate::transfer;
use crate::wire::MAX_GOSSIP_BYTES;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Swarm, SwarmBuilder, Transport, allow_block_list, connection_limits, dcutr, gossipsub,
    identify, mdns, noise, ping, relay, tcp, yamux,
};
use std::time::Duration;

/// The identify protocol version Firefly nodes announce.
pub const IDENTIFY_PROTOCOL: &str = "/firefly/id/1";

/// Most connections kept to one peer (direct and relayed, both directions).
const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Most connections kept in all.
const MAX_CONNECTIONS: u32 = 512;
/// Most incoming connections still in their handshake.
const MAX_PENDING_INCOMING: u32 = 64;

/// How long a control request may take (a play waits for every node's prepare).
const CONTROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a node's swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The transport stack could not be set up.
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    /// A behaviour rejected its configuration.
    #[error("cannot set up the network behaviour: {0}")]
    Behaviour(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// Why.
        reason: String,
    },
    /// The node's name is too long or has control characters.
    #[error("node name must be at most {max} bytes without control characters")]
    BadName {
        /// The longest name accepted, in bytes.
        max: usize,
    },
    /// The relay address does not name the relay's peer id.
    #[error("relay address {0} must end in /p2p/<relay peer id>")]
    RelayWithoutPeerId(libp2p::Multiaddr),
}

/// Every behaviour a Firefly node runs, composed into one.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) time: libp2p_stream::Behaviour,
    pub(crate) control: Gate<crate::control::ControlCodec>,
    pub(crate) chunks: Gate<transfer::codec::ChunksCodec>,
    pub(crate) manifests: Gate<transfer::codec::ManifestCodec>,
    pub(crate) library: Gate<transfer::codec::LibraryCodec>,
    pub(crate) covers: Gate<crate::transfer::cover::CoverCodec>,
}

impl Behaviour {
    fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &Config,
    ) -> Result<Self, BuildError> {
        let peer_id = key.public().to_peer_id();
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            // Room past the limit so that an oversized message reaches the
            // topic's validator, is rejected there and its sender penalized
            // (beyond the frame limit gossipsub drops it unseen).
            .max_transmit_size(MAX_GOSSIP_BYTES * 4)
            .build()
            .map_err(|err| BuildError::Behaviour(err.to_string()))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|err| BuildError::Behaviour(err.to_string()))?;
        // Scores invalid and forged messages only (see `gossip_score`).
        gossipsub
            .with_peer_score(
                crate::gossip_score::params(),
                crate::gossip_score::thresholds(),
            )
            .map_err(BuildError::Behaviour)?;
        let mdns = if config.mdns {
            let mdns_config = mdns::Config {
                query_interval: config.mdns_query_interval,
                ..mdns::Config::default()
            };
            Some(
                mdns::tokio::Behaviour::new(mdns_config, peer_id)
                    .map_err(|err| BuildError::Behaviour(format!("mdns: {err}")))?,
            )
        } else {
            None
        };
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(format!("firefly/{}", env!("CARGO_PKG_VERSION"))),
        );
        // The time exchange runs on long-lived streams (see `time_stream`).
        let time = libp2p_stream::Behaviour::new();
        let control_codec = crate::control::ControlCodec::new(
            crate::control::MAX_CONTROL_BYTES,
            crate::control::MAX_CONTROL_BYTES,
        );
        let control = request_response::Behaviour::with_codec(
            control_codec,
            [(crate::control::CONTROL_PROTOCOL, ProtocolSupport::Full)],
            crate::stream_gate::config(CONTROL_REQUEST_TIMEOUT),
        );
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_established(Some(MAX_CONNECTIONS))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING));
        Ok(Self {
            control: Gate::new(control),
            blocked: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(limits),
            gossipsub,
            mdns: Toggle::from(mdns),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            time,
            chunks: Gate::new(transfer::codec::chunks_behaviour()),
            manifests: Gate::new(transfer::codec::manifest_behaviour()),
            library: Gate::new(transfer::codec::library_behaviour()),
            covers: Gate::new(crate::transfer::cover::cover_behaviour()),
        })
    }
}

fn transport_error(err: impl std::fmt::Display) -> BuildError {
    BuildError::Transport(err.to_string())
}

/// Builds the node's swarm on the transports `config` asks for.
pub(crate) fn build_swarm(config: &Config) -> Result<Swarm<Behaviour>, BuildError> {
    let idle = config.idle_connection_timeout;
    let behaviour = |key: &Keypair, relay_client| {
        Behaviour::new(key, relay_client, config)
            .map_err(|err| -> Box<dyn std::error::Error + Send + Sync> { Box::new(err) })
    };
    let tcp_config = || tcp::Config::default().nodelay(true);
    let swarm = match config.swarm_key {
        None => SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(tcp_config(), noise::Config::new, yamux::Config::default)
            .map_err(transport_error)?
            .with_quic()
            .with_dns()
            .map_err(transport_error)?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(transport_error)?
            .with_behaviour(behaviour)
            .map_err(|err| BuildError::Behaviour(err.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        Some(psk) => SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_other_transport(|key| private_tcp(key, psk, tcp_config()))
            .map_err(transport_error)?
            .with_dns()
            .map_err(transport_error)?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(transport_error)?
            .with_behaviour(behaviour)
            .map_err(|err| BuildError::Behaviour(err.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

/// The transport a private swarm uses.
pub(crate) type PrivateTransport =
    libp2p::core::transport::Boxed<(libp2p::PeerId, libp2p::core::muxing::StreamMuxerBox)>;

/// TCP wrapped in pnet, then noise and yamux: a peer without `psk` cannot
/// get past the first bytes.
pub(crate) fn private_tcp(
    key: &Keypair,
    psk: PreSharedKey,
    tcp_config: tcp::Config,
) -> Result<PrivateTransport, Box<dyn std::error::Error + Send + Sync>> {
    let noise = noise::Config::new(key)?;
    Ok(tcp::tokio::Transport::new(tcp_config)
        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer)))
        .boxed())
}
