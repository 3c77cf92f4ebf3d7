//! The config file of `firefly up`: TOML, one key per flag.
//!
//! [`find`] picks the file: `--config FILE`, else
//! `$XDG_CONFIG_HOME/firefly/config.toml` (default `~/.config/…`), else
//! `/etc/firefly/config.toml`; none is fine (every key has a default).
//! [`parse`] reads it strictly: an unknown key or a bad value is an error
//! naming the key and the line. Flags override the file; that merge is
//! `cmd::up`'s. [`DEFAULT_FILE`] is what `firefly config init` writes: every
//! key, commented out, with its default.
//!
//! Relative paths in the file are relative to the file's folder, so a file
//! means the same whoever starts the node and from where.

use crate::node::OutputArg;
use crate::node::announce::EventFormat;
use anyhow::{Context, anyhow};
use firefly_swarm::Multiaddr;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The system-wide config file (the Debian package's).
pub(crate) const SYSTEM_PATH: &str = "/etc/firefly/config.toml";

/// What a config file may say; every field is optional (the flag's default
/// applies). The key of a flag is its name without the dashes, `-` as `_`
/// (`--data-dir` is `data_dir`); `--no-mdns` is `mdns = false`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpConfig {
    /// `--data-dir`.
    pub(crate) data_dir: Option<PathBuf>,
    /// `--music`.
    pub(crate) music: Option<PathBuf>,
    /// `--listen`.
    pub(crate) listen: Option<Vec<Multiaddr>>,
    /// `--peer`.
    pub(crate) peer: Option<Vec<Multiaddr>>,
    /// `--relay`.
    pub(crate) relay: Option<Multiaddr>,
    /// `--swarm-key`.
    pub(crate) swarm_key: Option<PathBuf>,
    /// `--name`.
    #[serde(default, deserialize_with = "node_name")]
    pub(crate) name: Option<String>,
    /// `--token`.
    pub(crate) token: Option<String>,
    /// `--http-host`.
    pub(crate) http_host: Option<Vec<String>>,
    /// `--http`.
    pub(crate) http: Option<SocketAddr>,
    /// `--no-mdns` is `mdns = false`.
    pub(crate) mdns: Option<bool>,
    /// `--output`.
    #[serde(default, deserialize_with = "output")]
    pub(crate) output: Option<OutputArg>,
    /// `--latency-ms`.
    pub(crate) latency_ms: Option<i64>,
    /// `--max-upload`.
    #[serde(default, deserialize_with = "max_upload")]
    pub(crate) max_upload: Option<u64>,
    /// `--source`, each `NAME=SPEC`.
    pub(crate) source: Option<Vec<String>>,
    /// `--live-buffer-ms`.
    #[serde(default, deserialize_with = "live_buffer_ms")]
    pub(crate) live_buffer_ms: Option<u32>,
    /// `--events`.
    pub(crate) events: Option<EventFormat>,
}

fn live_buffer_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let ms = u32::deserialize(d)?;
    if !(60..=5000).contains(&ms) {
        return Err(serde::de::Error::custom(
            "live_buffer_ms must be 60 to 5000",
        ));
    }
    Ok(Some(ms))
}

fn output<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OutputArg>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn max_upload<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let cap = u64::deserialize(d)?;
    if cap < 1024 {
        return Err(serde::de::Error::custom(format!(
            "{cap} is below the smallest cap, 1024 bytes per second"
        )));
    }
    Ok(Some(cap))
}

fn node_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() || name.len() > firefly_swarm::MAX_NAME_LEN {
        return Err(serde::de::Error::custom(format!(
            "a node name is 1 to {} bytes",
            firefly_swarm::MAX_NAME_LEN
        )));
    }
    Ok(Some(name))
}

/// The per-user config file: `$XDG_CONFIG_HOME/firefly/config.toml`, with
/// `~/.config` when the variable is unset or empty.
pub(crate) fn user_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(base.join("firefly").join("config.toml"))
}

