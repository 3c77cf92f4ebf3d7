//! `firefly status`: ask a running node (`firefly up`) for its peers and the
//! swarm catalog over its JSON API.

use crate::node::http::StatusReport;
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;

/// Arguments of `firefly status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print the raw JSON report.
    #[arg(long)]
    json: bool,
    /// Where the node serves its API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// The node's API token (needed when it is bound to a non-loopback address).
    #[arg(long, env = "FIREFLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let token = args.token.as_deref();
    let body = runtime.block_on(request(args.http, "GET", "/api/status", None, token))?;
    let report: StatusReport =
        serde_json::from_slice(&body).context("the node sent a status this version cannot read")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    // What plays, the role and each peer's figures; a node too old to
    // answer `/api/state` still gets the rest.
    let state: Option<serde_json::Value> = runtime
        .block_on(request(args.http, "GET", "/api/state", None, token))
        .ok()
        .and_then(|body| serde_json::from_slice(&body).ok());
    write_report(&mut out, &report, state.as_ref())?;
    Ok(())
}

/// The report for people: who this node is, what plays, the clock, the
/// library, how to reach it, and the members.
fn write_report(
    out: &mut impl Write,
    report: &StatusReport,
    state: Option<&serde_json::Value>,
) -> anyhow::Result<()> {
    let role = state.and_then(|s| s["role"].as_str()).unwrap_or("member");
    let term = state
        .and_then(|s| s["term"].as_u64())
        .map(|t| format!(", term {t}"))
        .unwrap_or_default();
    writeln!(out, "{} ({}): {role}{term}", report.name, report.peer_id)?;
    if let Some(playback) = state.map(|s| &s["playback"]) {
        writeln!(
            out,
            "playback: {}",
            super::transport::describe_with_titles(playback, &report.catalog)
        )?;
    }
    let clock = &report.clock;
    if clock.synced {
        let error = clock
            .sync_error_us
            .map(|e| format!(", within about {e:.0} µs"))
            .unwrap_or_default();
        writeln!(
            out,
            "clock: on the swarm timeline{error} (its rate against this machine's clock: {:+.1} ppm)",
            clock.skew_ppm
        )?;
    } else {
        writeln!(out, "clock: not on the swarm timeline yet")?;
    }
    let here = report
        .catalog
        .iter()
        .filter(|e| e.holders.contains(&report.peer_id))
        .count();
    writeln!(
        out,
        "library: {here} tracks here (version {}), {} in the swarm",
        report.library_version,
        report.catalog.len()
    )?;
    for addr in &report.listen_addrs {
        // Relay circuit addresses already end in this node's id.
        if addr.ends_with(&report.peer_id) {
            writeln!(out, "reachable at {addr}")?;
        } else {
            writeln!(out, "reachable at {addr}/p2p/{}", report.peer_id)?;
        }
    }
    let peers: Vec<&serde_json::Value> = state
        .and_then(|s| s["peers"].as_array())
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let others = report
        .members
        .iter()
        .filter(|m| m.peer_id != report.peer_id)
        .count();
    writeln!(
        out,
        "members: this node and {others} other{}",
        if others == 1 { "" } else { "s" }
    )?;
    for member in report
        .members
        .iter()
        .filter(|m| m.peer_id != report.peer_id)
    {
        let peer = peers
            .iter()
            .find(|p| p["peer_id"] == member.peer_id.as_str());
        let mut figures = Vec::new();
        if let Some(peer) = peer {
            if let Some(role) = peer["role"].as_str() {
                figures.push(role.to_string());
            }
            if let Some(playback) = peer["playback"].as_str() {
                figures.push(playback.to_string());
            }
            if let Some(rtt) = peer["rtt_us"].as_f64() {
                figures.push(format!("round trip {:.1} ms", rtt / 1000.0));
            }
            if let Some(offset) = peer["clock_offset_us"].as_f64() {
                figures.push(format!("clock offset {offset:+.0} µs"));
            }
            if let Some(connection) = peer["connection"].as_str() {
                figures.push(connection.to_string());
            }
        }
        figures.push(format!("library version {}", member.library_version));
        writeln!(
            out,
            "  {} {}: {}",
            member.name,
            member.peer_id,
            figures.join(", ")
        )?;
    }
    Ok(())
}

/// `method path` on a node's API with an optional JSON body and bearer
/// token; a non-2xx answer becomes an error carrying the API's `message`.
/// The CLI's commands all go through here (and so through
/// [`crate::api_client::call`], the one HTTP client).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let (method, path) = (method.to_string(), path.to_string());
    let (body, token) = (body.cloned(), token.map(str::to_string));
    tokio::task::spawn_blocking(move || {
        crate::api_client::call(addr, &method, &path, body.as_ref(), token.as_deref())
    })
    .await
    .context("the API call's task failed")?
}

#[cfg(test)]
mod report_tests {
    use super::*;
    use crate::node::http::CatalogEntry;
    use serde_json::json;

    fn entry(track: &str, title: &str, artist: Option<&str>) -> CatalogEntry {
        serde_json::from_value(json!({
            "track": track, "title": title, "artist": artist, "size": 1, "holders": ["A"]
        }))
        .unwrap()
    }

    #[test]
    fn playback_names_the_track_by_title_where_the_catalog_has_it() {
        let catalog = [entry("ab12", "Glow", Some("The Lanterns"))];
        let playback = json!({
            "state": "playing", "track": "ab12", "position_ms": 42_500, "duration_ms": 150_000,
            "queue": ["cd34", "ef56"], "shuffle": false, "repeat": "all"
        });
        assert_eq!(
            crate::cmd::transport::describe_with_titles(&playback, &catalog),
            "playing \"Glow\" by The Lanterns at 42.5 s of 150.0 s, 2 queued, repeat all"
        );
    }

    #[test]
    fn the_report_names_the_role_the_clock_and_each_peer() {
        let report: StatusReport = serde_json::from_value(json!({
            "peer_id": "A", "name": "kitchen", "listen_addrs": [], "connected_peers": ["B"],
            "members": [
                { "peer_id": "A", "name": "kitchen", "library_version": 3, "uptime_ms": 1 },
                { "peer_id": "B", "name": "den", "library_version": 2, "uptime_ms": 1 }
            ],
            "library_version": 3,
            "clock": { "swarm_time_us": 1, "synced": true, "skew_ppm": 12.34, "sync_error_us": 41.6 },
            "catalog": [{ "track": "ab12", "title": "Glow", "artist": null, "size": 1, "holders": ["A"] }]
        }))
        .unwrap();
        let state = json!({
            "role": "coordinator", "term": 4,
            "playback": { "state": "stopped", "track": null, "queue": [] },
            "peers": [{ "peer_id": "B", "role": "follower", "playback": "stopped",
                        "rtt_us": 1500.0, "clock_offset_us": -3.2, "connection": "direct" }]
        });
        let mut out = Vec::new();
        write_report(&mut out, &report, Some(&state)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "kitchen (A): coordinator, term 4\n\
                        playback: stopped, 0 queued\n\
                        clock: on the swarm timeline, within about 42 µs (its rate against this machine's clock: +12.3 ppm)\n\
                        library: 1 tracks here (version 3), 1 in the swarm\n\
                        members: this node and 1 other\n  \
                        den B: follower, stopped, round trip 1.5 ms, clock offset -3 µs, direct, library version 2\n";
        assert_eq!(text, expected);
    }
}
