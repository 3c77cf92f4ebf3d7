//! `firefly up`: run a node — join the swarm, scan the music folder, serve
//! the API, log who joins and leaves.
//!
//! Settings come from the flags, then the config file ([`crate::config`]),
//! then the defaults: [`Settings::merge`] is that precedence, in one place.

use crate::config::UpConfig;
use crate::node::announce::EventFormat;
use crate::node::{NodeOptions, OutputArg, run as run_node};
use firefly_swarm::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the API is served unless a flag or the config file says otherwise.
const DEFAULT_HTTP: &str = "127.0.0.1:8081";

/// Arguments of `firefly up`. Each has a config file key (`firefly config
/// init` writes them all); a flag given here overrides the file.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// Read settings from this TOML file (default: $XDG_CONFIG_HOME/firefly/config.toml,
    /// else /etc/firefly/config.toml, if one exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    /// Where to serve the JSON API (a non-loopback address requires a token) [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Do not look for peers on the LAN with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Where the sound goes: `device` (the default sound card), `device:NAME`,
    /// `virtual` (a clocked stand-in, for tests), `null` (no sound) or `wav:PATH`.
    /// Default: the default sound card, or no sound if the machine has none.
    #[arg(long, value_name = "OUTPUT")]
    output: Option<OutputArg>,
    /// Output latency to compensate on top of what the device reports, ms
    /// (what no device reports: a Bluetooth speaker, an external DSP; may be
    /// negative). Kept for later starts; default: the last one given, else 0.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    latency_ms: Option<i64>,
    /// Cap on the chunk bytes this node sends to peers, in bytes per second (default: no cap).
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1024..))]
    max_upload: Option<u64>,
    /// A live source on this node (repeatable): `NAME=pipe:PATH[?format=s16le&rate=48000&channels=2]`
    /// (a FIFO or file of raw PCM), `NAME=url:http://…` (an internet radio
    /// stream) or `NAME=cmd:PROGRAM ARGS` (its standard output as s16le 48 kHz stereo).
    #[arg(long, value_name = "NAME=SPEC")]
    source: Vec<String>,
    /// Capture to sound for this node's live sources, ms [default: 400].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(60..=5000))]
    live_buffer_ms: Option<u32>,
    /// What to print on stdout: sentences for people, or one JSON object a
    /// line for programs (`docs/EVENTS.md`) [default: human].
    #[arg(long, value_name = "FORMAT")]
    events: Option<EventFormat>,
}

/// What `up` runs with, after flags, the config file and the defaults.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    data_dir: Option<PathBuf>,
    music: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    peer: Vec<Multiaddr>,
    relay: Option<Multiaddr>,
    swarm_key: Option<PathBuf>,
    name: Option<String>,
    token: Option<String>,
    http_host: Vec<String>,
    http: SocketAddr,
    mdns: bool,
    output: Option<OutputArg>,
    /// `None`: the trim the node stored last time (else 0).
    latency_ms: Option<i64>,
    max_upload: Option<u64>,
    source: Vec<String>,
    live_buffer_ms: Option<u32>,
    events: EventFormat,
}

impl Settings {
    /// Flags over the file over the defaults. A list flag given at all
    /// replaces the file's list.
    pub(crate) fn merge(args: Args, file: UpConfig) -> Self {
        Self {
            data_dir: args.data_dir.or(file.data_dir),
            music: args.music.or(file.music),
            listen: list(args.listen, file.listen),
            peer: list(args.peer, file.peer),
            relay: args.relay.or(file.relay),
            swarm_key: args.swarm_key.or(file.swarm_key),
            name: args.name.or(file.name),
            token: args.token.or(file.token),
            http_host: list(args.http_host, file.http_host),
            http: args.http.or(file.http).unwrap_or_else(|| {
                DEFAULT_HTTP
                    .parse()
                    .expect("DEFAULT_HTTP is a socket address")
            }),
            mdns: !args.no_mdns && file.mdns.unwrap_or(true),
            output: args.output.or(file.output),
            latency_ms: args.latency_ms.or(file.latency_ms),
            max_upload: args.max_upload.or(file.max_upload),
            source: list(args.source, file.source),
            live_buffer_ms: args.live_buffer_ms.or(file.live_buffer_ms),
            events: args.events.or(file.events).unwrap_or_default(),
        }
    }
}