/// The file `firefly up` reads: `explicit` (which must exist), else the
/// user's, else the system's, else none.
pub(crate) fn find(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        if !path.is_file() {
            anyhow::bail!(
                "the config file {} does not exist (`firefly config init --path {}` writes one)",
                path.display(),
                path.display()
            );
        }
        return Ok(Some(path.to_path_buf()));
    }
    Ok(user_path()
        .into_iter()
        .chain(std::iter::once(PathBuf::from(SYSTEM_PATH)))
        .find(|p| p.is_file()))
}

/// Reads and parses the config file at `path`.
pub(crate) fn load(path: &Path) -> anyhow::Result<UpConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let mut config = parse(&text).map_err(|err| anyhow!("{}: {err}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for field in [
        &mut config.data_dir,
        &mut config.music,
        &mut config.swarm_key,
    ] {
        if let Some(p) = field.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

/// A config file's error: the line (1-based), the key when one is named
/// there, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {message}", key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default())]
pub(crate) struct ConfigError {
    /// The line of the offending key or value, 1-based.
    pub(crate) line: usize,
    /// The key it belongs to, when the line names one.
    pub(crate) key: Option<String>,
    /// What was wrong.
    pub(crate) message: String,
}

/// Parses a config file's text.
pub(crate) fn parse(text: &str) -> Result<UpConfig, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let start = err.span().map_or(0, |s| s.start).min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        ConfigError {
            line,
            key: key_at(text, start),
            message: err.message().trim().to_string(),
        }
    })
}

/// The key whose `key = …` starts on the line of byte `at`, or on the
/// nearest line above it (a value spanning lines).
fn key_at(text: &str, at: usize) -> Option<String> {
    let upto = &text[..text[at..].find('\n').map_or(text.len(), |n| at + n)];
    upto.lines().rev().find_map(|line| {
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .then(|| key.to_string())
    })
}

/// What `firefly config init` writes: every key, commented out, with its
/// default and what it does.
pub(crate) const DEFAULT_FILE: &str = r#"# Firefly node configuration (`firefly up`), TOML.
#
# Read from `firefly up --config FILE`, else $XDG_CONFIG_HOME/firefly/config.toml
# (~/.config/firefly/config.toml), else /etc/firefly/config.toml.
# Every key is a flag of `firefly up` (`firefly up --help`); a flag given on
# the command line overrides the key. Relative paths are relative to this
# file's folder. Uncomment a line to change it.

# Where the node keeps its identity and library.
# Default: the platform's data dir (~/.local/share/firefly).
#data_dir = "/var/lib/firefly"

# The music folder to scan and to put downloads in. Default: `music` in the data dir.
#music = "/srv/music"

# This node's name in the swarm. Default: the host name.
#name = "living-room"

# Where the sound goes: "device" (the default sound card), "device:NAME",
# "null" (no sound), "virtual" (a clocked stand-in, for tests) or "wav:PATH".
# Default: the default sound card, or no sound if the machine has none.
#output = "device"

# Output latency to add to what the device reports, ms (a Bluetooth
# speaker, an external DSP; may be negative).
#latency_ms = 0

# Where to serve the web UI and the JSON API. A non-loopback address
# requires a token (generated into the data dir if not given).
#http = "127.0.0.1:8081"

# The API token (16 to 256 printable ASCII characters).
#token = "change-me-to-a-long-random-string"

# Host names the web UI and API answer to, besides IP addresses and
# localhost (others are refused: DNS rebinding).
#http_host = ["firefly.local"]

# Addresses the swarm listens on. Default: every interface, TCP and QUIC, random ports.
#listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]

# Look for peers on the LAN with mDNS.
#mdns = true

# Peers to dial at start and whenever they are disconnected.
#peer = ["/ip4/192.0.2.10/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]

# A relay to reserve a slot on (ends in /p2p/<relay peer id>).
#relay = "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"

# Pre-shared key file of a private swarm (`firefly key new > swarm.key`).
#swarm_key = "/etc/firefly/swarm.key"

# Cap on the chunk bytes sent to peers, bytes per second (at least 1024). Default: no cap.
#max_upload = 1000000

