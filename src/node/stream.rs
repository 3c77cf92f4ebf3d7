//! Playing a track while it still downloads.
//!
//! DESIGN.md (Playback session): "a node may start before its download
//! finishes when its transfer rate comfortably outruns playback". Two pieces:
//!
//! - [`PartialSource`] is the byte source the decoder reads: it maps every
//!   read onto the manifest's chunks and reads each one from the library
//!   ([`Library::read_chunk`], which serves chunks of a download in progress
//!   from its staging file, verified against their ids). It never hands the
//!   decoder bytes of a chunk that is not there: such a read waits for the
//!   chunk (bounded by [`READ_PATIENCE`], then an I/O error ends the track).
//! - [`Headroom`] is the sans-IO rule for *when* starting is safe: the chunks
//!   from the start of the file must reach [`AHEAD_MICROS`] of audio past the
//!   play head, and the download rate measured over at least
//!   [`MIN_WINDOW_MICROS`] must be at least [`MIN_RATE_RATIO`] times the
//!   playback byte rate. Downloads run in file order (earliest missing chunk
//!   first among equally rare ones), so then the download head moves away
//!   from the play head and the wait above is never taken in practice.
//!
//! What it is not: the download itself (the swarm's transfer service) or the
//! decision to play (the driver).

use firefly_library::{ChunkId, Library, Manifest, ReadChunkError, TrackId};
use std::io::{self, Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Audio that must be present past the play head before starting, µs.
pub(crate) const AHEAD_MICROS: u64 = 3_000_000;
/// How many times faster than playback the download must run.
pub(crate) const MIN_RATE_RATIO: f64 = 4.0;
/// The shortest window a download rate is measured over, µs.
pub(crate) const MIN_WINDOW_MICROS: i64 = 300_000;
/// How long a read waits for a chunk that is not there yet.
pub(crate) const READ_PATIENCE: Duration = Duration::from_secs(10);

/// The manifest of `track`, whether held or still downloading.
pub(crate) fn manifest_of(library: &Library, track: TrackId) -> Option<Manifest> {
    match library.manifest(track) {
        Ok(Some(manifest)) => Some(manifest),
        _ => library.download_manifest(track).ok().flatten(),
    }
}

/// Where `manifest`'s bytes are present from the start: the offset of the
/// first chunk still missing (the file size when none is).
pub(crate) fn present_prefix(manifest: &Manifest, missing: &[ChunkId]) -> u64 {
    let missing: std::collections::HashSet<&ChunkId> = missing.iter().collect();
    manifest
        .offsets()
        .find(|(_, chunk)| missing.contains(&chunk.id))
        .map_or(manifest.size, |(offset, _)| offset)
}

/// Whether a download is far enough ahead of playback to start; see the
/// module doc. Feed it samples of the bytes present with `now` (local µs,
/// never going backwards).
#[derive(Debug, Clone)]
pub(crate) struct Headroom {
    size: u64,
    duration_micros: u64,
    first: Option<(i64, u64)>,
    last: Option<(i64, u64)>,
}

impl Headroom {
    /// For a track of `size` bytes lasting `duration_micros`.
    pub(crate) fn new(size: u64, duration_micros: u64) -> Self {
        Self {
            size,
            duration_micros,
            first: None,
            last: None,
        }
    }

    /// Playback's byte rate, bytes per second.
    pub(crate) fn playback_rate(&self) -> f64 {
        self.size as f64 / (self.duration_micros.max(1) as f64 / 1e6)
    }

    /// Notes that `bytes` of the file were present at `now`. The rate is
    /// measured from the first sample with bytes present, so the wait for
    /// the manifest and the first answer does not count as a slow transfer.
    pub(crate) fn handle_sample(&mut self, now: i64, bytes: u64) {
        if self.first.is_none() && bytes > 0 {
            self.first = Some((now, bytes));
        }
        self.last = Some((now, bytes));
    }

    /// The download rate measured so far, bytes per second, once the window
    /// is long enough.
    pub(crate) fn download_rate(&self) -> Option<f64> {
        let ((t0, b0), (t1, b1)) = (self.first?, self.last?);
        let window = t1 - t0;
        (window >= MIN_WINDOW_MICROS).then(|| b1.saturating_sub(b0) as f64 / (window as f64 / 1e6))
    }

    /// Whether playing from `position_micros` is safe with the bytes up to
    /// `prefix` present.
    pub(crate) fn is_safe(&self, position_micros: u64, prefix: u64) -> bool {
        let Some(rate) = self.download_rate() else {
            return false;
        };
        let needed_micros = position_micros.saturating_add(AHEAD_MICROS);
        let needed = if needed_micros >= self.duration_micros {
            self.size
        } else {
            (self.size as f64 * needed_micros as f64 / self.duration_micros as f64).ceil() as u64
        };
        prefix >= needed && rate >= MIN_RATE_RATIO * self.playback_rate()
    }
}

/// The bytes of a track read chunk by chunk from the library; see the module doc.
pub(crate) struct PartialSource {
    library: Library,
    /// (offset, chunk, length) in file order. Invariant: contiguous from 0
    /// to `size` (a validated manifest's chunks).
    chunks: Vec<(u64, ChunkId, u32)>,
    size: u64,
    pos: u64,
    /// The chunk last read: its offset and verified bytes.
    cached: Option<(u64, Vec<u8>)>,
    /// How long a read waits for a missing chunk ([`READ_PATIENCE`]).
    patience: Duration,
}

impl PartialSource {
    /// A source over `manifest`'s bytes in `library`.
    pub(crate) fn new(library: Library, manifest: &Manifest) -> Self {
        Self {
            library,
            chunks: manifest
                .offsets()
                .map(|(offset, chunk)| (offset, chunk.id, chunk.len))
                .collect(),
            size: manifest.size,
            pos: 0,
            cached: None,
            patience: READ_PATIENCE,
        }
    }

    /// The verified bytes of the chunk covering `pos`, waiting for it if it
    /// has not arrived yet.
    fn chunk_at(&mut self, pos: u64) -> io::Result<(u64, &[u8])> {
        let index = self
            .chunks
            .partition_point(|(offset, _, _)| *offset <= pos)
            .saturating_sub(1);
        let Some(&(offset, id, len)) = self.chunks.get(index) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "empty manifest"));
        };
        if self.cached.as_ref().is_none_or(|(at, _)| *at != offset) {
            let deadline = Instant::now() + self.patience;
            let bytes = loop {
                match self.library.read_chunk(id) {
                    Ok(bytes) if bytes.len() == len as usize => break bytes,
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a chunk's length differs from its manifest",
                        ));
                    }
                    Err(ReadChunkError::NotFound(_) | ReadChunkError::Unavailable(_))
                        if Instant::now() < deadline =>
                    {
                        // Not downloaded yet: wait for it rather than read
                        // the staging file's unwritten bytes.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(err) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("chunk at byte {offset} never arrived: {err}"),
                        ));
                    }
                }
            };
            self.cached = Some((offset, bytes));
        }
        // Just filled for `offset` above.
        let (at, bytes) = self.cached.as_ref().expect("the chunk was just cached");
        Ok((*at, bytes.as_slice()))
    }
}

