//! Property-based fuzzing of every wire decoder and of the library gossip
//! handler, from outside the crate, the way a peer reaches them.
//!
//! The in-crate tests already throw random bytes (and byte-mutated valid
//! messages) at each decoder. Random bytes rarely get past the first CBOR
//! byte, so these tests go one level up: they take a valid message of every
//! kind, turn it into a CBOR value tree, replace one node of the tree (or
//! graft a new map entry) with an arbitrary CBOR value — extreme integers,
//! NaN and infinities, floats where integers belong and back, text with
//! control and bidi characters, byte strings, deep arrays and maps — and
//! feed the result to the decoder and then to the checks and handlers that
//! follow it on a node. The properties: nothing panics; a refusal is an
//! error with a message; what is accepted re-encodes to itself; the gossip
//! handler's state stays within its caps.
//!
//! Each property runs a few hundred cases by default; set `PROPTEST_CASES`
//! for a long pass, e.g. `PROPTEST_CASES=100000 cargo test -p firefly-swarm
//! --test fuzz --release`.

#![allow(clippy::unwrap_used)]

use ciborium::Value;
use firefly_library::{ChunkId, ChunkRef, CoverId, Manifest, TrackId, TrackMeta};
use firefly_swarm::control::{
    CONTROL_PROTOCOL, ControlRequest, ControlResponse, MAX_CONTROL_BYTES,
};
use firefly_swarm::cover::{
    self, COVER_PROTOCOL, CoverBody, CoverRequest, CoverResponse, cover_codec,
};
use firefly_swarm::inbound::{CheckedCbor, Inbound};
use firefly_swarm::membership::Heartbeat;
use firefly_swarm::time_exchange::{
    MAX_TIME_MESSAGE_BYTES, TIME_PROTOCOL, TimeRequest, TimeResponse,
};
use firefly_swarm::transfer::SwarmCatalog;
use firefly_swarm::transfer::catalog::{MAX_CATALOG_BYTES, MAX_TRACKS_PER_PEER};
use firefly_swarm::transfer::codec::{chunks_codec, library_codec, manifest_codec};
use firefly_swarm::transfer::wire::{
    CHUNKS_PROTOCOL, ChunkBytes, ChunkReply, ChunksBody, ChunksRequest, ChunksResponse,
    LIBRARY_PROTOCOL, LibraryAnnounce, LibraryBody, LibraryDelta, LibraryRequest, LibraryResponse,
    MANIFEST_PROTOCOL, MAX_CHUNKS_PER_REQUEST, ManifestBody, ManifestRequest, ManifestResponse,
    Refusal, TrackSummary, WIRE_VERSION,
};
use firefly_swarm::{NodeStatus, PeerId, PlaybackState, Session};
use futures::executor::block_on;
use futures::io::Cursor;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use proptest::prelude::*;
use serde::Serialize;

// ---------------------------------------------------------------- values

/// A leaf a hostile or buggy peer might put anywhere.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(0i128),
            Just(-1),
            Just(i128::from(u64::MAX)),
            Just(i128::from(i64::MIN)),
            Just(-i128::from(u64::MAX) - 1),
            Just(i128::from(u16::MAX) + 1),
            Just(i128::from(u32::MAX) + 1),
            any::<i64>().prop_map(i128::from),
            any::<u64>().prop_map(i128::from),
        ]
        .prop_map(|n| Value::Integer(ciborium::value::Integer::try_from(n).unwrap())),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e300),
            any::<f64>(),
        ]
        .prop_map(Value::Float),
        "[a-z]{0,12}".prop_map(Value::Text),
        // Control, bidi-override and other awkward characters.
        proptest::collection::vec(
            prop_oneof![
                Just('\u{1b}'),
                Just('\u{7}'),
                Just('\n'),
                Just('\u{202e}'),
                Just('\u{2066}'),
                Just('\u{0}'),
                Just('/'),
                Just('.'),
                any::<char>(),
            ],
            0..40
        )
        .prop_map(|c| Value::Text(c.into_iter().collect())),
        Just(Value::Text("x".repeat(70_000))),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(Value::Bytes),
        Just(Value::Bytes(vec![0; 32])),
        Just(Value::Array(vec![Value::Null; 5_000])),
        Just(Value::Tag(55799, Box::new(Value::Null))),
    ]
}

