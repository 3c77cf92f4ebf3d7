//! Library sync and chunk transfer between real nodes on 127.0.0.1: catalog
//! convergence after adds and removes, a download from three holders while
//! one corrupts bytes, resume after a restart, stalled peers, and bad
//! requests from a raw libp2p peer.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Node, loopback_config, start, wait_until};
use firefly_library::{Library, LibraryConfig, TrackId};
use firefly_swarm::transfer::codec::chunks_behaviour;
use firefly_swarm::transfer::wire::{
    ChunkReply, ChunksBody, ChunksRequest, ChunksResponse, MAX_CHUNKS_PER_REQUEST, Refusal,
};
use firefly_swarm::transfer::{Fault, SchedulerConfig, TransferConfig};
use firefly_swarm::{Event, PeerId};
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes a 16-bit stereo 44.1 kHz WAV of `seconds` of deterministic noise
/// (distinct per `seed`, so every file cuts into its own chunks).
fn write_wav(path: &Path, seed: u64, seconds: f64) {
    let frames = (44_100.0 * seconds) as u32;
    let data_len = frames * 4;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&44_100u32.to_le_bytes());
    out.extend_from_slice(&(44_100u32 * 4).to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..frames * 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&((x >> 48) as i16 / 4).to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, out).unwrap();
}

/// A node with a library of its own in a temp dir.
struct Peer {
    node: Node,
    library: Library,
    root: PathBuf,
}

impl Peer {
    fn music(&self) -> PathBuf {
        self.root.join("music")
    }

    async fn rescan(&self) {
        let library = self.library.clone();
        let music = self.music();
        tokio::task::spawn_blocking(move || library.scan(&[music], &mut ()).unwrap())
            .await
            .unwrap();
        self.node.client.library_changed().await.unwrap();
    }

    async fn catalog(&self) -> BTreeMap<TrackId, BTreeSet<PeerId>> {
        self.node
            .client
            .catalog()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.summary.track, e.holders))
            .collect()
    }
}

fn open_library(root: &Path) -> Library {
    let mut config = LibraryConfig::new(root.join("data"));
    config.music_dir(root.join("music"));
    Library::open(&config).unwrap()
}

async fn start_peer(name: &str, root: &Path, transfer: TransferConfig) -> Peer {
    std::fs::create_dir_all(root.join("music")).unwrap();
    let library = open_library(root);
    {
        let library = library.clone();
        let music = root.join("music");
        tokio::task::spawn_blocking(move || library.scan(&[music], &mut ()).unwrap())
            .await
            .unwrap();
    }
    let mut config = loopback_config(name);
    config.library(library.clone()).transfer(transfer);
    let node = start(config).await;
    Peer {
        node,
        library,
        root: root.to_path_buf(),
    }
}

async fn connect_all(peers: &[&Peer]) {
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[i + 1..] {
            a.node.client.dial(b.node.dial_addr()).await.unwrap();
        }
    }
}

fn track_of(path: &Path) -> TrackId {
    TrackId::of(&std::fs::read(path).unwrap())
}

/// The catalog every node should see: each node's own tracks, with it as holder.
async fn expected(peers: &[&Peer]) -> BTreeMap<TrackId, BTreeSet<PeerId>> {
    let mut out: BTreeMap<TrackId, BTreeSet<PeerId>> = BTreeMap::new();
    for p in peers {
        for entry in p.library.tracks().unwrap() {
            out.entry(entry.manifest.track)
                .or_default()
                .insert(p.node.peer_id());
        }
    }
    out
}