impl Read for PartialSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let pos = self.pos;
        let (offset, bytes) = self.chunk_at(pos)?;
        let start = usize::try_from(pos - offset).unwrap_or(usize::MAX);
        let Some(rest) = bytes.get(start..) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "manifest offsets are not contiguous",
            ));
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PartialSource {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl firefly_player::MediaSource for PartialSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.size)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_library::{Accepted, LibraryConfig};

    /// A library holding a generated 3 s WAV, and another one that has
    /// started downloading it.
    fn holder_and_downloader(dir: &std::path::Path) -> (Library, Library, Manifest, Vec<u8>) {
        let music = dir.join("music");
        std::fs::create_dir_all(&music).unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let path = music.join("noise.wav");
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        let mut x: u32 = 1;
        for _ in 0..3 * 44_100 * 2 {
            // Noise, so content-defined chunking cuts many chunks.
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            w.write_sample((x >> 16) as i16).unwrap();
        }
        w.finalize().unwrap();
        let mut config = LibraryConfig::new(dir.join("a"));
        config.music_dir(&music);
        let holder = Library::open(&config).unwrap();
        holder.scan(&[music], &mut ()).unwrap();
        let manifest = holder.manifests().unwrap().remove(0);
        let mut config = LibraryConfig::new(dir.join("b"));
        config.music_dir(dir.join("b-music"));
        let downloader = Library::open(&config).unwrap();
        downloader.start_download(&manifest).unwrap();
        (holder, downloader, manifest, std::fs::read(&path).unwrap())
    }

    #[test]
    fn reads_only_chunks_that_arrived_and_waits_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (holder, downloader, manifest, bytes) = holder_and_downloader(dir.path());
        assert!(manifest.chunks.len() > 4, "{}", manifest.chunks.len());
        let first = manifest.chunks[0];
        let chunk = holder.read_chunk(first.id).unwrap();
        downloader
            .accept_chunk(manifest.track, first.id, &chunk)
            .unwrap();
        let missing = downloader.missing_chunks(manifest.track).unwrap();
        assert_eq!(present_prefix(&manifest, &missing), u64::from(first.len));

        let mut source = PartialSource::new(downloader.clone(), &manifest);
        source.patience = Duration::from_millis(100);
        let mut head = vec![0; first.len as usize];
        source.read_exact(&mut head).unwrap();
        assert_eq!(head, bytes[..head.len()]);
        // The next chunk is not there: the read waits, then fails rather
        // than hand over the staging file's unwritten bytes.
        let started = Instant::now();
        let err = source.read(&mut [0; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));

        // Once everything arrived (the download completes), the whole file reads back.
        let mut done = None;
        for id in missing {
            let chunk = holder.read_chunk(id).unwrap();
            if let Accepted::Completed(path) =
                downloader.accept_chunk(manifest.track, id, &chunk).unwrap()
            {
                done = Some(path);
            }
        }
        assert!(done.is_some());
        source.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        source.read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
        assert_eq!(manifest_of(&downloader, manifest.track), Some(manifest));
    }

    const S: i64 = 1_000_000;

    #[test]
    fn safe_only_with_audio_ahead_and_a_fast_enough_download() {
        // 60 s, 10 MB: playback reads 166 kB/s.
        let mut headroom = Headroom::new(10_000_000, 60_000_000);
        headroom.handle_sample(0, 0);
        headroom.handle_sample(S / 2, 100_000);
        assert!(!headroom.is_safe(0, 10_000_000), "no rate measured yet");
        headroom.handle_sample(3 * S / 2, 2_100_000); // 2 MB/s = 12x
        assert!(headroom.is_safe(0, 2_100_000));
        // 3 s past the head is 500 kB: only 400 kB are here.
        assert!(!headroom.is_safe(0, 400_000));
        // Later in the track the head is further in.
        assert!(!headroom.is_safe(30_000_000, 2_100_000));
        // A slow download (2x playback) is never safe.
        let mut slow = Headroom::new(10_000_000, 60_000_000);
        slow.handle_sample(0, 1);
        slow.handle_sample(S, 333_001);
        assert!(!slow.is_safe(0, 10_000_000));
        // Near the end, the whole rest of the file is needed.
        assert!(!headroom.is_safe(58_000_000, 9_999_999));
        assert!(headroom.is_safe(58_000_000, 10_000_000));
    }
}
