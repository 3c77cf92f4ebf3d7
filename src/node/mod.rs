//! A running Firefly node: the glue between the swarm, the library and the
//! HTTP API.
//!
//! [`run`] opens the node's identity and library, starts the swarm's event
//! loop, serves the JSON API, scans and then watches the music folder
//! ([`indexer`], [`watcher`]) and logs membership until Ctrl-C or SIGTERM. It holds handles only ([`NodeState`]); the libp2p
//! `Swarm` lives in the swarm crate's event loop.

pub(crate) mod announce;
pub(crate) mod api_token;
pub(crate) mod audio;
pub(crate) mod driver;
pub(crate) mod events;
pub(crate) mod http;
pub(crate) mod indexer;
pub(crate) mod live;
pub(crate) mod local_play;
pub(crate) mod persist;
pub(crate) mod placement;
pub(crate) mod remote_covers;
pub(crate) mod roles;
pub(crate) mod session;
pub(crate) mod settle;
pub(crate) mod stream;
pub(crate) mod test_clock;
pub(crate) mod timeline;
mod watcher;
pub(crate) mod zone_sessions;
pub(crate) mod zones;

pub(crate) use audio::OutputArg;
mod ui;

use announce::{NodeEvent, announce};
use anyhow::Context;
use firefly_library::{Library, LibraryConfig};
use firefly_swarm::transfer::TransferEvent;
use firefly_swarm::{Client, ControlRequest, Event, Multiaddr, NodeStatus};
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// What `firefly up` was asked to do.
#[derive(Debug)]
pub(crate) struct NodeOptions {
    pub(crate) data_dir: PathBuf,
    pub(crate) music: PathBuf,
    pub(crate) listen: Vec<Multiaddr>,
    pub(crate) peers: Vec<Multiaddr>,
    pub(crate) relay: Option<Multiaddr>,
    pub(crate) swarm_key: Option<PathBuf>,
    pub(crate) name: String,
    pub(crate) http: SocketAddr,
    pub(crate) mdns: bool,
    /// `--output`; `None` means the default device, or no sound if there is none.
    pub(crate) output: Option<OutputArg>,
    pub(crate) latency_ms: Option<i64>,
    /// `FIREFLY_TEST_CLOCK`, read once by the caller.
    pub(crate) test_clock: Option<test_clock::TestClock>,
    /// `FIREFLY_TEST_PROBE_RATE`, read once by the caller.
    pub(crate) test_probe_rate: Option<f64>,
    /// `--token`: required of API clients when `http` is not loopback.
    pub(crate) token: Option<String>,
    /// `--http-host`: host names the API answers to besides IP literals and
    /// `localhost` (DNS rebinding guard).
    pub(crate) http_hosts: Vec<String>,
    /// Cap on chunk bytes served per second (`--max-upload`); none: no cap.
    pub(crate) max_upload: Option<u64>,
    /// `--source NAME=SPEC`: live sources to add at start.
    pub(crate) sources: Vec<(String, String)>,
    /// `--live-buffer-ms` × 1000: capture to sound for this node's sources.
    pub(crate) live_buffer_micros: i64,
}

/// Handles to a running node, shared by the HTTP handlers.
#[derive(Clone)]
pub(crate) struct NodeState {
    pub(crate) swarm: Client,
    pub(crate) library: Library,
    pub(crate) name: String,
    pub(crate) audio: audio::Audio,
    pub(crate) control: driver::Control,
    /// The volume as last set.
    pub(crate) volume: events::Volume,
    /// This node's zone, channel map and delay trim.
    pub(crate) placements: placement::Placements,
    /// Required of every API request when set (non-loopback binding).
    pub(crate) token: Option<String>,
    /// Host names the API answers to besides IP literals and `localhost`.
    pub(crate) http_hosts: std::sync::Arc<Vec<String>>,
    /// API requests served, for `GET /metrics`.
    pub(crate) api_requests: http::metrics::ApiRequests,
    /// Scans of the music folder, and what they changed.
    pub(crate) indexer: indexer::Indexer,
    /// Live sources here and the live stream the session plays.
    pub(crate) live: live::Live,
    /// Cover pictures of tracks held only by other members.
    pub(crate) remote_covers: remote_covers::RemoteCovers,
}

