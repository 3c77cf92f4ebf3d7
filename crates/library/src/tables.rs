//! The redb tables, the records stored in them, and their encoding.
//!
//! Values are CBOR (ciborium) except where a plain redb type says it all.
//! Paths are stored as their raw OS bytes.
//!
//! # Invariants
//!
//! 1. A path is in [`FILES`] with `track: Some(t)` iff it is a value of
//!    [`TRACK_FILES`] under `t`, and then for every `(offset, chunk)` of `t`'s
//!    manifest, `(path, offset, len)` is a value of [`CHUNK_LOCATIONS`] under
//!    the chunk id (until `read_chunk` finds it stale and drops it).
//! 2. A track is in [`TRACKS`] iff it has at least one value in [`TRACK_FILES`].
//! 3. The version in [`META`] equals the highest key in [`LOG`] (or the floor
//!    when the log is empty); [`LOG`] holds every version in `floor+1..=version`.
//! 4. A chunk is in [`DOWNLOAD_CHUNKS`] only after its bytes were written at
//!    all its offsets in the staging file and synced.
//! 5. A track is in [`TRACK_COVERS`] (with cover hash `c`) only while it is in
//!    [`TRACKS`], and then `(c, track)` is in [`COVER_TRACKS`]; a picture is
//!    in [`COVERS`] iff [`COVER_TRACKS`] has a value under its hash.
//!
//! Every change that touches several tables happens in one write transaction.

use crate::delta::LogOp;
use crate::error::StoreError;
use crate::id::TrackId;
use crate::manifest::{ChunkRef, Manifest, TrackMeta};
use redb::{MultimapTableDefinition, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// Scanned (and downloaded) files: path → [`FileRecord`].
pub(crate) const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");
/// Tracks: track id → CBOR [`Manifest`].
pub(crate) const TRACKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("tracks");
/// Which files hold a track: track id → paths.
pub(crate) const TRACK_FILES: MultimapTableDefinition<&[u8; 32], &[u8]> =
    MultimapTableDefinition::new("track_files");
/// Where a chunk can be read: chunk id → (path, offset, len).
pub(crate) const CHUNK_LOCATIONS: MultimapTableDefinition<&[u8; 32], (&[u8], u64, u32)> =
    MultimapTableDefinition::new("chunk_locations");
/// The version log: version → CBOR [`LogEntry`].
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Counters: [`VERSION`] and [`FLOOR`], and the [`COVERS_NAMED`] flag.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Node settings (identity key and the like): name → bytes.
pub(crate) const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// Downloads in progress: track id → CBOR [`DownloadRecord`].
pub(crate) const DOWNLOADS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("downloads");
/// Chunks of a download already in its staging file: (track, chunk) → ().
pub(crate) const DOWNLOAD_CHUNKS: TableDefinition<(&[u8; 32], &[u8; 32]), ()> =
    TableDefinition::new("download_chunks");

/// Cover pictures by content: BLAKE3 of the bytes → the bytes (at most
/// [`crate::MAX_COVER_BYTES`]).
pub(crate) const COVERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("covers");
/// Each track's cover: track id → cover hash.
pub(crate) const TRACK_COVERS: TableDefinition<&[u8; 32], &[u8; 32]> =
    TableDefinition::new("track_covers");
/// Which tracks show a cover: cover hash → track ids.
pub(crate) const COVER_TRACKS: MultimapTableDefinition<&[u8; 32], &[u8; 32]> =
    MultimapTableDefinition::new("cover_tracks");

/// [`META`] key of the library version.
pub(crate) const VERSION: &str = "version";
/// [`META`] key of the oldest version [`LOG`] can answer from.
pub(crate) const FLOOR: &str = "floor";
/// [`META`] key set to 1 once every manifest names its cover (libraries
/// scanned before `TrackMeta::cover` existed are brought up to date once).
pub(crate) const COVERS_NAMED: &str = "covers_named";

/// What the library knows about one file on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    /// Size when last read.
    pub(crate) size: u64,
    /// Modification time when last read, in nanoseconds since the Unix epoch
    /// (0 = unknown, which forces a re-read).
    pub(crate) mtime_ns: u64,
    /// The track the file holds; `None` when it is not (playable) audio.
    pub(crate) track: Option<TrackId>,
    /// Why the file was skipped, when it was; `None` for files left out
    /// silently (not audio by extension either).
    pub(crate) skipped: Option<String>,
}

/// One entry of the version log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogEntry {
    /// The track.
    pub(crate) track: TrackId,
    /// What happened to it.
    pub(crate) op: LogOp,
}

/// A download in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DownloadRecord {
    /// The manifest it was started from (validated).
    pub(crate) manifest: Manifest,
    /// How far it got.
    pub(crate) state: DownloadState,
}

/// The phases of a download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum DownloadState {
    /// Chunks are arriving.
    Fetching,
    /// All bytes verified; the file is being linked into the music folder
    /// (under the first free or already-ours numbered name). Recovery on open
    /// completes this phase.
    Finishing {
        /// Metadata probed from the assembled file (boxed: the other
        /// phase is empty; the encoding is the same).
        meta: Box<TrackMeta>,
        /// The chunks as this node cuts them.
        chunks: Vec<ChunkRef>,
    },
}

/// Encodes a value as CBOR.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and our types always serialize.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!("encoding a record failed: {e}");
    }
    out
}

/// Decodes a CBOR value, naming the record kind on failure.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    ciborium::from_reader(bytes).map_err(|_| StoreError::Corrupt { what })
}

/// The raw bytes of a path, as stored.
#[cfg(unix)]
pub(crate) fn path_bytes(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes()
}

/// The raw bytes of a path, as stored.
#[cfg(not(unix))]
pub(crate) fn path_bytes(path: &Path) -> &[u8] {
    path.to_str().map(str::as_bytes).unwrap_or_default()
}

/// A path from its stored bytes.
#[cfg(unix)]
pub(crate) fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// A path from its stored bytes.
#[cfg(not(unix))]
pub(crate) fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}
