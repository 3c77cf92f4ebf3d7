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
    let body = tokio::runtime::Runtime::new()?.block_on(request(
        args.http,
        "GET",
        "/api/status",
        None,
        args.token.as_deref(),
    ))?;
    let report: StatusReport =
        serde_json::from_slice(&body).context("the node sent a status this version cannot read")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "{} ({})", report.name, report.peer_id)?;
    writeln!(
        out,
        "library version {}, {} tracks in the catalog",
        report.library_version,
        report.catalog.len()
    )?;
    let clock = &report.clock;
    writeln!(
        out,
        "swarm clock {} ({:+.1} ppm)",
        if clock.synced {
            "synced"
        } else {
            "not synced yet"
        },
        clock.skew_ppm
    )?;
    for addr in &report.listen_addrs {
        // Relay circuit addresses already end in this node's id.
        if addr.ends_with(&report.peer_id) {
            writeln!(out, "reachable at {addr}")?;
        } else {
            writeln!(out, "reachable at {addr}/p2p/{}", report.peer_id)?;
        }
    }
    writeln!(out, "{} members:", report.members.len())?;
    for member in &report.members {
        writeln!(
            out,
            "  {} {} (library {})",
            member.name, member.peer_id, member.library_version
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
