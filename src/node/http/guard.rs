//! The guards every request passes: the `Host` allowlist (DNS rebinding),
//! the same-origin check and the token (`docs/SECURITY.md`, HTTP).

use super::error::ApiError;
use crate::node::NodeState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

/// Refuses requests whose `Host` does not name this node (DNS rebinding:
/// a page from `evil.example` whose name was re-pointed at this node sends
/// `Host: evil.example`). Allowed: any IP literal (a rebinding needs a name),
/// `localhost`, and the names given with `--http-host`. A request without
/// `Host` (not a browser's) passes. Guards every route, the UI's included.
pub(crate) async fn host_guard(
    State(state): State<NodeState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(host) = request.headers().get(header::HOST) {
        let allowed = host
            .to_str()
            .is_ok_and(|host| host_allowed(host, &state.http_hosts));
        if !allowed {
            return Err(ApiError::ForbiddenHost);
        }
    }
    Ok(next.run(request).await)
}

/// Whether a `Host` header value (`name[:port]`, `[v6][:port]`) names this
/// node; see [`host_guard`].
pub(crate) fn host_allowed(host: &str, names: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether `given` is `expected`, in time that does not depend on where
/// they differ (a token guessed byte by byte learns nothing from timing).
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The token a request carries: `Authorization: Bearer …`, or for the
/// event stream (a browser's WebSocket cannot set headers) a `token` query
/// parameter.
fn given_token(request: &Request) -> Option<String> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Some(token.to_string());
    }
    if request.uri().path() != "/api/events" {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        percent_decode(value)
    })
}

/// Decodes `%XX` escapes (what `encodeURIComponent` makes); `None` if malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Refuses cross-origin browser requests, and requests without the token
/// when the node has one.
pub(crate) async fn guard(
    State(state): State<NodeState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return Err(ApiError::CrossOrigin);
        }
    }
    if let Some(token) = &state.token {
        let given = given_token(&request);
        if !given.is_some_and(|given| token_matches(&given, token)) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}
