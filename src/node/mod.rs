//! A running Firefly node: the glue between the swarm, the library and the
//! HTTP API.
//!
//! [`run`] opens the node's identity and library, scans the music folder,
//! starts the swarm's event loop, serves the JSON API and logs membership
//! until Ctrl-C or SIGTERM. It holds handles only ([`NodeState`]); the libp2p
//! `Swarm` lives in the swarm crate's event loop.

pub(crate) mod http;
mod ui;

use anyhow::Context;
use firefly_library::{Library, LibraryConfig};
use firefly_swarm::transfer::TransferEvent;
use firefly_swarm::{Client, Event, Multiaddr, NodeStatus};
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
    /// Cap on chunk bytes served per second (`--max-upload`); none: no cap.
    pub(crate) max_upload: Option<u64>,
}

/// Handles to a running node, shared by the HTTP handlers.
#[derive(Clone)]
pub(crate) struct NodeState {
    pub(crate) swarm: Client,
    pub(crate) library: Library,
    pub(crate) name: String,
}

/// Runs a node until Ctrl-C or SIGTERM.
pub(crate) async fn run(options: NodeOptions) -> anyhow::Result<()> {
    if !options.http.ip().is_loopback() {
        anyhow::bail!(
            "the API would be open to the network on {}: bind --http to 127.0.0.1 or ::1",
            options.http
        );
    }
    let keypair = firefly_swarm::identity::load_or_create(&options.data_dir)?;
    let mut library_config = LibraryConfig::new(&options.data_dir);
    library_config.music_dir(&options.music);
    let library = Library::open(&library_config).context("opening the library")?;

    let mut config = firefly_swarm::Config::new(keypair, options.name.clone());
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
    println!("peer id: {}", client.peer_id());
    let swarm_task = tokio::spawn(event_loop.run());
    let log_task = tokio::spawn(log_events(events));

    let state = NodeState {
        swarm: client.clone(),
        library: library.clone(),
        name: options.name.clone(),
    };
    let listener = tokio::net::TcpListener::bind(options.http)
        .await
        .with_context(|| format!("cannot serve the API on {}", options.http))?;
    println!("api: http://{}", listener.local_addr()?);
    let server = tokio::spawn(http::serve(listener, state));

    scan(&library, &options.music, &client).await?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    server.abort();
    drop(client);
    // The loop ends once the last client is gone; the HTTP state held one.
    swarm_task.abort();
    log_task.abort();
    Ok(())
}

/// Scans the music folder and announces the library version in heartbeats.
async fn scan(library: &Library, music: &std::path::Path, client: &Client) -> anyhow::Result<()> {
    std::fs::create_dir_all(music)
        .with_context(|| format!("cannot create music folder {}", music.display()))?;
    let scanning = library.clone();
    let roots = vec![music.to_path_buf()];
    let report = tokio::task::spawn_blocking(move || scanning.scan(&roots, &mut ()))
        .await
        .context("the scan task failed")?
        .context("scanning the music folder")?;
    for skipped in &report.skipped {
        tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "skipped");
    }
    let version = library.version().context("reading the library version")?;
    println!("library: {} tracks, version {version}", report.tracks);
    client
        .set_status(NodeStatus {
            library_version: version,
            ..NodeStatus::default()
        })
        .await?;
    // Peers learn the change from the library gossip (and the version from heartbeats).
    client.library_changed().await?;
    Ok(())
}

/// Prints membership changes, one line each, for the person running the node.
async fn log_events(mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::PeerJoined { peer, name } => println!("joined: {name} {peer}"),
            Event::PeerLeft { peer, name } => println!("left: {name} {peer}"),
            Event::Listening { addr } => println!("listening: {addr}"),
            Event::RelayReserved { relay } => println!("relay: reserved a slot on {relay}"),
            Event::DirectConnectionUpgraded { peer } => println!("direct: {peer}"),
            Event::Transfer(TransferEvent::DownloadCompleted { track, path }) => {
                println!("downloaded: {track} -> {}", path.display());
            }
            Event::Transfer(TransferEvent::PeerPenalized { peer, reason }) => {
                println!("penalized: {peer} ({reason:?})");
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
