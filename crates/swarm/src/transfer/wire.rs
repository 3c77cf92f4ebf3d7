//! Wire messages of library sync and chunk transfer, with their size limits.
//!
//! Three request-response protocols ([`LIBRARY_PROTOCOL`], [`MANIFEST_PROTOCOL`],
//! [`CHUNKS_PROTOCOL`]) and one gossipsub topic ([`LIBRARY_TOPIC`]) carry the
//! types below as CBOR. Every message carries a `version` field so that a
//! node can tell a peer speaking a newer dialect from a broken one, and every
//! message from a peer is untrusted until its `validate` method accepts it:
//! decoding only proves the bytes were well-formed CBOR of the right shape,
//! within the byte limit of its protocol.
//!
//! This module holds data and checks only; it does no I/O and keeps no state.
//! Key types: [`ChunksRequest`]/[`ChunksResponse`], [`ManifestRequest`]/
//! [`ManifestResponse`], [`LibraryRequest`]/[`LibraryResponse`],
//! [`LibraryDelta`], [`LibraryAnnounce`] (the gossip form) and [`WireError`].

use firefly_library::{
    ChunkId, MAX_CHUNK_LEN, MAX_TEXT_LEN, MAX_TRACK_BYTES, Manifest, ManifestError, TrackId,
    TrackMeta,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The message version this node speaks on every transfer protocol.
pub const WIRE_VERSION: u16 = 1;

/// Gossipsub topic for library deltas.
pub const LIBRARY_TOPIC: &str = "firefly/library/1";
/// Request-response protocol: "what changed since version v" → deltas or a full list.
pub const LIBRARY_PROTOCOL: &str = "/firefly/library/1";
/// Request-response protocol: track id → manifest.
pub const MANIFEST_PROTOCOL: &str = "/firefly/manifest/1";
/// Request-response protocol: chunk ids → their bytes.
pub const CHUNKS_PROTOCOL: &str = "/firefly/chunks/1";

/// Most chunk ids one `/firefly/chunks/1` request may name.
pub const MAX_CHUNKS_PER_REQUEST: usize = 64;
/// Most chunk payload bytes a responder puts in one response. A responder
/// answers a prefix of the requested ids that fits; the requester asks again
/// for the rest. Four of the largest chunks fit, so any single chunk can be
/// served.
pub const MAX_RESPONSE_PAYLOAD: u64 = 4 * MAX_CHUNK_LEN as u64;
/// Byte limit of an encoded chunks request. 64 ids encode in about 4.3 KiB;
/// the rest is slack for framing.
pub const CHUNKS_REQUEST_MAX_BYTES: u64 = 16 * 1024;
/// Byte limit of an encoded chunks response: the payload budget plus room for
/// CBOR framing of up to [`MAX_CHUNKS_PER_REQUEST`] entries.
pub const CHUNKS_RESPONSE_MAX_BYTES: u64 = MAX_RESPONSE_PAYLOAD + 64 * 1024;
/// Byte limit of an encoded manifest request (a version and a track id).
pub const MANIFEST_REQUEST_MAX_BYTES: u64 = 1024;
/// Most chunks a manifest may list. FastCDC never cuts below 16 KiB except
/// for a file's last chunk, so the largest accepted track has at most this many.
pub const MAX_MANIFEST_CHUNKS: usize = (MAX_TRACK_BYTES / (16 * 1024)) as usize + 1;
/// Byte limit of an encoded manifest response. A chunk reference encodes in
/// at most ~80 bytes, so the largest legal manifest fits; real tracks (a few
/// thousand chunks) need well under 1 MiB.
pub const MANIFEST_RESPONSE_MAX_BYTES: u64 = 24 * 1024 * 1024;
/// Byte limit of an encoded library request (a version and a number).
pub const LIBRARY_REQUEST_MAX_BYTES: u64 = 1024;
/// Most tracks a library response (deltas or a full list) may describe.
pub const MAX_TRACKS_PER_RESPONSE: usize = 50_000;
/// Most deltas one library response may carry; a responder further behind
/// sends the full list instead.
pub const MAX_DELTAS_PER_RESPONSE: usize = 256;
/// Byte limit of an encoded library response: the largest full list of
/// [`MAX_TRACKS_PER_RESPONSE`] summaries at a few hundred bytes each.
pub const LIBRARY_RESPONSE_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Byte limit of one library gossip message. Gossip is for small, frequent
/// changes; a bigger delta is announced with its lists elided and fetched
/// over [`LIBRARY_PROTOCOL`].
pub const LIBRARY_GOSSIP_MAX_BYTES: usize = 60 * 1024;

/// Chunk bytes, encoded as one CBOR byte string rather than an array of
/// integers (which is what serde does with a plain `Vec<u8>`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ChunkBytes(pub Vec<u8>);

impl fmt::Debug for ChunkBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Chunks are up to 256 KiB; logging them byte by byte helps no one.
        write!(f, "ChunkBytes({} bytes)", self.0.len())
    }
}

