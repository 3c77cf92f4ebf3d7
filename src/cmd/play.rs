//! `firefly play`, `firefly pause`, `firefly resume`: playback commands sent
//! to the local node's API (which forwards them to the coordinator).
//!
//! `play QUERY` finds the track in the swarm catalog (`GET /api/catalog`): a
//! track id prefix, or words found in the title or artist. An ambiguous query
//! lists the candidates instead of guessing.

use crate::cmd::status::request;
use crate::node::http::CatalogEntry;
use anyhow::{Context, bail};
use std::net::SocketAddr;

/// Where the node is and how to reach it.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// Where the node serves its API.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub(crate) http: SocketAddr,
    /// The node's API token (needed when it is bound to a non-loopback address).
    #[arg(long, env = "FIREFLY_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Print the node's JSON answer instead of a line of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Arguments of `firefly play`.
#[derive(Debug, clap::Args)]
pub(crate) struct PlayArgs {
    /// A track id prefix, or words of the title or artist.
    query: String,
    /// Start this many seconds into the track.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    at: u64,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    zone: crate::cmd::zone::ZoneArg,
}

/// The catalog entries `query` names: an exact id-prefix match wins, else
/// every entry whose title or artist contains all of the query's words.
pub(crate) fn find<'a>(catalog: &'a [CatalogEntry], query: &str) -> Vec<&'a CatalogEntry> {
    let q = query.trim().to_lowercase();
    if q.len() >= 4 && q.chars().all(|c| c.is_ascii_hexdigit()) {
        let by_id: Vec<_> = catalog.iter().filter(|e| e.track.starts_with(&q)).collect();
        if !by_id.is_empty() {
            return by_id;
        }
    }
    catalog
        .iter()
        .filter(|e| {
            let text = format!("{} {}", e.title, e.artist.as_deref().unwrap_or("")).to_lowercase();
            q.split_whitespace().all(|word| text.contains(word))
        })
        .collect()
}

pub(crate) fn play(args: PlayArgs) -> anyhow::Result<()> {
    let NodeArgs { http, token, json } = &args.node;
    tokio::runtime::Runtime::new()?.block_on(async {
        let body = request(*http, "GET", "/api/catalog", None, token.as_deref()).await?;
        let catalog: Vec<CatalogEntry> = serde_json::from_slice(&body)
            .context("the node sent a catalog this version cannot read")?;
        let found = find(&catalog, &args.query);
        let entry = match found.as_slice() {
            [] => bail!(
                "no track in the swarm matches {:?} (see `firefly status`)",
                args.query
            ),
            [one] => *one,
            many => {
                let names: Vec<String> = many
                    .iter()
                    .take(10)
                    .map(|e| format!("{} {}", &e.track[..12.min(e.track.len())], e.title))
                    .collect();
                bail!(
                    "{:?} matches {} tracks; be more precise: {}",
                    args.query,
                    many.len(),
                    names.join("; ")
                )
            }
        };
        let command = serde_json::json!({ "track": entry.track, "position_ms": args.at * 1000 });
        let answer = request(
            *http,
            "POST",
            &args.zone.path("/api/play"),
            Some(&command),
            token.as_deref(),
        )
        .await?;
        if *json {
            println!("{}", String::from_utf8_lossy(&answer));
        } else {
            println!("playing {} ({})", entry.title, entry.track);
        }
        Ok(())
    })
}

pub(crate) fn simple(args: NodeArgs, path: &str) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let body = request(args.http, "POST", path, None, args.token.as_deref()).await?;
        let playback: serde_json::Value =
            serde_json::from_slice(&body).context("the node's answer is not JSON")?;
        if args.json {
            println!("{playback}");
        } else {
            println!(
                "{} at {} ms",
                playback["state"].as_str().unwrap_or("?"),
                playback["position_ms"].as_u64().unwrap_or(0)
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(track: &str, title: &str, artist: Option<&str>) -> CatalogEntry {
        CatalogEntry {
            track: track.into(),
            title: title.into(),
            artist: artist.map(Into::into),
            album: None,
            number: None,
            duration_ms: None,
            size: 1,
            holders: vec![],
            cover: false,
        }
    }

    #[test]
    fn queries_match_ids_then_words() {
        let catalog = [
            entry("abcd1234", "Blue Monday", Some("New Order")),
            entry("ffff0000", "Blue in Green", Some("Miles Davis")),
        ];
        assert_eq!(find(&catalog, "abcd").len(), 1);
        assert_eq!(find(&catalog, "blue").len(), 2);
        assert_eq!(find(&catalog, "blue miles")[0].track, "ffff0000");
        assert!(find(&catalog, "nothing here").is_empty());
    }
}