/// An arbitrary CBOR value: leaves, arrays and maps, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
        ]
    })
}

/// How a valid message is bent before decoding.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the node at this pre-order index with a value.
    Replace(prop::sample::Index, Value),
    /// Add an entry to the map at this index (or wrap a non-map node).
    Graft(prop::sample::Index, Value, Value),
    /// Remove the node at this index from its parent array or map.
    Remove(prop::sample::Index),
    /// Nest the node at this index in this many arrays.
    Nest(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => (any::<prop::sample::Index>(), value(), value())
            .prop_map(|(i, k, v)| Edit::Graft(i, k, v)),
        2 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        1 => (any::<prop::sample::Index>(), 1usize..300).prop_map(|(i, d)| Edit::Nest(i, d)),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
        Value::Tag(_, inner) => count(inner),
        _ => 0,
    }
}

/// Applies `f` to the node at pre-order index `*at` (counting down).
fn at_node(v: &mut Value, at: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *at == 0 {
        f(v);
        return true;
    }
    *at -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|item| at_node(item, at, f)),
        Value::Map(entries) => entries
            .iter_mut()
            .any(|(k, v)| at_node(k, at, f) || at_node(v, at, f)),
        Value::Tag(_, inner) => at_node(inner, at, f),
        _ => false,
    }
}

/// Marks a node for removal (a tag no message uses).
const REMOVED: u64 = u64::MAX;

fn is_removed(v: &Value) -> bool {
    matches!(v, Value::Tag(REMOVED, _))
}

/// Drops the marked nodes from their parent arrays and maps.
fn sweep(v: &mut Value) {
    match v {
        Value::Array(items) => {
            items.retain(|item| !is_removed(item));
            items.iter_mut().for_each(sweep);
        }
        Value::Map(entries) => {
            entries.retain(|(k, v)| !is_removed(k) && !is_removed(v));
            for (k, v) in entries {
                sweep(k);
                sweep(v);
            }
        }
        Value::Tag(_, inner) => sweep(inner),
        _ => {}
    }
}

fn apply(mut v: Value, edits: &[Edit]) -> Value {
    for e in edits {
        let n = count(&v);
        match e {
            Edit::Replace(i, new) => {
                let mut at = i.index(n);
                at_node(&mut v, &mut at, &mut |node| *node = new.clone());
            }
            Edit::Graft(i, key, new) => {
                let mut at = i.index(n);
                at_node(&mut v, &mut at, &mut |node| match node {
                    Value::Map(entries) => entries.push((key.clone(), new.clone())),
                    other => {
                        let old = std::mem::replace(other, Value::Null);
                        *other = Value::Map(vec![(key.clone(), new.clone()), (old, Value::Null)]);
                    }
                });
            }
            Edit::Remove(i) => {
                let mut at = i.index(n);
                at_node(&mut v, &mut at, &mut |node| {
                    *node = Value::Tag(REMOVED, Box::new(Value::Null));
                });
                if is_removed(&v) {
                    v = Value::Null;
                }
                sweep(&mut v);
            }
            Edit::Nest(i, depth) => {
                let mut at = i.index(n);
                at_node(&mut v, &mut at, &mut |node| {
                    for _ in 0..*depth {
                        let old = std::mem::replace(node, Value::Null);
                        *node = Value::Array(vec![old]);
                    }
                });
            }
        }
    }
    v
}

