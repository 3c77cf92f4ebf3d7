//! Membership over real 127.0.0.1 sockets: join, leave after silence, and
//! transports (TCP, QUIC).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use firefly_swarm::{Event, NodeStatus, Playout, PlayoutFlash};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_and_a_silent_one_leaves_everywhere() {
    let a = start(loopback_config("a")).await;
    let mut b = start(loopback_config("b")).await;
    let c = start(loopback_config("c")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    c.client.dial(a.dial_addr()).await.unwrap();

    let (pa, pb, pc) = (a.peer_id(), b.peer_id(), c.peer_id());
    let dialed_at = Instant::now();
    // Gossip reaches B and C through A even though they never dialed each other.
    assert!(wait_members(&a.client, &[pb, pc], Duration::from_secs(10)).await);
    assert!(wait_members(&b.client, &[pa, pc], Duration::from_secs(10)).await);
    assert!(wait_members(&c.client, &[pa, pb], Duration::from_secs(10)).await);
    println!(
        "three nodes were all members of each other {:?} after the dials",
        dialed_at.elapsed()
    );

    // Names and statuses travel in heartbeats.
    let status = NodeStatus {
        library_version: 42,
        ..NodeStatus::default()
    };
    c.client.set_status(status).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client
                .members()
                .await
                .unwrap()
                .iter()
                .any(|m| m.peer == pc && m.name == "c" && m.status.library_version == 42)
        })
        .await
    );

    // The player's report travels too, stamped over whatever the status says.
    let playout = Playout {
        volume_permille: Some(700),
        flashes: vec![
            PlayoutFlash {
                track: 3,
                frame: 44_100,
                swarm_us: 1_000_000,
                error_frames: 0,
            },
            PlayoutFlash {
                track: 3,
                frame: 55_125,
                swarm_us: 1_250_000,
                error_frames: 0,
            },
        ],
    };
    c.client.set_playout(playout.clone()).await.unwrap();
    c.client.set_status(NodeStatus::default()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            a.client
                .members()
                .await
                .unwrap()
                .iter()
                .any(|m| m.peer == pc && m.status.playout == playout)
        })
        .await
    );

    // Links: A has a direct connection to each; B reaches C only through gossip.
    let links = a.client.links().await.unwrap();
    for peer in [pb, pc] {
        assert!(
            links.iter().any(|l| l.peer == peer && !l.relayed),
            "{links:?}"
        );
    }
    let links = b.client.links().await.unwrap();
    assert!(links.iter().all(|l| l.peer == pa), "{links:?}");

    let killed_at = Instant::now();
    c.kill();
    let left = next_matching(&mut b.events, Duration::from_secs(10), |e| match e {
        Event::PeerLeft { peer, name } if *peer == pc => Some(name.clone()),
        _ => None,
    })
    .await;
    assert_eq!(left.as_deref(), Some("c"));
    let after = killed_at.elapsed();
    println!("a killed member was removed {after:?} after it went silent");
    // Removed after the 5 s timeout, not before, and not much later.
    assert!(after >= Duration::from_secs(4), "left after {after:?}");
    assert!(after <= Duration::from_secs(8), "left after {after:?}");
    assert!(wait_members(&a.client, &[pb], Duration::from_secs(3)).await);
    assert!(wait_members(&b.client, &[pa], Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_over_quic() {
    let mut config = loopback_config("q1");
    config.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    let a = start(config).await;
    let mut config = loopback_config("q2");
    config.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    let b = start(config).await;
    let quic = a
        .client
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|addr| addr.to_string().contains("quic-v1"))
        .unwrap();
    let reached = b
        .client
        .dial(quic.with(libp2p::multiaddr::Protocol::P2p(a.peer_id())))
        .await
        .unwrap();
    assert_eq!(reached, a.peer_id());
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(5)).await);
    assert!(wait_members(&b.client, &[a.peer_id()], Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_flag_dials_at_start() {
    let a = start(loopback_config("a")).await;
    let mut config = loopback_config("b");
    config.peer(a.dial_addr());
    let b = start(config).await;
    assert!(wait_members(&a.client, &[b.peer_id()], Duration::from_secs(5)).await);
    assert!(wait_members(&b.client, &[a.peer_id()], Duration::from_secs(5)).await);
}
