//! A byte source that is still arriving: reads block until the bytes are there.
//!
//! [`stream_source`] makes a [`StreamSource`] (what the decoder reads, `Read +
//! Seek`) and its [`StreamWriter`] (what the downloader feeds). Chunks may
//! arrive in any order (the swarm fetches from several peers at once); a read
//! of a byte range not yet present waits for it. When every writer is gone
//! (download finished or abandoned), a read of bytes that never came returns
//! end of file, so a decoder never waits forever on a dead download.
//!
//! Memory is bounded by the declared total length, which is checked against
//! [`MAX_STREAM_BYTES`].

use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The largest stream accepted (1 GiB): a track is far smaller.
pub const MAX_STREAM_BYTES: u64 = 1 << 30;

/// Writing into a stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The declared length exceeds [`MAX_STREAM_BYTES`].
    #[error("stream of {0} bytes is larger than the {MAX_STREAM_BYTES} byte limit")]
    TooLarge(u64),
    /// A write would go past the declared end of the stream.
    #[error("write of {len} bytes at offset {offset} goes past the stream end {total}")]
    OutOfBounds {
        /// Where the write started.
        offset: u64,
        /// How many bytes.
        len: usize,
        /// The stream's declared length.
        total: u64,
    },
}

#[derive(Debug, Default)]
struct State {
    bytes: Vec<u8>,
    /// Present byte ranges, sorted, disjoint and never touching.
    present: Vec<(u64, u64)>,
    writers: usize,
}

impl State {
    fn add_range(&mut self, start: u64, end: u64) {
        self.present.push((start, end));
        self.present.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.present.len());
        for &(s, e) in &self.present {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.present = merged;
    }

    /// Bytes available from `pos` without waiting.
    fn available_at(&self, pos: u64) -> u64 {
        self.present
            .iter()
            .find(|&&(s, e)| s <= pos && pos < e)
            .map_or(0, |&(_, e)| e - pos)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    total: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

/// The reading end: `Read + Seek`, blocking on bytes not yet written.
#[derive(Debug)]
pub struct StreamSource {
    shared: Arc<Shared>,
    pos: u64,
}

/// The writing end; clone it for several downloaders. Dropping the last one ends the stream.
#[derive(Debug)]
pub struct StreamWriter {
    shared: Arc<Shared>,
}

/// A stream of `total_len` bytes, none of them present yet.
pub fn stream_source(total_len: u64) -> Result<(StreamSource, StreamWriter), StreamError> {
    if total_len > MAX_STREAM_BYTES {
        return Err(StreamError::TooLarge(total_len));
    }
    let len = usize::try_from(total_len).map_err(|_| StreamError::TooLarge(total_len))?;
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            bytes: vec![0; len],
            present: Vec::new(),
            writers: 1,
        }),
        arrived: Condvar::new(),
        total: total_len,
    });
    Ok((
        StreamSource {
            shared: Arc::clone(&shared),
            pos: 0,
        },
        StreamWriter { shared },
    ))
}

impl StreamWriter {
    /// Stores `data` at `offset` and wakes readers waiting for it.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StreamError> {
        let total = self.shared.total;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= total)
            .ok_or(StreamError::OutOfBounds {
                offset,
                len: data.len(),
                total,
            })?;
        let mut state = self.shared.lock();
        // Both bounds were checked against `total`, which is the buffer's length.
        let (start, stop) = (offset as usize, end as usize);
        state.bytes[start..stop].copy_from_slice(data);
        state.add_range(offset, end);
        drop(state);
        self.shared.arrived.notify_all();
        Ok(())
    }

    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        let state = self.shared.lock();
        self.shared.total == 0 || state.present.first() == Some(&(0, self.shared.total))
    }
}

impl Clone for StreamWriter {
    fn clone(&self) -> Self {
        self.shared.lock().writers += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.shared.lock().writers -= 1;
        self.shared.arrived.notify_all();
    }
}

impl Read for StreamSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.shared.total {
            return Ok(0);
        }
        let mut state = self.shared.lock();
        loop {
            let available = state.available_at(self.pos);
            if available > 0 {
                let n = (available as usize).min(buf.len());
                let start = self.pos as usize;
                buf[..n].copy_from_slice(&state.bytes[start..start + n]);
                self.pos += n as u64;
                return Ok(n);
            }
            if state.writers == 0 {
                // The download ended without these bytes: nothing more will come.
                return Ok(0);
            }
            // Waking periodically costs nothing and guards against a missed notify.
            state = self
                .shared
                .arrived
                .wait_timeout(state, Duration::from_millis(200))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }
}

impl Seek for StreamSource {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.shared.total.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the stream",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

impl symphonia::core::io::MediaSource for StreamSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.shared.total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn read_waits_for_out_of_order_chunks() {
        let (mut source, writer) = stream_source(8).unwrap();
        writer.write_at(4, b"5678").unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            source.read_to_end(&mut all).unwrap();
            all
        });
        std::thread::sleep(Duration::from_millis(50));
        writer.write_at(0, b"1234").unwrap();
        assert!(writer.is_complete());
        drop(writer);
        assert_eq!(reader.join().unwrap(), b"12345678");
    }

    #[test]
    fn abandoned_download_ends_the_stream() {
        let (mut source, writer) = stream_source(8).unwrap();
        writer.write_at(0, b"12").unwrap();
        drop(writer);
        let mut all = Vec::new();
        source.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"12");
    }

    #[test]
    fn bad_writes_and_sizes_are_refused() {
        assert!(matches!(
            stream_source(u64::MAX),
            Err(StreamError::TooLarge(_))
        ));
        let (_source, writer) = stream_source(4).unwrap();
        assert!(writer.write_at(2, b"abc").is_err());
        assert!(writer.write_at(u64::MAX, b"a").is_err());
    }
}
