//! The time exchange's transport: one long-lived `/firefly/time/2` stream
//! per peer and direction. It carries each pair's datagram key and every
//! probe until the pair's datagram path works (`time_datagram`), and stays
//! the fallback where it does not.
//!
//! A new negotiated stream per probe costs several TCP segments each way and
//! a protocol negotiation; on a jittery link the round trip of such an
//! exchange never comes near the link's minimum delay, and the minimum-delay
//! samples the clock relies on never occur. Here the asker opens one stream
//! to each peer and keeps it: each probe is one small frame each way (a
//! big-endian `u16` length, then CBOR), and the stamps are taken by the
//! tasks that own the streams, right at the read and the write, rather than
//! after a trip through the event loop. A stream that fails or times out is
//! dropped and reopened by the next probe; a frame that is too large or does
//! not decode closes the stream and is counted, never trusted.
//!
//! The tasks only move bytes and take local stamps; the event loop answers
//! ([`StreamEvent::Asked`]) with its swarm clock and feeds the samples to it
//! ([`StreamEvent::Answered`]), as [`crate::time_exchange`] describes.

use crate::ClientError;
use crate::config::Now;
use crate::time_exchange::{
    MAX_TIME_MESSAGE_BYTES, TIME_PROTOCOL, TimeKey, TimeRequest, TimeResponse,
};
use firefly_clock::LocalMicros;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// How long one probe (and the stream opening it may need) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes waiting for a peer's stream; more are dropped (the clock treats
/// them as lost).
const QUEUED_PROBES: usize = 4;
/// Events from the stream tasks waiting for the event loop.
const QUEUED_EVENTS: usize = 64;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or closed.
    #[error("time stream: {0}")]
    Io(#[from] std::io::Error),
    /// The announced length is zero or above [`MAX_TIME_MESSAGE_BYTES`].
    #[error("time frame of {0} bytes refused (at most {MAX_TIME_MESSAGE_BYTES})")]
    Size(usize),
    /// The frame is not the expected CBOR message.
    #[error("time frame does not decode: {0}")]
    Decode(String),
    /// The stream could not be opened.
    #[error("time stream could not be opened: {0}")]
    Open(String),
}

/// Writes `message` as one frame and flushes it, so that it leaves as one
/// segment.
pub async fn write_frame<S, T>(stream: &mut S, message: &T) -> Result<(), FrameError>
where
    S: futures::AsyncWrite + Unpin,
    T: Serialize,
{
    let mut frame = vec![0, 0];
    frame = cbor4ii::serde::to_vec(frame, message)
        .map_err(|err| FrameError::Decode(err.to_string()))?;
    let len = frame.len() - 2;
    let header = u16::try_from(len)
        .ok()
        .filter(|&n| u64::from(n) <= MAX_TIME_MESSAGE_BYTES)
        .ok_or(FrameError::Size(len))?;
    frame[..2].copy_from_slice(&header.to_be_bytes());
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one frame and decodes it; refuses frames above
/// [`MAX_TIME_MESSAGE_BYTES`] before reading them.
pub async fn read_frame<S, T>(stream: &mut S) -> Result<T, FrameError>
where
    S: futures::AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes(header));
    if len == 0 || len as u64 > MAX_TIME_MESSAGE_BYTES {
        return Err(FrameError::Size(len));
    }
    let mut body = [0u8; MAX_TIME_MESSAGE_BYTES as usize];
    let body = &mut body[..len];
    stream.read_exact(body).await?;
    cbor4ii::serde::from_slice(body).map_err(|err| FrameError::Decode(err.to_string()))
}

/// A probe the event loop asks a peer's task to make.
pub(crate) type ProbeReply = Option<oneshot::Sender<Result<crate::TimeSample, ClientError>>>;

/// A probe queued for a peer's task: the datagram key to hand the peer
/// (see `time_datagram`) and who waits for the sample.
type Probe = (Option<TimeKey>, ProbeReply);

