//! Content identities: a chunk or a track is named by the BLAKE3 hash of its bytes.
//!
//! Both are 32-byte digests, but they name different things, so they are
//! different types: a [`ChunkId`] can never be passed where a [`TrackId`] is
//! expected. Both print and parse as 64 lowercase hex digits.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A hex string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 64-digit hex id: {input:?}")]
pub struct ParseIdError {
    /// The text that failed to parse (cut to a sane length).
    pub input: String,
}

fn parse_hex32(s: &str) -> Result<[u8; 32], ParseIdError> {
    let mut out = [0u8; 32];
    match hex::decode_to_slice(s, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => Err(ParseIdError {
            input: s.chars().take(80).collect(),
        }),
    }
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id of `bytes`: their BLAKE3 hash.
            pub fn of(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Twelve digits identify a chunk or track in logs well enough.
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }
    };
}

hash_id!(
    /// A chunk's identity: BLAKE3 of the chunk's bytes.
    ChunkId
);
hash_id!(
    /// A track's identity: BLAKE3 of the whole file's bytes.
    TrackId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let id = ChunkId::of(b"firefly");
        let parsed: ChunkId = id.to_hex().parse().expect("own hex parses");
        assert_eq!(parsed, id);
    }

    #[test]
    fn bad_hex_is_an_error_not_a_panic() {
        assert!("zz".parse::<TrackId>().is_err());
        assert!("ab".repeat(31).parse::<TrackId>().is_err());
        assert!("é".repeat(64).parse::<TrackId>().is_err());
    }
}
