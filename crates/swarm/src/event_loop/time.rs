//! The time exchange at work: the loop side of [`crate::time_exchange`].
//!
//! Drives the [`firefly_clock::SwarmClock`] the loop owns in the order its
//! doc gives (timeout, probes, events), sends the probes it asks for as
//! time datagrams where the peer's datagram path works
//! ([`crate::time_datagram`]) and on the peers' time streams otherwise,
//! answers theirs with this node's stamps and view, and feeds every answer
//! back as a sample.

use super::EventLoop;
use crate::error::ClientError;
use crate::event::Event;
use crate::time_datagram::Accepted;
use crate::time_exchange::{TimeResponse, TimeSample};
use crate::time_socket::{Datagram, tcp_socket_addr, time_socket_addr};
use crate::time_stream::{ProbeReply, StreamEvent};
use firefly_clock::{LocalMicros, PeerView, Sample, SwarmMicros};
use libp2p::core::ConnectedPoint;
use libp2p::{Multiaddr, PeerId};

impl EventLoop {
    /// Probes `peer`: as a datagram when its path works (`t1` stamped just
    /// before the send), else queued on its time stream (`t1` stamped as
    /// the request leaves).
    pub(crate) fn request_time(&mut self, peer: PeerId, mut reply: ProbeReply) {
        if let Some(to) = self.time_datagrams.probe_target(&peer, (self.now)()) {
            let t1 = (self.now)();
            match self.time_datagrams.request(peer, t1, reply) {
                Ok((probe, bytes)) => match self.time_socket.send(&bytes, to) {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::debug!(%peer, %to, %err, "time datagram not sent");
                        reply = self.time_datagrams.not_sent(probe).flatten();
                    }
                },
                Err(back) => reply = back,
            }
        }
        let key = self.time_datagrams.key_for_stream(peer);
        if let Err(reply) = self.time_streams.probe(peer, key, reply) {
            self.stats.time_failures += 1;
            tracing::debug!(%peer, "time probe dropped: the previous ones are still waiting");
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Request("time exchange busy".to_string())));
            }
        }
    }

    /// Drains the clock in the order its doc gives: timeout, probes, events.
    pub(crate) fn drive_clock(&mut self, now: LocalMicros) {
        for (peer, reply) in self.time_datagrams.expire(now) {
            self.stats.time_failures += 1;
            tracing::trace!(%peer, "time datagram unanswered");
            if let Some(reply) = reply {
                let _ = reply.send(Err(ClientError::Request(
                    "time datagram unanswered".to_string(),
                )));
            }
        }
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

    /// The swarm reported a listen address: the first TCP one gets the time
    /// socket on its port number (none when that port is taken on UDP:
    /// every probe then takes the streams).
    pub(crate) fn on_time_listen_addr(&mut self, address: &Multiaddr) {
        if self.time_socket.is_bound() {
            return;
        }
        let Some(addr) = time_socket_addr(&self.listen, address) else {
            return;
        };
        match self.time_socket.bind(addr) {
            Ok(local) => {
                tracing::info!(%local, "time socket bound");
                self.time_datagrams.socket_bound();
            }
            Err(err) => {
                tracing::warn!(%addr, %err, "no time socket: time exchanges take the streams");
                // Not again for every other address of this listener.
                self.listen.clear();
            }
        }
    }

    /// A connection to `peer` is up: when this node dialed it over TCP, its
    /// time socket is at the same port number. Over QUIC (either way) its
    /// stream answers announce the port, at the connection's remote IP. An
    /// accepted TCP connection has neither: the dialer probes first, and
    /// its datagrams' source is where to probe back (so a port forward or a
    /// proxy in between carries both ways).
    pub(crate) fn on_time_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        if let ConnectedPoint::Dialer { address, .. } = endpoint
            && let Some(addr) = tcp_socket_addr(address)
        {
            self.time_datagrams.dialed(peer, addr);
        }
        if let Some(ip) = quic_remote_ip(endpoint.get_remote_address()) {
            self.time_datagrams.connected(peer, ip);
        }
    }

    /// `peer` is gone: its streams and datagram path end.
    pub(crate) fn on_time_disconnected(&mut self, peer: &PeerId) {
        self.time_streams.forget(peer);
        self.time_datagrams.forget(peer);
    }

    /// This node's answer to `peer`'s request read at `t2` (local); `t3` is
    /// stamped here, as late as can be.
    fn time_response(&self, peer: &PeerId, t2: LocalMicros, datagrams: bool) -> TimeResponse {
        let view = self.clock.view_for(peer);
        let l3 = (self.now)();
        TimeResponse {
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
            datagrams,
            datagram_port: self.time_socket.local_port(),
        }
    }

    /// Feeds an answer to our probe of `peer` (sent `t1`, back `t4`) to the clock.
    fn on_time_answer(
        &mut self,
        peer: PeerId,
        t1: LocalMicros,
        t4: LocalMicros,
        response: &TimeResponse,
        reply: ProbeReply,
    ) {
        let sample = Sample {
            t1,
            t2: SwarmMicros(response.t2),
            t3: SwarmMicros(response.t3),
            t4,
        };
        let now = (self.now)();
        if let Err(err) = self
            .clock
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

    /// Handles a datagram the time socket read.
    pub(crate) fn on_time_datagram(&mut self, datagram: Datagram) {
        match self.time_datagrams.receive(&datagram.bytes, datagram.from) {
            Ok(Accepted::Asked { peer, probe, from }) => {
                let response = self.time_response(&peer, datagram.at, false);
                if let Some(bytes) = self.time_datagrams.answer(&peer, probe, &response)
                    && let Err(err) = self.time_socket.send(&bytes, from)
                {
                    tracing::debug!(%peer, %from, %err, "time datagram answer not sent");
                }
            }
            Ok(Accepted::Answered {
                peer,
                t1,
                response,
                reply,
            }) => {
                self.stats.time_datagram_samples += 1;
                self.on_time_answer(peer, t1, datagram.at, &response, reply);
            }
            Err(refused) => {
                self.stats.time_datagrams_refused += 1;
                tracing::trace!(from = %datagram.from, %refused, "time datagram refused");
            }
        }
        self.stats.time_datagrams_refused += self.time_socket.take_overflow();
    }

    /// Handles what the time streams report.
    pub(crate) fn on_time_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Asked {
                peer,
                t2,
                key,
                answer,
            } => {
                let datagrams = key.is_some_and(|key| self.time_datagrams.peer_key(peer, key));
                let _ = answer.send(self.time_response(&peer, t2, datagrams));
            }
            StreamEvent::Answered {
                peer,
                t1,
                t4,
                response,
                reply,
            } => {
                self.time_datagrams
                    .stream_answered(&peer, response.datagrams);
                if let Some(port) = response.datagram_port {
                    self.time_datagrams.announced(&peer, port);
                }
                self.on_time_answer(peer, t1, t4, &response, reply);
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

/// The IP of a direct QUIC address (`/ip4|ip6/…/udp/…/quic-v1`); none for
/// TCP, relayed or DNS addresses.
fn quic_remote_ip(addr: &libp2p::Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    let quic = addr.iter().any(|p| matches!(p, Protocol::QuicV1));
    let relayed = addr.iter().any(|p| matches!(p, Protocol::P2pCircuit));
    if !quic || relayed {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}
