//! The time exchange `/firefly/time/1`: one NTP-style round trip per request.
//!
//! The asker stamps `t1` when it sends, the answerer stamps `t2` the moment the
//! request reaches its event loop and `t3` just before it hands the response
//! to the stack, and the asker stamps `t4` the moment the response reaches its
//! event loop. Those are the closest points to the wire that
//! request-response exposes. Each completed exchange becomes a [`TimeSample`];
//! estimating offset and skew from samples is the clock crate's job, not this
//! module's.

use crate::event::Event;
use crate::event_loop::EventLoop;
use firefly_clock::LocalMicros;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The protocol name.
pub const TIME_PROTOCOL: StreamProtocol = StreamProtocol::new("/firefly/time/1");
/// Largest time request or response accepted, in bytes (they are ~20).
pub const MAX_TIME_MESSAGE_BYTES: u64 = 256;

/// `t1`: when the asker sent the request, on the asker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRequest {
    /// Asker's send time, microseconds.
    pub t1: i64,
}

/// `(t2, t3)`: when the answerer received the request and sent the response,
/// on the answerer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// Answerer's receive time, microseconds.
    pub t2: i64,
    /// Answerer's send time, microseconds.
    pub t3: i64,
}

/// One completed exchange with a peer: the four NTP timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSample {
    /// The peer that answered.
    pub peer: PeerId,
    /// Request sent (this node's clock).
    pub t1: LocalMicros,
    /// Request received (the peer's clock).
    pub t2: i64,
    /// Response sent (the peer's clock).
    pub t3: i64,
    /// Response received (this node's clock).
    pub t4: LocalMicros,
}

impl TimeSample {
    /// The peer's clock minus this node's: `((t2 − t1) + (t3 − t4)) / 2`.
    pub fn offset_micros(&self) -> i64 {
        let a = self.t2.saturating_sub(self.t1.as_micros());
        let b = self.t3.saturating_sub(self.t4.as_micros());
        (a / 2).saturating_add(b / 2)
    }

    /// Round-trip network delay: `(t4 − t1) − (t3 − t2)`.
    pub fn delay_micros(&self) -> i64 {
        (self.t4 - self.t1).saturating_sub(self.t3.saturating_sub(self.t2))
    }
}

/// A time request this node has in flight.
#[derive(Debug)]
pub(crate) struct PendingTime {
    pub(crate) t1: LocalMicros,
    pub(crate) reply: Option<oneshot::Sender<Result<TimeSample, crate::ClientError>>>,
}

pub(crate) type TimeEvent = request_response::Event<TimeRequest, TimeResponse>;

impl EventLoop {
    /// Sends a time request to `peer`, stamping `t1` now.
    pub(crate) fn request_time(
        &mut self,
        peer: PeerId,
        reply: Option<oneshot::Sender<Result<TimeSample, crate::ClientError>>>,
    ) -> OutboundRequestId {
        let t1 = (self.now)();
        let id = self
            .swarm
            .behaviour_mut()
            .time
            .send_request(&peer, TimeRequest { t1: t1.as_micros() });
        self.pending_time.insert(id, PendingTime { t1, reply });
        id
    }

    /// Asks every connected member for a time sample.
    pub(crate) fn exchange_time_with_members(&mut self) {
        let peers: Vec<PeerId> = self
            .membership
            .members()
            .map(|m| m.peer)
            .filter(|peer| self.swarm.is_connected(peer))
            .collect();
        for peer in peers {
            self.request_time(peer, None);
        }
    }

    /// Handles a time-exchange event that reached the loop at `arrived`.
    pub(crate) fn on_time_event(&mut self, arrived: LocalMicros, event: TimeEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { channel, .. } => {
                    let t2 = arrived.as_micros();
                    let t3 = (self.now)().as_micros();
                    if self
                        .swarm
                        .behaviour_mut()
                        .time
                        .send_response(channel, TimeResponse { t2, t3 })
                        .is_err()
                    {
                        tracing::debug!(%peer, "time request abandoned before the response");
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    let Some(pending) = self.pending_time.remove(&request_id) else {
                        return;
                    };
                    let sample = TimeSample {
                        peer,
                        t1: pending.t1,
                        t2: response.t2,
                        t3: response.t3,
                        t4: arrived,
                    };
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Ok(sample));
                    }
                    self.emit(Event::TimeSample(sample));
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.stats.time_failures += 1;
                tracing::debug!(%peer, %error, "time request failed");
                if let Some(PendingTime {
                    reply: Some(reply), ..
                }) = self.pending_time.remove(&request_id)
                {
                    let _ = reply.send(Err(crate::ClientError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.stats.time_failures += 1;
                tracing::debug!(%peer, %error, "inbound time request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_delay_follow_the_ntp_formulas() {
        // Peer is 1000 µs ahead; 100 µs each way; 50 µs processing.
        let sample = TimeSample {
            peer: PeerId::random(),
            t1: LocalMicros(10_000),
            t2: 10_000 + 100 + 1000,
            t3: 10_000 + 150 + 1000,
            t4: LocalMicros(10_250),
        };
        assert_eq!(sample.offset_micros(), 1000);
        assert_eq!(sample.delay_micros(), 200);
    }
}