async fn converged(peers: &[&Peer], limit: Duration) -> bool {
    let want = expected(peers).await;
    wait_until(limit, || {
        let want = want.clone();
        async move {
            for p in peers {
                if p.catalog().await != want {
                    return false;
                }
            }
            true
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_converges_after_adds_and_removes_on_several_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    write_wav(&roots[0].join("music/a1.wav"), 1, 0.5);
    write_wav(&roots[0].join("music/shared.wav"), 99, 0.5);
    write_wav(&roots[1].join("music/b1.wav"), 2, 0.5);
    write_wav(&roots[1].join("music/shared.wav"), 99, 0.5);
    write_wav(&roots[2].join("music/c1.wav"), 3, 0.5);
    let a = start_peer("a", &roots[0], TransferConfig::default()).await;
    let b = start_peer("b", &roots[1], TransferConfig::default()).await;
    let c = start_peer("c", &roots[2], TransferConfig::default()).await;
    connect_all(&[&a, &b, &c]).await;
    assert!(
        converged(&[&a, &b, &c], Duration::from_secs(15)).await,
        "initial catalogs did not converge"
    );
    let shared = track_of(&a.music().join("shared.wav"));
    let holders = a.catalog().await[&shared].clone();
    assert_eq!(
        holders,
        BTreeSet::from([a.node.peer_id(), b.node.peer_id()])
    );

    // Adds on one node, removes on another, both at once.
    write_wav(&a.music().join("a2.wav"), 4, 0.5);
    std::fs::remove_file(b.music().join("shared.wav")).unwrap();
    write_wav(&c.music().join("c2.wav"), 5, 0.5);
    a.rescan().await;
    b.rescan().await;
    c.rescan().await;
    let started = std::time::Instant::now();
    assert!(
        converged(&[&a, &b, &c], Duration::from_secs(10)).await,
        "catalogs did not converge after changes"
    );
    tracing::info!(elapsed = ?started.elapsed(), "converged");
    assert_eq!(
        c.catalog().await[&shared],
        BTreeSet::from([a.node.peer_id()])
    );
    assert_eq!(c.catalog().await.len(), 6);
}

fn fast_scheduler() -> SchedulerConfig {
    let mut config = SchedulerConfig::default();
    config
        .request_timeout_micros(1_000_000)
        .failure_backoff_micros(200_000, 1_000_000)
        .max_consecutive_failures(3)
        .corrupt_penalty_micros(60_000_000);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_from_three_peers_survives_one_that_corrupts_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("n{i}"))).collect();
    for root in &roots[..3] {
        write_wav(&root.join("music/song.wav"), 7, 12.0);
    }
    let original = std::fs::read(roots[0].join("music/song.wav")).unwrap();
    let track = TrackId::of(&original);
    let mut corrupt = TransferConfig::default();
    corrupt.fault(Some(Fault::CorruptChunks));
    let a = start_peer("a", &roots[0], TransferConfig::default()).await;
    let b = start_peer("b", &roots[1], TransferConfig::default()).await;
    let bad = start_peer("bad", &roots[2], corrupt).await;
    let mut downloader = TransferConfig::default();
    downloader.scheduler(fast_scheduler());
    let mut d = start_peer("d", &roots[3], downloader).await;
    connect_all(&[&a, &b, &bad, &d]).await;
    assert!(converged(&[&a, &b, &bad, &d], Duration::from_secs(15)).await);

    let path = tokio::time::timeout(Duration::from_secs(60), d.node.client.download(track))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "downloaded bytes differ"
    );
    assert!(path.starts_with(d.music()));

    let stats = d.node.client.transfer_stats().await.unwrap();
    assert!(
        stats.chunks_corrupt > 0,
        "the corrupting peer was never asked: {stats:?}"
    );
    assert!(stats.peers_penalized >= 1);
    let penalized =
        common::next_matching(&mut d.node.events, Duration::from_secs(5), |e| match e {
            Event::Transfer(firefly_swarm::transfer::TransferEvent::PeerPenalized {
                peer, ..
            }) => Some(*peer),
            _ => None,
        })
        .await;
    assert_eq!(penalized, Some(bad.node.peer_id()));
    // The honest holders shared the load.
    let served_a = a.node.client.transfer_stats().await.unwrap().chunks_served;
    let served_b = b.node.client.transfer_stats().await.unwrap().chunks_served;
    assert!(
        served_a > 0 && served_b > 0,
        "a served {served_a}, b served {served_b}"
    );
    // Per member: each holder served d, and d took (at most) what it served.
    let traffic = d.node.client.transfer_traffic().await.unwrap();
    let from = |peer: PeerId| {
        traffic
            .iter()
            .find(|(p, _)| *p == peer)
            .map_or(0, |(_, t)| t.chunks_received)
    };
    let d_id = d.node.peer_id();
    let mut to_d = Vec::new();
    for holder in [&a, &b] {
        let served = holder.node.client.transfer_traffic().await.unwrap();
        to_d.push(
            served
                .iter()
                .find(|(p, _)| *p == d_id)
                .map_or(0, |(_, t)| t.chunks_served),
        );
    }
    let (to_d_a, to_d_b) = (to_d[0], to_d[1]);
    assert!(
        to_d_a > 0 && to_d_b > 0,
        "a served d {to_d_a}, b served d {to_d_b}"
    );
    // (A response that came after a retry elsewhere was served but not taken.)
    for (holder, served) in [(a.node.peer_id(), to_d_a), (b.node.peer_id(), to_d_b)] {
        let received = from(holder);
        assert!(
            received > 0 && received <= served,
            "{traffic:?}: served {served}"
        );
    }
    assert_eq!(
        from(bad.node.peer_id()),
        0,
        "corrupt chunks are not counted as received"
    );
    // The downloaded track is now in d's library and catalog.
    let listed = wait_until(Duration::from_secs(5), || async {
        d.catalog()
            .await
            .get(&track)
            .is_some_and(|holders| holders.contains(&d.node.peer_id()))
    })
    .await;
    assert!(
        listed,
        "the downloaded track is not in the catalog as held by d"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_resumes_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (ra, rb) = (tmp.path().join("a"), tmp.path().join("b"));
    write_wav(&ra.join("music/long.wav"), 11, 24.0);
    let original = std::fs::read(ra.join("music/long.wav")).unwrap();
    let track = TrackId::of(&original);
    let mut capped = TransferConfig::default();
    // About 4 MiB at 1 MiB/s: slow enough to stop halfway.
    capped.max_upload(Some(1024 * 1024));
    let a = start_peer("a", &ra, capped).await;
    let b = start_peer("b", &rb, TransferConfig::default()).await;
    connect_all(&[&a, &b]).await;
    assert!(converged(&[&a, &b], Duration::from_secs(15)).await);
    let total_chunks = a.library.manifest(track).unwrap().unwrap().chunks.len() as u64;

    let client = b.node.client.clone();
    let download = tokio::spawn(async move { client.download(track).await });
    let halfway = wait_until(Duration::from_secs(30), || async {
        let got = b
            .node
            .client
            .transfer_stats()
            .await
            .unwrap()
            .chunks_received;
        got >= total_chunks / 3
    })
    .await;
    assert!(halfway, "the download made no progress");
    let Peer {
        node,
        library,
        root,
    } = b;
    node.kill();
    drop(library);
    let _ = download.await;
    // The killed loop released its library handle; open it again.
    let mut b = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let config = {
            let mut c = LibraryConfig::new(root.join("data"));
            c.music_dir(root.join("music"));
            c
        };
        if Library::open(&config).is_ok() {
            b = Some(start_peer("b-again", &root, TransferConfig::default()).await);
            break;
        }
    }
    let b = b.expect("library still in use after the node stopped");
    let missing_before = b.library.missing_chunks(track).unwrap().len() as u64;
    assert!(
        missing_before < total_chunks,
        "nothing was kept across the restart"
    );
    let mut b = b;
    connect_all(&[&a, &b]).await;
    // The restarted node resumes on its own once it learns a holder.
    let resumed = common::next_matching(&mut b.node.events, Duration::from_secs(60), |e| match e {
        Event::Transfer(firefly_swarm::transfer::TransferEvent::DownloadCompleted {
            track: t,
            path,
        }) if *t == track => Some(path.clone()),
        _ => None,
    })
    .await
    .expect("the unfinished download did not resume by itself");
    assert_eq!(std::fs::read(&resumed).unwrap(), original);
    let path = tokio::time::timeout(Duration::from_secs(60), b.node.client.download(track))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, resumed);
    let received = b
        .node
        .client
        .transfer_stats()
        .await
        .unwrap()
        .chunks_received;
    assert_eq!(
        received, missing_before,
        "fetched again what was already there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_peer_is_timed_out_and_the_download_goes_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("n{i}"))).collect();
    for root in &roots[..2] {
        write_wav(&root.join("music/song.wav"), 21, 4.0);
    }
    let original = std::fs::read(roots[0].join("music/song.wav")).unwrap();
    let track = TrackId::of(&original);
    let mut staller = TransferConfig::default();
    staller.fault(Some(Fault::StallChunks));
    let s = start_peer("staller", &roots[0], staller).await;
    let mut downloader = TransferConfig::default();
    downloader.scheduler(fast_scheduler());
    let d = start_peer("d", &roots[2], downloader).await;
    connect_all(&[&s, &d]).await;
    assert!(converged(&[&s, &d], Duration::from_secs(15)).await);

    // Only the staller holds it: the download gives up instead of hanging.
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), d.node.client.download(track))
        .await
        .unwrap();
    assert!(result.is_err(), "a download from a staller cannot succeed");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        d.node
            .client
            .transfer_stats()
            .await
            .unwrap()
            .requests_failed
            >= 3
    );

    // With an honest holder too, it completes.
    let h = start_peer("honest", &roots[1], TransferConfig::default()).await;
    connect_all(&[&s, &d, &h]).await;
    assert!(converged(&[&s, &d, &h], Duration::from_secs(15)).await);
    let path = tokio::time::timeout(Duration::from_secs(60), d.node.client.download(track))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), original);
}