# Live sources on this node, each "NAME=SPEC": pipe:PATH (raw PCM from a
# FIFO or file; ?format=s16le&rate=48000&channels=2 to change the format),
# url:http://… (an internet radio stream), cmd:PROGRAM ARGS (its output).
#source = ["spotify=pipe:/tmp/librespot.fifo", "radio=url:http://radio.example/stream.mp3"]

# Capture to sound for this node's live sources, ms (60 to 5000).
#live_buffer_ms = 400

# What `firefly up` prints on stdout: "human" sentences or "json" events (docs/EVENTS.md).
#events = "human"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_no_settings() {
        assert_eq!(parse(DEFAULT_FILE).unwrap(), UpConfig::default());
    }

    #[test]
    fn the_default_file_names_every_key() {
        // Uncommented, every example line parses, and each key is there.
        let uncommented: String = DEFAULT_FILE
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let config = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let keys = [
            "data_dir",
            "music",
            "name",
            "output",
            "latency_ms",
            "http",
            "token",
            "http_host",
            "listen",
            "mdns",
            "peer",
            "relay",
            "swarm_key",
            "max_upload",
            "source",
            "live_buffer_ms",
            "events",
        ];
        for key in keys {
            assert!(
                uncommented.contains(&format!("{key} = ")),
                "{key} missing from the default file"
            );
        }
        assert_eq!(config.max_upload, Some(1_000_000));
        assert_eq!(config.mdns, Some(true));
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
data_dir = "/d"
music = "/m"
listen = ["/ip4/127.0.0.1/tcp/4001"]
peer = ["/ip4/127.0.0.1/tcp/4002", "/ip4/127.0.0.1/tcp/4003"]
relay = "/ip4/127.0.0.1/tcp/4004/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
swarm_key = "/k"
name = "kitchen"
token = "0123456789abcdef"
http_host = ["firefly.lan"]
http = "0.0.0.0:9000"
mdns = false
output = "null"
latency_ms = -40
max_upload = 4096
events = "json"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(c.music, Some(PathBuf::from("/m")));
        assert_eq!(
            c.listen,
            Some(vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])
        );
        assert_eq!(c.peer.as_ref().map(Vec::len), Some(2));
        assert!(c.relay.is_some());
        assert_eq!(c.swarm_key, Some(PathBuf::from("/k")));
        assert_eq!(c.name.as_deref(), Some("kitchen"));
        assert_eq!(c.token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(c.http_host, Some(vec!["firefly.lan".to_string()]));
        assert_eq!(c.http, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(c.mdns, Some(false));
        assert_eq!(c.output, Some(OutputArg::Null));
        assert_eq!(c.latency_ms, Some(-40));
        assert_eq!(c.max_upload, Some(4096));
        assert_eq!(c.events, Some(EventFormat::Json));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let err = parse("name = \"a\"\n\nspeed = 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.key.as_deref(), Some("speed"));
        assert!(err.message.contains("unknown field `speed`"), "{err}");
        assert!(
            err.to_string().starts_with("line 3, key `speed`: "),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let cases = [
            ("http = \"nowhere\"\n", 1, "http"),
            ("name = \"a\"\nmdns = \"yes\"\n", 2, "mdns"),
            ("\n\noutput = \"speaker\"\n", 3, "output"),
            ("max_upload = 10\n", 1, "max_upload"),
            ("latency_ms = 1.5\n", 1, "latency_ms"),
            ("events = \"xml\"\n", 1, "events"),
            (
                "peer = [\n  \"/ip4/1.2.3.4/tcp/1\",\n  \"not an address\",\n]\n",
                3,
                "peer",
            ),
            (&format!("name = \"{}\"\n", "n".repeat(300)), 1, "name"),
        ];
        for (text, line, key) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(
                (err.line, err.key.as_deref()),
                (line, Some(key)),
                "{text:?}: {err}"
            );
        }
        // Not TOML at all: the line is still given.
        let err = parse("name = \"a\"\nthis is not toml\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "data_dir = \"state\"\nmusic = \"/abs\"\n").unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.data_dir, Some(dir.path().join("state")));
        assert_eq!(config.music, Some(PathBuf::from("/abs")));
    }
}