/// Runs a node until Ctrl-C or SIGTERM.
pub(crate) async fn run(options: NodeOptions) -> anyhow::Result<()> {
    let token = match (&options.token, options.http.ip().is_loopback()) {
        (Some(token), _) => {
            if !(16..=256).contains(&token.len()) || !token.chars().all(|c| c.is_ascii_graphic()) {
                anyhow::bail!(
                    "the API token must be 16 to 256 printable ASCII characters without spaces"
                );
            }
            Some(token.clone())
        }
        (None, true) => None,
        (None, false) => {
            let token = api_token::load_or_create(&options.data_dir)?;
            announce(&NodeEvent::ApiToken {
                token: token.clone(),
            });
            Some(token)
        }
    };
    let keypair = firefly_swarm::identity::load_or_create(&options.data_dir)?;
    let mut library_config = LibraryConfig::new(&options.data_dir);
    library_config.music_dir(&options.music);
    let library = Library::open(&library_config).context("opening the library")?;
    // Opening created it if it was missing; scans and the watcher use the
    // canonical path, as the library stores paths.
    let music = options
        .music
        .canonicalize()
        .with_context(|| format!("cannot open music folder {}", options.music.display()))?;

    let now = test_clock::local_clock(options.test_clock);
    if let Some(skew) = options.test_clock {
        tracing::warn!(?skew, "running on a deliberately skewed test clock");
    }
    let mut config = firefly_swarm::Config::new(keypair, options.name.clone());
    config.clock(now.clone());
    if let Some(factor) = options.test_probe_rate {
        tracing::warn!(factor, "time exchange probing at a test rate");
        let mut clock = firefly_clock::Config::default();
        clock.scale_probe_rate(factor);
        config.clock_config(clock);
    }
    let mut transfer = firefly_swarm::transfer::TransferConfig::default();
    transfer.max_upload(options.max_upload);
    config
        .mdns(options.mdns)
        .library(library.clone())
        .transfer(transfer);
    for addr in &options.listen {
        config.listen(addr.clone());
    }
    for addr in &options.peers {
        config.peer(addr.clone());
    }
    if let Some(relay) = &options.relay {
        config.relay(relay.clone());
    }
    if let Some(path) = &options.swarm_key {
        config.swarm_key(firefly_swarm::swarm_key::load(path)?);
    }
    let (client, events, event_loop) = firefly_swarm::new(config)?;
    announce(&NodeEvent::Started {
        peer_id: client.peer_id().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    let swarm_task = tokio::spawn(event_loop.run());
    let timeline = std::sync::Arc::new(timeline::NodeTimeline::new(now.clone(), client.mapping()));
    // The latency trim given now is kept; without one, the last one given.
    let latency_ms = {
        let library = library.clone();
        let given = options.latency_ms;
        tokio::task::spawn_blocking(move || match given {
            Some(ms) => {
                persist::save_latency(&library, ms);
                ms
            }
            None => persist::saved_latency(&library).unwrap_or(0),
        })
        .await?
    };
    let audio = match &options.output {
        Some(output) => audio::Audio::start(output, timeline, latency_ms)?,
        None => {
            let default = OutputArg::Play(firefly_player::OutputChoice::DefaultDevice);
            match audio::Audio::start(&default, timeline.clone(), latency_ms) {
                Ok(audio) => audio,
                Err(err) => {
                    announce(&NodeEvent::NoSoundDevice {
                        reason: format!("{err:#}"),
                    });
                    audio::Audio::start(&OutputArg::Null, timeline, latency_ms)?
                }
            }
        }
    };
    let volume = events::Volume::default();
    let placements =
        placement::Placements::open(library.clone(), audio.clone(), volume.clone(), latency_ms)
            .await;
    tokio::spawn(placement::keep_converged(
        placements.clone(),
        client.clone(),
    ));
    let control = driver::spawn(
        client.clone(),
        library.clone(),
        audio.clone(),
        now,
        placements.subscribe(),
    );
    let live = live::Live::start(client.clone(), audio.clone(), options.live_buffer_micros);
    live.follow(control.clone());
    for (name, spec) in &options.sources {
        live.add(name, spec, None)
            .with_context(|| format!("cannot add the live source {name}"))?;
    }
    restore_volume(&library, &audio, &volume).await;
    tokio::spawn(keep_volume(library.clone(), volume.clone()));
    let volumes = events::VolumeService {
        client: client.clone(),
        audio: audio.clone(),
        volume: volume.clone(),
    };
    let log_task = tokio::spawn(log_events(
        events,
        control.clone(),
        volumes,
        placements.clone(),
    ));
    let indexer = indexer::Indexer::new(library.clone(), music.clone(), client.clone());
    tokio::spawn(feed_library_events(
        indexer.subscribe(),
        control.clone(),
        client.clone(),
    ));
    tokio::spawn(events::report_playout(
        client.clone(),
        audio.clone(),
        volume.clone(),
    ));

    let state = NodeState {
        swarm: client.clone(),
        library: library.clone(),
        name: options.name.clone(),
        audio,
        control,
        volume,
        placements,
        token: token.clone(),
        http_hosts: std::sync::Arc::new(options.http_hosts.clone()),
        api_requests: Default::default(),
        indexer: indexer.clone(),
        live,
        remote_covers: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .with_context(|| format!("cannot serve the API on {}", options.http))?;
    let bound = listener.local_addr()?;
    announce(&NodeEvent::Api {
        url: format!("http://{bound}"),
        ui: api_token::ui_url(bound, &options.http_hosts, token.as_deref()),
    });
    let server = tokio::spawn(http::serve(listener, state));

    // Watching starts first, so nothing that changes during the scan is missed.
    let ignore = vec![
        options.data_dir.join(firefly_library::DATABASE_FILE),
        options.data_dir.join(firefly_library::STAGING_DIR),
    ]
    .into_iter()
    .map(|p| p.canonicalize().unwrap_or(p))
    .collect();
    watcher::spawn(indexer.clone(), ignore);
    scan(&indexer, &client).await?;
    // Peers learn of the scanned tracks (and can download them) from this.
    client.library_changed().await?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    leave(&client).await;
    announce(&NodeEvent::Stopping);
    server.abort();
    log_task.abort();
    let _ = server.await;
    let _ = log_task.await;
    drop(client);
    // The loop ends once the last client is gone; the HTTP state held one.
    swarm_task.abort();
    let _ = swarm_task.await;
    // The library's last handles go with the runtime's tasks when `up`
    // drops it; every write was committed (and synced) where it was made,
    // so closing the database is all that is left.
    drop(library);
    Ok(())
}

/// How long a goodbye may take to be said, and then to leave the host.
const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
const GOODBYE_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// Says goodbye to the swarm, so members drop this node (and elect a new
/// coordinator if it was one) at once instead of after the member timeout;
/// then gives the event loop a moment to send it.
async fn leave(client: &Client) {
    match tokio::time::timeout(GOODBYE_TIMEOUT, client.leave()).await {
        Ok(Ok(())) => tokio::time::sleep(GOODBYE_FLUSH).await,
        Ok(Err(err)) => tracing::warn!(%err, "could not say goodbye to the swarm"),
        Err(_) => tracing::warn!("saying goodbye to the swarm timed out"),
    }
}

/// Scans the music folder and announces the library version in heartbeats.
async fn scan(indexer: &indexer::Indexer, client: &Client) -> anyhow::Result<()> {
    let report = indexer.scan_all().await?;
    let version = indexer
        .library()
        .version()
        .context("reading the library version")?;
    announce(&NodeEvent::Library {
        tracks: report.tracks,
        version,
    });
    client
        .set_status(NodeStatus {
            library_version: version,
            ..NodeStatus::default()
        })
        .await?;
    Ok(())
}

/// Hands library changes to the parts of the node they concern: a track
/// that left this node's library, that the session plays or queues and
/// that no other member holds, is gone for the swarm — the coordinator is
/// told ([`ControlRequest::TrackGone`]) so it leaves the queue and playback
/// moves on.
async fn feed_library_events(
    mut events: tokio::sync::broadcast::Receiver<indexer::LibraryEvent>,
    control: driver::Control,
    client: Client,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let track = match events.recv().await {
            Ok(indexer::LibraryEvent::TrackRemoved(track)) => track,
            Ok(indexer::LibraryEvent::TrackAdded(_)) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(n, "library events missed");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let session = control.session();
        if session.track != Some(track) && !session.queue.contains(&track) {
            continue;
        }
        let me = client.peer_id();
        let held_elsewhere = client.catalog().await.is_ok_and(|catalog| {
            catalog
                .iter()
                .any(|e| e.summary.track == track && e.holders.iter().any(|h| *h != me))
        });
        if held_elsewhere {
            continue;
        }
        let control = control.clone();
        // Off this loop: the command may wait for a coordinator.
        tokio::spawn(async move {
            if let Err(err) = control.command(ControlRequest::TrackGone { track }).await {
                tracing::warn!(%err, track = %track.to_hex(), "the session kept a track that is gone");
            }
        });
    }
}

/// Prints membership changes, one line each, for the person running the node.
/// Events for playback go on to the driver; peers' volume and placement
/// requests are answered here.
async fn log_events(
    mut events: mpsc::Receiver<Event>,
    control: driver::Control,
    volumes: events::VolumeService,
    placements: placement::Placements,
) {
    while let Some(event) = events.recv().await {
        let Some(event) = volumes.intercept(event).await else {
            continue;
        };
        let Some(event) = placements.intercept(&volumes.client, event).await else {
            continue;
        };
        match event {
            Event::PeerJoined { peer, name } => announce(&NodeEvent::Joined {
                peer: peer.to_string(),
                name,
            }),
            Event::PeerLeft { peer, name } => announce(&NodeEvent::Left {
                peer: peer.to_string(),
                name,
            }),
            Event::Listening { addr } => announce(&NodeEvent::Listening {
                addr: addr.to_string(),
            }),
            Event::RelayReserved { relay } => announce(&NodeEvent::RelayReserved {
                relay: relay.to_string(),
            }),
            Event::DirectConnectionUpgraded { peer } => announce(&NodeEvent::Direct {
                peer: peer.to_string(),
            }),
            Event::PeerBanned { peer, reason } => announce(&NodeEvent::Banned {
                peer: peer.to_string(),
                reason: reason.to_string(),
            }),
            other @ (Event::Session { .. }
            | Event::ControlRequest { .. }
            | Event::ClockSynced
            | Event::ClockStepped { .. }) => {
                control.swarm_event(other).await;
            }
            Event::Transfer(TransferEvent::DownloadCompleted { track, path }) => {
                announce(&NodeEvent::Downloaded {
                    track: track.to_string(),
                    path: path.display().to_string(),
                });
            }
            Event::Transfer(TransferEvent::PeerPenalized { peer, reason }) => {
                announce(&NodeEvent::Penalized {
                    peer: peer.to_string(),
                    reason: format!("{reason:?}"),
                });
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Sets the player to the volume stored before a restart, if any.
async fn restore_volume(library: &Library, audio: &audio::Audio, volume: &events::Volume) {
    let library = library.clone();
    let saved = tokio::task::spawn_blocking(move || persist::saved_volume(&library))
        .await
        .ok()
        .flatten();
    if let Some(permille) = saved
        && audio.player().is_some()
        && let Err(err) = volume.set(audio, f32::from(permille) / 1000.0)
    {
        tracing::warn!(%err, "cannot restore the volume");
    }
}

/// Stores this node's volume whenever it changes (checked every second).
async fn keep_volume(library: Library, volume: events::Volume) {
    let mut stored = volume.permille();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = volume.permille();
        if now != stored {
            stored = now;
            let library = library.clone();
            let _ = tokio::task::spawn_blocking(move || persist::save_volume(&library, now)).await;
        }
    }
}
