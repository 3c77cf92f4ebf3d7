//! The time exchange at work: the loop side of [`crate::time_exchange`].
//!
//! Drives the [`firefly_clock::SwarmClock`] the loop owns in the order its
//! doc gives (timeout, probes, events), sends the probes it asks for on the
//! peers' time streams, answers theirs with this node's stamps and view, and
//! feeds every answer back as a sample.

use super::EventLoop;
use crate::error::ClientError;
use crate::event::Event;
use crate::time_exchange::{TimeResponse, TimeSample};
use crate::time_stream::{ProbeReply, StreamEvent};
use firefly_clock::{LocalMicros, PeerView, Sample, SwarmMicros};
use libp2p::PeerId;

impl EventLoop {
    /// Queues a probe of `peer` on its time stream; `t1` is stamped as the
    /// request leaves.
    pub(crate) fn request_time(&mut self, peer: PeerId, reply: ProbeReply) {
        if let Err(reply) = self.time_streams.probe(peer, reply) {
            self.stats.time_failures += 1;
            tracing::debug!(%peer, "time probe dropped: the previous ones are still waiting");
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Request("time exchange busy".to_string())));
            }
        }
    }

    /// Drains the clock in the order its doc gives: timeout, probes, events.
    pub(crate) fn drive_clock(&mut self, now: LocalMicros) {
        if self.clock.poll_timeout().is_some_and(|at| at <= now) {
            self.clock.handle_timeout(now);
        }
        while let Some(peer) = self.clock.poll_probe(now) {
            if self.swarm.is_connected(&peer) {
                self.request_time(peer, None);
            }
        }
        while let Some(event) = self.clock.poll_event() {
            match event {
                firefly_clock::Event::Synced => {
                    tracing::info!("swarm clock synced");
                    self.emit(Event::ClockSynced);
                }
                firefly_clock::Event::Stepped { by_micros } => {
                    tracing::info!(by_micros, "swarm clock stepped");
                    self.emit(Event::ClockStepped { by_micros });
                }
                other => tracing::debug!(?other, "swarm clock event"),
            }
        }
    }

    /// Handles what the time streams report.
    pub(crate) fn on_time_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Asked { peer, t2, answer } => {
                let view = self.clock.view_for(&peer);
                let l3 = (self.now)();
                let response = TimeResponse {
                    t2: self.clock.to_swarm(t2).as_micros(),
                    t3: self.clock.to_swarm(l3).as_micros(),
                    view: view.offset_micros,
                    skew_ppm: view.skew * 1e6,
                    unsynced: view.unsynced,
                    l2: Some(t2.as_micros()),
                    l3: Some(l3.as_micros()),
                    rate_ppb: Some((self.clock.skew_ppm() * 1e3).round() as i64),
                    view_rate_ppb: view.rate.map(|r| (r * 1e9).round() as i64),
                    synced_ms: view
                        .synced_for_micros
                        .map(|us| u64::try_from(us / 1_000).unwrap_or(0)),
                };
                let _ = answer.send(response);
            }
            StreamEvent::Answered {
                peer,
                t1,
                t4,
                response,
                reply,
            } => {
                let sample = Sample {
                    t1,
                    t2: SwarmMicros(response.t2),
                    t3: SwarmMicros(response.t3),
                    t4,
                };
                let now = (self.now)();
                if let Err(err) =
                    self.clock
                        .handle_exchange(now, &peer, sample, response.peer_local())
                {
                    tracing::debug!(%peer, %err, "time sample refused");
                }
                let view = PeerView {
                    offset_micros: response.view,
                    skew: response.skew_ppm * 1e-6,
                    unsynced: response.unsynced,
                    rate: response.view_rate_ppb.map(|ppb| ppb as f64 * 1e-9),
                    synced_for_micros: response
                        .synced_ms
                        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1_000)),
                };
                if let Err(err) = self.clock.handle_peer_view(now, &peer, view) {
                    tracing::debug!(%peer, %err, "peer's view of our clock refused");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(TimeSample { peer, sample }));
                }
                self.drive_clock(now);
            }
            StreamEvent::Failed { peer, error, reply } => {
                self.stats.time_failures += 1;
                tracing::debug!(%peer, %error, "time probe failed");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ClientError::Request(error)));
                }
            }
            StreamEvent::InboundFailed { peer, error } => {
                self.stats.time_failures += 1;
                tracing::debug!(%peer, %error, "time stream from a peer closed");
            }
        }
    }
}
