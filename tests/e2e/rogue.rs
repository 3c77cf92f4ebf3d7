//! A rogue peer for the adversary tests, built on libp2p directly: its own
//! swarm (TCP + noise + yamux, signed gossipsub, request-response), not the
//! node's swarm crate. It speaks Firefly's wire formats where an attack needs
//! a well-formed message (it encodes them with the public wire types, as any
//! implementation of the protocol would) and sends raw bytes where it needs
//! a malformed one.

use firefly_swarm::control::{CONTROL_PROTOCOL, ControlCodec, ControlRequest, ControlResponse};
use firefly_swarm::inbound::Inbound;
use firefly_swarm::membership::{HEARTBEAT_TOPIC, HEARTBEAT_VERSION, Heartbeat};
use firefly_swarm::{NodeStatus, PeerId, RoleView};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, Swarm};
use std::io;
use std::time::{Duration, Instant};

/// A codec that sends and receives raw bytes (for malformed requests).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await
    }
}

#[derive(NetworkBehaviour)]
pub(crate) struct RogueBehaviour {
    gossipsub: gossipsub::Behaviour,
    control: request_response::Behaviour<ControlCodec>,
    raw_control: request_response::Behaviour<RawCodec>,
    raw_library: request_response::Behaviour<RawCodec>,
    raw_chunks: request_response::Behaviour<RawCodec>,
    raw_manifests: request_response::Behaviour<RawCodec>,
    raw_covers: request_response::Behaviour<RawCodec>,
}

/// A raw request-response behaviour speaking `protocol`.
fn raw_behaviour(protocol: &'static str) -> request_response::Behaviour<RawCodec> {
    request_response::Behaviour::with_codec(
        RawCodec,
        [(StreamProtocol::new(protocol), ProtocolSupport::Outbound)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(5))
            .with_max_concurrent_streams(4096),
    )
}

/// The rogue peer; see the module doc.
pub(crate) struct Rogue {
    swarm: Swarm<RogueBehaviour>,
    started: Instant,
    /// What its heartbeats say, when it heartbeats (`None`: it does not).
    pub(crate) heartbeat: Option<(String, RoleView)>,
    next_beat: Instant,
    /// Answers to control requests, in order.
    pub(crate) control_answers: Vec<Result<ControlResponse, String>>,
    /// Failures of raw requests (the node dropped the stream), in order.
    pub(crate) raw_failures: usize,
    /// Connections the node closed or refused.
    pub(crate) closed: usize,
}

impl Rogue {
    /// A rogue with a fresh identity, dialing `node`.
    pub(crate) fn dial(node: &str) -> Rogue {
        Self::dial_as(node, None)
    }

    /// A rogue whose gossip claims to come from `victim` and carries no
    /// signature (a forgery gossipsub's strict validation refuses).
    pub(crate) fn dial_forging(node: &str, victim: PeerId) -> Rogue {
        Self::dial_as(node, Some(victim))
    }

