//! The API token of a node bound to a non-loopback address, and the address
//! that opens its web UI.
//!
//! A token the user does not give is generated once and kept in the data dir
//! (`api-token`, readable by its owner only), so a restart does not lock out
//! the browsers and scripts that already hold it. [`ui_url`] is the address
//! `firefly up` prints: a real address of the machine (not `0.0.0.0`) with the
//! token in the fragment (`#token=…`), which the page reads and which never
//! reaches a server log.

use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

/// The file in the data dir that keeps the generated token.
pub(crate) const TOKEN_FILE: &str = "api-token";

/// The token kept in `data_dir`, or a new one (kept there) if there is none
/// or it is not a valid token.
pub(crate) fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(kept) = std::fs::read_to_string(&path) {
        let kept = kept.trim();
        if (32..=256).contains(&kept.len()) && kept.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(kept.to_string());
        }
        tracing::warn!(path = %path.display(), "the kept API token is not valid; making a new one");
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    write_private(&path, &token)
        .with_context(|| format!("cannot keep the API token in {}", path.display()))?;
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    std::fs::write(path, token)
}

/// The address that opens the web UI of a node bound to `bound`.
pub(crate) fn ui_url(bound: SocketAddr, http_hosts: &[String], token: Option<&str>) -> String {
    let host = match http_hosts.first() {
        Some(name) => name.clone(),
        None => match shown_ip(bound.ip()) {
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        },
    };
    match token {
        Some(token) => format!("http://{host}:{}/#token={token}", bound.port()),
        None => format!("http://{host}:{}/", bound.port()),
    }
}

/// The address to show for a bound `ip`: itself, or for an unspecified
/// address (`0.0.0.0`) the machine's address on its default route (found by
/// "connecting" a UDP socket, which sends nothing), or loopback.
fn shown_ip(ip: IpAddr) -> IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    // A documentation address (TEST-NET-1): no packet is sent by `connect`.
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket
                .connect((Ipv4Addr::new(192, 0, 2, 1), 9))
                .map(|()| socket)
        })
        .and_then(|socket| socket.local_addr());
    match probe {
        Ok(local) if !local.ip().is_unspecified() => local.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
        // A damaged file is replaced.
        std::fs::write(dir.path().join(TOKEN_FILE), "short").unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_ne!(second, "short");
        assert_eq!(second.len(), 32);
    }

    #[test]
    fn the_ui_address_is_a_real_one_with_the_token() {
        let loopback: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert_eq!(ui_url(loopback, &[], None), "http://127.0.0.1:8081/");
        let any: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let url = ui_url(any, &[], Some("abc"));
        assert!(!url.contains("0.0.0.0"), "{url}");
        assert!(url.ends_with(":8081/#token=abc"), "{url}");
        let named = ui_url(any, &["speakers.lan".into()], Some("abc"));
        assert_eq!(named, "http://speakers.lan:8081/#token=abc");
    }
}
