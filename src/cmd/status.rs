//! `firefly status`: ask a running node (`firefly up`) for its peers and the
//! swarm catalog over its JSON API.

use crate::node::http::StatusReport;
use anyhow::{Context, bail};
use std::io::Write;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest status response read, in bytes.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

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

/// A minimal HTTP/1.1 request with an optional JSON body and bearer token;
/// a non-200 answer becomes an error carrying the API's `message`.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("no node answers on {addr}: is `firefly up` running (see its --http)?")
        })?;
    let body = body.map(ToString::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut response)
        .await
        .context("reading the node's answer")?;
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("the node's answer is not HTTP");
    };
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !(status.len() == 3 && status.starts_with('2')) {
        let message = serde_json::from_slice::<serde_json::Value>(&response[split + 4..])
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string));
        match message {
            Some(message) => bail!("the node refused: {message}"),
            None => bail!("the node answered {}", head.lines().next().unwrap_or("")),
        }
    }
    Ok(response[split + 4..].to_vec())
}