impl Serialize for ChunkBytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChunkBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl serde::de::Visitor<'_> for BytesVisitor {
            type Value = ChunkBytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ChunkBytes, E> {
                Ok(ChunkBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ChunkBytes, E> {
                Ok(ChunkBytes(v))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// Why a responder declined a request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// The request's version is not one the responder speaks.
    UnsupportedVersion {
        /// The version the responder speaks.
        supported: u16,
    },
    /// The request broke a limit of the protocol (too many ids, …).
    Invalid,
    /// The responder has too many requests of this peer in progress.
    Busy,
    /// The responder could not read its own store.
    Unavailable,
}

/// `/firefly/chunks/1` request: up to [`MAX_CHUNKS_PER_REQUEST`] chunk ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunksRequest {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// The chunks wanted, in the order the requester prefers.
    pub ids: Vec<ChunkId>,
}

/// One requested chunk's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkReply {
    /// The chunk's bytes (unverified until the requester hashes them).
    Data(ChunkBytes),
    /// The responder does not hold this chunk.
    Missing,
}

/// The body of a chunks response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunksBody {
    /// Answers for a prefix of the requested ids, in request order; ids past
    /// the end were not sent (payload budget) and may be asked for again.
    Chunks(Vec<ChunkReply>),
    /// The request was declined.
    Refused(Refusal),
}

/// `/firefly/chunks/1` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunksResponse {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// What the responder answers.
    pub body: ChunksBody,
}

/// `/firefly/manifest/1` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRequest {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// The track whose manifest is wanted.
    pub track: TrackId,
}

/// The body of a manifest response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestBody {
    /// The manifest (untrusted until validated against the requested id).
    Found(Box<Manifest>),
    /// The responder does not know the track.
    NotFound,
    /// The request was declined.
    Refused(Refusal),
}

/// `/firefly/manifest/1` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestResponse {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// What the responder answers.
    pub body: ManifestBody,
}

/// What the swarm needs to list a track without its chunk table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSummary {
    /// The track's id (BLAKE3 of the file).
    pub track: TrackId,
    /// File size in bytes.
    pub size: u64,
    /// Number of chunks in its manifest.
    pub chunks: u32,
    /// Tags and audio parameters.
    pub meta: TrackMeta,
}

impl TrackSummary {
    /// The summary of a manifest.
    pub fn of(manifest: &Manifest) -> Self {
        Self {
            track: manifest.track,
            size: manifest.size,
            // A validated manifest has at most MAX_MANIFEST_CHUNKS (< u32::MAX) chunks.
            chunks: u32::try_from(manifest.chunks.len()).unwrap_or(u32::MAX),
            meta: manifest.meta.clone(),
        }
    }

    /// Checks the limits a summary from a peer must respect.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.size > MAX_TRACK_BYTES {
            return Err(WireError::BadSummary { track: self.track });
        }
        if self.chunks as usize > MAX_MANIFEST_CHUNKS {
            return Err(WireError::BadSummary { track: self.track });
        }
        let m = &self.meta;
        let texts = [
            Some(m.title.as_str()),
            m.artist.as_deref(),
            m.album.as_deref(),
            Some(m.codec.as_str()),
            Some(m.extension.as_str()),
        ];
        if texts.iter().flatten().any(|t| t.len() > MAX_TEXT_LEN) {
            return Err(WireError::BadSummary { track: self.track });
        }
        Ok(())
    }
}

