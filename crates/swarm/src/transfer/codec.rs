//! The request-response codecs and configs of the transfer protocols, with
//! their limits set on purpose rather than left at libp2p's defaults
//! (1 MiB requests, 10 MiB responses, 10 s timeout).
//!
//! Each protocol speaks CBOR (cbor4ii's serde encoding) with the byte limits
//! from [`wire`](super::wire): a message longer than its limit fails (cut
//! off at the limit by libp2p's codec, refused outright by
//! [`ChunksCodec`]), so a peer can never make this node buffer more than the
//! limit per stream. A request that is too long or does not decode is handed
//! up as [`Inbound::Malformed`] so its sender is penalized
//! ([`crate::inbound`]). The manifest and library protocols use
//! [`CheckedCbor`]; `/firefly/chunks/1` uses
//! [`ChunksCodec`], the same encoding byte for byte with its buffers sized
//! once (its responses are a megabyte of chunk bytes each). The timeouts
//! cover a whole exchange, including the time a responder holds the
//! response back under `--max-upload`.

use crate::inbound::{CheckedCbor, Inbound};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::{self, ProtocolSupport};
use serde::de::DeserializeOwned;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use super::wire::{
    CHUNKS_PROTOCOL, CHUNKS_REQUEST_MAX_BYTES, CHUNKS_RESPONSE_MAX_BYTES, ChunkReply, ChunksBody,
    ChunksRequest, ChunksResponse, LIBRARY_PROTOCOL, LIBRARY_REQUEST_MAX_BYTES,
    LIBRARY_RESPONSE_MAX_BYTES, LibraryRequest, LibraryResponse, MANIFEST_PROTOCOL,
    MANIFEST_REQUEST_MAX_BYTES, MANIFEST_RESPONSE_MAX_BYTES, ManifestRequest, ManifestResponse,
};

/// Codec of `/firefly/chunks/1`: the encoding of libp2p's CBOR codec (so
/// either end may use either), with buffers sized up front. libp2p's codec
/// reads a message into an empty `Vec` and encodes into another, so a
/// megabyte response is copied again at every doubling of each and its
/// buffers end up twice its size; this one encodes and reads responses
/// in buffers sized once and kept for the next response (a small pool per
/// direction), and refuses a response longer than the limit.
#[derive(Debug, Clone, Copy)]
pub struct ChunksCodec {
    request_max: u64,
    response_max: u64,
}

impl Default for ChunksCodec {
    /// The limits of [`CHUNKS_REQUEST_MAX_BYTES`] and [`CHUNKS_RESPONSE_MAX_BYTES`].
    fn default() -> Self {
        Self {
            request_max: CHUNKS_REQUEST_MAX_BYTES,
            response_max: CHUNKS_RESPONSE_MAX_BYTES,
        }
    }
}

/// Room for a chunks response's CBOR framing beyond its payload (per entry
/// a few bytes; [`CHUNKS_RESPONSE_MAX_BYTES`] allows 64 KiB).
const RESPONSE_FRAMING: usize = 4 * 1024;
/// Room for an encoded chunks request (64 ids encode in about 4.3 KiB).
const REQUEST_ENCODED: usize = 8 * 1024;

impl request_response::Codec for ChunksCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound<ChunksRequest>;
    type Response = ChunksResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Inbound<ChunksRequest>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let limit = usize::try_from(self.request_max).unwrap_or(usize::MAX);
        let mut buf = Vec::new();
        match read_into(io, &mut buf, limit).await {
            Ok(len) => Ok(crate::inbound::decode_request(&buf[..len], limit)),
            // Only a request past the limit reads as invalid data here.
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                Ok(Inbound::Malformed(err.to_string()))
            }
            Err(err) => Err(err),
        }
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ChunksResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let limit = usize::try_from(self.response_max).unwrap_or(usize::MAX);
        let mut buf = READ_BUFFERS.take();
        let read = read_into(io, &mut buf, limit).await;
        let response = read.and_then(|len| decode(&buf[..len]));
        READ_BUFFERS.give(buf);
        response
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound<ChunksRequest>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&crate::inbound::encode_request(&request, REQUEST_ENCODED)?)
            .await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: ChunksResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let payload = match &response.body {
            ChunksBody::Chunks(replies) => replies
                .iter()
                .map(|reply| match reply {
                    ChunkReply::Data(bytes) => bytes.0.len(),
                    ChunkReply::Missing => 0,
                })
                .sum(),
            ChunksBody::Refused(_) => 0,
        };
        let mut buf = WRITE_BUFFERS.take();
        buf.clear();
        buf.reserve(payload + RESPONSE_FRAMING);
        let buf = cbor4ii::serde::to_vec(buf, &response).map_err(io::Error::other)?;
        let written = io.write_all(&buf).await;
        WRITE_BUFFERS.give(buf);
        written
    }
}

