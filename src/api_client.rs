//! The one HTTP client of the `firefly` binary: CLI commands, the local
//! swarm of the demo and benchmarks, and `firefly doctor` all call a node's
//! JSON API through [`call`] (a blocking `ureq` agent: no TLS, the API is
//! served in plain HTTP on the node's own address).
//!
//! A non-2xx answer becomes an error carrying the API's `{message}`; bodies
//! are bounded so a confused server cannot exhaust memory.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::time::Duration;

/// Largest response body read, in bytes.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How long one call may take, connect to last byte.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `request` with the bearer token, if any.
fn authorized<B>(request: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(auth) => request.header("Authorization", auth),
        None => request,
    }
}

/// `method path` on the node serving its API at `addr`, with an optional
/// JSON body and bearer token; the response body of a 2xx answer.
pub(crate) fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CALL_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let answer = match method {
        "GET" => authorized(agent.get(&url), auth.as_deref()).call(),
        "DELETE" => authorized(agent.delete(&url), auth.as_deref()).call(),
        "POST" => authorized(agent.post(&url), auth.as_deref())
            .header("Content-Type", "application/json")
            .send(body.map(ToString::to_string).unwrap_or_default()),
        other => bail!("unsupported method {other}"),
    };
    let mut response = match answer {
        Ok(response) => response,
        Err(err) if is_unreachable(&err) => {
            return Err(err).with_context(|| {
                format!("no node answers on {addr}: is `firefly up` running (see its --http)?")
            });
        }
        Err(err) => return Err(err).with_context(|| format!("asking the node on {addr}")),
    };
    let status = response.status();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .context("reading the node's answer")?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string));
        match message {
            Some(message) => bail!("the node refused: {message}"),
            None => bail!("the node answered {status}"),
        }
    }
    Ok(bytes)
}

/// Whether `err` means nothing listens there (as opposed to a node that
/// answered badly).
fn is_unreachable(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}
