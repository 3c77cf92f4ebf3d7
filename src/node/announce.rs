//! What a running node tells whoever started it, on stdout: one line per
//! thing that happened (its id, its addresses, its library, peers joining
//! and leaving, its role, downloads …).
//!
//! People read sentences (`joined: kitchen 12D3…`); programs (the demo, the
//! benchmarks, the tests, a supervisor) read `--events json`: one JSON object
//! per line, tagged by `"event"`, documented in `docs/EVENTS.md`. Both come
//! from the one typed [`NodeEvent`], so a reworded sentence cannot break a
//! program. The format is chosen once per process ([`set_format`]); logs
//! (tracing, on stderr) are a separate stream.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::OnceLock;

/// How [`announce`] writes events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventFormat {
    /// One sentence per event, for people (the default).
    #[default]
    Human,
    /// One JSON object per line, for programs (`docs/EVENTS.md`).
    Json,
}

/// A node's role as the role rule derived it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// This node orders playback.
    Coordinator,
    /// Another node does (named in the event).
    Following,
    /// No member holds the role yet.
    None,
}

/// One thing a node reports on stdout. The `event` tag and the field names
/// are a contract (`docs/EVENTS.md`): add variants and fields, never rename.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum NodeEvent {
    /// The node has its identity (first event of `up` and `relay`).
    Started {
        /// Its libp2p peer id.
        peer_id: String,
        /// The firefly version.
        version: String,
    },
    /// A token was generated for a non-loopback API.
    ApiToken {
        /// The bearer token clients must send.
        token: String,
    },
    /// No sound device could be opened; the node runs without sound.
    NoSoundDevice {
        /// Why the device did not open.
        reason: String,
    },
    /// The API and web UI are served.
    Api {
        /// The API's base URL (`http://ADDR`).
        url: String,
        /// The web UI's URL (with the token when one is required).
        ui: String,
    },
    /// The swarm listens on an address.
    Listening {
        /// The multiaddr.
        addr: String,
    },
    /// The music folder was scanned; the node is ready.
    Library {
        /// Tracks in this node's library.
        tracks: u64,
        /// The library version.
        version: u64,
    },
    /// A track entered this node's library after start-up (the music
    /// folder's watcher or `POST /api/scan`).
    TrackAdded {
        /// Its track id.
        track: String,
        /// Its title (cleaned of control characters).
        title: String,
    },
    /// A track left this node's library (its file was removed or changed).
    TrackRemoved {
        /// Its track id.
        track: String,
    },
    /// The music folder disappeared (its tracks leave the library until it
    /// is back) or came back (it is rescanned).
    MusicFolder {
        /// The folder.
        path: String,
        /// Whether it is there now.
        present: bool,
    },
    /// A member joined the swarm.
    Joined {
        /// Its peer id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// A member left (said goodbye or stopped sending heartbeats).
    Left {
        /// Its peer id.
        peer: String,
        /// Its name.
        name: String,
    },
    /// The node's view of the coordinator changed.
    Role {
        /// What this node is now.
        role: Role,
        /// The coordinator's peer id, if any.
        coordinator: Option<String>,
        /// The term.
        term: u64,
    },
    /// A relay reserved a slot for this node.
    RelayReserved {
        /// The relay's address.
        relay: String,
    },
    /// A relayed connection became a direct one.
    Direct {
        /// The peer.
        peer: String,
    },
    /// `firefly relay`: a node reserved a slot on this relay.
    SlotReserved {
        /// The node.
        peer: String,
    },
    /// `firefly relay`: a relayed circuit opened.
    CircuitOpened {
        /// Who asked for the circuit.
        src: String,
        /// Whom it reaches.
        dst: String,
    },
    /// `firefly relay`: a relayed circuit closed.
    CircuitClosed {
        /// Who asked for the circuit.
        src: String,
        /// Whom it reached.
        dst: String,
    },
    /// At start-up, the session stored before the node stopped was read back
    /// (paused where it was; `resume` carries on from there).
    SessionRestored {
        /// `paused` or `stopped`.
        state: String,
        /// The track id, if any.
        track: Option<String>,
        /// Where in the track, ms.
        position_ms: u64,
        /// Tracks queued after it.
        queued: usize,
    },
    /// This node moved to another zone: it left `from`'s music and joins
    /// `zone`'s playback.
    ZoneChanged {
        /// The zone it left (id).
        from: String,
        /// The zone it is in now (id).
        zone: String,
        /// That zone's name.
        name: String,
    },
    /// A track finished downloading and was verified.
    Downloaded {
        /// Its track id.
        track: String,
        /// Where it was written.
        path: String,
    },
    /// This node starts the session's track (late: after a download, while
    /// it downloads, or again after a clock step or a device change).
    Joining {
        /// The track id.
        track: String,
        /// Whether the rest of the track is still downloading.
        during_download: bool,
        /// Why now, in words (`after its download`, `while it downloads …`).
        why: String,
    },
    /// The session's track must be downloaded before this node can join.
    AwaitingDownload {
        /// The track id.
        track: String,
    },
    /// A download failed (a later play tries again).
    DownloadFailed {
        /// The track id.
        track: String,
        /// Why.
        error: String,
    },
    /// A peer was penalized for bad input.
    Penalized {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A peer was banned.
    Banned {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The node is stopping (SIGTERM or Ctrl-C); it said goodbye to the swarm.
    Stopping,
}

impl NodeEvent {
    /// The sentence people read.
    pub(crate) fn human(&self) -> String {
        match self {
            Self::Started { peer_id, .. } => format!("peer id: {peer_id}"),
            Self::ApiToken { token } => {
                format!("api token: {token} (send `Authorization: Bearer {token}`)")
            }
            Self::NoSoundDevice { reason } => {
                format!("output: no sound device ({reason}); running without sound")
            }
            Self::Api { url, ui } => format!("api: {url}\nui: {ui}"),
            Self::Listening { addr } => format!("listening: {addr}"),
            Self::Library { tracks, version } => {
                format!("library: {tracks} tracks, version {version}")
            }
            Self::TrackAdded { track, title } => format!("added: {track} {title}"),
            Self::TrackRemoved { track } => format!("removed: {track}"),
            Self::MusicFolder {
                path,
                present: false,
            } => format!(
                "music: the folder {path} is gone; its tracks leave the library until it is back"
            ),
            Self::MusicFolder {
                path,
                present: true,
            } => format!("music: the folder {path} is back; rescanning it"),
            Self::Joined { peer, name } => format!("joined: {name} {peer}"),
            Self::Left { peer, name } => format!("left: {name} {peer}"),
            Self::Role {
                role,
                coordinator,
                term,
            } => match (role, coordinator) {
                (Role::Coordinator, _) => format!("role: coordinator (term {term})"),
                (Role::Following, Some(c)) => format!("role: following {c} (term {term})"),
                _ => "role: no coordinator".to_string(),
            },
            Self::RelayReserved { relay } => format!("relay: reserved a slot on {relay}"),
            Self::Direct { peer } => format!("direct: {peer}"),
            Self::SlotReserved { peer } => format!("reserved: {peer}"),
            Self::CircuitOpened { src, dst } => format!("circuit: {src} -> {dst}"),
            Self::CircuitClosed { src, dst } => format!("closed: {src} -> {dst}"),
            Self::SessionRestored {
                state,
                track,
                position_ms,
                queued,
            } => format!(
                "playback: restored the session ({state}, track {}, at {position_ms} ms, {queued} queued)",
                track.as_deref().unwrap_or("none")
            ),
            Self::ZoneChanged { from, zone, name } => {
                format!("zone: moved from {from} to {name:?} ({zone})")
            }
            Self::Downloaded { track, path } => format!("downloaded: {track} -> {path}"),
            Self::Joining { track, why, .. } => format!("playback: joining {track} {why}"),
            Self::AwaitingDownload { track } => {
                format!("playback: downloading track {track}; joining when it is here")
            }
            Self::DownloadFailed { track, error } => {
                format!("playback: cannot download {track}: {error}")
            }
            Self::Penalized { peer, reason } => format!("penalized: {peer} ({reason})"),
            Self::Banned { peer, reason } => format!("banned: {peer} ({reason})"),
            Self::Stopping => "stopping: left the swarm".to_string(),
        }
    }

    /// The JSON line programs read.
    pub(crate) fn json(&self) -> String {
        // A plain enum of strings and numbers: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

static FORMAT: OnceLock<EventFormat> = OnceLock::new();

/// Chooses the format for the rest of the process (the first call wins).
pub(crate) fn set_format(format: EventFormat) {
    let _ = FORMAT.set(format);
}

/// Writes `event` on stdout in the chosen format. A closed stdout is not
/// the node's problem: the event is dropped.
pub(crate) fn announce(event: &NodeEvent) {
    let line = match FORMAT.get().copied().unwrap_or_default() {
        EventFormat::Human => event.human(),
        EventFormat::Json => event.json(),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_that_reads_back() {
        let events = [
            NodeEvent::Started {
                peer_id: "12D3".into(),
                version: "0.1.0".into(),
            },
            NodeEvent::Library {
                tracks: 3,
                version: 7,
            },
            NodeEvent::Role {
                role: Role::Following,
                coordinator: Some("12D3".into()),
                term: 2,
            },
            NodeEvent::SessionRestored {
                state: "paused".into(),
                track: None,
                position_ms: 1500,
                queued: 2,
            },
            NodeEvent::Stopping,
        ];
        for event in events {
            let line = event.json();
            assert!(!line.contains('\n'));
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(value["event"].is_string(), "{line}");
            assert_eq!(serde_json::from_str::<NodeEvent>(&line).unwrap(), event);
        }
        assert_eq!(
            NodeEvent::Library {
                tracks: 3,
                version: 7
            }
            .json(),
            r#"{"event":"library","tracks":3,"version":7}"#
        );
    }

    /// Every kind of event is in docs/EVENTS.md: the variants are read from
    /// this file's source, so a new one without its line fails here.
    #[test]
    fn every_event_kind_is_documented() {
        let source = include_str!("announce.rs");
        let docs = include_str!("../../docs/EVENTS.md");
        let start = source
            .find("pub(crate) enum NodeEvent {")
            .expect("the enum");
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("the enum's end")];
        let kinds: Vec<String> = body
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|line| {
                let name: String = line
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                let mut snake = String::new();
                for (i, c) in name.chars().enumerate() {
                    if c.is_ascii_uppercase() && i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                }
                snake
            })
            .collect();
        assert!(kinds.len() >= 20, "found only {kinds:?}");
        for kind in &kinds {
            assert!(
                docs.contains(&format!("| `{kind}` |")),
                "docs/EVENTS.md does not list `{kind}`"
            );
        }
    }

    #[test]
    fn people_read_the_sentences_they_always_read() {
        let role = NodeEvent::Role {
            role: Role::Coordinator,
            coordinator: Some("me".into()),
            term: 4,
        };
        assert_eq!(role.human(), "role: coordinator (term 4)");
        assert_eq!(
            NodeEvent::Joined {
                peer: "p".into(),
                name: "kitchen".into()
            }
            .human(),
            "joined: kitchen p"
        );
    }
}
