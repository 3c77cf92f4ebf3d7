//! The time exchange's datagram path between real nodes on 127.0.0.1: two
//! nodes time each other over UDP once their keys are exchanged on the
//! stream; a node whose UDP port is taken falls back to the stream; forged
//! datagrams are counted and never move the clock.

#![allow(clippy::unwrap_used)]

mod common;

use common::{loopback_config, start, wait_until, within};
use firefly_swarm::{Config, Event, Multiaddr};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The 127.0.0.1 TCP port a node listens on (its time socket's too).
fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP listen address")
}

/// Waits until `a` and `b` each took 5 time samples over datagrams, and
/// checks that nothing honest was refused (an answer later than the 1 s
/// timeout would be: a loaded machine is allowed one or two).
async fn both_time_over_datagrams(a: &common::Node, b: &common::Node) {
    let both = wait_until(Duration::from_secs(20), || async {
        let (sa, sb) = (
            a.client.stats().await.unwrap(),
            b.client.stats().await.unwrap(),
        );
        sa.time_datagram_samples >= 5 && sb.time_datagram_samples >= 5
    })
    .await;
    let (sa, sb) = (
        a.client.stats().await.unwrap(),
        b.client.stats().await.unwrap(),
    );
    assert!(both, "not both ways over datagrams: a {sa:?}, b {sb:?}");
    assert!(
        sa.time_datagrams_refused + sb.time_datagrams_refused <= 2,
        "a {sa:?}, b {sb:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_time_each_other_over_datagrams() {
    let a = start(loopback_config("a")).await;
    let b = start(loopback_config("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    // b dialed a: it probes a's time socket at a's TCP port number; a
    // learns b's address from b's requests and probes back.
    both_time_over_datagrams(&a, &b).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            a.client.clock().await.unwrap().synced && b.client.clock().await.unwrap().synced
        })
        .await
    );
    // One process, one clock: the estimate is near zero.
    let status = b.client.clock().await.unwrap();
    let (_, info) = status
        .peers
        .iter()
        .find(|(p, _)| *p == a.peer_id())
        .expect("b knows a's clock");
    let offset = info.offset_micros.expect("an offset");
    assert!(offset.abs() < 2_000.0, "offset {offset} µs");
    // A client's probe takes the same path.
    let before = b.client.stats().await.unwrap().time_datagram_samples;
    let sample = within(Duration::from_secs(5), b.client.time_sample(a.peer_id()))
        .await
        .unwrap();
    assert!(sample.delay_micros() >= 0);
    assert!(b.client.stats().await.unwrap().time_datagram_samples > before);
}

/// Starts a node listening on TCP (for its time socket's port) and QUIC;
/// returns it with its QUIC address to dial.
async fn start_with_quic(name: &str) -> (common::Node, Multiaddr) {
    let mut config = loopback_config(name);
    config.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    let (client, mut events, event_loop) = firefly_swarm::new(config).unwrap();
    let task = tokio::spawn(event_loop.run());
    let (mut tcp, mut quic) = (None, None);
    within(Duration::from_secs(5), async {
        while tcp.is_none() || quic.is_none() {
            if let Some(Event::Listening { addr }) = events.recv().await {
                if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
                    quic = Some(addr);
                } else {
                    tcp = Some(addr);
                }
            }
        }
    })
    .await;
    let node = common::Node {
        client,
        events,
        task,
        addr: tcp.unwrap(),
    };
    let quic = quic.unwrap().with(Protocol::P2p(node.peer_id()));
    (node, quic)
}

/// Nodes that meet over QUIC (as mDNS finds them on a LAN) have no dialed
/// TCP port to aim at: the stream answers announce the time socket's port,
/// and both time each other over datagrams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connected_over_quic_time_each_other_over_datagrams() {
    let (a, a_quic) = start_with_quic("a").await;
    let (b, _) = start_with_quic("b").await;
    b.client.dial(a_quic).await.unwrap();
    both_time_over_datagrams(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_udp_port_is_taken_times_over_the_stream() {
    // Hold a UDP port whose TCP twin is free, and make a listen there.
    let (squatter, port) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            break (udp, port);
        }
    };
    squatter.set_nonblocking(true).unwrap();
    let mut config = Config::new(Keypair::generate_ed25519(), "a");
    config
        .mdns(false)
        .listen(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap());
    let a = start(config).await;
    let b = start(loopback_config("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            a.client.clock().await.unwrap().synced && b.client.clock().await.unwrap().synced
        })
        .await,
        "the stream carries the time"
    );
    for _ in 0..5 {
        within(Duration::from_secs(5), b.client.time_sample(a.peer_id()))
            .await
            .unwrap();
    }
    let (sa, sb) = (
        a.client.stats().await.unwrap(),
        b.client.stats().await.unwrap(),
    );
    assert_eq!(
        (sa.time_datagram_samples, sb.time_datagram_samples),
        (0, 0),
        "a has no time socket, so nobody sends a datagram"
    );
    let mut buf = [0u8; 512];
    assert!(
        squatter.recv_from(&mut buf).is_err(),
        "the port's owner got a datagram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_datagrams_are_counted_and_never_move_the_clock() {
    let mut a = start(loopback_config("a")).await;
    let b = start(loopback_config("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            a.client.clock().await.unwrap().synced
                && a.client.stats().await.unwrap().time_datagram_samples >= 5
        })
        .await
    );
    // The acquisition may have stepped; what counts is what follows.
    while a.events.try_recv().is_ok() {}
    let target: SocketAddr = ([127, 0, 0, 1], tcp_port(&a.addr)).into();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Junk, an oversized datagram, and well-formed headers under made-up
    // keys: requests (kind 1) and answers (kind 2) with absurd bodies.
    let mut sent = 0u64;
    for i in 0..600u32 {
        let mut d = b"FFT1".to_vec();
        d.push(1 + (i % 2) as u8);
        d.extend_from_slice(&i.to_be_bytes().repeat(4));
        d.extend_from_slice(&[0xa1, 0x62, b't', b'1', 0x1b]);
        d.extend_from_slice(&i64::MAX.to_be_bytes());
        d.extend_from_slice(&[0x55; 16]);
        let datagram = match i % 3 {
            0 => d,
            1 => vec![0xff; 40 + i as usize % 50],
            _ => vec![0x42; 2_000],
        };
        attacker.send_to(&datagram, target).unwrap();
        sent += 1;
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let counted = wait_until(Duration::from_secs(10), || async {
        a.client.stats().await.unwrap().time_datagrams_refused >= sent
    })
    .await;
    let stats = a.client.stats().await.unwrap();
    assert!(counted, "{sent} sent, {stats:?}");
    // Genuine samples go on, and the clock never stepped.
    let before = stats.time_datagram_samples;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            a.client.stats().await.unwrap().time_datagram_samples >= before + 5
        })
        .await
    );
    while let Ok(event) = a.events.try_recv() {
        assert!(
            !matches!(event, Event::ClockStepped { .. }),
            "a's clock stepped: {event:?}"
        );
    }
    let mut buf = [0u8; 512];
    attacker.set_nonblocking(true).unwrap();
    assert!(
        attacker.recv_from(&mut buf).is_err(),
        "a answered a forged datagram"
    );
}
