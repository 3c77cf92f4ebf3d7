//! `firefly up`: run a node — join the swarm, scan the music folder, serve
//! the API, log who joins and leaves.

use crate::node::{NodeOptions, run as run_node};
use firefly_swarm::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `firefly up`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the node keeps its identity and library (default: the platform's data dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The music folder to scan and to put downloads in (default: `music` in the data dir).
    #[arg(long, value_name = "DIR")]
    music: Option<PathBuf>,
    /// Address to listen on (repeatable; default: every interface, TCP and QUIC, random ports).
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Peer to dial at start and whenever it is disconnected (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    peer: Vec<Multiaddr>,
    /// Relay to reserve a slot on, ending in /p2p/<relay peer id>.
    #[arg(long, value_name = "MULTIADDR")]
    relay: Option<Multiaddr>,
    /// Pre-shared key file of a private swarm (`firefly key new > swarm.key`); TCP only.
    #[arg(long, value_name = "FILE")]
    swarm_key: Option<PathBuf>,
    /// This node's name in the swarm (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// API token (required of clients when --http is not loopback; generated and printed if not given).
    #[arg(long, env = "FIREFLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A host name the web UI and API answer to (repeatable), besides IP
    /// addresses and `localhost`: others are refused (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    http_host: Vec<String>,
    /// Where to serve the JSON API (a non-loopback address requires a token).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// Do not look for peers on the LAN with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Where the sound goes: `device` (the default sound card), `device:NAME`,
    /// `virtual` (a clocked stand-in, for tests), `null` (no sound) or `wav:PATH`.
    /// Default: the default sound card, or no sound if the machine has none.
    #[arg(long, value_name = "OUTPUT")]
    output: Option<crate::node::OutputArg>,
    /// Output latency to compensate on top of what the device reports, ms
    /// (what no device reports: a Bluetooth speaker, an external DSP; may be
    /// negative). Kept for later starts; default: the last one given, else 0.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    latency_ms: Option<i64>,
    /// Cap on the chunk bytes this node sends to peers, in bytes per second (default: no cap).
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1024..))]
    max_upload: Option<u64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = crate::data_dir::resolve(args.data_dir)?;
    let music = match args.music {
        // A folder named on the command line must exist: creating it would
        // hide a typo behind a node with no music.
        Some(music) if !music.is_dir() => anyhow::bail!(
            "the music folder {} does not exist or is not a folder (create it, or leave out \
             --music to use {})",
            music.display(),
            data_dir.join("music").display()
        ),
        Some(music) => music,
        None => data_dir.join("music"),
    };
    let name = match args.name {
        Some(name) => name,
        None => default_name(),
    };
    let options = NodeOptions {
        data_dir,
        music,
        listen: args.listen,
        peers: args.peer,
        relay: args.relay,
        swarm_key: args.swarm_key,
        name,
        http: args.http,
        mdns: !args.no_mdns,
        output: args.output,
        latency_ms: args.latency_ms,
        token: args.token,
        http_hosts: args.http_host,
        test_clock: crate::node::test_clock::TestClock::from_env()?,
        max_upload: args.max_upload,
    };
    tokio::runtime::Runtime::new()?.block_on(run_node(options))
}

/// The host name, cut to the longest name the swarm accepts.
fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "firefly".to_string());
    host.chars()
        .filter(|c| !c.is_control())
        .scan(0usize, |len, c| {
            *len += c.len_utf8();
            (*len <= firefly_swarm::MAX_NAME_LEN).then_some(c)
        })
        .collect()
}
