//! Time exchange, private swarms, relay bridging and hostile peers, over real
//! 127.0.0.1 sockets.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firefly_clock::SwarmMicros;
use firefly_swarm::Event;
use firefly_swarm::relay_server::{RelayEvent, RelayServer};
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, SwarmBuilder, gossipsub, noise, tcp, yamux};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_clocks_of_two_members_converge() {
    let wall = SwarmMicros(1_700_000_000_000_000);
    let mut config = loopback_config("a");
    config.initial_swarm_time(wall);
    let a = start(config).await;
    let mut config = loopback_config("b");
    // B starts 250 ms ahead of A on the swarm timeline.
    config.initial_swarm_time(wall + 250_000);
    let b = start(config).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client
                .connected_peers()
                .await
                .unwrap()
                .contains(&b.peer_id())
        })
        .await
    );

    // A raw exchange sees B's swarm clock about 250 ms ahead of A's start.
    let sample = a.client.time_sample(b.peer_id()).await.unwrap();
    let delay = sample.delay_micros();
    assert!((0..100_000).contains(&delay), "delay {delay}");

    // Both clocks sync and end up on one timeline.
    assert!(
        wait_until(Duration::from_secs(15), || async {
            let ca = a.client.clock().await.unwrap();
            let cb = b.client.clock().await.unwrap();
            ca.synced && cb.synced && (ca.now - cb.now).abs() < 5_000
        })
        .await,
        "clocks did not converge: {:?} / {:?}",
        a.client.clock().await.unwrap(),
        b.client.clock().await.unwrap()
    );
    let ca = a.client.clock().await.unwrap();
    assert!(ca.stats.accepted > 0);
}

fn psk(byte: u8) -> PreSharedKey {
    PreSharedKey::new([byte; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_swarm_key_cannot_connect() {
    let mut config = loopback_config("a");
    config.swarm_key(psk(1));
    let a = start(config).await;
    let mut config = loopback_config("b");
    config.swarm_key(psk(1));
    let b = start(config).await;
    let mut config = loopback_config("stranger");
    config.swarm_key(psk(2));
    let stranger = start(config).await;
    let open = start(loopback_config("open")).await;

    assert_eq!(b.client.dial(a.dial_addr()).await.unwrap(), a.peer_id());
    assert!(stranger.client.dial(a.dial_addr()).await.is_err());
    assert!(open.client.dial(a.dial_addr()).await.is_err());
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(5)).await);
    // Long enough for several heartbeats: the stranger never becomes a member.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(1)).await);
    assert!(stranger.client.members().await.unwrap().is_empty());
}

/// A relay (private when `key` is given) on 127.0.0.1: its task and address.
async fn start_relay(
    key: Option<PreSharedKey>,
) -> (tokio::task::JoinHandle<()>, libp2p::Multiaddr) {
    let relay = RelayServer::new(
        Keypair::generate_ed25519(),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        key,
    )
    .unwrap();
    let (tx, mut relay_events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(relay.run(move |event| {
        let _ = tx.send(event);
    }));
    let addr = loop {
        if let Some(RelayEvent::Listening(addr)) = relay_events.recv().await {
            break addr;
        }
    };
    (task, addr)
}

/// A reserves a slot on the relay, B dials A through it, both become members.
async fn meet_through_relay(key: Option<PreSharedKey>) {
    let (relay_task, relay_addr) = start_relay(key).await;
    let relay_id = match relay_addr.iter().last() {
        Some(Protocol::P2p(peer)) => peer,
        other => panic!("relay address ends in {other:?}"),
    };
    let mut config = loopback_config("behind-nat");
    config.relay(relay_addr.clone());
    if let Some(key) = key {
        config.swarm_key(key);
    }
    let mut a = start(config).await;
    let reserved = next_matching(&mut a.events, Duration::from_secs(10), |e| match e {
        Event::RelayReserved { relay } => Some(*relay),
        _ => None,
    })
    .await;
    assert_eq!(reserved, Some(relay_id));

    let mut config = loopback_config("elsewhere");
    if let Some(key) = key {
        config.swarm_key(key);
    }
    let b = start(config).await;
    let circuit = relay_addr
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(a.peer_id()));
    assert_eq!(b.client.dial(circuit.clone()).await.unwrap(), a.peer_id());
    assert!(wait_members(&b.client, &[a.peer_id()], Duration::from_secs(10)).await);
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(10)).await);
    // Both ends know the link is relayed.
    let links = b.client.links().await.unwrap();
    assert!(
        links.iter().any(|l| l.peer == a.peer_id() && l.relayed),
        "{links:?}"
    );
    let links = a.client.links().await.unwrap();
    assert!(
        links.iter().any(|l| l.peer == b.peer_id() && l.relayed),
        "{links:?}"
    );
    // Request-response runs over the relayed connection too.
    let sample = b.client.time_sample(a.peer_id()).await.unwrap();
    assert!(sample.delay_micros() >= 0);

    if key.is_some() {
        // A node without the swarm's key cannot even reach the relay.
        let stranger = start(loopback_config("stranger")).await;
        assert!(stranger.client.dial(circuit.clone()).await.is_err());
        let mut config = loopback_config("other-swarm");
        config.swarm_key(psk(99));
        let other = start(config).await;
        assert!(other.client.dial(circuit).await.is_err());
    }
    relay_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_each_other_through_a_relay() {
    meet_through_relay(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_swarm_meets_through_its_own_relay() {
    meet_through_relay(Some(psk(7))).await;
}

fn raw_swarm<B: libp2p::swarm::NetworkBehaviour>(
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_heartbeats_are_rejected_counted_and_the_sender_banned() {
    let a = start(loopback_config("a")).await;
    let b = start(loopback_config("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();

    let mut attacker = raw_swarm(|key| {
        let config = gossipsub::ConfigBuilder::default().build().unwrap();
        gossipsub::Behaviour::<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
            .unwrap()
    });
    let topic = gossipsub::IdentTopic::new("firefly/heartbeat/1");
    attacker.behaviour_mut().subscribe(&topic).unwrap();
    let attacker_id = *attacker.local_peer_id();
    attacker.dial(a.dial_addr()).unwrap();
    let attack = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut sent = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let payload = if sent.is_multiple_of(2) { vec![0xff; 64] } else { vec![0xa1, 0x01, 0x02] };
                    if attacker.behaviour_mut().publish(topic.clone(), payload).is_ok() {
                        sent += 1;
                    }
                }
                _ = attacker.select_next_some() => {}
            }
        }
    });
    assert!(
        wait_until(Duration::from_secs(10), || async {
            a.client.stats().await.unwrap().gossip_rejected >= 5
        })
        .await
    );
    // Enough strikes ban it: disconnected and kept out while the attack goes on.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            a.client.stats().await.unwrap().peers_banned == 1
                && !a
                    .client
                    .connected_peers()
                    .await
                    .unwrap()
                    .contains(&attacker_id)
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !a.client
            .connected_peers()
            .await
            .unwrap()
            .contains(&attacker_id)
    );
    attack.abort();
    // The node still works and the attacker is not a member.
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(3)).await);
}

