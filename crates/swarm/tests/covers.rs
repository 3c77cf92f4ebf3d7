//! `/firefly/cover/1` between real nodes on 127.0.0.1: a node without a
//! track fetches its cover picture from the holder, byte-identical; and a
//! raw libp2p peer's requests are refused before it is a member, answered
//! after, and struck when they do not decode; a rogue holder whose bytes
//! are not the picture is struck and the next holder asked.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../library/tests/common/mod.rs"]
mod library_common;

use common::{Node, loopback_config, start, wait_until};
use firefly_library::{CoverId, Library, LibraryConfig, TrackId};
use firefly_swarm::cover::{
    COVER_PROTOCOL, COVER_REQUEST_MAX_BYTES, COVER_RESPONSE_MAX_BYTES, CoverBody, CoverRequest,
    CoverResponse,
};
use firefly_swarm::inbound::CheckedCbor;
use firefly_swarm::transfer::wire::Refusal;
use futures::StreamExt;
use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// A node with a library in `root` (its `music` folder scanned).
async fn start_with_library(name: &str, root: &Path) -> (Node, Library) {
    std::fs::create_dir_all(root.join("music")).unwrap();
    let mut config = LibraryConfig::new(root.join("data"));
    config.music_dir(root.join("music"));
    let library = Library::open(&config).unwrap();
    {
        let library = library.clone();
        let music = root.join("music");
        tokio::task::spawn_blocking(move || library.scan(&[music], &mut ()).unwrap())
            .await
            .unwrap();
    }
    let mut config = loopback_config(name);
    config.library(library.clone());
    (start(config).await, library)
}

/// A holder with one MP3 whose tags hold `png`; returns the track.
async fn holder(root: &Path, png: &[u8]) -> (Node, Library, TrackId) {
    let mp3 = library_common::tagged_mp3("Signal Fire", "Night Meadow", Some(png));
    std::fs::create_dir_all(root.join("music")).unwrap();
    std::fs::write(root.join("music/signal.mp3"), &mp3).unwrap();
    let (node, library) = start_with_library("holder", root).await;
    (node, library, TrackId::of(&mp3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_track_fetches_its_cover_from_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let png = library_common::tiny_png([20, 160, 90]);
    let (a, _a_library, track) = holder(&tmp.path().join("a"), &png).await;
    let (b, b_library) = start_with_library("b", &tmp.path().join("b")).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    let id = CoverId::of(&png);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            b.client.cover_of(track).await.unwrap() == Some(id)
        })
        .await,
        "b never learned a's track and its cover id"
    );
    assert!(b_library.tracks().unwrap().is_empty(), "b holds nothing");
    let cover = b.client.fetch_cover(id).await.unwrap().expect("a has it");
    assert_eq!(cover.bytes, png);
    assert_eq!(cover.media_type, "image/png");
    // No member shows this picture: nobody is asked, nothing comes.
    let unknown = CoverId::of(b"no track shows this");
    assert_eq!(b.client.fetch_cover(unknown).await.unwrap(), None);
    assert_eq!(
        b.client.cover_of(TrackId::of(b"unknown")).await.unwrap(),
        None
    );
}

/// What the raw peer sends: a well-formed request, or text where the
/// request belongs (encoded as is, so the node cannot decode it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Ask {
    Good(CoverRequest),
    Bad(String),
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct RawBehaviour {
    gossipsub: libp2p::gossipsub::Behaviour,
    covers: request_response::Behaviour<CheckedCbor<Ask, CoverResponse>>,
}

type RawSwarm = libp2p::Swarm<RawBehaviour>;

