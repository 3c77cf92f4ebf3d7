//! Firefly's content-addressed music library.
//!
//! This crate will hold the catalog of every track a node holds: scanning and
//! probing audio files, cutting them into content-defined chunks, BLAKE3
//! fingerprints, the redb store of manifests and chunk locations, library
//! deltas for peers, and the assembly of downloaded tracks.

mod id;
mod manifest;

pub use id::{ChunkId, ParseIdError, TrackId};
pub use manifest::{
    ChunkRef, MAX_CHUNK_LEN, MAX_TEXT_LEN, MAX_TRACK_BYTES, Manifest, ManifestError, TrackMeta,
};
