//! Errors, one enum per family of operations, and the umbrella [`Error`].

use crate::id::{ChunkId, TrackId};
use crate::manifest::ManifestError;
use std::path::PathBuf;

/// The database failed or holds something it should not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error.
    #[error("library database error: {0}")]
    Database(#[from] redb::Error),
    /// A stored value did not decode (written by another version, or damaged).
    #[error("library database holds an undecodable {what}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
    },
}

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}
store_error_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Opening the library failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data dir (or a folder in it) could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process (or handle) has the database open.
    #[error("the library database {} is in use by another firefly process", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// redb could not open the database file.
    #[error("cannot open the library database {}: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// Setting up the tables or recovering downloads failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A scan could not run (problems with single files are reported in the
/// scan report instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A folder to scan does not exist or cannot be read.
    #[error("cannot scan {}: {source}", path.display())]
    Root {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A chunk could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadChunkError {
    /// No file in the library holds this chunk.
    #[error("chunk {0} is not in the library")]
    NotFound(ChunkId),
    /// Every file that held the chunk changed or vanished; those locations
    /// were dropped.
    #[error("chunk {0} is no longer readable: its files changed underneath")]
    Unavailable(ChunkId),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A download operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The manifest is inconsistent.
    #[error("invalid manifest: {0}")]
    InvalidManifest(#[from] ManifestError),
    /// No download of this track is in progress.
    #[error("no download of track {0} in progress")]
    NotStarted(TrackId),
    /// The chunk is not part of the track.
    #[error("chunk {chunk} is not part of track {track}")]
    NotInManifest {
        /// The track.
        track: TrackId,
        /// The chunk.
        chunk: ChunkId,
    },
    /// The bytes do not hash to the chunk id (or have the wrong length).
    #[error("bytes offered for chunk {0} do not match it")]
    WrongBytes(ChunkId),
    /// All chunks verified but the assembled file does not hash to the track id.
    #[error("assembled file does not hash to track {0}; download restarted")]
    TrackMismatch(TrackId),
    /// The assembled file is not playable audio; the download was dropped.
    #[error("downloaded track {track} is not playable audio: {reason}")]
    NotAudio {
        /// The track.
        track: TrackId,
        /// What the probe said.
        reason: String,
    },
    /// The download is not complete yet.
    #[error("track {track} still misses {missing} chunks")]
    Incomplete {
        /// The track.
        track: TrackId,
        /// How many distinct chunks are missing.
        missing: usize,
    },
    /// A file operation on the staging file or the music folder failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DownloadError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| DownloadError::Io { context, source }
    }
}

/// Any library error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Scanning failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// Reading a chunk failed.
    #[error(transparent)]
    ReadChunk(#[from] ReadChunkError),
    /// A download operation failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