/// One step of a node's library: what changed between two versions.
///
/// Versions count changes: a node's library starts at 0 and every change
/// (a scan that added or removed tracks, a finished download) bumps it.
/// A delta takes a library from version `from` to version `to` (`from < to`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryDelta {
    /// The version this delta starts from.
    pub from: u64,
    /// The version after applying it.
    pub to: u64,
    /// Tracks added.
    pub added: Vec<TrackSummary>,
    /// Tracks removed.
    pub removed: Vec<TrackId>,
}

impl LibraryDelta {
    fn validate(&self) -> Result<(), WireError> {
        if self.from >= self.to {
            return Err(WireError::BadDeltaRange {
                from: self.from,
                to: self.to,
            });
        }
        self.added.iter().try_for_each(TrackSummary::validate)
    }

    fn track_count(&self) -> usize {
        self.added.len().saturating_add(self.removed.len())
    }
}

/// The gossip form of a library change, published on [`LIBRARY_TOPIC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryAnnounce {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// The change. When `elided` is set its lists are empty and only the
    /// version range is meaningful.
    pub delta: LibraryDelta,
    /// The lists did not fit in one gossip message; ask [`LIBRARY_PROTOCOL`].
    pub elided: bool,
}

/// `/firefly/library/1` request: everything after version `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryRequest {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// The last version of the responder's library the requester knows (0: none).
    pub since: u64,
}

/// The body of a library response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LibraryBody {
    /// Consecutive deltas from the requested version to `current`.
    Deltas(Vec<LibraryDelta>),
    /// The responder's whole library at `at` (it is too far behind for deltas).
    Full {
        /// The version this list is.
        at: u64,
        /// Every track the responder holds.
        tracks: Vec<TrackSummary>,
    },
    /// The request was declined.
    Refused(Refusal),
}

/// `/firefly/library/1` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryResponse {
    /// Message version ([`WIRE_VERSION`]).
    pub version: u16,
    /// What the responder answers.
    pub body: LibraryBody,
}

/// Why a message from a peer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes were not CBOR of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The encoded message exceeds its protocol's byte limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message's version is not [`WIRE_VERSION`].
    #[error("unsupported message version {got} (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion {
        /// The version the peer sent.
        got: u16,
    },
    /// A list is longer than its protocol allows.
    #[error("{what} lists {count} entries, more than the {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many it had.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A chunk reply is empty or longer than the largest chunk.
    #[error("chunk reply {index} has {len} bytes, outside 1..={MAX_CHUNK_LEN}")]
    BadChunkLen {
        /// Position in the response.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A response answers more chunks than were asked for.
    #[error("response answers {answered} chunks but {asked} were asked for")]
    UnaskedChunks {
        /// Entries in the response.
        answered: usize,
        /// Ids in the request.
        asked: usize,
    },
    /// The response's chunk payload exceeds [`MAX_RESPONSE_PAYLOAD`].
    #[error("response carries {bytes} chunk bytes, more than {MAX_RESPONSE_PAYLOAD}")]
    PayloadTooLarge {
        /// Payload bytes in the response.
        bytes: u64,
    },
    /// A manifest failed its structural checks.
    #[error("invalid manifest: {0}")]
    BadManifest(#[from] ManifestError),
    /// A manifest lists more chunks than any accepted track can have.
    #[error("manifest lists {count} chunks, more than {MAX_MANIFEST_CHUNKS}")]
    ManifestTooLong {
        /// Its chunk count.
        count: usize,
    },
    /// A manifest is for a different track than the one asked for.
    #[error("asked for the manifest of {asked} but got {got}")]
    WrongManifest {
        /// The requested track.
        asked: TrackId,
        /// The track of the manifest received.
        got: TrackId,
    },
    /// A track summary breaks a limit (size, chunk count, text length).
    #[error("track summary {track} breaks a size limit")]
    BadSummary {
        /// The track it describes.
        track: TrackId,
    },
    /// A delta's version range is empty or backwards.
    #[error("library delta has an empty or backwards range {from}..{to}")]
    BadDeltaRange {
        /// Its start version.
        from: u64,
        /// Its end version.
        to: u64,
    },
    /// Deltas in one response do not follow each other.
    #[error("library deltas are not consecutive: {prev_to} is followed by a delta from {from}")]
    DeltaGap {
        /// End of the previous delta.
        prev_to: u64,
        /// Start of the next one.
        from: u64,
    },
    /// An elided announcement still carries lists.
    #[error("an elided library announcement carries track lists")]
    ElidedWithLists,
}

fn check_version(version: u16) -> Result<(), WireError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion { got: version })
    }
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), WireError> {
    if count > max {
        Err(WireError::TooMany { what, count, max })
    } else {
        Ok(())
    }
}