/// What the stream tasks tell the event loop.
pub(crate) enum StreamEvent {
    /// `peer` asked for the time; its request was read at `t2` (local).
    Asked {
        peer: PeerId,
        t2: LocalMicros,
        /// The datagram key the request carried.
        key: Option<TimeKey>,
        answer: oneshot::Sender<TimeResponse>,
    },
    /// A probe to `peer` sent at `t1` was answered at `t4` (local).
    Answered {
        peer: PeerId,
        t1: LocalMicros,
        t4: LocalMicros,
        response: TimeResponse,
        reply: ProbeReply,
    },
    /// A probe to `peer` failed; its stream was dropped.
    Failed {
        peer: PeerId,
        error: String,
        reply: ProbeReply,
    },
    /// `peer`'s stream to this node broke or sent a bad frame; it was closed.
    InboundFailed { peer: PeerId, error: FrameError },
}

/// The streams of the time exchange, owned by the event loop.
pub(crate) struct TimeStreams {
    control: libp2p_stream::Control,
    incoming: libp2p_stream::IncomingStreams,
    probers: HashMap<PeerId, mpsc::Sender<Probe>>,
    answerers: HashMap<PeerId, AbortHandle>,
    events_tx: mpsc::Sender<StreamEvent>,
    events_rx: mpsc::Receiver<StreamEvent>,
    now: Now,
}

impl TimeStreams {
    /// Takes the inbound side of [`TIME_PROTOCOL`] from `behaviour`.
    pub(crate) fn new(behaviour: &libp2p_stream::Behaviour, now: Now) -> Self {
        let mut control = behaviour.new_control();
        let incoming = control
            .accept(TIME_PROTOCOL)
            .expect("the time protocol is registered once, here");
        let (events_tx, events_rx) = mpsc::channel(QUEUED_EVENTS);
        Self {
            control,
            incoming,
            probers: HashMap::new(),
            answerers: HashMap::new(),
            events_tx,
            events_rx,
            now,
        }
    }

    /// The next event from the tasks; answers new inbound streams meanwhile.
    pub(crate) async fn next(&mut self) -> StreamEvent {
        loop {
            tokio::select! {
                Some((peer, stream)) = self.incoming.next() => self.answer(peer, stream),
                Some(event) = self.events_rx.recv() => return event,
            }
        }
    }

    /// Queues a probe of `peer` on its stream (opened on first use); hands
    /// the reply back when the peer's queue is full.
    pub(crate) fn probe(
        &mut self,
        peer: PeerId,
        key: Option<TimeKey>,
        reply: ProbeReply,
    ) -> Result<(), ProbeReply> {
        let prober = self.probers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUED_PROBES);
            tokio::spawn(probe_peer(
                peer,
                self.control.clone(),
                rx,
                self.now.clone(),
                self.events_tx.clone(),
            ));
            tx
        });
        prober.try_send((key, reply)).map_err(|err| match err {
            mpsc::error::TrySendError::Full((_, reply))
            | mpsc::error::TrySendError::Closed((_, reply)) => reply,
        })
    }

    /// Ends the streams to and from `peer` (it disconnected).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.probers.remove(peer);
        if let Some(answerer) = self.answerers.remove(peer) {
            answerer.abort();
        }
    }

    /// Serves `peer`'s stream; a newer stream from the same peer replaces
    /// the older one.
    fn answer(&mut self, peer: PeerId, stream: Stream) {
        let task = tokio::spawn(answer_peer(
            peer,
            stream,
            self.now.clone(),
            self.events_tx.clone(),
        ));
        if let Some(old) = self.answerers.insert(peer, task.abort_handle()) {
            old.abort();
        }
    }
}

impl Drop for TimeStreams {
    fn drop(&mut self) {
        for answerer in self.answerers.values() {
            answerer.abort();
        }
    }
}