/// Response buffers kept for the next response, so a megabyte is neither
/// allocated, faulted in nor zero-filled again for every chunks response.
/// A few per direction cover the requests a download keeps in flight;
/// beyond that a buffer is allocated and freed as usual.
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Buffers a pool keeps at most.
const POOLED_BUFFERS: usize = 4;
/// Capacity beyond which a buffer is not kept (a legal chunks response
/// needs about 1.1 MiB).
const MAX_POOLED_CAPACITY: usize = 2 * 1024 * 1024;

static READ_BUFFERS: BufferPool = BufferPool::new();
static WRITE_BUFFERS: BufferPool = BufferPool::new();

impl BufferPool {
    const fn new() -> Self {
        Self {
            free: Mutex::new(Vec::new()),
        }
    }

    /// A kept buffer, or a new empty one.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .map(|mut free| free.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps `buf` for a later [`BufferPool::take`] if there is room.
    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() > MAX_POOLED_CAPACITY {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < POOLED_BUFFERS
        {
            free.push(buf);
        }
    }
}

/// Reads `io` to its end into `buf` (grown to `limit` bytes once, zeroed
/// only then) and returns the length read. A message longer than `limit`
/// is an error.
async fn read_into<T: AsyncRead + Unpin>(
    io: &mut T,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    if buf.len() < limit {
        buf.resize(limit, 0);
    }
    let buf = &mut buf[..limit];
    let mut filled = 0;
    while filled < limit {
        match io.read(&mut buf[filled..]).await? {
            0 => return Ok(filled),
            n => filled += n,
        }
    }
    let mut probe = [0u8; 1];
    if io.read(&mut probe).await? == 0 {
        Ok(filled)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message longer than its limit of {limit} bytes"),
        ))
    }
}

fn decode<M: DeserializeOwned>(bytes: &[u8]) -> io::Result<M> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Codec of `/firefly/manifest/1`.
pub type ManifestCodec = CheckedCbor<ManifestRequest, ManifestResponse>;
/// Codec of `/firefly/library/1`.
pub type LibraryCodec = CheckedCbor<LibraryRequest, LibraryResponse>;

/// Behaviour of `/firefly/chunks/1`.
pub type ChunksBehaviour = request_response::Behaviour<ChunksCodec>;
/// Behaviour of `/firefly/manifest/1`.
pub type ManifestBehaviour = request_response::Behaviour<ManifestCodec>;
/// Behaviour of `/firefly/library/1`.
pub type LibraryBehaviour = request_response::Behaviour<LibraryCodec>;

/// How long a chunks exchange may take end to end. Longer than the
/// scheduler's own stall timeout (20 s), which is the one that normally
/// fires; this one is the transport's backstop.
pub const CHUNKS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a manifest or library exchange may take. Responses can be
/// megabytes for big libraries, so more than libp2p's 10 s.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams per connection per protocol: the pool a [`crate::stream_gate`]
/// divides between this node's requests and the peer's.
pub const MAX_STREAMS_PER_CONNECTION: usize = crate::stream_gate::STREAMS_PER_CONNECTION;

/// The `/firefly/chunks/1` codec with its limits.
pub fn chunks_codec() -> ChunksCodec {
    ChunksCodec::default()
}

/// The `/firefly/manifest/1` codec with its limits.
pub fn manifest_codec() -> ManifestCodec {
    ManifestCodec::new(MANIFEST_REQUEST_MAX_BYTES, MANIFEST_RESPONSE_MAX_BYTES)
}

/// The `/firefly/library/1` codec with its limits.
pub fn library_codec() -> LibraryCodec {
    LibraryCodec::new(LIBRARY_REQUEST_MAX_BYTES, LIBRARY_RESPONSE_MAX_BYTES)
}

fn config(timeout: Duration) -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(timeout)
        .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
}

/// The `/firefly/chunks/1` behaviour: serves and requests chunks.
pub fn chunks_behaviour() -> ChunksBehaviour {
    request_response::Behaviour::with_codec(
        chunks_codec(),
        [(StreamProtocol::new(CHUNKS_PROTOCOL), ProtocolSupport::Full)],
        config(CHUNKS_TIMEOUT),
    )
}

