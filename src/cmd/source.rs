//! `firefly source list|add|rm|play`: live sources through the running
//! node's API (`/api/sources`), like the transport commands.

use crate::cmd::play::NodeArgs;
use crate::cmd::transport::{call, describe};
use serde_json::{Value, json};

/// Arguments of `firefly source`.
#[derive(Debug, clap::Args)]
pub(crate) struct SourceArgs {
    #[command(subcommand)]
    action: SourceAction,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum SourceAction {
    /// List the live sources of every node, and what this node plays live.
    List,
    /// Add a live source on the node: NAME and SPEC (`pipe:PATH[?format=s16le&rate=48000&channels=2]`,
    /// `url:http://…`, `cmd:PROGRAM ARGS`).
    Add {
        /// The source's name (letters, digits, '-', '_', '.').
        name: String,
        /// Where its audio comes from.
        spec: String,
    },
    /// Remove one of the node's live sources.
    Rm {
        /// The source's name.
        name: String,
    },
    /// Play a live source on every node of a zone (default: this node's).
    Play {
        /// The source's name.
        name: String,
        /// The node that has it (peer id or name), when several do.
        #[arg(long = "on")]
        on: Option<String>,
        #[command(flatten)]
        zone: crate::cmd::zone::ZoneArg,
    },
}

/// Runs `firefly source`.
pub(crate) fn run(args: SourceArgs) -> anyhow::Result<()> {
    let node = &args.node;
    let answer = match &args.action {
        SourceAction::List => call(node, "GET", "/api/sources", None)?,
        SourceAction::Add { name, spec } => call(
            node,
            "POST",
            "/api/sources",
            Some(json!({ "name": name, "spec": spec })),
        )?,
        SourceAction::Rm { name } => call(node, "DELETE", &format!("/api/sources/{name}"), None)?,
        SourceAction::Play { name, on, zone } => {
            let mut body = json!({ "name": name });
            if let Some(on) = on {
                body["node"] = json!(on);
            }
            call(node, "POST", &zone.path("/api/sources/play"), Some(body))?
        }
    };
    if node.json {
        println!("{answer}");
        return Ok(());
    }
    match &args.action {
        SourceAction::List => {
            let sources = answer["sources"].as_array().cloned().unwrap_or_default();
            if sources.is_empty() {
                println!("no live sources in the swarm");
            }
            for s in &sources {
                println!("{}", line(s));
            }
            let live = &answer["live"];
            if let Some(name) = live["playing"]["name"].as_str() {
                println!("playing live: {name}");
            }
            if let Some(why) = live["ended"].as_str() {
                println!("last live stream ended: {why}");
            }
        }
        SourceAction::Add { .. } => println!("added {}", line(&answer)),
        SourceAction::Rm { name } => println!("removed {name}"),
        SourceAction::Play { .. } => println!("{}", describe(&answer)),
    }
    Ok(())
}

/// "radio on n0 (url, 48000 Hz 2 ch flac): flowing, level 0.42".
fn line(s: &Value) -> String {
    let state = if s["ended"] == true {
        format!("ended: {}", s["problem"].as_str().unwrap_or("no reason"))
    } else if s["flowing"] == true {
        format!("flowing, level {:.2}", s["level"].as_f64().unwrap_or(0.0))
    } else {
        "silent".to_string()
    };
    let node = s["node_name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| s["node"].as_str())
        .unwrap_or("?");
    format!(
        "{} on {} ({}, {}): {}",
        s["name"].as_str().unwrap_or("?"),
        node,
        s["kind"].as_str().unwrap_or("?"),
        s["format"].as_str().unwrap_or("?"),
        state
    )
}