/// A raw libp2p node speaking only the time stream protocol, driven in the
/// background; returns its id, its control and the driver task.
fn raw_time_node(
    dial: libp2p::Multiaddr,
) -> (
    libp2p::PeerId,
    libp2p_stream::Control,
    tokio::task::JoinHandle<()>,
) {
    let mut node = raw_swarm(|_| libp2p_stream::Behaviour::new());
    let id = *node.local_peer_id();
    let control = node.behaviour().new_control();
    node.dial(dial).unwrap();
    let driver = tokio::spawn(async move {
        loop {
            node.select_next_some().await;
        }
    });
    (id, control, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_time_frames_close_the_stream_and_are_survived() {
    use firefly_swarm::time_exchange::{TIME_PROTOCOL, TimeRequest, TimeResponse};
    use firefly_swarm::time_stream::{read_frame, write_frame};
    use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
    let a = start(loopback_config("a")).await;
    let a_id = a.peer_id();
    let (_, mut control, driver) = raw_time_node(a.dial_addr());
    // A well-formed request on a raw stream is answered.
    let mut stream = within(
        Duration::from_secs(10),
        control.open_stream(a_id, TIME_PROTOCOL),
    )
    .await
    .unwrap();
    write_frame(&mut stream, &TimeRequest { t1: 1, key: None })
        .await
        .unwrap();
    let answer: TimeResponse = within(Duration::from_secs(5), read_frame(&mut stream))
        .await
        .unwrap();
    assert!(answer.t3 >= answer.t2);
    // Then garbage: a frame announcing 10 kB on the same stream, then a
    // frame that is not CBOR on a new stream. Each closes its stream.
    for (i, garbage) in [vec![0x27, 0x10, 1, 2, 3], vec![0, 3, 0xff, 0x00, 0x13]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            stream = within(
                Duration::from_secs(10),
                control.open_stream(a_id, TIME_PROTOCOL),
            )
            .await
            .unwrap();
        }
        stream.write_all(&garbage).await.unwrap();
        stream.flush().await.unwrap();
        let mut rest = Vec::new();
        let read = within(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the stream must be closed without an answer: {read:?} {rest:?}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client.stats().await.unwrap().time_failures >= 2
        })
        .await
    );
    // Still serving well-formed exchanges.
    let b = start(loopback_config("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(b.client.time_sample(a_id).await.is_ok());
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_the_time_exchange_times_out() {
    use firefly_swarm::time_exchange::TIME_PROTOCOL;
    let a = start(loopback_config("a")).await;
    // Takes time streams and never answers on them.
    let (staller_id, mut control, driver) = raw_time_node(a.dial_addr());
    let mut incoming = control.accept(TIME_PROTOCOL).unwrap();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let stall = tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            // Keep the stream open, unanswered.
            let _ = held_tx.send(stream);
        }
    });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client
                .connected_peers()
                .await
                .unwrap()
                .contains(&staller_id)
        })
        .await
    );
    let asked = std::time::Instant::now();
    let result = within(Duration::from_secs(10), a.client.time_sample(staller_id)).await;
    assert!(result.is_err(), "a stalled exchange must fail: {result:?}");
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");
    assert!(held_rx.recv().await.is_some());
    assert!(a.client.stats().await.unwrap().time_failures >= 1);
    stall.abort();
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_move_the_swarm_clock() {
    let a = start(loopback_config("a")).await;
    // B is a real node connected to A; until its heartbeat arrives it is
    // not a member, and a sample from a non-member is refused by the clock.
    let mut config = loopback_config("b");
    config.heartbeat_interval(Duration::from_secs(3600));
    let b = start(config).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client
                .connected_peers()
                .await
                .unwrap()
                .contains(&b.peer_id())
        })
        .await
    );
    // B's first heartbeat went out at start, before any connection, and the
    // next is an hour away: B is not a member of A.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.client.members().await.unwrap().is_empty());
    a.client.time_sample(b.peer_id()).await.unwrap();
    let clock = a.client.clock().await.unwrap();
    assert_eq!(clock.stats.accepted, 0);
    assert!(clock.stats.rejected >= 1);
}

