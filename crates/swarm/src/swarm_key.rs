//! Private swarms: reading the pre-shared key given with `--swarm-key FILE`.
//!
//! The file is in the format `firefly key new` prints and libp2p's pnet
//! transport reads (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). With a
//! key, the node speaks TCP wrapped in pnet only; QUIC cannot be wrapped, so it
//! is switched off (see [`crate::Config::swarm_key`]).

use libp2p::pnet::PreSharedKey;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Largest key file read, in bytes (a real one is 89).
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Why a swarm key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmKeyError {
    /// The file could not be read.
    #[error("cannot read swarm key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a pnet key.
    #[error("{path} is not a swarm key ({reason}); make one with `firefly key new > swarm.key`")]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Reads and parses a pnet key file.
pub fn load(path: &Path) -> Result<PreSharedKey, SwarmKeyError> {
    let io = |source| SwarmKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_KEY_FILE_BYTES {
        return Err(SwarmKeyError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is too large"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    PreSharedKey::from_str(&text).map_err(|err| SwarmKeyError::Invalid {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_key_new_format_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("swarm.key");
        std::fs::write(
            &good,
            format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "ab".repeat(32)),
        )
        .unwrap();
        assert!(load(&good).is_ok());

        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "/key/swarm/psk/1.0.0/\n/base16/\nxyz\n").unwrap();
        assert!(matches!(load(&bad), Err(SwarmKeyError::Invalid { .. })));
        assert!(matches!(
            load(&dir.path().join("missing")),
            Err(SwarmKeyError::Io { .. })
        ));
    }
}
