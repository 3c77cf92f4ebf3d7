//! Live sources on the wire: what a node offers (in its heartbeat), what a
//! session plays ([`LiveRef`]), and the `/firefly/live/1` stream that carries
//! the blocks.
//!
//! A member that plays a live source opens one stream to the source's node
//! (the origin) and writes one request frame naming the source; the origin
//! then writes the blocks cut within the last buffer that are still to
//! sound, then each block as it is cut (so a member that joins late has
//! sound at once), and an end frame with a reason when the source ends. Frames are
//! length-prefixed (4 bytes big-endian) and refused above
//! [`MAX_LIVE_FRAME_BYTES`] before they are read; a frame that does not
//! parse closes the stream, and the node strikes its sender
//! ([`crate::Client::penalize`]). The payload of a block is opaque here:
//! the `firefly-live` crate encodes and decodes it.

use crate::wire::WireError;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The live stream protocol.
pub const LIVE_PROTOCOL: StreamProtocol = StreamProtocol::new("/firefly/live/1");
/// Largest frame read (a block of 16-bit PCM of 8 channels at 192 kHz for
/// 20 ms is 61 KiB; FLAC is smaller).
pub const MAX_LIVE_FRAME_BYTES: usize = 256 * 1024;
/// Longest source name, in bytes.
pub const MAX_SOURCE_NAME: usize = 64;
/// Most sources one node offers.
pub const MAX_SOURCES: usize = 8;
/// Longest reason or format text carried, in bytes.
pub const MAX_LIVE_TEXT: usize = 256;

const KIND_BLOCK: u8 = 0;
const KIND_END: u8 = 1;

/// The stream a session plays: enough for any member to subscribe and to
/// know when each block sounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiveRef {
    /// The origin's peer id (base58).
    pub origin: String,
    /// The source's name on its node.
    pub name: String,
    /// Swarm instant (µs) capture started: block `k` sounds at
    /// `s0 + k·block_frames/rate + buffer_micros`.
    pub s0: i64,
    /// Frames per second.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// Frames per block.
    pub block_frames: u32,
    /// Capture to sound, µs.
    pub buffer_micros: i64,
    /// How blocks are encoded (`flac`, `pcm16`).
    pub codec: String,
}

impl LiveRef {
    /// Checks the bounds a peer's reference may break.
    pub fn check(&self) -> Result<(), WireError> {
        let bad = |why: &str| Err(WireError::Invalid(format!("live source: {why}")));
        if self.origin.len() > 128 || self.origin.parse::<libp2p::PeerId>().is_err() {
            return bad("origin is not a peer id");
        }
        if self.name.is_empty()
            || self.name.len() > MAX_SOURCE_NAME
            || self.name.chars().any(char::is_control)
        {
            return bad("bad name");
        }
        if !(8_000..=192_000).contains(&self.rate)
            || !(1..=8).contains(&self.channels)
            || !(16..=65_535).contains(&self.block_frames)
            || !(0..=10_000_000).contains(&self.buffer_micros)
        {
            return bad("format out of bounds");
        }
        if !matches!(self.codec.as_str(), "flac" | "pcm16") {
            return bad("unknown codec");
        }
        Ok(())
    }
}

/// A source as its node offers it in its heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSourceInfo {
    /// The stream (its `origin` is the node itself).
    pub stream: LiveRef,
    /// `pipe`, `url` or `cmd`.
    pub kind: String,
    /// Whether audio came from the source in the last second.
    pub flowing: bool,
    /// The latest block's peak, in thousandths of full scale.
    pub level_permille: u16,
    /// Why it ended or what went wrong last, if anything.
    #[serde(default)]
    pub problem: Option<String>,
    /// Whether it ended for good.
    #[serde(default)]
    pub ended: bool,
}

/// Checks and cleans a peer's advertised sources (bounded, display-safe).
pub fn check_sources(sources: &mut [LiveSourceInfo]) -> Result<(), WireError> {
    if sources.len() > MAX_SOURCES {
        return Err(WireError::Invalid(format!(
            "{} live sources, more than {MAX_SOURCES}",
            sources.len()
        )));
    }
    for source in sources.iter_mut() {
        source.stream.check()?;
        if source.kind.len() > 8 || source.level_permille > 1000 {
            return Err(WireError::Invalid("live source: bad kind or level".into()));
        }
        if let Some(problem) = &mut source.problem {
            if problem.len() > MAX_LIVE_TEXT {
                return Err(WireError::Invalid("live source: reason too long".into()));
            }
            *problem = firefly_library::display_text(problem);
        }
        source.stream.name = firefly_library::display_text(&source.stream.name);
    }
    Ok(())
}

