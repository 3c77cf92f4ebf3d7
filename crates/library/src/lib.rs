//! Firefly's content-addressed music library.
//!
//! The catalog of every track a node holds, chunk by chunk: scanning folders
//! and probing audio files ([`Library::scan`], or just the paths a folder
//! watcher saw change: [`Library::scan_paths`]), keeping the cover picture
//! of their tags ([`Library::cover`]), cutting them into
//! content-defined chunks with BLAKE3 ids, the redb store of manifests, chunk
//! locations and scanned files, the version log that gives peers deltas
//! ([`Library::changes_since`]), serving verified chunks
//! ([`Library::read_chunk`]) and assembling downloaded tracks
//! ([`Library::start_download`], [`Library::accept_chunk`]).
//!
//! Chunks are *logical*: `(file, offset, len)` references into the user's own
//! files, never copies. The pure logic — chunk planning ([`plan_cuts`]),
//! deltas ([`net_changes`]), file names ([`FileName`]) and download
//! bookkeeping ([`DownloadPlan`]) — is sans-IO and tested on its own.
//!
//! What it isn't: a player or a network layer. It does no async; every
//! [`Library`] method blocks, so async callers use `spawn_blocking`.

mod chunking;
mod cover;
mod delta;
mod download;
mod error;
mod id;
mod manifest;
mod names;
mod prefix;
mod probe;
mod scan;
mod store;
mod tables;

pub use chunking::{
    AVG_CHUNK_LEN, Digest, DigestError, MIN_CHUNK_LEN, digest, plan_cuts, shared_bytes,
};
pub use cover::{Cover, MAX_COVER_BYTES};
pub use delta::{Changes, LOG_KEEP, LogOp, net_changes};
pub use download::{Accepted, BatchAccepted, DownloadPlan, DownloadStatus};
pub use error::{DownloadError, Error, OpenError, ReadChunkError, ScanError, StoreError};
pub use id::{ChunkId, CoverId, ParseIdError, TrackId};
pub use manifest::{
    ChunkRef, MAX_CHUNK_LEN, MAX_TEXT_LEN, MAX_TRACK_BYTES, Manifest, ManifestError, TrackMeta,
};
pub use names::{FileName, MAX_STEM_LEN, display_text, is_bidi_control};
pub use probe::{AUDIO_EXTENSIONS, ProbeError, has_audio_extension, probe_file};
pub use scan::{ScanObserver, ScanReport, Skipped};
pub use store::{DATABASE_FILE, Library, LibraryConfig, MUSIC_DIR, STAGING_DIR, TrackEntry};