/// The `/firefly/manifest/1` behaviour.
pub fn manifest_behaviour() -> ManifestBehaviour {
    request_response::Behaviour::with_codec(
        manifest_codec(),
        [(
            StreamProtocol::new(MANIFEST_PROTOCOL),
            ProtocolSupport::Full,
        )],
        config(METADATA_TIMEOUT),
    )
}

/// The `/firefly/library/1` behaviour.
pub fn library_behaviour() -> LibraryBehaviour {
    request_response::Behaviour::with_codec(
        library_codec(),
        [(StreamProtocol::new(LIBRARY_PROTOCOL), ProtocolSupport::Full)],
        config(METADATA_TIMEOUT),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::transfer::wire::*;
    use firefly_library::{ChunkId, ChunkRef, MAX_CHUNK_LEN, Manifest, TrackId, TrackMeta};
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::{Codec, cbor};
    use proptest::prelude::*;

    fn protocol(name: &'static str) -> StreamProtocol {
        StreamProtocol::new(name)
    }

    fn encode_response<C: Codec<Protocol = StreamProtocol>>(
        codec: &mut C,
        name: &'static str,
        response: C::Response,
    ) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_response(&protocol(name), &mut out, response)).unwrap();
        out.into_inner()
    }

    fn encode_request<C: Codec<Protocol = StreamProtocol>>(
        codec: &mut C,
        name: &'static str,
        request: C::Request,
    ) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_request(&protocol(name), &mut out, request)).unwrap();
        out.into_inner()
    }

    fn sample_manifest() -> Manifest {
        let chunks: Vec<ChunkRef> = (0u32..3)
            .map(|i| ChunkRef {
                id: ChunkId::of(&i.to_le_bytes()),
                len: 1000 + i,
            })
            .collect();
        Manifest {
            track: TrackId::of(b"track"),
            size: chunks.iter().map(|c| u64::from(c.len)).sum(),
            chunks,
            meta: TrackMeta {
                title: "Song".into(),
                codec: "flac".into(),
                extension: "flac".into(),
                ..TrackMeta::default()
            },
        }
    }

    #[test]
    fn chunk_bytes_travel_as_one_byte_string() {
        let mut codec = chunks_codec();
        let payload = vec![0xABu8; 100_000];
        let bytes = encode_response(
            &mut codec,
            CHUNKS_PROTOCOL,
            ChunksResponse::chunks(vec![
                ChunkReply::Data(ChunkBytes(payload.clone())),
                ChunkReply::Missing,
            ]),
        );
        // An array of integers would take two bytes per 0xAB.
        assert!(
            bytes.len() < payload.len() + 100,
            "encoded {} bytes",
            bytes.len()
        );
        let decoded =
            block_on(codec.read_response(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(bytes)))
                .unwrap();
        assert_eq!(
            decoded.body,
            ChunksBody::Chunks(vec![
                ChunkReply::Data(ChunkBytes(payload)),
                ChunkReply::Missing
            ])
        );
        decoded.validate(2).unwrap();
    }

    #[test]
    fn the_chunks_codec_speaks_libp2p_cbor_byte_for_byte() {
        let mut ours = chunks_codec();
        let mut theirs = cbor::codec::Codec::<ChunksRequest, ChunksResponse>::default()
            .set_request_size_maximum(CHUNKS_REQUEST_MAX_BYTES)
            .set_response_size_maximum(CHUNKS_RESPONSE_MAX_BYTES);
        let responses = [
            ChunksResponse::chunks(vec![
                ChunkReply::Data(ChunkBytes(vec![7; 70_000])),
                ChunkReply::Missing,
                ChunkReply::Data(ChunkBytes(vec![1, 2, 3])),
            ]),
            ChunksResponse::refused(Refusal::Busy),
        ];
        for response in responses {
            let wire = encode_response(&mut ours, CHUNKS_PROTOCOL, response.clone());
            assert_eq!(
                wire,
                encode_response(&mut theirs, CHUNKS_PROTOCOL, response.clone())
            );
            let back =
                block_on(theirs.read_response(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
                    .unwrap();
            assert_eq!(back, response);
        }
        let request = ChunksRequest::new(vec![ChunkId::of(b"a"), ChunkId::of(b"b")]);
        let wire = encode_request(&mut theirs, CHUNKS_PROTOCOL, request.clone());
        assert_eq!(
            wire,
            encode_request(&mut ours, CHUNKS_PROTOCOL, request.clone().into())
        );
        let back = block_on(ours.read_request(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
            .unwrap();
        assert_eq!(back, Inbound::Request(request));
    }

    #[test]
    fn every_message_round_trips() {
        let mut chunks = chunks_codec();
        let ids = vec![ChunkId::of(b"a"), ChunkId::of(b"b")];
        let wire = encode_request(
            &mut chunks,
            CHUNKS_PROTOCOL,
            ChunksRequest::new(ids.clone()).into(),
        );
        let back =
            block_on(chunks.read_request(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
                .unwrap();
        assert_eq!(back, Inbound::Request(ChunksRequest::new(ids)));

        let mut manifests = manifest_codec();
        let m = sample_manifest();
        let wire = encode_response(
            &mut manifests,
            MANIFEST_PROTOCOL,
            ManifestResponse::new(ManifestBody::Found(Box::new(m.clone()))),
        );
        let back =
            block_on(manifests.read_response(&protocol(MANIFEST_PROTOCOL), &mut Cursor::new(wire)))
                .unwrap();
        back.validate(m.track).unwrap();
        assert_eq!(back.body, ManifestBody::Found(Box::new(m.clone())));

        let mut library = library_codec();
        let delta = LibraryDelta {
            from: 3,
            to: 4,
            added: vec![TrackSummary::of(&m)],
            removed: vec![TrackId::of(b"gone")],
        };
        let wire = encode_response(
            &mut library,
            LIBRARY_PROTOCOL,
            LibraryResponse::new(LibraryBody::Deltas(vec![delta.clone()])),
        );
        let back =
            block_on(library.read_response(&protocol(LIBRARY_PROTOCOL), &mut Cursor::new(wire)))
                .unwrap();
        back.validate().unwrap();
        assert_eq!(back.body, LibraryBody::Deltas(vec![delta]));
    }

    #[test]
    fn an_oversized_request_is_cut_off_and_rejected() {
        let mut codec = chunks_codec();
        // 64 ids fit; a request padded far past the byte limit does not decode.
        let ids: Vec<ChunkId> = (0u32..2000)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();
        let wire = encode_request(&mut codec, CHUNKS_PROTOCOL, ChunksRequest::new(ids).into());
        assert!(wire.len() as u64 > CHUNKS_REQUEST_MAX_BYTES);
        let read = block_on(codec.read_request(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)));
        assert!(matches!(read, Ok(Inbound::Malformed(_))), "{read:?}");
        // The largest legal request stays within the limit.
        // 0xFF bytes take the most room in CBOR (two bytes each).
        let ids = vec![ChunkId([0xFF; 32]); MAX_CHUNKS_PER_REQUEST];
        let wire = encode_request(&mut codec, CHUNKS_PROTOCOL, ChunksRequest::new(ids).into());
        assert!(
            (wire.len() as u64) < CHUNKS_REQUEST_MAX_BYTES,
            "{} bytes",
            wire.len()
        );
    }

    #[test]
    fn the_largest_legal_chunks_response_fits_its_limit() {
        let mut codec = chunks_codec();
        let replies = vec![ChunkReply::Data(ChunkBytes(vec![0xFF; MAX_CHUNK_LEN as usize])); 4];
        let wire = encode_response(&mut codec, CHUNKS_PROTOCOL, ChunksResponse::chunks(replies));
        assert!((wire.len() as u64) <= CHUNKS_RESPONSE_MAX_BYTES);
        let back =
            block_on(codec.read_response(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
                .unwrap();
        back.validate(4).unwrap();
    }

    #[test]
    fn an_oversized_response_is_rejected_and_reused_buffers_hold_no_old_bytes() {
        let mut codec = chunks_codec();
        let read = |codec: &mut ChunksCodec, wire: Vec<u8>| {
            block_on(codec.read_response(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
        };
        // One byte past the limit: refused, whatever the bytes are.
        let too_long = vec![0x40; CHUNKS_RESPONSE_MAX_BYTES as usize + 1];
        let err = read(&mut codec, too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A big response, then small ones, through the same pooled buffers:
        // each decodes to exactly what was sent.
        for len in [MAX_CHUNK_LEN as usize, 3, 0, 1000] {
            let replies = vec![
                ChunkReply::Data(ChunkBytes(vec![len as u8; len])),
                ChunkReply::Missing,
            ];
            let sent = ChunksResponse::chunks(replies);
            let wire = encode_response(&mut codec, CHUNKS_PROTOCOL, sent.clone());
            assert_eq!(read(&mut codec, wire).unwrap(), sent);
        }
        // A truncated response fails to decode instead of reading old bytes.
        let replies = vec![ChunkReply::Data(ChunkBytes(vec![7; 5000]))];
        let mut wire =
            encode_response(&mut codec, CHUNKS_PROTOCOL, ChunksResponse::chunks(replies));
        wire.truncate(wire.len() - 10);
        assert!(read(&mut codec, wire).is_err());
    }

    #[test]
    fn an_unknown_version_decodes_but_is_refused() {
        let mut codec = chunks_codec();
        let request = ChunksRequest {
            version: 7,
            ids: vec![],
        };
        let wire = encode_request(&mut codec, CHUNKS_PROTOCOL, request.into());
        let Inbound::Request(back) =
            block_on(codec.read_request(&protocol(CHUNKS_PROTOCOL), &mut Cursor::new(wire)))
                .unwrap()
        else {
            panic!("a well-formed request")
        };
        assert_eq!(
            back.validate(),
            Err(WireError::UnsupportedVersion { got: 7 })
        );
    }

    fn decode_all(bytes: &[u8]) {
        let p = |n| protocol(n);
        if let Ok(Inbound::Request(r)) =
            block_on(chunks_codec().read_request(&p(CHUNKS_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate();
        }
        if let Ok(r) =
            block_on(chunks_codec().read_response(&p(CHUNKS_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate(MAX_CHUNKS_PER_REQUEST);
        }
        if let Ok(Inbound::Request(r)) =
            block_on(manifest_codec().read_request(&p(MANIFEST_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate();
        }
        if let Ok(r) =
            block_on(manifest_codec().read_response(&p(MANIFEST_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate(TrackId::of(b"x"));
        }
        if let Ok(Inbound::Request(r)) =
            block_on(library_codec().read_request(&p(LIBRARY_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate();
        }
        if let Ok(r) =
            block_on(library_codec().read_response(&p(LIBRARY_PROTOCOL), &mut Cursor::new(bytes)))
        {
            let _ = r.validate();
        }
        let _ = LibraryAnnounce::decode(bytes);
    }

    /// Valid encodings of every message, as seeds for mutation.
    fn seeds() -> Vec<Vec<u8>> {
        let m = sample_manifest();
        vec![
            encode_request(
                &mut chunks_codec(),
                CHUNKS_PROTOCOL,
                ChunksRequest::new(vec![ChunkId::of(b"a")]).into(),
            ),
            encode_response(
                &mut chunks_codec(),
                CHUNKS_PROTOCOL,
                ChunksResponse::chunks(vec![
                    ChunkReply::Data(ChunkBytes(vec![1, 2, 3])),
                    ChunkReply::Missing,
                ]),
            ),
            encode_response(
                &mut chunks_codec(),
                CHUNKS_PROTOCOL,
                ChunksResponse::refused(Refusal::Busy),
            ),
            encode_request(
                &mut manifest_codec(),
                MANIFEST_PROTOCOL,
                ManifestRequest::new(m.track).into(),
            ),
            encode_response(
                &mut manifest_codec(),
                MANIFEST_PROTOCOL,
                ManifestResponse::new(ManifestBody::Found(Box::new(m.clone()))),
            ),
            encode_request(
                &mut library_codec(),
                LIBRARY_PROTOCOL,
                LibraryRequest::new(9).into(),
            ),
            encode_response(
                &mut library_codec(),
                LIBRARY_PROTOCOL,
                LibraryResponse::new(LibraryBody::Full {
                    at: 3,
                    tracks: vec![TrackSummary::of(&m)],
                }),
            ),
            LibraryAnnounce::encode_for(&LibraryDelta {
                from: 1,
                to: 2,
                added: vec![TrackSummary::of(&m)],
                removed: vec![],
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random bytes never panic a decoder or a validator.
        #[test]
        fn decoders_survive_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            decode_all(&bytes);
        }

        /// Valid messages with random bytes overwritten, truncated or
        /// extended never panic a decoder or a validator either.
        #[test]
        fn decoders_survive_mutated_messages(
            seed in 0usize..8,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut bytes = seeds()[seed].clone();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend(tail);
            decode_all(&bytes);
        }
    }
}
