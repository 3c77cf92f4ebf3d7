//! CBOR encoding of gossip messages, with the checks every message from a
//! peer goes through before it is believed: a size bound, well-formed CBOR of
//! the expected shape, and a known message version.
//!
//! Request-response protocols use libp2p's own CBOR codec (with limits set in
//! `behaviour.rs`); this module is for gossipsub payloads, which arrive
//! as plain bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest gossipsub message this node sends or accepts, in bytes.
///
/// Heartbeats are a few hundred bytes; library deltas carry manifest
/// summaries and are cut into several messages when larger.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Largest term or change counter (session `seq`) a peer may claim.
///
/// Terms and sequence numbers start at 0 and move one step at a time (an
/// election, a playback change), so an honest swarm never gets near 2^48
/// (a change every microsecond would take nine years). A larger value can
/// only come from a peer that breaks the rules; refusing it at decode time
/// means no counter this node keeps can come near `u64::MAX` and wrap.
pub const MAX_COUNTER: u64 = 1 << 48;

/// Largest volume a node reports, in thousandths (4.0, the player's limit).
pub const MAX_VOLUME_PERMILLE: u16 = 4000;

/// Why a message from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is larger than allowed.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not CBOR of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message declares a version this node does not speak.
    #[error("unknown message version {found} (this node speaks {expected})")]
    UnknownVersion {
        /// Version in the message.
        found: u16,
        /// Version this node speaks.
        expected: u16,
    },
    /// The message is well-formed but a field is out of bounds.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// This node could not encode one of its own messages.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `value` as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|err| WireError::Encode(err.to_string()))?;
    Ok(out)
}

/// Decodes CBOR `bytes` into a `T`, refusing anything over `max` bytes first.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    ciborium::from_reader(bytes).map_err(|err| WireError::Malformed(err.to_string()))
}

/// Checks a message's version field against the version this node speaks.
pub fn check_version(found: u16, expected: u16) -> Result<(), WireError> {
    if found == expected {
        Ok(())
    } else {
        Err(WireError::UnknownVersion { found, expected })
    }
}
