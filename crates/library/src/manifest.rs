//! A track's manifest: the ordered list of chunks that make up its file, plus
//! what the swarm needs to show and play it.
//!
//! Manifests travel between peers (`/firefly/manifest/1`, library deltas), so
//! everything here is plain serde data. A manifest from the network is
//! untrusted until [`Manifest::validate`] accepts it.

use crate::id::{ChunkId, CoverId, TrackId};
use serde::{Deserialize, Serialize};

/// Largest chunk FastCDC may cut (the `max` size), in bytes.
pub const MAX_CHUNK_LEN: u32 = 256 * 1024;
/// Largest track file Firefly accepts, in bytes (4 GiB).
pub const MAX_TRACK_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Longest text field (title, artist, …) kept, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// One chunk of a track, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub id: ChunkId,
    /// Length of the chunk in bytes (1..=[`MAX_CHUNK_LEN`]).
    pub len: u32,
}

/// What the probe learned about a track's audio and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackMeta {
    /// Title from the tags, or from the file name when the tags have none.
    pub title: String,
    /// Artist, if tagged.
    pub artist: Option<String>,
    /// Album, if tagged.
    pub album: Option<String>,
    /// Track number within the album, if tagged.
    pub track: Option<u32>,
    /// Duration in milliseconds, if known.
    pub duration_ms: Option<u64>,
    /// Codec short name (`mp3`, `flac`, `vorbis`, `pcm`, `aac`).
    pub codec: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// The file's extension without the dot (`mp3`, `flac`, `ogg`, `wav`, `m4a`), used to name downloads.
    pub extension: String,
    /// The id of the cover picture in the tags that Firefly keeps (see
    /// [`Cover`](crate::Cover)), so nodes without the file can fetch it.
    #[serde(default)]
    pub cover: Option<CoverId>,
}

/// Everything needed to fetch, verify and play a track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// BLAKE3 of the whole file.
    pub track: TrackId,
    /// Total file size in bytes; equals the sum of the chunk lengths.
    pub size: u64,
    /// The chunks in file order.
    pub chunks: Vec<ChunkRef>,
    /// Tags and audio parameters.
    pub meta: TrackMeta,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The chunk lengths do not add up to the declared size.
    #[error("chunk lengths add up to {sum} bytes but the manifest declares {size}")]
    SizeMismatch {
        /// Sum of the chunk lengths.
        sum: u64,
        /// Declared size.
        size: u64,
    },
    /// A chunk is empty or longer than [`MAX_CHUNK_LEN`].
    #[error("chunk {index} has length {len}, outside 1..={MAX_CHUNK_LEN}")]
    BadChunkLen {
        /// Position of the chunk in the manifest.
        index: usize,
        /// Its declared length.
        len: u32,
    },
    /// The track is larger than [`MAX_TRACK_BYTES`].
    #[error("track of {size} bytes exceeds the {MAX_TRACK_BYTES}-byte limit")]
    TooLarge {
        /// Declared size.
        size: u64,
    },
    /// A text field is longer than [`MAX_TEXT_LEN`].
    #[error("the {field} field is longer than {MAX_TEXT_LEN} bytes")]
    TextTooLong {
        /// Which field.
        field: &'static str,
    },
}

impl Manifest {
    /// Checks the structural invariants a manifest from a peer must satisfy
    /// before anything is allocated or written for it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.size > MAX_TRACK_BYTES {
            return Err(ManifestError::TooLarge { size: self.size });
        }
        let mut sum = 0u64;
        for (index, chunk) in self.chunks.iter().enumerate() {
            if chunk.len == 0 || chunk.len > MAX_CHUNK_LEN {
                return Err(ManifestError::BadChunkLen {
                    index,
                    len: chunk.len,
                });
            }
            sum += u64::from(chunk.len);
        }
        if sum != self.size {
            return Err(ManifestError::SizeMismatch {
                sum,
                size: self.size,
            });
        }
        let m = &self.meta;
        let fields: [(&'static str, Option<&str>); 5] = [
            ("title", Some(&m.title)),
            ("artist", m.artist.as_deref()),
            ("album", m.album.as_deref()),
            ("codec", Some(&m.codec)),
            ("extension", Some(&m.extension)),
        ];
        for (field, value) in fields {
            if value.is_some_and(|v| v.len() > MAX_TEXT_LEN) {
                return Err(ManifestError::TextTooLong { field });
            }
        }
        Ok(())
    }

    /// Byte offset of each chunk in the file, in manifest order.
    pub fn offsets(&self) -> impl Iterator<Item = (u64, &ChunkRef)> {
        self.chunks.iter().scan(0u64, |offset, chunk| {
            let at = *offset;
            *offset += u64::from(chunk.len);
            Some((at, chunk))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(lens: &[u32], size: u64) -> Manifest {
        Manifest {
            track: TrackId::of(b"t"),
            size,
            chunks: lens
                .iter()
                .map(|&len| ChunkRef {
                    id: ChunkId::of(&len.to_le_bytes()),
                    len,
                })
                .collect(),
            meta: TrackMeta::default(),
        }
    }

    #[test]
    fn validate_accepts_consistent_and_rejects_lies() {
        assert_eq!(manifest(&[10, 20], 30).validate(), Ok(()));
        assert!(matches!(
            manifest(&[10, 20], 31).validate(),
            Err(ManifestError::SizeMismatch { .. })
        ));
        assert!(matches!(
            manifest(&[0], 0).validate(),
            Err(ManifestError::BadChunkLen { .. })
        ));
        assert!(matches!(
            manifest(&[MAX_CHUNK_LEN + 1], u64::from(MAX_CHUNK_LEN) + 1).validate(),
            Err(ManifestError::BadChunkLen { .. })
        ));
    }

    #[test]
    fn offsets_are_cumulative() {
        let m = manifest(&[10, 20, 5], 35);
        let offsets: Vec<u64> = m.offsets().map(|(o, _)| o).collect();
        assert_eq!(offsets, vec![0, 10, 30]);
    }
}