impl ChunksRequest {
    /// A request for `ids` in this node's version.
    pub fn new(ids: Vec<ChunkId>) -> Self {
        Self {
            version: WIRE_VERSION,
            ids,
        }
    }

    /// Checks the version and the id count.
    pub fn validate(&self) -> Result<(), WireError> {
        check_version(self.version)?;
        check_count("chunks request", self.ids.len(), MAX_CHUNKS_PER_REQUEST)
    }
}

impl ChunksResponse {
    /// A response carrying `replies`.
    pub fn chunks(replies: Vec<ChunkReply>) -> Self {
        Self {
            version: WIRE_VERSION,
            body: ChunksBody::Chunks(replies),
        }
    }

    /// A refusal.
    pub fn refused(refusal: Refusal) -> Self {
        Self {
            version: WIRE_VERSION,
            body: ChunksBody::Refused(refusal),
        }
    }

    /// Checks the response against the request it answers: version, at most
    /// one reply per requested id, chunk lengths and the payload budget.
    /// The bytes themselves are checked against their ids by the receiver.
    pub fn validate(&self, asked: usize) -> Result<(), WireError> {
        check_version(self.version)?;
        let ChunksBody::Chunks(replies) = &self.body else {
            return Ok(());
        };
        if replies.len() > asked {
            return Err(WireError::UnaskedChunks {
                answered: replies.len(),
                asked,
            });
        }
        let mut payload = 0u64;
        for (index, reply) in replies.iter().enumerate() {
            if let ChunkReply::Data(bytes) = reply {
                let len = bytes.0.len();
                if len == 0 || len > MAX_CHUNK_LEN as usize {
                    return Err(WireError::BadChunkLen { index, len });
                }
                payload += len as u64;
            }
        }
        if payload > MAX_RESPONSE_PAYLOAD {
            return Err(WireError::PayloadTooLarge { bytes: payload });
        }
        Ok(())
    }
}

impl ManifestRequest {
    /// A request for `track`'s manifest in this node's version.
    pub fn new(track: TrackId) -> Self {
        Self {
            version: WIRE_VERSION,
            track,
        }
    }

    /// Checks the version.
    pub fn validate(&self) -> Result<(), WireError> {
        check_version(self.version)
    }
}

impl ManifestResponse {
    /// A response with `body`.
    pub fn new(body: ManifestBody) -> Self {
        Self {
            version: WIRE_VERSION,
            body,
        }
    }

    /// Checks the version and, for a manifest, that it is the one asked for
    /// and structurally sound (before anything is allocated for it).
    pub fn validate(&self, asked: TrackId) -> Result<(), WireError> {
        check_version(self.version)?;
        if let ManifestBody::Found(manifest) = &self.body {
            if manifest.track != asked {
                return Err(WireError::WrongManifest {
                    asked,
                    got: manifest.track,
                });
            }
            if manifest.chunks.len() > MAX_MANIFEST_CHUNKS {
                return Err(WireError::ManifestTooLong {
                    count: manifest.chunks.len(),
                });
            }
            manifest.validate()?;
        }
        Ok(())
    }
}

impl LibraryRequest {
    /// A request for everything after `since`.
    pub fn new(since: u64) -> Self {
        Self {
            version: WIRE_VERSION,
            since,
        }
    }

    /// Checks the version.
    pub fn validate(&self) -> Result<(), WireError> {
        check_version(self.version)
    }
}

impl LibraryResponse {
    /// A response with `body`.
    pub fn new(body: LibraryBody) -> Self {
        Self {
            version: WIRE_VERSION,
            body,
        }
    }

