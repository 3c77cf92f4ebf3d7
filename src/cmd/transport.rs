//! `firefly next|prev|stop|seek|queue|volume|shuffle|repeat`: the transport
//! and queue commands, each one call to the local node's API (which
//! forwards playback commands to the coordinator), sent through the same
//! client function as `firefly play`.
//!
//! Each prints one line about the resulting playback, or with `--json` the
//! node's JSON answer as it came.

use crate::cmd::play::{NodeArgs, find};
use crate::cmd::status::request;
use crate::cmd::zone::ZoneArg;
use crate::node::http::CatalogEntry;
use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Arguments of `firefly seek`.
#[derive(Debug, clap::Args)]
pub(crate) struct SeekArgs {
    /// Where to go: seconds (`75`, `75.5`) or minutes and seconds (`1:15`).
    position: String,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    zone: ZoneArg,
}

/// Arguments of `firefly queue`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueueArgs {
    #[command(subcommand)]
    action: QueueAction,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    zone: ZoneArg,
}

#[derive(Debug, clap::Subcommand)]
enum QueueAction {
    /// Add a track (a track id prefix, or words of its title or artist).
    Add {
        /// The track.
        query: String,
        /// Insert at this queue index (0 plays next); default: at the end.
        #[arg(long)]
        at: Option<u32>,
    },
    /// Remove the entry at INDEX (0 first, as `queue show` numbers them).
    Rm {
        /// The entry.
        index: u32,
    },
    /// Move the entry at FROM to TO.
    Mv {
        /// Its index now.
        from: u32,
        /// Its index after.
        to: u32,
    },
    /// Empty the queue.
    Clear,
    /// List the queue.
    Show,
}

/// Arguments of `firefly volume`.
#[derive(Debug, clap::Args)]
pub(crate) struct VolumeArgs {
    /// 0.0 (silent) to 4.0; 1.0 is unchanged.
    level: f32,
    /// The node (peer id or name); default: the one `--http` names.
    #[arg(long = "node", conflicts_with = "zone")]
    target: Option<String>,
    /// Set this zone's group volume (name or id) instead of a node's.
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

/// On or off.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Arguments of `firefly shuffle`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShuffleArgs {
    /// Shuffle the queue (on) or stop shuffling (off).
    switch: Switch,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    zone: ZoneArg,
}

/// A repeat mode.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Repeat {
    /// Stop at the end of the queue.
    Off,
    /// Play the current track again and again.
    One,
    /// Send each finished track to the back of the queue.
    All,
}

/// Arguments of `firefly repeat`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepeatArgs {
    /// The mode.
    mode: Repeat,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    zone: ZoneArg,
}

/// Sends one request and prints the answer: one line about the playback,
/// or the JSON itself.
fn send(node: &NodeArgs, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<()> {
    let answer = call(node, method, path, body)?;
    if node.json {
        println!("{answer}");
    } else {
        println!("{}", describe(&answer));
    }
    Ok(())
}

/// One API call; the JSON answer.
pub(crate) fn call(
    node: &NodeArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let bytes = request(
            node.http,
            method,
            path,
            body.as_ref(),
            node.token.as_deref(),
        )
        .await?;
        serde_json::from_slice(&bytes).context("the node's answer is not JSON")
    })
}

/// "playing abcd1234… at 12.3 s of 200.0 s, 4 queued, shuffle, repeat all".
pub(crate) fn describe(playback: &Value) -> String {
    describe_with_titles(playback, &[])
}