/// Answers `peer`'s requests on `stream` until it closes or misbehaves.
async fn answer_peer(
    peer: PeerId,
    mut stream: Stream,
    now: Now,
    events: mpsc::Sender<StreamEvent>,
) {
    let error = loop {
        let request: TimeRequest = match read_frame(&mut stream).await {
            Ok(request) => request,
            Err(error) => break error,
        };
        let t2 = now();
        let (answer, answered) = oneshot::channel();
        if events
            .send(StreamEvent::Asked {
                peer,
                t2,
                key: request.key,
                answer,
            })
            .await
            .is_err()
        {
            return;
        }
        let Ok(response) = answered.await else {
            return;
        };
        if let Err(error) = write_frame(&mut stream, &response).await {
            break error;
        }
    };
    let clean_close =
        matches!(&error, FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof);
    if !clean_close {
        let _ = events
            .send(StreamEvent::InboundFailed { peer, error })
            .await;
    }
    let _ = stream.close().await;
}

/// Makes the probes the event loop queues for `peer`, one at a time, on one
/// stream, reopened after a failure.
async fn probe_peer(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut probes: mpsc::Receiver<Probe>,
    now: Now,
    events: mpsc::Sender<StreamEvent>,
) {
    let mut stream = None;
    while let Some((key, reply)) = probes.recv().await {
        let outcome = tokio::time::timeout(
            PROBE_TIMEOUT,
            exchange(&mut control, &mut stream, peer, key, &now),
        )
        .await
        .unwrap_or_else(|_| Err(FrameError::Io(std::io::ErrorKind::TimedOut.into())));
        let event = match outcome {
            Ok((t1, t4, response)) => StreamEvent::Answered {
                peer,
                t1,
                t4,
                response,
                reply,
            },
            Err(error) => {
                stream = None;
                StreamEvent::Failed {
                    peer,
                    error: error.to_string(),
                    reply,
                }
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// One probe: opens the stream if needed, stamps `t1` as the request is
/// written and `t4` as the answer is read.
async fn exchange(
    control: &mut libp2p_stream::Control,
    stream: &mut Option<Stream>,
    peer: PeerId,
    key: Option<TimeKey>,
    now: &Now,
) -> Result<(LocalMicros, LocalMicros, TimeResponse), FrameError> {
    let stream = match stream {
        Some(stream) => stream,
        None => stream.insert(
            control
                .open_stream(peer, TIME_PROTOCOL)
                .await
                .map_err(|err| FrameError::Open(err.to_string()))?,
        ),
    };
    let t1 = now();
    let request = TimeRequest {
        t1: t1.as_micros(),
        key,
    };
    write_frame(stream, &request).await?;
    let response: TimeResponse = read_frame(stream).await?;
    let t4 = now();
    Ok((t1, t4, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_frame_round_trips() {
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frame(&mut buf, &TimeRequest { t1: -42, key: None }))
            .expect("writes to a Vec");
        assert!(buf.get_ref().len() < 16, "one small frame");
        buf.set_position(0);
        let back: TimeRequest = block_on(read_frame(&mut buf)).expect("the frame just written");
        assert_eq!(back.t1, -42);
    }

    #[test]
    fn bad_frames_are_refused_without_reading_them() {
        // Too long: refused from the header alone.
        let mut big = Cursor::new(vec![0xff, 0xff]);
        let r: Result<TimeRequest, _> = block_on(read_frame(&mut big));
        assert!(matches!(r, Err(FrameError::Size(65535))));
        // Empty.
        let mut empty = Cursor::new(vec![0, 0]);
        let r: Result<TimeRequest, _> = block_on(read_frame(&mut empty));
        assert!(matches!(r, Err(FrameError::Size(0))));
        // Not CBOR of a request.
        let mut junk = Cursor::new(vec![0, 3, 0xff, 0x00, 0x13]);
        let r: Result<TimeRequest, _> = block_on(read_frame(&mut junk));
        assert!(matches!(r, Err(FrameError::Decode(_))));
        // Cut short.
        let mut short = Cursor::new(vec![0, 10, 1, 2]);
        let r: Result<TimeRequest, _> = block_on(read_frame(&mut short));
        assert!(matches!(r, Err(FrameError::Io(_))));
    }
}