    /// Checks the version, list lengths, every summary and that deltas are
    /// consecutive.
    pub fn validate(&self) -> Result<(), WireError> {
        check_version(self.version)?;
        match &self.body {
            LibraryBody::Deltas(deltas) => {
                check_count("library response", deltas.len(), MAX_DELTAS_PER_RESPONSE)?;
                let tracks: usize = deltas.iter().map(LibraryDelta::track_count).sum();
                check_count("library response", tracks, MAX_TRACKS_PER_RESPONSE)?;
                let mut prev_to = None;
                for delta in deltas {
                    delta.validate()?;
                    if let Some(prev_to) = prev_to
                        && prev_to != delta.from
                    {
                        return Err(WireError::DeltaGap {
                            prev_to,
                            from: delta.from,
                        });
                    }
                    prev_to = Some(delta.to);
                }
                Ok(())
            }
            LibraryBody::Full { tracks, .. } => {
                check_count("library response", tracks.len(), MAX_TRACKS_PER_RESPONSE)?;
                tracks.iter().try_for_each(TrackSummary::validate)
            }
            LibraryBody::Refused(_) => Ok(()),
        }
    }
}

impl LibraryAnnounce {
    /// The gossip message for `delta`: with its lists when it encodes within
    /// [`LIBRARY_GOSSIP_MAX_BYTES`], elided otherwise. Returns the encoded bytes.
    pub fn encode_for(delta: &LibraryDelta) -> Vec<u8> {
        let full = Self {
            version: WIRE_VERSION,
            delta: delta.clone(),
            elided: false,
        };
        let bytes = full.encode();
        if bytes.len() <= LIBRARY_GOSSIP_MAX_BYTES {
            return bytes;
        }
        Self {
            version: WIRE_VERSION,
            delta: LibraryDelta {
                from: delta.from,
                to: delta.to,
                added: Vec::new(),
                removed: Vec::new(),
            },
            elided: true,
        }
        .encode()
    }

