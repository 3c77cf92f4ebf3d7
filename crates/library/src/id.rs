//! Content identities: a chunk or a track is named by the BLAKE3 hash of its bytes.
//!
//! Both are 32-byte digests, but they name different things, so they are
//! different types: a [`ChunkId`] can never be passed where a [`TrackId`] is
//! expected. Both print and parse as 64 lowercase hex digits. With serde they
//! are 64 hex digits in human-readable formats (JSON) and 32 raw bytes in
//! binary ones (CBOR), so a manifest of many chunks stays small and quick.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
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

/// Accepts 32 bytes (as bytes or a sequence) or 64 hex digits.
struct IdVisitor;

impl<'de> serde::de::Visitor<'de> for IdVisitor {
    type Value = [u8; 32];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("32 bytes or 64 hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_hex32(v).map_err(E::custom)
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        v.try_into()
            .map_err(|_| E::invalid_length(v.len(), &"32 bytes"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = seq
                .next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(i, &"32 bytes"))?;
        }
        if seq.next_element::<u8>()?.is_some() {
            return Err(serde::de::Error::invalid_length(33, &"32 bytes"));
        }
        Ok(out)
    }
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    deserializer.deserialize_str(IdVisitor).map(Self)
                } else {
                    deserializer.deserialize_bytes(IdVisitor).map(Self)
                }
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
hash_id!(
    /// A cover picture's identity: BLAKE3 of the picture's bytes.
    CoverId
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

    #[test]
    fn serde_is_hex_in_json_and_bytes_in_cbor() {
        let id = TrackId::of(b"x");
        let json = serde_json::to_string(&id).expect("json encodes");
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(
            serde_json::from_str::<TrackId>(&json).expect("json decodes"),
            id
        );
        let mut cbor = Vec::new();
        ciborium::into_writer(&id, &mut cbor).expect("cbor encodes");
        assert_eq!(cbor.len(), 34, "a 2-byte header and 32 raw bytes");
        let back: TrackId = ciborium::from_reader(&cbor[..]).expect("cbor decodes");
        assert_eq!(back, id);
        let mut short = Vec::new();
        ciborium::into_writer(&ciborium::Value::Bytes(vec![1; 31]), &mut short).expect("encodes");
        assert!(ciborium::from_reader::<TrackId, _>(&short[..]).is_err());
    }
}
