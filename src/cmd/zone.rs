//! `firefly zone list|create|move|merge|split|rename|volume`,
//! `firefly channel NODE MAP` and `firefly trim NODE MS`: zones and how each
//! node plays, one call each to a node's API (`/api/zones…`,
//! `/api/channel`, `/api/trim`), like the transport commands.
//!
//! Each prints a line or two for people, or with `--json` the node's JSON
//! answer as it came. [`ZoneArg`] is the `--zone` of the playback commands.

use crate::cmd::play::NodeArgs;
use crate::cmd::transport::{call, describe};
use serde_json::{Value, json};

/// `--zone ZONE` of a playback command: the zone whose session it drives.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ZoneArg {
    /// The zone (name or id) whose session this drives; default: the node's own.
    #[arg(long, value_name = "ZONE")]
    pub(crate) zone: Option<String>,
}

impl ZoneArg {
    /// `path` with the zone as its `zone` query parameter, if one is given.
    pub(crate) fn path(&self, path: &str) -> String {
        match &self.zone {
            None => path.to_string(),
            Some(zone) => format!(
                "{path}?zone={}",
                form_urlencoded::byte_serialize(zone.as_bytes()).collect::<String>()
            ),
        }
    }
}

/// Arguments of `firefly pause|resume|next|prev|stop`.
#[derive(Debug, clap::Args)]
pub(crate) struct CommandArgs {
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    #[command(flatten)]
    pub(crate) zone: ZoneArg,
}

