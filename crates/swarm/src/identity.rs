//! The node's persistent identity: an ed25519 keypair kept in the data dir.
//!
//! The key is stored as `identity.key` (libp2p's protobuf keypair encoding),
//! created with mode 0600 on first start and reused afterwards, so a node keeps
//! its [`PeerId`](libp2p::PeerId) across restarts. This module only loads and
//! creates the file; it does not rotate keys.

use libp2p::identity::Keypair;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the identity inside the data dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// Largest identity file read, in bytes (an ed25519 keypair encodes to ~68).
const MAX_IDENTITY_BYTES: u64 = 4096;

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("cannot access identity file {path}: {source}")]
    Io {
        /// The identity file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file exists but does not hold a keypair.
    #[error(
        "identity file {path} is not a libp2p keypair ({reason}); move it away to get a new identity"
    )]
    Corrupt {
        /// The identity file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Loads `dir/identity.key`, or creates it with a fresh ed25519 key (mode 0600).
pub fn load_or_create(dir: &Path) -> Result<Keypair, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if meta.len() > MAX_IDENTITY_BYTES {
                return Err(IdentityError::Corrupt {
                    path,
                    reason: format!("{} bytes is too large", meta.len()),
                });
            }
            let bytes = std::fs::read(&path).map_err(io)?;
            Keypair::from_protobuf_encoding(&bytes).map_err(|err| IdentityError::Corrupt {
                path: path.clone(),
                reason: err.to_string(),
            })
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|err| IdentityError::Corrupt {
                    path: path.clone(),
                    reason: err.to_string(),
                })?;
            write_private(dir, &path, &bytes).map_err(io)?;
            tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "created a new node identity");
            Ok(keypair)
        }
        Err(err) => Err(io(err)),
    }
}

/// Writes `bytes` to `path` readable by the owner only, atomically: a
/// half-written key must never be mistaken for the identity.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_identity_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITY_FILE), b"not a key").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
        std::fs::write(dir.path().join(IDENTITY_FILE), vec![7u8; 10_000]).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }
}