/// A list flag given at all, else the file's list, else none.
fn list<T>(flag: Vec<T>, file: Option<Vec<T>>) -> Vec<T> {
    if flag.is_empty() {
        file.unwrap_or_default()
    } else {
        flag
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let file = match crate::config::find(args.config.as_deref())? {
        Some(path) => {
            tracing::info!(path = %path.display(), "reading the config file");
            crate::config::load(&path)?
        }
        None => UpConfig::default(),
    };
    let settings = Settings::merge(args, file);
    crate::node::announce::set_format(settings.events);
    let data_dir = crate::data_dir::resolve(settings.data_dir)?;
    let music = match settings.music {
        // A folder named on the command line or in the config file must
        // exist: creating it would hide a typo behind a node with no music.
        Some(music) if !music.is_dir() => anyhow::bail!(
            "the music folder {} does not exist or is not a folder (create it, or leave out \
             --music to use {})",
            music.display(),
            data_dir.join("music").display()
        ),
        Some(music) => music,
        None => data_dir.join("music"),
    };
    let name = match settings.name {
        Some(name) => name,
        None => default_name(),
    };
    let options = NodeOptions {
        data_dir,
        music,
        listen: settings.listen,
        peers: settings.peer,
        relay: settings.relay,
        swarm_key: settings.swarm_key,
        name,
        http: settings.http,
        mdns: settings.mdns,
        output: settings.output,
        latency_ms: settings.latency_ms,
        token: settings.token,
        http_hosts: settings.http_host,
        test_clock: crate::node::test_clock::TestClock::from_env()?,
        test_probe_rate: crate::node::test_clock::probe_rate_from_env()?,
        max_upload: settings.max_upload,
        sources: settings
            .source
            .iter()
            .map(|s| {
                s.split_once('=')
                    .map(|(name, spec)| (name.to_owned(), spec.to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("--source {s:?} must be NAME=SPEC"))
            })
            .collect::<anyhow::Result<_>>()?,
        live_buffer_micros: i64::from(
            settings
                .live_buffer_ms
                .unwrap_or((firefly_live::DEFAULT_BUFFER_MICROS / 1000) as u32),
        ) * 1000,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        up: Args,
    }

    fn flags(args: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("up").chain(args.iter().copied()))
            .unwrap()
            .up
    }

    fn file(text: &str) -> UpConfig {
        crate::config::parse(text).unwrap()
    }

    #[test]
    fn with_neither_flags_nor_file_the_defaults_apply() {
        let s = Settings::merge(flags(&[]), UpConfig::default());
        assert_eq!(s.http, DEFAULT_HTTP.parse().unwrap());
        assert!(s.mdns);
        assert_eq!(s.latency_ms, None);
        assert_eq!(s.events, EventFormat::Human);
        assert!(s.listen.is_empty() && s.peer.is_empty() && s.output.is_none());
    }

    #[test]
    fn the_file_fills_in_what_the_flags_leave_out() {
        let f = file(
            "name = \"attic\"\nhttp = \"127.0.0.1:9999\"\nmdns = false\nlatency_ms = 25\n\
             peer = [\"/ip4/127.0.0.1/tcp/1\"]\nevents = \"json\"\noutput = \"null\"\n",
        );
        let s = Settings::merge(flags(&[]), f);
        assert_eq!(s.name.as_deref(), Some("attic"));
        assert_eq!(s.http, "127.0.0.1:9999".parse().unwrap());
        assert!(!s.mdns);
        assert_eq!(s.latency_ms, Some(25));
        assert_eq!(s.peer.len(), 1);
        assert_eq!(s.events, EventFormat::Json);
        assert_eq!(s.output, Some(OutputArg::Null));
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "name = \"attic\"\nhttp = \"127.0.0.1:9999\"\nlatency_ms = 25\n\
             peer = [\"/ip4/127.0.0.1/tcp/1\", \"/ip4/127.0.0.1/tcp/2\"]\nevents = \"json\"\n\
             max_upload = 2048\n",
        );
        let s = Settings::merge(
            flags(&[
                "--name",
                "porch",
                "--http",
                "127.0.0.1:7000",
                "--latency-ms",
                "-5",
                "--peer",
                "/ip4/127.0.0.1/tcp/3",
                "--events",
                "human",
                "--max-upload",
                "4096",
                "--no-mdns",
            ]),
            f,
        );
        assert_eq!(s.name.as_deref(), Some("porch"));
        assert_eq!(s.http, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(s.latency_ms, Some(-5));
        // A list flag replaces the file's list rather than adding to it.
        assert_eq!(s.peer, vec!["/ip4/127.0.0.1/tcp/3".parse().unwrap()]);
        assert_eq!(s.events, EventFormat::Human);
        assert_eq!(s.max_upload, Some(4096));
        assert!(!s.mdns);
    }
}