/// Arguments of `firefly zone`.
#[derive(Debug, clap::Args)]
pub(crate) struct ZoneArgs {
    #[command(subcommand)]
    action: ZoneAction,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum ZoneAction {
    /// List the zones, their members and what each plays.
    List,
    /// Make a zone of NODES (names or peer ids), which leave their zones for it.
    Create {
        /// The new zone's name.
        name: String,
        /// Its nodes (at least one).
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Move NODE into ZONE: it joins the zone's playback, in step.
    Move {
        /// The node (name or peer id).
        node: String,
        /// The zone (name or id).
        zone: String,
    },
    /// Move every node of FROM into INTO ("play everywhere"); INTO's session plays on.
    Merge {
        /// The zone that ends.
        from: String,
        /// The zone that stays.
        into: String,
    },
    /// Split NODES off ZONE into a new zone NAME.
    Split {
        /// The zone split.
        zone: String,
        /// The new zone's name.
        name: String,
        /// The nodes that leave for it (not all of ZONE's).
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Rename a zone.
    Rename {
        /// The zone (name or id).
        zone: String,
        /// Its new name.
        name: String,
    },
    /// Set a zone's group volume (0.0 to 4.0, 1.0 unchanged), on top of each node's.
    Volume {
        /// The zone (name or id).
        zone: String,
        /// The volume.
        level: f32,
    },
}

/// Which channels a node plays.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Channels {
    /// Both, as recorded.
    Stereo,
    /// The left channel on every output channel.
    Left,
    /// The right channel on every output channel.
    Right,
    /// Both mixed down.
    Mono,
}

/// Arguments of `firefly channel`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChannelArgs {
    /// The node (name or peer id).
    target: String,
    /// What it plays.
    #[arg(value_enum)]
    map: Channels,
    #[command(flatten)]
    node: NodeArgs,
}

/// Arguments of `firefly trim`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrimArgs {
    /// The node (name or peer id).
    target: String,
    /// Its delay trim, ms (-10000 to 10000): the latency trim, for speakers farther away.
    #[arg(allow_negative_numbers = true)]
    delay_ms: i64,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn zone(args: ZoneArgs) -> anyhow::Result<()> {
    let (path, body) = match &args.action {
        ZoneAction::List => {
            let answer = call(&args.node, "GET", "/api/zones", None)?;
            if args.node.json {
                println!("{answer}");
            } else {
                print!("{}", list(&answer));
            }
            return Ok(());
        }
        ZoneAction::Create { name, nodes } => {
            ("/api/zones", json!({ "name": name, "nodes": nodes }))
        }
        ZoneAction::Move { node, zone } => {
            ("/api/zones/move", json!({ "node": node, "zone": zone }))
        }
        ZoneAction::Merge { from, into } => {
            ("/api/zones/merge", json!({ "from": from, "into": into }))
        }
        ZoneAction::Split { zone, name, nodes } => (
            "/api/zones/split",
            json!({ "zone": zone, "name": name, "nodes": nodes }),
        ),
        ZoneAction::Rename { zone, name } => {
            ("/api/zones/rename", json!({ "zone": zone, "name": name }))
        }
        ZoneAction::Volume { zone, level } => (
            "/api/zones/volume",
            json!({ "zone": zone, "volume": level }),
        ),
    };
    placed(&args.node, path, body)
}

pub(crate) fn channel(args: ChannelArgs) -> anyhow::Result<()> {
    let map = match args.map {
        Channels::Stereo => "stereo",
        Channels::Left => "left",
        Channels::Right => "right",
        Channels::Mono => "mono",
    };
    let body = json!({ "node": args.target, "channel": map });
    placed(&args.node, "/api/channel", body)
}

pub(crate) fn trim(args: TrimArgs) -> anyhow::Result<()> {
    let body = json!({ "node": args.target, "delay_ms": args.delay_ms });
    placed(&args.node, "/api/trim", body)
}

/// Sends a placement request and prints each node's placement after it.
fn placed(node: &NodeArgs, path: &str, body: Value) -> anyhow::Result<()> {
    let answer = call(node, "POST", path, Some(body))?;
    if node.json {
        println!("{answer}");
        return Ok(());
    }
    for placed in answer["placed"].as_array().into_iter().flatten() {
        println!("{}", placement_line(placed));
    }
    Ok(())
}

/// "12D3…abcdef: zone "Kitchen" (z0123…), left, delay 0 ms".
fn placement_line(placed: &Value) -> String {
    let id = placed["peer_id"].as_str().unwrap_or("?");
    let p = &placed["placement"];
    format!(
        "{}: zone {:?} ({}), {}, delay {} ms",
        short(id),
        p["name"].as_str().unwrap_or("?"),
        p["id"].as_str().unwrap_or("?"),
        p["channel"].as_str().unwrap_or("?"),
        p["delay_ms"].as_i64().unwrap_or(0)
    )
}

fn short(id: &str) -> String {
    if id.len() <= 12 {
        return id.to_string();
    }
    format!("…{}", &id[id.len() - 8..])
}

/// The zones, one block each: name, id, volume, what plays, members.
fn list(answer: &Value) -> String {
    let mut out = String::new();
    let mine = answer["zone"].as_str().unwrap_or("");
    for zone in answer["zones"].as_array().into_iter().flatten() {
        let id = zone["id"].as_str().unwrap_or("?");
        let here = if id == mine { " (this node's)" } else { "" };
        out.push_str(&format!(
            "{:?} [{id}]{here}, volume {}: {}\n",
            zone["name"].as_str().unwrap_or("?"),
            zone["volume"].as_f64().unwrap_or(1.0),
            if zone["playback"].is_object() {
                describe(&zone["playback"])
            } else {
                "nothing heard yet".to_string()
            }
        ));
        for member in zone["members"].as_array().into_iter().flatten() {
            let peer = member["peer_id"].as_str().unwrap_or("?");
            let role = if zone["coordinator"] == peer {
                ", coordinator"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {} ({}), {}, delay {} ms{role}\n",
                member["name"].as_str().unwrap_or("?"),
                short(peer),
                member["channel"].as_str().unwrap_or("?"),
                member["delay_ms"].as_i64().unwrap_or(0),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_rides_in_the_query_encoded() {
        let none = ZoneArg::default();
        assert_eq!(none.path("/api/pause"), "/api/pause");
        let named = ZoneArg {
            zone: Some("Living room & co/2".into()),
        };
        assert_eq!(
            named.path("/api/pause"),
            "/api/pause?zone=Living+room+%26+co%2F2"
        );
    }

    #[test]
    fn zones_read_as_a_block_each() {
        let answer = json!({
            "zone": "default",
            "zones": [{
                "id": "default", "name": "Everywhere", "volume": 0.5,
                "coordinator": "12D3KooWabcdefgh12345678",
                "members": [{ "peer_id": "12D3KooWabcdefgh12345678", "name": "hall",
                              "me": true, "channel": "left", "delay_ms": 3 }],
                "playback": { "state": "stopped", "track": null, "position_ms": 0,
                              "duration_ms": null, "queue": [], "shuffle": false, "repeat": "off" }
            }]
        });
        let text = list(&answer);
        assert!(
            text.starts_with("\"Everywhere\" [default] (this node's), volume 0.5: stopped"),
            "{text}"
        );
        assert!(
            text.contains("  hall (…12345678), left, delay 3 ms, coordinator"),
            "{text}"
        );
    }
}