/// A raw peer: gossipsub (to heartbeat, so it is a member) and the chunks
/// protocol, built on libp2p directly.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct RawBehaviour {
    gossipsub: libp2p::gossipsub::Behaviour,
    chunks: firefly_swarm::transfer::codec::ChunksBehaviour,
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
            RawBehaviour {
                gossipsub,
                chunks: chunks_behaviour(),
            }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Publishes the raw peer's heartbeat (ignoring "no peers yet").
fn heartbeat(raw: &mut RawSwarm, uptime_ms: u64) {
    let beat = firefly_swarm::membership::Heartbeat {
        version: firefly_swarm::membership::HEARTBEAT_VERSION,
        name: "raw".into(),
        uptime_ms,
        status: firefly_swarm::NodeStatus::default(),
        leaving: false,
    };
    let _ = raw.behaviour_mut().gossipsub.publish(
        libp2p::gossipsub::IdentTopic::new(firefly_swarm::membership::HEARTBEAT_TOPIC),
        beat.encode().unwrap(),
    );
}

/// Drives `raw`, heartbeating every second, until `node` counts it as a member.
async fn join(raw: &mut RawSwarm, node: &Node) {
    let me = *raw.local_peer_id();
    let started = std::time::Instant::now();
    let mut beat = tokio::time::interval(Duration::from_millis(1000));
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::select! {
                _ = raw.select_next_some() => {}
                _ = beat.tick() => {
                    heartbeat(raw, started.elapsed().as_millis() as u64);
                    if node.client.members().await.unwrap().iter().any(|m| m.peer == me) {
                        return;
                    }
                }
            }
        }
    })
    .await
    .unwrap();
}