fn raw_peer() -> RawSwarm {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let config = libp2p::gossipsub::ConfigBuilder::default()
                .validation_mode(libp2p::gossipsub::ValidationMode::Strict)
                .build()
                .unwrap();
            let mut gossipsub = libp2p::gossipsub::Behaviour::new(
                libp2p::gossipsub::MessageAuthenticity::Signed(key.clone()),
                config,
            )
            .unwrap();
            gossipsub
                .subscribe(&libp2p::gossipsub::IdentTopic::new(
                    firefly_swarm::membership::HEARTBEAT_TOPIC,
                ))
                .unwrap();
            let covers = request_response::Behaviour::with_codec(
                CheckedCbor::new(COVER_REQUEST_MAX_BYTES * 16, COVER_RESPONSE_MAX_BYTES),
                [(StreamProtocol::new(COVER_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            );
            RawBehaviour { gossipsub, covers }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Sends `ask` to `to`, heartbeating (from `started`) until the answer or
/// failure comes; heartbeats make the raw peer a member.
async fn ask(
    raw: &mut RawSwarm,
    to: libp2p::PeerId,
    ask: Ask,
    beat_member: bool,
) -> Result<CoverResponse, String> {
    let id = raw
        .behaviour_mut()
        .covers
        .send_request(&to, firefly_swarm::inbound::Inbound::Request(ask));
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let event = tokio::select! {
                event = raw.select_next_some() => event,
                _ = beat.tick() => {
                    if beat_member {
                        heartbeat(raw);
                    }
                    continue;
                }
            };
            match event {
                SwarmEvent::Behaviour(RawBehaviourEvent::Covers(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    },
                )) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(RawBehaviourEvent::Covers(
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    },
                )) if request_id == id => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await
    .unwrap()
}

fn heartbeat(raw: &mut RawSwarm) {
    let beat = firefly_swarm::membership::Heartbeat {
        version: firefly_swarm::membership::HEARTBEAT_VERSION,
        name: "raw".into(),
        uptime_ms: 60_000,
        status: firefly_swarm::NodeStatus::default(),
        leaving: false,
    };
    // "No peers yet" is fine: the next beat goes.
    let _ = raw.behaviour_mut().gossipsub.publish(
        libp2p::gossipsub::IdentTopic::new(firefly_swarm::membership::HEARTBEAT_TOPIC),
        beat.encode().unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_requests_are_for_members_and_bad_ones_are_struck() {
    let tmp = tempfile::tempdir().unwrap();
    let png = library_common::tiny_png([200, 30, 30]);
    let (node, _library, _) = holder(&tmp.path().join("a"), &png).await;
    let id = CoverId::of(&png);
    let mut raw = raw_peer();
    raw.dial(node.dial_addr()).unwrap();
    let to = node.peer_id();

    // Not a member: refused.
    let answer = ask(&mut raw, to, Ask::Good(CoverRequest::new(id)), false).await;
    assert_eq!(
        answer.map(|r| r.body),
        Ok(CoverBody::Refused(Refusal::Unavailable))
    );

    // A member: the picture, "not found" for another, a refusal for
    // another version.
    let me = *raw.local_peer_id();
    let mut member = false;
    for _ in 0..40 {
        let answer = ask(&mut raw, to, Ask::Good(CoverRequest::new(id)), true).await;
        if let Ok(CoverResponse {
            body: CoverBody::Found(bytes),
            ..
        }) = answer
        {
            assert_eq!(bytes.0, png);
            member = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        member,
        "the raw peer never became a member and got the picture"
    );
    assert!(
        node.client
            .members()
            .await
            .unwrap()
            .iter()
            .any(|m| m.peer == me)
    );
    let other = CoverRequest::new(CoverId::of(b"nobody shows this"));
    let answer = ask(&mut raw, to, Ask::Good(other), true).await;
    assert_eq!(answer.map(|r| r.body), Ok(CoverBody::NotFound));
    let future = CoverRequest {
        version: 9,
        cover: id,
    };
    let answer = ask(&mut raw, to, Ask::Good(future), true).await;
    assert_eq!(
        answer.map(|r| r.body),
        Ok(CoverBody::Refused(Refusal::UnsupportedVersion {
            supported: 1
        }))
    );

    // Not a request, and one past the byte limit: dropped and struck.
    let before = node.client.stats().await.unwrap().strikes;
    let answer = ask(&mut raw, to, Ask::Bad("not a request".into()), true).await;
    assert!(answer.is_err(), "{answer:?}");
    let answer = ask(&mut raw, to, Ask::Bad("x".repeat(1000)), true).await;
    assert!(answer.is_err(), "{answer:?}");
    let strikes = node.client.stats().await.unwrap().strikes;
    assert!(strikes >= before + 2, "{before} → {strikes}");
    // Still serving.
    let answer = ask(&mut raw, to, Ask::Good(CoverRequest::new(id)), true).await;
    assert!(matches!(
        answer,
        Ok(CoverResponse {
            body: CoverBody::Found(_),
            ..
        })
    ));
}

/// A rogue member: it heartbeats, announces a track showing `cover`, and
/// answers every cover request with other bytes. Runs until aborted.
async fn run_rogue(mut raw: RawSwarm, cover: CoverId, bad: Vec<u8>) {
    use firefly_swarm::transfer::wire::{
        ChunkBytes, LIBRARY_TOPIC, LibraryAnnounce, LibraryDelta, TrackSummary, WIRE_VERSION,
    };
    raw.behaviour_mut()
        .gossipsub
        .subscribe(&libp2p::gossipsub::IdentTopic::new(LIBRARY_TOPIC))
        .unwrap();
    let announce = LibraryAnnounce {
        version: WIRE_VERSION,
        delta: LibraryDelta {
            from: 0,
            to: 1,
            added: vec![TrackSummary {
                track: TrackId::of(b"a track the rogue claims"),
                size: 1000,
                chunks: 1,
                meta: firefly_library::TrackMeta {
                    title: "Rogue".into(),
                    cover: Some(cover),
                    ..firefly_library::TrackMeta::default()
                },
            }],
            removed: Vec::new(),
        },
        elided: false,
    };
    let mut beat = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = raw.select_next_some() => {
                if let SwarmEvent::Behaviour(RawBehaviourEvent::Covers(
                    request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    },
                )) = event
                {
                    let body = CoverBody::Found(ChunkBytes(bad.clone()));
                    let _ = raw.behaviour_mut().covers.send_response(channel, CoverResponse::new(body));
                }
            }
            _ = beat.tick() => {
                let beat = firefly_swarm::membership::Heartbeat {
                    version: firefly_swarm::membership::HEARTBEAT_VERSION,
                    name: "rogue".into(),
                    uptime_ms: 60_000,
                    status: firefly_swarm::NodeStatus {
                        library_version: 1,
                        ..firefly_swarm::NodeStatus::default()
                    },
                    leaving: false,
                };
                let gossip = &mut raw.behaviour_mut().gossipsub;
                let _ = gossip.publish(
                    libp2p::gossipsub::IdentTopic::new(firefly_swarm::membership::HEARTBEAT_TOPIC),
                    beat.encode().unwrap(),
                );
                let _ = gossip.publish(
                    libp2p::gossipsub::IdentTopic::new(LIBRARY_TOPIC),
                    announce.encode(),
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_sending_other_bytes_is_struck_and_the_next_one_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let png = library_common::tiny_png([90, 90, 250]);
    let id = CoverId::of(&png);
    let mut bad = png.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let (b, _b_library) = start_with_library("b", &tmp.path().join("b")).await;
    let mut raw = raw_peer();
    raw.dial(b.dial_addr()).unwrap();
    let rogue = *raw.local_peer_id();
    let rogue_task = tokio::spawn(run_rogue(raw, id, bad));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            b.client
                .catalog()
                .await
                .unwrap()
                .iter()
                .any(|e| e.summary.meta.cover == Some(id) && e.holders.contains(&rogue))
        })
        .await,
        "b never took the rogue's announce"
    );

    // Only the rogue shows the picture: its bytes are refused and it is struck.
    let before = b.client.stats().await.unwrap().strikes;
    assert_eq!(b.client.fetch_cover(id).await.unwrap(), None);
    let strikes = b.client.stats().await.unwrap().strikes;
    assert!(strikes > before, "{before} → {strikes}");

    // An honest holder joins: the picture comes from it, whoever is asked first.
    let (a, _a_library, _) = holder(&tmp.path().join("a"), &png).await;
    b.client.dial(a.dial_addr()).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            b.client
                .catalog()
                .await
                .unwrap()
                .iter()
                .any(|e| e.summary.meta.cover == Some(id) && e.holders.contains(&a.peer_id()))
        })
        .await,
        "b never learned a's track"
    );
    let cover = b.client.fetch_cover(id).await.unwrap().expect("a has it");
    assert_eq!(cover.bytes, png);
    rogue_task.abort();
}