fn tree<T: Serialize>(message: &T) -> Value {
    Value::serialized(message).unwrap()
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

// ---------------------------------------------------------------- seeds

fn meta() -> TrackMeta {
    TrackMeta {
        title: "Sweep".into(),
        artist: Some("Firefly".into()),
        album: None,
        track: Some(1),
        duration_ms: Some(30_000),
        codec: "pcm".into(),
        sample_rate: 44_100,
        channels: 2,
        extension: "wav".into(),
        cover: None,
    }
}

fn summary(n: u8) -> TrackSummary {
    TrackSummary {
        track: TrackId([n; 32]),
        size: 1_000_000,
        chunks: 16,
        meta: meta(),
    }
}

fn heartbeat() -> Heartbeat {
    let mut status = NodeStatus {
        library_version: 3,
        ..NodeStatus::default()
    };
    status.playback.state = PlaybackState::Playing;
    Heartbeat {
        version: 1,
        name: "alpha".into(),
        uptime_ms: 12_345,
        status,
        leaving: false,
    }
}

fn session() -> Session {
    Session {
        version: 1,
        term: 2,
        seq: 5,
        queue: vec![TrackId([2; 32])],
        track: Some(TrackId([1; 32])),
        state: PlaybackState::Playing,
        start: 1_700_000_000_000_000,
        position_micros: 1_000_000,
        ..Session::default()
    }
}

fn announce() -> LibraryAnnounce {
    LibraryAnnounce {
        version: WIRE_VERSION,
        delta: LibraryDelta {
            from: 0,
            to: 1,
            added: vec![summary(1), summary(2)],
            removed: vec![TrackId([3; 32])],
        },
        elided: false,
    }
}

fn manifest() -> Manifest {
    Manifest {
        track: TrackId([1; 32]),
        size: 3,
        chunks: vec![ChunkRef {
            id: ChunkId([9; 32]),
            len: 3,
        }],
        meta: meta(),
    }
}

fn protocol(p: &'static str) -> StreamProtocol {
    StreamProtocol::new(p)
}

/// A refusal must say something.
fn clear<E: std::fmt::Display>(err: E) {
    assert!(
        !err.to_string().trim().is_empty(),
        "an error without a message"
    );
}

// ---------------------------------------------------------------- decoders

/// Every gossip and request-response decoder of the crate, each followed by
/// the checks a node applies before it acts on a message.
fn decode_everything(bytes: &[u8]) {
    match Heartbeat::decode(bytes) {
        Ok(h) => {
            // What is accepted is stable: it re-encodes to itself.
            assert_eq!(Heartbeat::decode(&h.encode().unwrap()).unwrap(), h);
            assert!(h.name.len() <= firefly_swarm::MAX_NAME_LEN);
            assert!(!h.name.chars().any(char::is_control));
        }
        Err(e) => clear(e),
    }
    match Session::decode(bytes) {
        Ok(s) => assert_eq!(Session::decode(&s.encode().unwrap()).unwrap(), s),
        Err(e) => clear(e),
    }
    match LibraryAnnounce::decode(bytes) {
        Ok(a) => {
            if let Err(e) = a.validate() {
                clear(e);
            }
        }
        Err(e) => clear(e),
    }

    let mut control =
        CheckedCbor::<ControlRequest, ControlResponse>::new(MAX_CONTROL_BYTES, MAX_CONTROL_BYTES);
    match block_on(control.read_request(&CONTROL_PROTOCOL, &mut Cursor::new(bytes))).unwrap() {
        Inbound::Request(r) => {
            if let Err(e) = r.check() {
                clear(e);
            }
        }
        Inbound::Malformed(why) => clear(why),
    }
    if let Err(e) = block_on(control.read_response(&CONTROL_PROTOCOL, &mut Cursor::new(bytes))) {
        clear(e);
    }

    let mut time = CheckedCbor::<TimeRequest, TimeResponse>::new(
        MAX_TIME_MESSAGE_BYTES,
        MAX_TIME_MESSAGE_BYTES,
    );
    if let Inbound::Malformed(why) =
        block_on(time.read_request(&TIME_PROTOCOL, &mut Cursor::new(bytes))).unwrap()
    {
        clear(why);
    }
    if let Err(e) = block_on(time.read_response(&TIME_PROTOCOL, &mut Cursor::new(bytes))) {
        clear(e);
    }

    let chunks = protocol(CHUNKS_PROTOCOL);
    match block_on(chunks_codec().read_request(&chunks, &mut Cursor::new(bytes))) {
        Ok(Inbound::Request(r)) => {
            if let Err(e) = r.validate() {
                clear(e);
            }
        }
        Ok(Inbound::Malformed(why)) => clear(why),
        Err(e) => clear(e),
    }
    match block_on(chunks_codec().read_response(&chunks, &mut Cursor::new(bytes))) {
        Ok(r) => {
            if let Err(e) = r.validate(MAX_CHUNKS_PER_REQUEST) {
                clear(e);
            }
        }
        Err(e) => clear(e),
    }
    let manifests = protocol(MANIFEST_PROTOCOL);
    match block_on(manifest_codec().read_request(&manifests, &mut Cursor::new(bytes))) {
        Ok(Inbound::Request(r)) => {
            if let Err(e) = r.validate() {
                clear(e);
            }
        }
        Ok(Inbound::Malformed(why)) => clear(why),
        Err(e) => clear(e),
    }
    match block_on(manifest_codec().read_response(&manifests, &mut Cursor::new(bytes))) {
        Ok(r) => {
            if let Err(e) = r.validate(TrackId([1; 32])) {
                clear(e);
            }
        }
        Err(e) => clear(e),
    }
    let covers = protocol(COVER_PROTOCOL);
    match block_on(cover_codec().read_request(&covers, &mut Cursor::new(bytes))) {
        Ok(Inbound::Request(r)) => {
            if let Err(e) = r.validate() {
                clear(e);
            }
        }
        Ok(Inbound::Malformed(why)) => clear(why),
        Err(e) => clear(e),
    }
    match block_on(cover_codec().read_response(&covers, &mut Cursor::new(bytes))) {
        Ok(CoverResponse {
            body: CoverBody::Found(picture),
            ..
        }) => {
            // Bytes that are not the picture asked for are dropped.
            let _ = cover::verified(CoverId([1; 32]), picture.0);
        }
        Ok(_) => {}
        Err(e) => clear(e),
    }
    let library = protocol(LIBRARY_PROTOCOL);
    match block_on(library_codec().read_request(&library, &mut Cursor::new(bytes))) {
        Ok(Inbound::Request(r)) => {
            if let Err(e) = r.validate() {
                clear(e);
            }
        }
        Ok(Inbound::Malformed(why)) => clear(why),
        Err(e) => clear(e),
    }
    match block_on(library_codec().read_response(&library, &mut Cursor::new(bytes))) {
        Ok(r) => {
            if let Err(e) = r.validate() {
                clear(e);
            }
        }
        Err(e) => clear(e),
    }
}

/// One valid message of every kind, as value trees.
fn seeds() -> Vec<Value> {
    vec![
        tree(&heartbeat()),
        tree(&session()),
        tree(&announce()),
        tree(&ControlRequest::Play {
            track: TrackId([1; 32]),
            position_micros: 5,
        }),
        tree(&ControlRequest::Queue {
            tracks: vec![TrackId([1; 32]); 3],
        }),
        tree(&ControlRequest::Prepare {
            term: 3,
            track: TrackId([1; 32]),
        }),
        tree(&ControlRequest::Volume {
            volume_permille: 800,
        }),
        tree(&ControlResponse::Session(Box::new(session()))),
        tree(&ControlResponse::Refused(
            firefly_swarm::Refusal::NotCoordinator,
        )),
        tree(&ControlResponse::Refused(firefly_swarm::Refusal::Invalid(
            "too long".into(),
        ))),
        tree(&ControlRequest::QueueInsert {
            tracks: vec![TrackId([1; 32]); 2],
            at: Some(1),
        }),
        tree(&ControlRequest::Repeat {
            mode: firefly_swarm::RepeatMode::All,
        }),
        tree(&TimeRequest {
            t1: 1_000,
            key: None,
        }),
        // A map, not a struct literal: the answer grows optional fields.
        Value::Map(vec![
            (Value::Text("t2".into()), Value::Integer(2_000.into())),
            (Value::Text("t3".into()), Value::Integer(2_100.into())),
            (Value::Text("view".into()), Value::Float(12.5)),
            (Value::Text("skew_ppm".into()), Value::Float(-3.0)),
        ]),
        tree(&ChunksRequest::new(vec![ChunkId([9; 32]); 4])),
        tree(&ChunksResponse {
            version: WIRE_VERSION,
            body: ChunksBody::Chunks(vec![
                ChunkReply::Data(ChunkBytes(vec![1, 2, 3])),
                ChunkReply::Missing,
            ]),
        }),
        tree(&ChunksResponse {
            version: WIRE_VERSION,
            body: ChunksBody::Refused(Refusal::Busy),
        }),
        tree(&ManifestRequest::new(TrackId([1; 32]))),
        tree(&ManifestResponse {
            version: WIRE_VERSION,
            body: ManifestBody::Found(Box::new(manifest())),
        }),
        tree(&CoverRequest::new(CoverId([1; 32]))),
        tree(&CoverResponse::new(CoverBody::Found(ChunkBytes(
            b"\x89PNG\r\n\x1a\n0000".to_vec(),
        )))),
        tree(&CoverResponse::new(CoverBody::NotFound)),
        tree(&LibraryRequest::new(7)),
        tree(&LibraryResponse {
            version: WIRE_VERSION,
            body: LibraryBody::Deltas(vec![announce().delta]),
        }),
        tree(&LibraryResponse {
            version: WIRE_VERSION,
            body: LibraryBody::Full {
                at: 4,
                tracks: vec![summary(1), summary(4)],
            },
        }),
    ]
}

#[test]
fn every_seed_decodes_as_what_it_is() {
    // The fuzzing below starts from these; they must be valid to begin with.
    assert!(Heartbeat::decode(&heartbeat().encode().unwrap()).is_ok());
    assert!(Session::decode(&session().encode().unwrap()).is_ok());
    let a = LibraryAnnounce::decode(&announce().encode()).unwrap();
    assert!(a.validate().is_ok());
    for seed in seeds() {
        decode_everything(&cbor(&seed));
    }
}

/// Numbers typed as floats accept integers (another implementation may
/// write `0`), and a float where an integer belongs is refused with a
/// message, not a panic.
#[test]
fn time_responses_accept_integers_for_floats() {
    let reply = Value::Map(vec![
        (Value::Text("t2".into()), Value::Integer(5.into())),
        (Value::Text("t3".into()), Value::Integer(6.into())),
        (Value::Text("view".into()), Value::Integer(0.into())),
        (Value::Text("skew_ppm".into()), Value::Integer((-2).into())),
    ]);
    let mut time = CheckedCbor::<TimeRequest, TimeResponse>::new(
        MAX_TIME_MESSAGE_BYTES,
        MAX_TIME_MESSAGE_BYTES,
    );
    let got = block_on(time.read_response(&TIME_PROTOCOL, &mut Cursor::new(cbor(&reply)))).unwrap();
    assert_eq!(
        (got.t2, got.t3, got.view, got.skew_ppm),
        (5, 6, Some(0.0), -2.0)
    );
    let request = Value::Map(vec![(Value::Text("t1".into()), Value::Float(1.5))]);
    let got =
        block_on(time.read_request(&TIME_PROTOCOL, &mut Cursor::new(cbor(&request)))).unwrap();
    assert!(matches!(got, Inbound::Malformed(why) if !why.is_empty()));
}

proptest! {
    /// A valid message of any kind, bent by a few structural edits, never
    /// panics any decoder or check, and every refusal says why.
    #[test]
    fn structured_values_never_panic_a_decoder(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let seeds = seeds();
        let bent = apply(seeds[seed.index(seeds.len())].clone(), &edits);
        decode_everything(&cbor(&bent));
    }

    /// Arbitrary CBOR values (not derived from any message) never panic
    /// any decoder either.
    #[test]
    fn arbitrary_values_never_panic_a_decoder(v in value()) {
        decode_everything(&cbor(&v));
    }

    /// Random bytes after a valid prefix (a truncated or padded message).
    #[test]
    fn truncated_and_padded_messages_never_panic_a_decoder(
        seed in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let seeds = seeds();
        let mut bytes = cbor(&seeds[seed.index(seeds.len())]);
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend(tail);
        decode_everything(&bytes);
    }
}

// ---------------------------------------------------------------- gossip handler

/// What a node does with a library gossip message, as the event loop does
/// it: decode, validate, hand to the catalog; with versions from heartbeats
/// and library responses in between.
#[derive(Debug, Clone)]
enum Gossip {
    Announce(usize, Vec<u8>),
    Version(usize, u64),
    Response(usize, Vec<u8>),
}

fn gossip() -> impl Strategy<Value = Gossip> {
    let bent_announce = (
        proptest::collection::vec(edit(), 0..4),
        0u64..6,
        1u64..8,
        0u8..40,
    )
        .prop_map(|(edits, from, span, n)| {
            let mut a = announce();
            a.delta.from = from;
            a.delta.to = from + span;
            a.delta.added = (0..n).map(|i| summary(i.wrapping_mul(7))).collect();
            cbor(&apply(tree(&a), &edits))
        });
    let bent_response =
        (proptest::collection::vec(edit(), 0..3), 0u64..8, 0u8..60).prop_map(|(edits, at, n)| {
            let r = LibraryResponse {
                version: WIRE_VERSION,
                body: LibraryBody::Full {
                    at,
                    tracks: (0..n).map(summary).collect(),
                },
            };
            cbor(&apply(tree(&r), &edits))
        });
    prop_oneof![
        3 => (0usize..4, bent_announce).prop_map(|(p, b)| Gossip::Announce(p, b)),
        1 => (0usize..4, prop_oneof![0u64..10, Just(u64::MAX)]).prop_map(|(p, v)| Gossip::Version(p, v)),
        2 => (0usize..4, bent_response).prop_map(|(p, b)| Gossip::Response(p, b)),
    ]
}

proptest! {
    /// Any sequence of bent library gossip and responses from a few peers
    /// never panics the catalog and keeps it within its caps.
    #[test]
    fn the_library_gossip_handler_survives_bent_messages(
        steps in proptest::collection::vec(gossip(), 1..40),
    ) {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let mut catalog = SwarmCatalog::new();
        let library = protocol(LIBRARY_PROTOCOL);
        for step in steps {
            match step {
                Gossip::Announce(p, bytes) => {
                    if let Ok(a) = LibraryAnnounce::decode(&bytes)
                        && a.validate().is_ok()
                    {
                        let _ = catalog.handle_announce(peers[p], &a.delta, a.elided);
                    }
                }
                Gossip::Version(p, v) => {
                    let _ = catalog.handle_version(peers[p], v);
                }
                Gossip::Response(p, bytes) => {
                    if let Ok(r) =
                        block_on(library_codec().read_response(&library, &mut Cursor::new(bytes)))
                        && r.validate().is_ok()
                        && let Err(e) = catalog.handle_response(peers[p], &r.body)
                    {
                        clear(e);
                    }
                }
            }
            prop_assert!(catalog.cost() <= MAX_CATALOG_BYTES);
            for peer in &peers {
                prop_assert!(catalog.peer_tracks(peer).count() <= MAX_TRACKS_PER_PEER);
            }
        }
    }
}