/// A raw peer with gossipsub (to heartbeat) and the control protocol.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct ControlFlooder {
    gossipsub: gossipsub::Behaviour,
    control: request_response::Behaviour<firefly_swarm::control::ControlCodec>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_requests_need_membership_and_a_member_flooding_them_is_banned() {
    use firefly_swarm::ControlRequest;
    use firefly_swarm::inbound::Inbound;
    use firefly_swarm::membership::{HEARTBEAT_TOPIC, HEARTBEAT_VERSION, Heartbeat};
    let a = start(loopback_config("a")).await;
    let mut raw = raw_swarm(|key| {
        let config = gossipsub::ConfigBuilder::default().build().unwrap();
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
                .unwrap();
        gossipsub
            .subscribe(&gossipsub::IdentTopic::new(HEARTBEAT_TOPIC))
            .unwrap();
        ControlFlooder {
            gossipsub,
            control: request_response::Behaviour::with_codec(
                firefly_swarm::control::ControlCodec::new(64 * 1024, 64 * 1024),
                [(
                    firefly_swarm::control::CONTROL_PROTOCOL,
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_max_concurrent_streams(1024),
            ),
        }
    });
    let me = *raw.local_peer_id();
    raw.dial(a.dial_addr()).unwrap();
    let a_id = a.peer_id();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (send_tx, mut send) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let driver = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    let heartbeat = Heartbeat {
                        version: HEARTBEAT_VERSION,
                        name: "flooder".into(),
                        uptime_ms: started.elapsed().as_millis() as u64,
                        status: Default::default(),
                        leaving: false,
                    };
                    let _ = raw.behaviour_mut().gossipsub.publish(
                        gossipsub::IdentTopic::new(HEARTBEAT_TOPIC),
                        heartbeat.encode().unwrap(),
                    );
                }
                Some(n) = send.recv() => {
                    for _ in 0..n {
                        raw.behaviour_mut()
                            .control
                            .send_request(&a_id, Inbound::Request(ControlRequest::Pause));
                    }
                }
                event = raw.select_next_some() => match event {
                    SwarmEvent::Behaviour(ControlFlooderEvent::Control(
                        request_response::Event::Message {
                            message: request_response::Message::Response { response, .. },
                            ..
                        },
                    )) => {
                        let _ = answers_tx.send(Some(response));
                    }
                    SwarmEvent::Behaviour(ControlFlooderEvent::Control(
                        request_response::Event::OutboundFailure { .. },
                    )) => {
                        let _ = answers_tx.send(None);
                    }
                    _ => {}
                },
            }
        }
    });

    // Not a member yet: refused, not penalized.
    send_tx.send(1).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), answers.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            &first,
            Some(firefly_swarm::ControlResponse::Refused(
                firefly_swarm::Refusal::NotAMember
            ))
        ),
        "{first:?}"
    );
    assert_eq!(a.client.stats().await.unwrap().strikes, 0);

    // A member: requests are parked for the node (nobody answers here) up to
    // the per-peer bound; a flood past it is penalized until the peer is banned.
    assert!(wait_members(&a.client, &[me], Duration::from_secs(10)).await);
    send_tx.send(100).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            a.client.stats().await.unwrap().peers_banned == 1
        })
        .await,
        "{:?}",
        a.client.stats().await.unwrap()
    );
    driver.abort();
}