/// [`describe`], naming the track by its title (and artist) where `catalog`
/// lists it: "playing "Glow" by The Lanterns at 12.3 s of 200.0 s, …".
pub(crate) fn describe_with_titles(playback: &Value, catalog: &[CatalogEntry]) -> String {
    let state = playback["state"].as_str().unwrap_or("?");
    let mut line = state.to_string();
    if let Some(track) = playback["track"].as_str() {
        match catalog.iter().find(|e| e.track == track) {
            Some(CatalogEntry {
                title,
                artist: Some(artist),
                ..
            }) => line.push_str(&format!(" \"{title}\" by {artist}")),
            Some(entry) => line.push_str(&format!(" \"{}\"", entry.title)),
            None => line.push_str(&format!(" {}", &track[..12.min(track.len())])),
        }
    }
    if state != "stopped" {
        let at = playback["position_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
        line.push_str(&format!(" at {at:.1} s"));
        if let Some(total) = playback["duration_ms"].as_u64() {
            line.push_str(&format!(" of {:.1} s", total as f64 / 1000.0));
        }
    }
    let queued = playback["queue"].as_array().map_or(0, Vec::len);
    line.push_str(&format!(", {queued} queued"));
    if playback["shuffle"] == true {
        line.push_str(", shuffle");
    }
    if let Some(repeat) = playback["repeat"].as_str()
        && repeat != "off"
    {
        line.push_str(&format!(", repeat {repeat}"));
    }
    line
}

/// `firefly next|prev|stop`: POST to `path` with no body.
pub(crate) fn simple(node: NodeArgs, path: &str) -> anyhow::Result<()> {
    send(&node, "POST", path, None)
}

/// Parses `75`, `75.5` or `1:15` into milliseconds.
fn position_ms(text: &str) -> anyhow::Result<u64> {
    let (minutes, seconds) = match text.split_once(':') {
        Some((m, s)) => (
            m.trim()
                .parse::<u64>()
                .with_context(|| format!("{m:?} is not a number of minutes"))?,
            s,
        ),
        None => (0, text),
    };
    let seconds: f64 = seconds
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a position (seconds, or minutes:seconds)"))?;
    if !(0.0..86_400.0).contains(&seconds) {
        bail!("{text:?} is out of range");
    }
    Ok(minutes.saturating_mul(60_000) + (seconds * 1000.0).round() as u64)
}

pub(crate) fn seek(args: SeekArgs) -> anyhow::Result<()> {
    let position_ms = position_ms(&args.position)?;
    send(
        &args.node,
        "POST",
        &args.zone.path("/api/seek"),
        Some(json!({ "position_ms": position_ms })),
    )
}

/// The swarm catalog, as the node lists it.
fn catalog(node: &NodeArgs) -> anyhow::Result<Vec<CatalogEntry>> {
    let answer = call(node, "GET", "/api/catalog", None)?;
    serde_json::from_value(answer).context("the node sent a catalog this version cannot read")
}

pub(crate) fn queue(args: QueueArgs) -> anyhow::Result<()> {
    let node = &args.node;
    let path = |path: &str| args.zone.path(path);
    match args.action {
        QueueAction::Add { query, at } => {
            let catalog = catalog(node)?;
            let entry = match find(&catalog, &query).as_slice() {
                [] => bail!("no track in the swarm matches {query:?}"),
                [one] => (*one).clone(),
                many => bail!(
                    "{query:?} matches {} tracks; be more precise (a track id prefix works)",
                    many.len()
                ),
            };
            let mut body = json!({ "tracks": [entry.track] });
            if let Some(at) = at {
                body["at"] = json!(at);
            }
            send(node, "POST", &path("/api/queue"), Some(body))
        }
        QueueAction::Rm { index } => {
            send(node, "DELETE", &path(&format!("/api/queue/{index}")), None)
        }
        QueueAction::Mv { from, to } => send(
            node,
            "POST",
            &path("/api/queue/move"),
            Some(json!({ "from": from, "to": to })),
        ),
        QueueAction::Clear => send(node, "DELETE", &path("/api/queue"), None),
        QueueAction::Show => {
            let playback = &playback_of(node, &args.zone)?;
            if node.json {
                println!("{playback}");
                return Ok(());
            }
            let catalog = catalog(node)?;
            let title = |id: &str| {
                catalog
                    .iter()
                    .find(|e| e.track == id)
                    .map_or_else(|| "(unknown)".to_string(), |e| e.title.clone())
            };
            println!("{}", describe(playback));
            if let Some(track) = playback["track"].as_str() {
                println!("now: {} {}", &track[..12.min(track.len())], title(track));
            }
            for (i, id) in playback["queue"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .enumerate()
            {
                println!("{i:>4}: {} {}", &id[..12.min(id.len())], title(id));
            }
            Ok(())
        }
    }
}

/// The playback of the zone `zone` names (the node's own when none).
fn playback_of(node: &NodeArgs, zone: &ZoneArg) -> anyhow::Result<Value> {
    let Some(asked) = &zone.zone else {
        let state = call(node, "GET", "/api/state", None)?;
        return Ok(state["playback"].clone());
    };
    let zones = call(node, "GET", "/api/zones", None)?;
    let list = zones["zones"].as_array().cloned().unwrap_or_default();
    let found = list
        .iter()
        .find(|z| z["id"].as_str() == Some(asked))
        .or_else(|| list.iter().find(|z| z["name"].as_str() == Some(asked)));
    match found {
        None => bail!("no zone {asked:?} (see `firefly zone list`)"),
        Some(zone) if zone["playback"].is_null() => {
            bail!("zone {asked:?} has no session yet")
        }
        Some(zone) => Ok(zone["playback"].clone()),
    }
}

pub(crate) fn volume(args: VolumeArgs) -> anyhow::Result<()> {
    if let Some(zone) = &args.zone {
        let body = json!({ "zone": zone, "volume": args.level });
        let answer = call(&args.node, "POST", "/api/zones/volume", Some(body))?;
        if args.node.json {
            println!("{answer}");
        } else {
            println!("group volume {} on zone {zone}", args.level);
        }
        return Ok(());
    }
    let mut body = json!({ "volume": args.level });
    if let Some(target) = &args.target {
        body["node"] = json!(target);
    }
    let answer = call(&args.node, "POST", "/api/volume", Some(body))?;
    if args.node.json {
        println!("{answer}");
    } else {
        println!(
            "volume {} on {}",
            answer["volume"].as_f64().unwrap_or(f64::NAN),
            answer["node"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) fn shuffle(args: ShuffleArgs) -> anyhow::Result<()> {
    let on = matches!(args.switch, Switch::On);
    send(
        &args.node,
        "POST",
        &args.zone.path("/api/shuffle"),
        Some(json!({ "on": on })),
    )
}

pub(crate) fn repeat(args: RepeatArgs) -> anyhow::Result<()> {
    let mode = match args.mode {
        Repeat::Off => "off",
        Repeat::One => "one",
        Repeat::All => "all",
    };
    send(
        &args.node,
        "POST",
        &args.zone.path("/api/repeat"),
        Some(json!({ "mode": mode })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_as_seconds_or_minutes_and_seconds() {
        assert_eq!(position_ms("75").ok(), Some(75_000));
        assert_eq!(position_ms("75.5").ok(), Some(75_500));
        assert_eq!(position_ms("1:15").ok(), Some(75_000));
        assert!(position_ms("-3").is_err());
        assert!(position_ms("soon").is_err());
        assert!(position_ms("x:10").is_err());
    }

    #[test]
    fn a_playback_reads_as_one_line() {
        let playback = json!({
            "state": "playing", "track": "abcdef0123456789", "position_ms": 1500,
            "duration_ms": 30000, "queue": ["a", "b"], "shuffle": true, "repeat": "all"
        });
        assert_eq!(
            describe(&playback),
            "playing abcdef012345 at 1.5 s of 30.0 s, 2 queued, shuffle, repeat all"
        );
    }
}