    fn dial_as(node: &str, forge_as: Option<PeerId>) -> Rogue {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let (authenticity, validation) = match forge_as {
                    None => (
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossipsub::ValidationMode::Strict,
                    ),
                    Some(victim) => (
                        gossipsub::MessageAuthenticity::Author(victim),
                        gossipsub::ValidationMode::Permissive,
                    ),
                };
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(validation)
                    // Room to send what the node must refuse.
                    .max_transmit_size(1 << 20)
                    .build()
                    .expect("gossipsub config");
                let mut gossipsub =
                    gossipsub::Behaviour::new(authenticity, config).expect("gossipsub");
                for topic in [HEARTBEAT_TOPIC, "firefly/playback/1", "firefly/library/1"] {
                    gossipsub
                        .subscribe(&IdentTopic::new(topic))
                        .expect("subscribe");
                }
                let control = request_response::Behaviour::with_codec(
                    ControlCodec::new(64 * 1024, 64 * 1024),
                    [(CONTROL_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(5)),
                );
                RogueBehaviour {
                    gossipsub,
                    control,
                    raw_control: raw_behaviour("/firefly/control/1"),
                    raw_library: raw_behaviour("/firefly/library/1"),
                    raw_chunks: raw_behaviour("/firefly/chunks/1"),
                    raw_manifests: raw_behaviour("/firefly/manifest/1"),
                    raw_covers: raw_behaviour("/firefly/cover/1"),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let addr: Multiaddr = node.parse().expect("a node address");
        swarm.dial(addr).expect("dial");
        Rogue {
            swarm,
            started: Instant::now(),
            heartbeat: None,
            next_beat: Instant::now(),
            control_answers: Vec::new(),
            raw_failures: 0,
            closed: 0,
        }
    }

    pub(crate) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Drives the swarm for `time`, heartbeating if it does.
    pub(crate) async fn run_for(&mut self, time: Duration) {
        let until = tokio::time::Instant::now() + time;
        loop {
            if Instant::now() >= self.next_beat {
                self.next_beat = Instant::now() + Duration::from_secs(1);
                if let Some((name, roles)) = self.heartbeat.clone() {
                    let beat = Heartbeat {
                        version: HEARTBEAT_VERSION,
                        name,
                        uptime_ms: self.started.elapsed().as_millis() as u64,
                        status: NodeStatus {
                            roles,
                            ..NodeStatus::default()
                        },
                        leaving: false,
                    };
                    self.publish(HEARTBEAT_TOPIC, beat.encode().expect("encode"));
                }
            }
            let step = tokio::time::sleep_until(
                until.min(tokio::time::Instant::now() + Duration::from_millis(100)),
            );
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                () = step => {
                    if tokio::time::Instant::now() >= until {
                        return;
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<RogueBehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(RogueBehaviourEvent::Control(event)) => match event {
                request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                } => self.control_answers.push(Ok(response)),
                request_response::Event::OutboundFailure { error, .. } => {
                    self.control_answers.push(Err(error.to_string()));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(
                RogueBehaviourEvent::RawControl(request_response::Event::OutboundFailure {
                    ..
                })
                | RogueBehaviourEvent::RawLibrary(request_response::Event::OutboundFailure {
                    ..
                })
                | RogueBehaviourEvent::RawChunks(request_response::Event::OutboundFailure { .. })
                | RogueBehaviourEvent::RawManifests(request_response::Event::OutboundFailure {
                    ..
                })
                | RogueBehaviourEvent::RawCovers(request_response::Event::OutboundFailure { .. }),
            ) => self.raw_failures += 1,
            SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                self.closed += 1;
            }
            _ => {}
        }
    }

    /// Publishes `bytes` on `topic`, signed by the rogue (an error, e.g. no
    /// peer yet, is ignored: the tests look at the node).
    pub(crate) fn publish(&mut self, topic: &str, bytes: Vec<u8>) {
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(topic), bytes);
    }

    /// Sends a well-formed control request to `peer`.
    pub(crate) fn control(&mut self, peer: PeerId, request: ControlRequest) {
        self.swarm
            .behaviour_mut()
            .control
            .send_request(&peer, Inbound::Request(request));
    }

    /// Sends raw `bytes` as a request to `peer` on control (0), library (1),
    /// chunks (2, and any other `protocol`), manifests (3) or covers (4).
    pub(crate) fn raw(&mut self, peer: PeerId, protocol: usize, bytes: Vec<u8>) {
        let behaviour = self.swarm.behaviour_mut();
        let raw = match protocol {
            0 => &mut behaviour.raw_control,
            1 => &mut behaviour.raw_library,
            3 => &mut behaviour.raw_manifests,
            4 => &mut behaviour.raw_covers,
            _ => &mut behaviour.raw_chunks,
        };
        raw.send_request(&peer, bytes);
    }

    /// Whether it is connected to `peer`.
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.swarm.is_connected(peer)
    }
}
