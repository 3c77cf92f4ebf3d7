//! The request-response stream gate between real libp2p swarms on
//! 127.0.0.1 (TCP + noise + yamux): a node that asks one peer 64 things at
//! once over two connections gets 64 answers, none dropped at the stream
//! pool and none refused, and never has more than 8 open at the peer;
//! a peer that opens hundreds of streams at once (a plain libp2p
//! request-response with a large pool) has all but the gate's limit refused
//! and reported, with its peer id, for penalties.

#![allow(clippy::unwrap_used)]

use firefly_swarm::inbound::{CheckedCbor, Inbound};
use firefly_swarm::stream_gate::{self, Gate, Gated, INBOUND_PER_CONNECTION, OUTBOUND_PER_PEER};
use futures::StreamExt;
use libp2p::request_response::{self, Message, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use std::time::Duration;

type TestCodec = CheckedCbor<u32, u32>;
const PROTOCOL: &str = "/firefly-test/gate/1";

fn plain(max_streams: usize) -> request_response::Behaviour<TestCodec> {
    request_response::Behaviour::with_codec(
        TestCodec::new(64, 64),
        [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(20))
            .with_max_concurrent_streams(max_streams),
    )
}

fn gated() -> Gate<TestCodec> {
    Gate::new(request_response::Behaviour::with_codec(
        TestCodec::new(64, 64),
        [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
        stream_gate::config(Duration::from_secs(20)),
    ))
}

fn swarm<B: NetworkBehaviour>(behaviour: B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Listens on 127.0.0.1 and returns the address.
async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// What the serving side saw.
#[derive(Debug, Default)]
struct Served {
    requests: usize,
    /// Most requests received and not answered yet, at any time.
    most_open: usize,
    refused: u64,
    refused_peer: Option<PeerId>,
}

/// Drives a gated server that answers every request `delay` after it came
/// (so many are open at once), until `stop` resolves.
async fn serve(
    server: &mut Swarm<Gate<TestCodec>>,
    delay: Duration,
    answer: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Served {
    let mut served = Served::default();
    let mut answered = 0;
    let mut waiting = futures::stream::FuturesUnordered::new();
    let mut held = Vec::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return served,
            Some((channel, n)) = waiting.next(), if !waiting.is_empty() => {
                let _ = server.behaviour_mut().send_response(channel, n);
                answered += 1;
            }
            event = server.select_next_some() => match event {
                SwarmEvent::Behaviour(Gated::Event(request_response::Event::Message {
                    message: Message::Request { request, channel, .. },
                    ..
                })) => {
                    served.requests += 1;
                    served.most_open = served.most_open.max(served.requests - answered);
                    if let (Inbound::Request(n), true) = (request, answer) {
                        waiting.push(async move {
                            tokio::time::sleep(delay).await;
                            (channel, n)
                        });
                    } else {
                        // Held (not answered) until the end.
                        held.push(channel);
                    }
                }
                SwarmEvent::Behaviour(Gated::Refused(refused)) => {
                    served.refused += refused.streams;
                    served.refused_peer = Some(refused.peer);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn sixty_four_requests_at_once_to_one_peer_are_all_answered() {
    let mut server = swarm(gated());
    let addr = listen(&mut server).await;
    let server_id = *server.local_peer_id();
    let mut client = swarm(gated());
    // Two connections to the one peer: the limit holds over both.
    for _ in 0..2 {
        client
            .dial(
                libp2p::swarm::dial_opts::DialOpts::peer_id(server_id)
                    .addresses(vec![addr.clone()])
                    .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                    .build(),
            )
            .unwrap();
    }

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = async {
        serve(&mut server, Duration::from_millis(30), true, async {
            let _ = rx.await;
        })
        .await
    };
    let asking = async {
        // Wait for both connections, then ask 64 things at once.
        let mut connections = 0;
        while connections < 2 {
            if let SwarmEvent::ConnectionEstablished { .. } = client.select_next_some().await {
                connections += 1;
            }
        }
        for n in 0..64u32 {
            client
                .behaviour_mut()
                .send_request(&server_id, Inbound::Request(n));
        }
        let (mut answers, mut failures) = (Vec::new(), Vec::new());
        tokio::time::timeout(Duration::from_secs(30), async {
            while answers.len() + failures.len() < 64 {
                match client.select_next_some().await {
                    SwarmEvent::Behaviour(Gated::Event(request_response::Event::Message {
                        message: Message::Response { response, .. },
                        ..
                    })) => answers.push(response),
                    SwarmEvent::Behaviour(Gated::Event(
                        request_response::Event::OutboundFailure { error, .. },
                    )) => failures.push(error.to_string()),
                    _ => {}
                }
            }
        })
        .await
        .unwrap();
        let _ = tx.send(());
        (answers, failures)
    };
    let (served, (mut answers, failures)) = tokio::join!(serving, asking);
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    answers.sort_unstable();
    assert_eq!(answers, (0..64).collect::<Vec<_>>());
    assert_eq!(served.requests, 64);
    assert_eq!(served.refused, 0, "an honest peer's streams were refused");
    assert!(
        served.most_open <= OUTBOUND_PER_PEER,
        "{} requests open at once at the peer",
        served.most_open
    );
}

#[tokio::test]
async fn a_flood_of_streams_is_refused_past_the_limit_and_reported() {
    let mut server = swarm(gated());
    let addr = listen(&mut server).await;
    let server_id = *server.local_peer_id();
    // A plain request-response with room for the whole flood.
    let mut flooder = swarm(plain(4096));
    let flooder_id = *flooder.local_peer_id();
    flooder.dial(addr).unwrap();

    const FLOOD: usize = 500;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = async {
        // Nothing answered, so every accepted stream stays open.
        serve(&mut server, Duration::ZERO, false, async {
            let _ = rx.await;
        })
        .await
    };
    let flooding = async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = flooder.select_next_some().await {
                break;
            }
        }
        for n in 0..FLOOD as u32 {
            flooder
                .behaviour_mut()
                .send_request(&server_id, Inbound::Request(n));
        }
        let mut failed = 0;
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while failed < FLOOD - INBOUND_PER_CONNECTION {
                if let SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) =
                    flooder.select_next_some().await
                {
                    failed += 1;
                }
            }
        })
        .await;
        // Let the last reports reach the server's behaviour.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                flooder.select_next_some().await;
            }
        })
        .await;
        let _ = tx.send(());
        failed
    };
    let (served, failed) = tokio::join!(serving, flooding);
    assert_eq!(served.requests, INBOUND_PER_CONNECTION, "{served:?}");
    assert_eq!(
        served.refused,
        (FLOOD - INBOUND_PER_CONNECTION) as u64,
        "{served:?}, {failed} failed at the flooder"
    );
    assert_eq!(served.refused_peer, Some(flooder_id));
    assert_eq!(failed, FLOOD - INBOUND_PER_CONNECTION);
}