/// A frame from the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFrame {
    /// Block `index`, encoded.
    Block {
        /// The block's number.
        index: u64,
        /// Its encoded bytes.
        data: Vec<u8>,
    },
    /// The source ended (or does not exist), and why.
    End {
        /// Why (at most [`MAX_LIVE_TEXT`] bytes).
        reason: String,
    },
}

/// Why a live frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveFrameError {
    /// The stream failed or closed.
    #[error("live stream: {0}")]
    Io(#[from] std::io::Error),
    /// The announced length is out of bounds.
    #[error("live frame of {0} bytes refused")]
    Size(usize),
    /// The frame's content is malformed.
    #[error("live frame malformed: {0}")]
    Malformed(&'static str),
}

impl LiveFrameError {
    /// Whether the peer sent something malformed (not just a closed stream).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

/// Writes `frame` and flushes it.
pub async fn write_frame<S>(stream: &mut S, frame: &LiveFrame) -> Result<(), LiveFrameError>
where
    S: futures::AsyncWrite + Unpin,
{
    let mut bytes = vec![0u8; 4];
    match frame {
        LiveFrame::Block { index, data } => {
            bytes.push(KIND_BLOCK);
            bytes.extend(index.to_be_bytes());
            bytes.extend_from_slice(data);
        }
        LiveFrame::End { reason } => {
            bytes.push(KIND_END);
            let cut: String = reason.chars().take(MAX_LIVE_TEXT / 4).collect();
            bytes.extend_from_slice(cut.as_bytes());
        }
    }
    let len = bytes.len() - 4;
    if len > MAX_LIVE_FRAME_BYTES {
        return Err(LiveFrameError::Size(len));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(())
}

async fn read_body<S>(stream: &mut S, max: usize) -> Result<Vec<u8>, LiveFrameError>
where
    S: futures::AsyncRead + Unpin,
{
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > max {
        return Err(LiveFrameError::Size(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one frame; refuses one above [`MAX_LIVE_FRAME_BYTES`] unread.
pub async fn read_frame<S>(stream: &mut S) -> Result<LiveFrame, LiveFrameError>
where
    S: futures::AsyncRead + Unpin,
{
    let body = read_body(stream, MAX_LIVE_FRAME_BYTES).await?;
    match body[0] {
        KIND_BLOCK => {
            let index: [u8; 8] = body
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .ok_or(LiveFrameError::Malformed("block too short"))?;
            let data = body[9..].to_vec();
            if data.is_empty() {
                return Err(LiveFrameError::Malformed("empty block"));
            }
            Ok(LiveFrame::Block {
                index: u64::from_be_bytes(index),
                data,
            })
        }
        KIND_END => {
            if body.len() - 1 > MAX_LIVE_TEXT {
                return Err(LiveFrameError::Malformed("reason too long"));
            }
            let reason = std::str::from_utf8(&body[1..])
                .map_err(|_| LiveFrameError::Malformed("reason is not UTF-8"))?;
            Ok(LiveFrame::End {
                reason: firefly_library::display_text(reason),
            })
        }
        _ => Err(LiveFrameError::Malformed("unknown frame kind")),
    }
}

/// Writes the request naming source `name`.
pub async fn write_request<S>(stream: &mut S, name: &str) -> Result<(), LiveFrameError>
where
    S: futures::AsyncWrite + Unpin,
{
    if name.is_empty() || name.len() > MAX_SOURCE_NAME {
        return Err(LiveFrameError::Size(name.len()));
    }
    let mut bytes = (name.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(name.as_bytes());
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads the request: the source's name.
pub async fn read_request<S>(stream: &mut S) -> Result<String, LiveFrameError>
where
    S: futures::AsyncRead + Unpin,
{
    let body = read_body(stream, MAX_SOURCE_NAME).await?;
    let name =
        String::from_utf8(body).map_err(|_| LiveFrameError::Malformed("name is not UTF-8"))?;
    if name.chars().any(char::is_control) {
        return Err(LiveFrameError::Malformed("name has control characters"));
    }
    Ok(name)
}

/// The node's handle on live streams: opens them to origins and takes the
/// inbound ones (once).
#[derive(Clone)]
pub struct LiveControl(pub(crate) libp2p_stream::Control);

impl std::fmt::Debug for LiveControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveControl")
    }
}

/// Inbound live streams: `(peer, stream)` as members subscribe.
pub type LiveIncoming = libp2p_stream::IncomingStreams;

impl LiveControl {
    /// Takes the inbound streams of [`LIVE_PROTOCOL`]; `None` if already taken.
    pub fn accept(&mut self) -> Option<LiveIncoming> {
        self.0.accept(LIVE_PROTOCOL).ok()
    }

    /// Opens a stream to `origin` and asks for its source `name`.
    pub async fn subscribe(
        &mut self,
        origin: libp2p::PeerId,
        name: &str,
    ) -> Result<libp2p::Stream, LiveFrameError> {
        let mut stream = self
            .0
            .open_stream(origin, LIVE_PROTOCOL)
            .await
            .map_err(|e| LiveFrameError::Io(std::io::Error::other(e.to_string())))?;
        write_request(&mut stream, name).await?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn frames_round_trip() {
        for frame in [
            LiveFrame::Block {
                index: 42,
                data: vec![1, 2, 3],
            },
            LiveFrame::End {
                reason: "librespot exited".into(),
            },
        ] {
            let mut buf = Cursor::new(Vec::new());
            block_on(write_frame(&mut buf, &frame)).expect("writes");
            buf.set_position(0);
            assert_eq!(block_on(read_frame(&mut buf)).expect("reads"), frame);
        }
        let mut buf = Cursor::new(Vec::new());
        block_on(write_request(&mut buf, "radio")).expect("writes");
        buf.set_position(0);
        assert_eq!(block_on(read_request(&mut buf)).expect("reads"), "radio");
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut big = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            block_on(read_frame(&mut big)),
            Err(LiveFrameError::Size(_))
        ));
        let mut kind = Cursor::new(vec![0, 0, 0, 1, 9]);
        assert!(block_on(read_frame(&mut kind)).is_err_and(|e| e.is_malformed()));
        let mut short = Cursor::new(vec![0, 0, 0, 3, 0, 1, 2]);
        assert!(block_on(read_frame(&mut short)).is_err_and(|e| e.is_malformed()));
        let mut long_name = Cursor::new(vec![0, 0, 1, 0]);
        assert!(block_on(read_request(&mut long_name)).is_err());
    }

    proptest::proptest! {
        /// Whatever a peer sends, reading a frame or a request is an answer
        /// or an error, never a panic, and nothing larger than the bounds.
        #[test]
        fn garbage_is_refused_not_a_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let mut frames = Cursor::new(bytes.clone());
            while let Ok(frame) = block_on(read_frame(&mut frames)) {
                if let LiveFrame::End { reason } = frame {
                    proptest::prop_assert!(reason.len() <= 4 * MAX_LIVE_TEXT);
                }
            }
            let mut request = Cursor::new(bytes);
            if let Ok(name) = block_on(read_request(&mut request)) {
                proptest::prop_assert!(name.len() <= MAX_SOURCE_NAME);
                proptest::prop_assert!(!name.chars().any(char::is_control));
            }
        }

        /// Advertised sources with any text are refused or cleaned.
        #[test]
        fn advertised_sources_are_checked_and_cleaned(name in ".{0,80}", problem in ".{0,300}", level in 0u16..2000) {
            let mut sources = vec![LiveSourceInfo {
                stream: LiveRef {
                    origin: libp2p::PeerId::random().to_base58(),
                    name,
                    s0: 0,
                    rate: 48_000,
                    channels: 2,
                    block_frames: 960,
                    buffer_micros: 400_000,
                    codec: "flac".into(),
                },
                kind: "pipe".into(),
                flowing: true,
                level_permille: level,
                problem: Some(problem),
                ended: false,
            }];
            if check_sources(&mut sources).is_ok() {
                let s = &sources[0];
                proptest::prop_assert!(s.level_permille <= 1000);
                proptest::prop_assert!(!s.stream.name.chars().any(char::is_control));
                proptest::prop_assert!(s.stream.name.len() <= MAX_SOURCE_NAME);
            }
        }
    }

    #[test]
    fn references_are_checked() {
        let good = LiveRef {
            origin: libp2p::PeerId::random().to_base58(),
            name: "radio".into(),
            s0: 0,
            rate: 48_000,
            channels: 2,
            block_frames: 960,
            buffer_micros: 400_000,
            codec: "flac".into(),
        };
        assert!(good.check().is_ok());
        assert!(
            LiveRef {
                rate: 1,
                ..good.clone()
            }
            .check()
            .is_err()
        );
        assert!(
            LiveRef {
                origin: "x".into(),
                ..good.clone()
            }
            .check()
            .is_err()
        );
        assert!(
            LiveRef {
                codec: "mp3".into(),
                ..good
            }
            .check()
            .is_err()
        );
    }
}
