//! `/firefly/cover/1`: cover pictures travel between members, so a web UI
//! on a node that does not hold a track still shows its cover.
//!
//! A track's metadata names its picture by [`CoverId`] (BLAKE3 of the
//! bytes, set by the probe). A node that wants a picture asks the catalog's
//! holders of a track showing it, one at a time; the answer is taken only
//! when its bytes hash to the id asked for and start like an image
//! ([`Cover::from_bytes`]), otherwise the sender is struck and the next
//! holder asked. Only members are answered, and a request that does not
//! decode strikes its sender like on the other transfer protocols. This
//! module holds the messages, their limits and the codec; the exchanges
//! are driven by the transfer service (`transfer::service::cover`).

use crate::inbound::CheckedCbor;
use crate::transfer::wire::{ChunkBytes, Refusal, WIRE_VERSION, WireError};
use firefly_library::{Cover, CoverId, MAX_COVER_BYTES};
use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Request-response protocol: cover id → the picture's bytes.
pub const COVER_PROTOCOL: &str = "/firefly/cover/1";
/// Byte limit of an encoded cover request (a version and a 32-byte id).
pub const COVER_REQUEST_MAX_BYTES: u64 = 256;
/// Byte limit of an encoded cover response: the largest picture kept plus
/// room for the framing.
pub const COVER_RESPONSE_MAX_BYTES: u64 = MAX_COVER_BYTES as u64 + 1024;
/// How long one cover exchange may take.
pub const COVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams per connection for this protocol: the pool a
/// [`crate::stream_gate`] divides between this node's requests and the peer's.
const MAX_STREAMS_PER_CONNECTION: usize = crate::stream_gate::STREAMS_PER_CONNECTION;

/// `/firefly/cover/1` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverRequest {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// The picture wanted.
    pub cover: CoverId,
}

/// The body of a cover response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoverBody {
    /// The picture's bytes (untrusted until checked against the id).
    Found(ChunkBytes),
    /// The responder holds no track showing this picture.
    NotFound,
    /// The request was declined.
    Refused(Refusal),
}

/// `/firefly/cover/1` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverResponse {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// What the responder answers.
    pub body: CoverBody,
}

impl CoverRequest {
    /// A request for `cover` in this node's version.
    pub fn new(cover: CoverId) -> Self {
        Self {
            version: WIRE_VERSION,
            cover,
        }
    }

    /// Checks the version.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.version == WIRE_VERSION {
            Ok(())
        } else {
            Err(WireError::UnsupportedVersion { got: self.version })
        }
    }
}

impl CoverResponse {
    /// A response with `body`.
    pub fn new(body: CoverBody) -> Self {
        Self {
            version: WIRE_VERSION,
            body,
        }
    }
}

/// `bytes` as the picture `cover` names: `None` unless they hash to the id
/// and are a picture Firefly serves (at most [`MAX_COVER_BYTES`], a known
/// image format).
pub fn verified(cover: CoverId, bytes: Vec<u8>) -> Option<Cover> {
    if bytes.len() > MAX_COVER_BYTES || CoverId::of(&bytes) != cover {
        return None;
    }
    Cover::from_bytes(bytes)
}

/// Codec of `/firefly/cover/1`.
pub type CoverCodec = CheckedCbor<CoverRequest, CoverResponse>;
/// Behaviour of `/firefly/cover/1`.
pub type CoverBehaviour = request_response::Behaviour<CoverCodec>;

/// The `/firefly/cover/1` codec with its limits.
pub fn cover_codec() -> CoverCodec {
    CoverCodec::new(COVER_REQUEST_MAX_BYTES, COVER_RESPONSE_MAX_BYTES)
}

/// The `/firefly/cover/1` behaviour.
pub fn cover_behaviour() -> CoverBehaviour {
    request_response::Behaviour::with_codec(
        cover_codec(),
        [(StreamProtocol::new(COVER_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(COVER_TIMEOUT)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[0; 32]);
        png
    }

    #[test]
    fn only_bytes_hashing_to_the_id_and_looking_like_a_picture_are_taken() {
        let bytes = png();
        let id = CoverId::of(&bytes);
        let cover = verified(id, bytes.clone()).expect("the right bytes");
        assert_eq!(cover.media_type, "image/png");
        assert_eq!(cover.bytes, bytes);
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(verified(id, flipped).is_none(), "other bytes");
        let markup = b"<svg onload=alert(1)>".to_vec();
        assert!(
            verified(CoverId::of(&markup), markup).is_none(),
            "not a picture"
        );
        let mut huge = png();
        huge.resize(MAX_COVER_BYTES + 1, 0);
        assert!(verified(CoverId::of(&huge), huge).is_none(), "too big");
    }

    #[test]
    fn a_largest_picture_fits_the_response_limit() {
        let mut bytes = png();
        bytes.resize(MAX_COVER_BYTES, 0);
        let response = CoverResponse::new(CoverBody::Found(ChunkBytes(bytes)));
        let wire = cbor4ii::serde::to_vec(Vec::new(), &response).expect("encodes");
        assert!(wire.len() as u64 <= COVER_RESPONSE_MAX_BYTES);
        let request = CoverRequest::new(CoverId::of(b"x"));
        let wire = cbor4ii::serde::to_vec(Vec::new(), &request).expect("encodes");
        assert!(wire.len() as u64 <= COVER_REQUEST_MAX_BYTES);
    }
}