    /// CBOR bytes of this announcement.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail, and every field serializes.
        if let Err(err) = ciborium::ser::into_writer(self, &mut out) {
            tracing::error!(%err, "encoding a library announcement failed");
            out.clear();
        }
        out
    }

    /// Decodes and validates a gossip message from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > LIBRARY_GOSSIP_MAX_BYTES {
            return Err(WireError::TooLarge {
                len: bytes.len(),
                max: LIBRARY_GOSSIP_MAX_BYTES,
            });
        }
        // Nesting deeper than this has no legitimate use in these messages.
        let announce: Self = ciborium::de::from_reader_with_recursion_limit(bytes, 32)
            .map_err(|err| WireError::Malformed(err.to_string()))?;
        announce.validate()?;
        Ok(announce)
    }

    /// Checks the version, the range, the summaries and the elision flag.
    pub fn validate(&self) -> Result<(), WireError> {
        check_version(self.version)?;
        self.delta.validate()?;
        if self.elided && self.delta.track_count() > 0 {
            return Err(WireError::ElidedWithLists);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary(n: u32, title_len: usize) -> TrackSummary {
        TrackSummary {
            track: TrackId::of(&n.to_le_bytes()),
            size: 1000,
            chunks: 1,
            meta: TrackMeta {
                title: "t".repeat(title_len),
                ..TrackMeta::default()
            },
        }
    }

    #[test]
    fn chunks_response_limits_are_enforced() {
        let data = |n: usize| ChunkReply::Data(ChunkBytes(vec![7; n]));
        assert_eq!(ChunksResponse::chunks(vec![data(10)]).validate(1), Ok(()));
        assert!(matches!(
            ChunksResponse::chunks(vec![data(10), data(10)]).validate(1),
            Err(WireError::UnaskedChunks {
                answered: 2,
                asked: 1
            })
        ));
        assert!(matches!(
            ChunksResponse::chunks(vec![data(0)]).validate(1),
            Err(WireError::BadChunkLen { index: 0, len: 0 })
        ));
        assert!(matches!(
            ChunksResponse::chunks(vec![data(MAX_CHUNK_LEN as usize + 1)]).validate(1),
            Err(WireError::BadChunkLen { .. })
        ));
        let five = vec![data(MAX_CHUNK_LEN as usize); 5];
        assert!(matches!(
            ChunksResponse::chunks(five).validate(5),
            Err(WireError::PayloadTooLarge { .. })
        ));
        let mut old = ChunksResponse::refused(Refusal::Busy);
        old.version = 0;
        assert_eq!(
            old.validate(1),
            Err(WireError::UnsupportedVersion { got: 0 })
        );
    }

    #[test]
    fn chunks_request_id_count_is_bounded() {
        let ids = vec![ChunkId::of(b"x"); MAX_CHUNKS_PER_REQUEST + 1];
        assert!(matches!(
            ChunksRequest::new(ids).validate(),
            Err(WireError::TooMany { .. })
        ));
        assert_eq!(ChunksRequest::new(vec![]).validate(), Ok(()));
    }

    #[test]
    fn a_manifest_for_another_track_is_refused() {
        let manifest = Manifest {
            track: TrackId::of(b"other"),
            size: 0,
            chunks: vec![],
            meta: TrackMeta::default(),
        };
        let response = ManifestResponse::new(ManifestBody::Found(Box::new(manifest)));
        assert!(matches!(
            response.validate(TrackId::of(b"asked")),
            Err(WireError::WrongManifest { .. })
        ));
    }

    #[test]
    fn library_deltas_must_be_consecutive_and_forward() {
        let d = |from, to| LibraryDelta {
            from,
            to,
            added: vec![],
            removed: vec![],
        };
        let ok = LibraryResponse::new(LibraryBody::Deltas(vec![d(1, 2), d(2, 5)]));
        assert_eq!(ok.validate(), Ok(()));
        let gap = LibraryResponse::new(LibraryBody::Deltas(vec![d(1, 2), d(3, 5)]));
        assert!(matches!(
            gap.validate(),
            Err(WireError::DeltaGap {
                prev_to: 2,
                from: 3
            })
        ));
        let backwards = LibraryResponse::new(LibraryBody::Deltas(vec![d(4, 4)]));
        assert!(matches!(
            backwards.validate(),
            Err(WireError::BadDeltaRange { .. })
        ));
        let long_title = LibraryResponse::new(LibraryBody::Full {
            at: 1,
            tracks: vec![summary(1, MAX_TEXT_LEN + 1)],
        });
        assert!(matches!(
            long_title.validate(),
            Err(WireError::BadSummary { .. })
        ));
    }

    #[test]
    fn small_deltas_gossip_in_full_and_big_ones_are_elided() {
        let small = LibraryDelta {
            from: 0,
            to: 1,
            added: vec![summary(1, 10)],
            removed: vec![TrackId::of(b"r")],
        };
        let back = LibraryAnnounce::decode(&LibraryAnnounce::encode_for(&small)).unwrap();
        assert!(!back.elided);
        assert_eq!(back.delta, small);

        let big = LibraryDelta {
            from: 4,
            to: 9,
            added: (0..500).map(|n| summary(n, 200)).collect(),
            removed: vec![],
        };
        let bytes = LibraryAnnounce::encode_for(&big);
        assert!(bytes.len() <= LIBRARY_GOSSIP_MAX_BYTES);
        let back = LibraryAnnounce::decode(&bytes).unwrap();
        assert!(back.elided);
        assert_eq!((back.delta.from, back.delta.to), (4, 9));
        assert!(back.delta.added.is_empty());
    }

    #[test]
    fn gossip_decoder_rejects_oversized_lying_and_unknown_messages() {
        let huge = vec![0u8; LIBRARY_GOSSIP_MAX_BYTES + 1];
        assert!(matches!(
            LibraryAnnounce::decode(&huge),
            Err(WireError::TooLarge { .. })
        ));
        let lying = LibraryAnnounce {
            version: WIRE_VERSION,
            delta: LibraryDelta {
                from: 1,
                to: 2,
                added: vec![summary(1, 1)],
                removed: vec![],
            },
            elided: true,
        };
        assert_eq!(
            LibraryAnnounce::decode(&lying.encode()),
            Err(WireError::ElidedWithLists)
        );
        let future = LibraryAnnounce {
            version: 2,
            ..lying
        };
        assert_eq!(
            LibraryAnnounce::decode(&future.encode()),
            Err(WireError::UnsupportedVersion { got: 2 })
        );
        assert!(matches!(
            LibraryAnnounce::decode(&[0xff, 0x00, 0x13]),
            Err(WireError::Malformed(_))
        ));
        // An array nested deeper than the recursion limit is refused, not a stack overflow.
        let deep = vec![0x81u8; 10_000];
        assert!(LibraryAnnounce::decode(&deep).is_err());
    }

    proptest! {
        #[test]
        fn gossip_decoder_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = LibraryAnnounce::decode(&bytes);
        }
    }
}