/// Sends `requests` to `to` and collects the answers (or failures) in order
/// of arrival, heartbeating meanwhile so the raw peer stays a member.
async fn exchange(
    raw: &mut RawSwarm,
    to: PeerId,
    requests: Vec<ChunksRequest>,
) -> Vec<Result<ChunksResponse, String>> {
    let mut pending = BTreeSet::new();
    for request in requests {
        pending.insert(raw.behaviour_mut().chunks.send_request(&to, request.into()));
    }
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let mut beat = tokio::time::interval(Duration::from_millis(1000));
    tokio::time::timeout(Duration::from_secs(20), async {
        while !pending.is_empty() {
            let event = tokio::select! {
                event = raw.select_next_some() => event,
                _ = beat.tick() => {
                    heartbeat(raw, 60_000 + started.elapsed().as_millis() as u64);
                    continue;
                }
            };
            match event {
                SwarmEvent::Behaviour(RawBehaviourEvent::Chunks(
                    request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    },
                )) => {
                    pending.remove(&request_id);
                    out.push(Ok(response));
                }
                SwarmEvent::Behaviour(RawBehaviourEvent::Chunks(
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    },
                )) => {
                    pending.remove(&request_id);
                    out.push(Err(error.to_string()));
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_requests_are_refused_counted_and_survived() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("n");
    write_wav(&root.join("music/song.wav"), 31, 2.0);
    let node = start_peer("n", &root, TransferConfig::default()).await;
    let track = track_of(&root.join("music/song.wav"));
    let known = node.library.manifest(track).unwrap().unwrap().chunks[0].id;

    let mut raw = raw_peer();
    raw.dial(node.node.dial_addr()).unwrap();
    let to = node.node.peer_id();

    // Not a member yet: its requests are refused.
    let answers = exchange(&mut raw, to, vec![ChunksRequest::new(vec![known])]).await;
    assert_eq!(
        answers[0].as_ref().map(|r| &r.body),
        Ok(&ChunksBody::Refused(Refusal::Unavailable)),
        "a non-member was served"
    );
    join(&mut raw, &node.node).await;

    // Unknown version, too many ids, unknown chunks, and a known one.
    let answers = exchange(
        &mut raw,
        to,
        vec![ChunksRequest {
            version: 9,
            ids: vec![known],
        }],
    )
    .await;
    assert_eq!(
        answers[0].as_ref().unwrap().body,
        ChunksBody::Refused(Refusal::UnsupportedVersion { supported: 1 })
    );
    let too_many = ChunksRequest::new(vec![known; MAX_CHUNKS_PER_REQUEST + 1]);
    let answers = exchange(&mut raw, to, vec![too_many]).await;
    assert_eq!(
        answers[0].as_ref().unwrap().body,
        ChunksBody::Refused(Refusal::Invalid)
    );
    // Past the request byte limit: cut off, refused, stream dropped, sender struck.
    let oversized = ChunksRequest::new(vec![known; 2000]);
    let answers = exchange(&mut raw, to, vec![oversized]).await;
    assert!(
        answers[0].is_err(),
        "an oversized request was answered: {answers:?}"
    );
    let unknown = firefly_library::ChunkId::of(b"nobody has this");
    let answers = exchange(&mut raw, to, vec![ChunksRequest::new(vec![unknown, known])]).await;
    let ChunksBody::Chunks(replies) = &answers[0].as_ref().unwrap().body else {
        panic!("expected chunks");
    };
    assert_eq!(replies[0], ChunkReply::Missing);
    assert!(
        matches!(&replies[1], ChunkReply::Data(bytes) if firefly_library::ChunkId::of(&bytes.0) == known)
    );

    // A flood: more requests at once than one peer may have in progress.
    let flood: Vec<ChunksRequest> = (0..12)
        .map(|_| ChunksRequest::new(vec![known; 8]))
        .collect();
    let answers = exchange(&mut raw, to, flood).await;
    let busy = answers
        .iter()
        .filter(|a| matches!(a, Ok(r) if r.body == ChunksBody::Refused(Refusal::Busy)))
        .count();
    let served = answers
        .iter()
        .filter(|a| {
            matches!(
                a,
                Ok(ChunksResponse {
                    body: ChunksBody::Chunks(_),
                    ..
                })
            )
        })
        .count();
    assert_eq!(busy + served, 12, "{answers:?}");
    assert!(served >= 1);

    let stats = node.node.client.transfer_stats().await.unwrap();
    assert!(stats.messages_rejected >= 2, "{stats:?}");
    // Strikes: the invalid request, the oversized one, and every request past
    // the per-peer limit.
    let strikes = node.node.client.stats().await.unwrap().strikes;
    assert!(strikes >= 2 + busy as u64, "{strikes}");
    assert!(stats.requests_refused >= 2 + busy as u64, "{stats:?}");
    // Still alive and serving.
    let answers = exchange(&mut raw, to, vec![ChunksRequest::new(vec![known])]).await;
    assert!(
        matches!(&answers[0], Ok(ChunksResponse { body: ChunksBody::Chunks(r), .. }) if r.len() == 1)
    );
}
