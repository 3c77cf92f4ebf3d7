//! The time exchange's own path: UDP datagrams outside the libp2p connection.
//!
//! A time frame on a yamux stream shares its TCP connection with audio and
//! chunk bytes. Behind a burst of those, or behind a lost segment, it is
//! late in one direction only, and a two-way exchange reads a one-way delay
//! as an offset (measured: the three pairwise offsets around a triangle of
//! real nodes summed to ±1 ms instead of 0). NTP's answer is datagrams: a
//! late or lost probe is one lost sample, never a bias queued behind
//! others. This module is the sans-IO state of that path; the socket is
//! `time_socket`, the loop side `event_loop::time`.
//!
//! **Where to send.** Each node binds one UDP "time socket" on its TCP
//! listen port number. A peer's datagrams go to the source address of its
//! latest authenticated datagram (NAT-style: answer and probe back where
//! it came from); failing that, when this node dialed it over TCP, to the
//! connection's remote IP and the remote TCP port number (a port forward or
//! a proxy forwards the same number). With neither, when the peer has not
//! confirmed our key, or while datagrams go unanswered, the probe takes the
//! `/firefly/time/2` stream (relayed peers, firewalls, older nodes).
//!
//! **Trust.** Datagrams are not Noise-protected. The asker sends a random
//! 32-byte key for the pair over the authenticated stream
//! ([`crate::time_exchange::TimeRequest::key`]); the answer confirms it
//! ([`crate::time_exchange::TimeResponse::datagrams`]). Every datagram of
//! that pair carries the key's 8-byte tag and a 16-byte keyed-BLAKE3 MAC of
//! everything before it. A request must carry a `t1` above the last one
//! taken under its key (no replays, no reflection); an answer must match an
//! outstanding probe, once. Anything else is dropped and counted, never
//! trusted, never moves the clock; every table is bounded.
//!
//! Layout: `"FFT1"`, a kind byte (1 request, 2 answer), the asker's key tag
//! (8 bytes), the probe id (8 bytes, big-endian), the CBOR body
//! ([`TimeRequest`] or [`TimeResponse`], at most
//! [`MAX_TIME_MESSAGE_BYTES`]), the MAC (16 bytes).

use crate::time_exchange::{MAX_TIME_MESSAGE_BYTES, TimeKey, TimeRequest, TimeResponse};
use crate::time_stream::ProbeReply;
use firefly_clock::LocalMicros;
use libp2p::PeerId;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// The first bytes of every time datagram.
const MAGIC: [u8; 4] = *b"FFT1";
/// Magic, kind, tag, probe id.
const HEADER_BYTES: usize = 4 + 1 + 8 + 8;
/// The truncated keyed-BLAKE3 MAC at the end.
const MAC_BYTES: usize = 16;
/// Largest datagram sent or accepted.
pub(crate) const MAX_DATAGRAM_BYTES: usize =
    HEADER_BYTES + MAX_TIME_MESSAGE_BYTES as usize + MAC_BYTES;
/// How long a datagram probe may go unanswered before it counts as lost.
pub(crate) const DATAGRAM_TIMEOUT_MICROS: i64 = 1_000_000;
/// Lost probes in a row after which a peer's probes take the stream.
const LOSSES_BEFORE_FALLBACK: u32 = 5;
/// How long a peer's probes stay on the stream after a fallback before a
/// datagram is tried again.
const RETRY_AFTER_MICROS: i64 = 30_000_000;
/// Probes of one peer awaiting an answer at once; more take the stream.
const OUTSTANDING_PER_PEER: usize = 16;
/// Peers with a datagram path (keys and addresses) at once.
const MAX_PEERS: usize = 1_024;

const KIND_REQUEST: u8 = 1;
const KIND_ANSWER: u8 = 2;

type Tag = [u8; 8];

/// The tag that names `key` in a datagram (not the key: it travels in clear).
fn tag_of(key: &TimeKey) -> Tag {
    let hash = blake3::keyed_hash(key, b"firefly time datagram tag");
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&hash.as_bytes()[..8]);
    tag
}

fn mac_of(key: &TimeKey, bytes: &[u8]) -> [u8; MAC_BYTES] {
    let hash = blake3::keyed_hash(key, bytes);
    let mut mac = [0u8; MAC_BYTES];
    mac.copy_from_slice(&hash.as_bytes()[..MAC_BYTES]);
    mac
}

/// Compares two MACs in time independent of where they differ.
fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Too short, too long, or not a time datagram.
    #[error("not a time datagram")]
    Malformed,
    /// Its key tag names no key this node holds.
    #[error("unknown key")]
    UnknownKey,
    /// Its MAC does not match.
    #[error("bad MAC")]
    BadMac,
    /// An authenticated request no newer than the last one under its key.
    #[error("replayed request")]
    Replayed,
    /// An answer to no outstanding probe (late, duplicated or forged).
    #[error("answer to no outstanding probe")]
    Unexpected,
    /// The body does not decode.
    #[error("body does not decode")]
    Body,
}

/// Seals `body` into a datagram under `key`.
fn seal<T: serde::Serialize>(kind: u8, key: &TimeKey, probe: u64, body: &T) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(MAX_DATAGRAM_BYTES);
    bytes.extend_from_slice(&MAGIC);
    bytes.push(kind);
    bytes.extend_from_slice(&tag_of(key));
    bytes.extend_from_slice(&probe.to_be_bytes());
    let mut bytes = cbor4ii::serde::to_vec(bytes, body).ok()?;
    if bytes.len() - HEADER_BYTES > MAX_TIME_MESSAGE_BYTES as usize {
        return None;
    }
    let mac = mac_of(key, &bytes);
    bytes.extend_from_slice(&mac);
    Some(bytes)
}

/// A datagram's clear header.
struct Header<'a> {
    kind: u8,
    tag: Tag,
    probe: u64,
    signed: &'a [u8],
    body: &'a [u8],
    mac: &'a [u8],
}

fn parse(bytes: &[u8]) -> Result<Header<'_>, Refused> {
    if bytes.len() <= HEADER_BYTES + MAC_BYTES
        || bytes.len() > MAX_DATAGRAM_BYTES
        || bytes[..4] != MAGIC
    {
        return Err(Refused::Malformed);
    }
    let (signed, mac) = bytes.split_at(bytes.len() - MAC_BYTES);
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&bytes[5..13]);
    let mut probe = [0u8; 8];
    probe.copy_from_slice(&bytes[13..21]);
    Ok(Header {
        kind: bytes[4],
        tag,
        probe: u64::from_be_bytes(probe),
        signed,
        body: &signed[HEADER_BYTES..],
        mac,
    })
}

/// What this node knows of one peer's datagram path.
#[derive(Debug)]
struct PeerPath {
    /// Ours: authenticates our probes to the peer and its answers.
    own_key: TimeKey,
    /// The peer's, from its stream requests: its probes and our answers.
    peer_key: Option<(TimeKey, Tag)>,
    /// The newest `t1` taken under `peer_key`.
    peer_last_t1: i64,
    /// The connection's remote IP and TCP port, when this node dialed.
    dialed: Option<SocketAddr>,
    /// The connection's remote IP, whoever dialed and over what.
    remote_ip: Option<IpAddr>,
    /// The remote IP at the time socket port the peer announced in a
    /// stream answer (for QUIC connections and accepted ones).
    announced: Option<SocketAddr>,
    /// Source of the peer's latest authenticated datagram.
    seen: Option<SocketAddr>,
    /// The peer's latest stream answer said it holds our key.
    confirmed: bool,
    /// Probes lost in a row.
    losses: u32,
    /// Probes take the stream until then (after [`LOSSES_BEFORE_FALLBACK`]).
    down_until: Option<LocalMicros>,
    /// Probes awaiting an answer.
    outstanding: usize,
    /// A datagram probe was answered since the last fallback.
    working: bool,
}

impl PeerPath {
    fn new() -> Self {
        Self {
            own_key: rand::random(),
            peer_key: None,
            peer_last_t1: i64::MIN,
            dialed: None,
            remote_ip: None,
            announced: None,
            seen: None,
            confirmed: false,
            losses: 0,
            down_until: None,
            outstanding: 0,
            working: false,
        }
    }

    fn target(&self) -> Option<SocketAddr> {
        self.seen.or(self.dialed).or(self.announced)
    }
}

/// A probe awaiting its answer.
struct Outstanding {
    peer: PeerId,
    t1: LocalMicros,
    expires: LocalMicros,
    reply: ProbeReply,
}

/// A datagram that passed every check.
#[derive(Debug)]
pub(crate) enum Accepted {
    /// `peer` asks the time; answer with [`TimeDatagrams::answer`].
    Asked {
        peer: PeerId,
        probe: u64,
        from: SocketAddr,
    },
    /// Our probe of `peer` sent at `t1` came back.
    Answered {
        peer: PeerId,
        t1: LocalMicros,
        response: Box<TimeResponse>,
        reply: ProbeReply,
    },
}

/// The datagram path's state: keys, addresses and probes, per peer.
#[derive(Default)]
pub(crate) struct TimeDatagrams {
    /// Whether this node has a time socket (else every probe takes the stream).
    has_socket: bool,
    peers: HashMap<PeerId, PeerPath>,
    /// Peers' key tags → the peer.
    by_tag: HashMap<Tag, PeerId>,
    outstanding: HashMap<u64, Outstanding>,
}

impl TimeDatagrams {
    /// This node's time socket is bound: datagram probes may start.
    pub(crate) fn socket_bound(&mut self) {
        self.has_socket = true;
    }

    fn path(&mut self, peer: PeerId) -> Option<&mut PeerPath> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return None;
        }
        Some(self.peers.entry(peer).or_insert_with(PeerPath::new))
    }

    /// This node dialed `peer` at `addr` (its TCP listen address).
    pub(crate) fn dialed(&mut self, peer: PeerId, addr: SocketAddr) {
        if let Some(path) = self.path(peer) {
            path.dialed.get_or_insert(addr);
        }
    }

    /// A connection to `peer` is up, its remote end at `ip`.
    pub(crate) fn connected(&mut self, peer: PeerId, ip: IpAddr) {
        if let Some(path) = self.path(peer) {
            path.remote_ip.get_or_insert(ip);
        }
    }

    /// `peer`'s stream answer said its time socket is on UDP `port`: on a
    /// path with no dialed address, datagrams go to the connection's
    /// remote IP at that port.
    pub(crate) fn announced(&mut self, peer: &PeerId, port: u16) {
        if port == 0 {
            return;
        }
        if let Some(path) = self.peers.get_mut(peer)
            && let Some(ip) = path.remote_ip
        {
            path.announced = Some(SocketAddr::new(ip, port));
        }
    }

    /// `peer` disconnected: its keys, address and probes go.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        if let Some(path) = self.peers.remove(peer)
            && let Some((_, tag)) = path.peer_key
        {
            self.by_tag.remove(&tag);
        }
        self.outstanding.retain(|_, o| o.peer != *peer);
    }

    /// The key to send `peer` with a stream request (none without a socket,
    /// or with too many peers).
    pub(crate) fn key_for_stream(&mut self, peer: PeerId) -> Option<TimeKey> {
        if !self.has_socket {
            return None;
        }
        self.path(peer).map(|path| path.own_key)
    }

    /// `peer` answered on the stream; `datagrams`: it holds our key.
    pub(crate) fn stream_answered(&mut self, peer: &PeerId, datagrams: bool) {
        if let Some(path) = self.peers.get_mut(peer) {
            path.confirmed = datagrams;
        }
    }

    /// `peer` sent its key on the stream. Returns whether its datagrams
    /// will be answered (this node has a socket and room for the peer).
    pub(crate) fn peer_key(&mut self, peer: PeerId, key: TimeKey) -> bool {
        if !self.has_socket {
            return false;
        }
        let tag = tag_of(&key);
        if self.by_tag.get(&tag).is_some_and(|owner| *owner != peer) {
            // Another peer's tag (a key it was shown and replays): refused.
            return false;
        }
        let Some(path) = self.path(peer) else {
            return false;
        };
        if key == path.own_key {
            // Our own key sent back: our requests would pass as its.
            return false;
        }
        if path.peer_key.is_some_and(|(old, _)| old == key) {
            return true;
        }
        let old = path.peer_key.replace((key, tag));
        path.peer_last_t1 = i64::MIN;
        if let Some((_, old_tag)) = old {
            self.by_tag.remove(&old_tag);
        }
        self.by_tag.insert(tag, peer);
        true
    }

    /// Where to send a datagram probe of `peer` now, if its path is usable.
    pub(crate) fn probe_target(&self, peer: &PeerId, now: LocalMicros) -> Option<SocketAddr> {
        if !self.has_socket {
            return None;
        }
        let path = self.peers.get(peer)?;
        if !path.confirmed
            || path.outstanding >= OUTSTANDING_PER_PEER
            || path.down_until.is_some_and(|until| now < until)
        {
            return None;
        }
        path.target()
    }

    /// A probe of `peer` sent at `t1`: the datagram and its probe id. The
    /// probe is outstanding from now; the caller sends it (or reports
    /// [`TimeDatagrams::not_sent`]).
    pub(crate) fn request(
        &mut self,
        peer: PeerId,
        t1: LocalMicros,
        reply: ProbeReply,
    ) -> Result<(u64, Vec<u8>), ProbeReply> {
        let Some(path) = self.peers.get_mut(&peer) else {
            return Err(reply);
        };
        let mut probe: u64 = rand::random();
        while self.outstanding.contains_key(&probe) {
            probe = rand::random();
        }
        let request = TimeRequest {
            t1: t1.as_micros(),
            key: None,
        };
        let Some(bytes) = seal(KIND_REQUEST, &path.own_key, probe, &request) else {
            return Err(reply);
        };
        path.outstanding += 1;
        self.outstanding.insert(
            probe,
            Outstanding {
                peer,
                t1,
                expires: t1 + DATAGRAM_TIMEOUT_MICROS,
                reply,
            },
        );
        Ok((probe, bytes))
    }

    /// The datagram of `probe` could not be sent: it is no longer awaited.
    pub(crate) fn not_sent(&mut self, probe: u64) -> Option<ProbeReply> {
        let o = self.outstanding.remove(&probe)?;
        if let Some(path) = self.peers.get_mut(&o.peer) {
            path.outstanding = path.outstanding.saturating_sub(1);
        }
        Some(o.reply)
    }

    /// Checks a datagram that arrived from `from`.
    pub(crate) fn receive(&mut self, bytes: &[u8], from: SocketAddr) -> Result<Accepted, Refused> {
        let header = parse(bytes)?;
        match header.kind {
            KIND_REQUEST => {
                let peer = *self.by_tag.get(&header.tag).ok_or(Refused::UnknownKey)?;
                let path = self.peers.get_mut(&peer).ok_or(Refused::UnknownKey)?;
                let (key, _) = path.peer_key.ok_or(Refused::UnknownKey)?;
                if !same_mac(&mac_of(&key, header.signed), header.mac) {
                    return Err(Refused::BadMac);
                }
                let request: TimeRequest =
                    cbor4ii::serde::from_slice(header.body).map_err(|_| Refused::Body)?;
                if request.t1 <= path.peer_last_t1 {
                    return Err(Refused::Replayed);
                }
                path.peer_last_t1 = request.t1;
                path.seen = Some(from);
                Ok(Accepted::Asked {
                    peer,
                    probe: header.probe,
                    from,
                })
            }
            KIND_ANSWER => {
                let o = self
                    .outstanding
                    .get(&header.probe)
                    .ok_or(Refused::Unexpected)?;
                let path = self.peers.get_mut(&o.peer).ok_or(Refused::Unexpected)?;
                if header.tag != tag_of(&path.own_key) {
                    return Err(Refused::UnknownKey);
                }
                if !same_mac(&mac_of(&path.own_key, header.signed), header.mac) {
                    return Err(Refused::BadMac);
                }
                let response: TimeResponse =
                    cbor4ii::serde::from_slice(header.body).map_err(|_| Refused::Body)?;
                path.outstanding = path.outstanding.saturating_sub(1);
                path.losses = 0;
                path.down_until = None;
                path.seen = Some(from);
                if !path.working {
                    path.working = true;
                    tracing::info!(peer = %o.peer, %from, "time probes on datagrams");
                }
                let o = self
                    .outstanding
                    .remove(&header.probe)
                    .ok_or(Refused::Unexpected)?;
                Ok(Accepted::Answered {
                    peer: o.peer,
                    t1: o.t1,
                    response: Box::new(response),
                    reply: o.reply,
                })
            }
            _ => Err(Refused::Malformed),
        }
    }

    /// The answer to `peer`'s request `probe`, sealed under its key.
    pub(crate) fn answer(
        &mut self,
        peer: &PeerId,
        probe: u64,
        response: &TimeResponse,
    ) -> Option<Vec<u8>> {
        let (key, _) = self.peers.get(peer)?.peer_key?;
        seal(KIND_ANSWER, &key, probe, response)
    }

    /// When the next outstanding probe expires.
    pub(crate) fn poll_timeout(&self) -> Option<LocalMicros> {
        self.outstanding.values().map(|o| o.expires).min()
    }

    /// Ends the probes unanswered by `now`: their replies, and the peers
    /// whose probes fell back to the stream.
    pub(crate) fn expire(&mut self, now: LocalMicros) -> Vec<(PeerId, ProbeReply)> {
        let expired: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.expires <= now)
            .map(|(probe, _)| *probe)
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for probe in expired {
            let Some(o) = self.outstanding.remove(&probe) else {
                continue;
            };
            if let Some(path) = self.peers.get_mut(&o.peer) {
                path.outstanding = path.outstanding.saturating_sub(1);
                path.losses += 1;
                if path.losses >= LOSSES_BEFORE_FALLBACK && path.down_until.is_none_or(|u| u <= now)
                {
                    // Back on the stream for a while; one lost retry after
                    // that sends it back again.
                    path.down_until = Some(now + RETRY_AFTER_MICROS);
                    path.losses = LOSSES_BEFORE_FALLBACK - 1;
                    path.working = false;
                    tracing::info!(peer = %o.peer, "time datagrams unanswered: probes take the stream");
                }
            }
            out.push((o.peer, o.reply));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "127.0.0.1:4001";
    const B: &str = "127.0.0.1:4002";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("a socket address")
    }

    fn response(t2: i64) -> TimeResponse {
        TimeResponse {
            t2,
            t3: t2 + 5,
            view: Some(-1.5),
            skew_ppm: 3.0,
            unsynced: false,
            l2: Some(1),
            l3: Some(2),
            rate_ppb: Some(-7),
            view_rate_ppb: Some(9),
            synced_ms: Some(u64::MAX),
            datagrams: false,
            datagram_port: None,
        }
    }

    #[test]
    fn a_quic_peer_is_probed_at_its_announced_port_and_a_dialed_port_wins() {
        let peer = PeerId::random();
        let mut paths = TimeDatagrams::default();
        paths.socket_bound();
        paths.key_for_stream(peer).expect("a key");
        paths.stream_answered(&peer, true);
        // An announcement before the connection's IP is known, or of port
        // 0, gives no target.
        paths.announced(&peer, 5000);
        paths.connected(peer, "127.0.0.1".parse().expect("an IP"));
        paths.announced(&peer, 0);
        assert_eq!(paths.probe_target(&peer, LocalMicros(0)), None);
        paths.announced(&peer, 5000);
        assert_eq!(
            paths.probe_target(&peer, LocalMicros(0)),
            Some(addr("127.0.0.1:5000"))
        );
        // A dialed TCP address (maybe a proxy's or a port forward's) wins.
        paths.dialed(peer, addr(B));
        assert_eq!(paths.probe_target(&peer, LocalMicros(0)), Some(addr(B)));
    }

    /// Two nodes' paths, `a` having dialed `b` and handed it its key.
    fn pair() -> (TimeDatagrams, PeerId, TimeDatagrams, PeerId) {
        let (pa, pb) = (PeerId::random(), PeerId::random());
        let (mut a, mut b) = (TimeDatagrams::default(), TimeDatagrams::default());
        a.socket_bound();
        b.socket_bound();
        a.dialed(pb, addr(B));
        let key = a.key_for_stream(pb).expect("a has a socket");
        assert!(b.peer_key(pa, key));
        assert_eq!(
            a.probe_target(&pb, LocalMicros(0)),
            None,
            "not before b confirms the key"
        );
        a.stream_answered(&pb, true);
        (a, pa, b, pb)
    }

    /// `a` probes `b` at `t1`; returns the request datagram.
    fn probe(a: &mut TimeDatagrams, pb: PeerId, t1: i64) -> (u64, Vec<u8>) {
        assert_eq!(a.probe_target(&pb, LocalMicros(t1)), Some(addr(B)));
        a.request(pb, LocalMicros(t1), None)
            .map_err(|_| "refused")
            .expect("a probe")
    }

    #[test]
    fn a_probe_and_its_answer_round_trip_and_teach_the_way_back() {
        let (mut a, pa, mut b, pb) = pair();
        let (probe_id, request) = probe(&mut a, pb, 1_000);
        assert!(request.len() <= MAX_DATAGRAM_BYTES);
        let Ok(Accepted::Asked {
            peer,
            probe: asked,
            from,
        }) = b.receive(&request, addr(A))
        else {
            panic!("b takes a's request");
        };
        assert_eq!((peer, asked, from), (pa, probe_id, addr(A)));
        let answer = b.answer(&pa, asked, &response(77)).expect("b answers");
        assert!(answer.len() <= MAX_DATAGRAM_BYTES);
        let Ok(Accepted::Answered {
            peer, t1, response, ..
        }) = a.receive(&answer, addr(B))
        else {
            panic!("a takes b's answer");
        };
        assert_eq!((peer, t1, response.t2), (pb, LocalMicros(1_000), 77));
        assert_eq!(response.synced_ms, Some(u64::MAX));
        // b never dialed a, yet probes it where its request came from, once
        // a holds b's key.
        let key = b.key_for_stream(pa).expect("b has a socket");
        assert!(a.peer_key(pb, key));
        assert_eq!(b.probe_target(&pa, LocalMicros(0)), None);
        b.stream_answered(&pa, true);
        assert_eq!(b.probe_target(&pa, LocalMicros(0)), Some(addr(A)));
        // Replays are refused: the request (its t1 is not newer) and the
        // answer (its probe is no longer outstanding).
        assert_eq!(b.receive(&request, addr(A)).err(), Some(Refused::Replayed));
        assert_eq!(a.receive(&answer, addr(B)).err(), Some(Refused::Unexpected));
        // A replayed request must not move the way back either.
        assert_eq!(
            b.receive(&request, addr("10.9.9.9:1")).err(),
            Some(Refused::Replayed)
        );
        assert_eq!(b.probe_target(&pa, LocalMicros(0)), Some(addr(A)));
        // A newer request is taken.
        let (_, request) = probe(&mut a, pb, 2_000);
        assert!(matches!(
            b.receive(&request, addr(A)),
            Ok(Accepted::Asked { .. })
        ));
    }

    #[test]
    fn forged_and_malformed_datagrams_are_refused() {
        let (mut a, pa, mut b, pb) = pair();
        let (probe_id, request) = probe(&mut a, pb, 1_000);
        // Any byte changed: the MAC no longer matches (or the header lies).
        for i in 0..request.len() {
            let mut forged = request.clone();
            forged[i] ^= 0x01;
            assert!(b.receive(&forged, addr(A)).is_err(), "byte {i} flipped");
        }
        // Too short, too long, wrong magic, unknown kind.
        assert_eq!(b.receive(&[], addr(A)).err(), Some(Refused::Malformed));
        assert_eq!(
            b.receive(&request[..HEADER_BYTES + MAC_BYTES], addr(A))
                .err(),
            Some(Refused::Malformed)
        );
        let mut long = request.clone();
        long.resize(MAX_DATAGRAM_BYTES + 1, 0);
        assert_eq!(b.receive(&long, addr(A)).err(), Some(Refused::Malformed));
        let mut kind = request.clone();
        kind[4] = 9;
        assert_eq!(b.receive(&kind, addr(A)).err(), Some(Refused::Malformed));
        // A request under a key b does not hold.
        let stranger: TimeKey = [7; 32];
        let bogus = seal(
            KIND_REQUEST,
            &stranger,
            1,
            &TimeRequest { t1: 5, key: None },
        )
        .expect("seals");
        assert_eq!(b.receive(&bogus, addr(A)).err(), Some(Refused::UnknownKey));
        // An answer to a's outstanding probe under another key.
        let forged = seal(KIND_ANSWER, &stranger, probe_id, &response(1)).expect("seals");
        assert_eq!(a.receive(&forged, addr(B)).err(), Some(Refused::UnknownKey));
        // A body that is not the message, under the right key.
        let key = b.peers[&pa].peer_key.expect("b holds a's key").0;
        let junk = seal(KIND_REQUEST, &key, 2, &"not a request").expect("seals");
        assert_eq!(b.receive(&junk, addr(A)).err(), Some(Refused::Body));
        // The genuine request still goes through after all that.
        assert!(matches!(
            b.receive(&request, addr(A)),
            Ok(Accepted::Asked { .. })
        ));
    }

    #[test]
    fn keys_that_would_let_one_peer_pass_for_another_are_refused() {
        let (mut a, pa, mut b, pb) = pair();
        let a_key = a.key_for_stream(pb).expect("a has a socket");
        // A third peer hands b a's key (it cannot know it, but say it does).
        let pc = PeerId::random();
        assert!(!b.peer_key(pc, a_key));
        // b hands a a's own key back: a's requests would pass as b's.
        assert!(!a.peer_key(pb, a_key));
        // The same key again is fine; a new one replaces the old.
        assert!(b.peer_key(pa, a_key));
        assert!(b.peer_key(pa, [9; 32]));
        let (_, request) = probe(&mut a, pb, 1_000);
        assert_eq!(
            b.receive(&request, addr(A)).err(),
            Some(Refused::UnknownKey)
        );
    }

    #[test]
    fn unanswered_probes_fall_back_to_the_stream_and_retry_later() {
        let (mut a, _, _, pb) = pair();
        let mut t = 0;
        for _ in 0..LOSSES_BEFORE_FALLBACK {
            probe(&mut a, pb, t);
            t += 100_000;
        }
        let expired = a.expire(LocalMicros(t + DATAGRAM_TIMEOUT_MICROS));
        assert_eq!(expired.len(), LOSSES_BEFORE_FALLBACK as usize);
        let now = t + DATAGRAM_TIMEOUT_MICROS;
        assert_eq!(a.probe_target(&pb, LocalMicros(now)), None, "on the stream");
        assert_eq!(a.poll_timeout(), None);
        // After the retry delay one datagram is tried; lost, back to the stream.
        let later = now + RETRY_AFTER_MICROS;
        assert_eq!(a.probe_target(&pb, LocalMicros(later - 1)), None);
        probe(&mut a, pb, later);
        a.expire(LocalMicros(later + DATAGRAM_TIMEOUT_MICROS));
        assert_eq!(
            a.probe_target(&pb, LocalMicros(later + DATAGRAM_TIMEOUT_MICROS)),
            None
        );
        // Answered, the path is back for good.
        let (mut b, pa) = (TimeDatagrams::default(), PeerId::random());
        b.socket_bound();
        let key = a.key_for_stream(pb).expect("a has a socket");
        assert!(b.peer_key(pa, key));
        let retry = later + DATAGRAM_TIMEOUT_MICROS + RETRY_AFTER_MICROS;
        let (id, request) = probe(&mut a, pb, retry);
        assert!(matches!(
            b.receive(&request, addr(A)),
            Ok(Accepted::Asked { .. })
        ));
        let answer = b.answer(&pa, id, &response(1)).expect("b answers");
        assert!(a.receive(&answer, addr(B)).is_ok());
        probe(&mut a, pb, retry + 1);
        a.expire(LocalMicros(retry + 1 + DATAGRAM_TIMEOUT_MICROS));
        assert!(
            a.probe_target(&pb, LocalMicros(retry + 2 + DATAGRAM_TIMEOUT_MICROS))
                .is_some(),
            "one loss after an answer does not fall back"
        );
    }

    #[test]
    fn tables_are_bounded_and_cleared() {
        let (mut a, _, mut b, pb) = pair();
        for t in 0..OUTSTANDING_PER_PEER as i64 {
            probe(&mut a, pb, t);
        }
        assert_eq!(
            a.probe_target(&pb, LocalMicros(100)),
            None,
            "too many outstanding: the stream"
        );
        a.forget(&pb);
        assert!(a.outstanding.is_empty() && a.peers.is_empty());
        assert_eq!(a.probe_target(&pb, LocalMicros(100)), None);
        for _ in 0..MAX_PEERS + 10 {
            b.key_for_stream(PeerId::random());
        }
        assert_eq!(b.peers.len(), MAX_PEERS);
        assert_eq!(b.key_for_stream(PeerId::random()), None);
        // Without a socket nothing is offered or taken.
        let mut c = TimeDatagrams::default();
        assert_eq!(c.key_for_stream(pb), None);
        assert!(!c.peer_key(pb, [1; 32]));
        c.dialed(pb, addr(B));
        c.stream_answered(&pb, true);
        assert_eq!(c.probe_target(&pb, LocalMicros(0)), None);
    }

    proptest::proptest! {
        /// Any bytes, and any edit of a genuine request or answer, never
        /// panic the checks and are never taken (only the genuine bytes are).
        #[test]
        fn no_bytes_but_the_genuine_ones_are_taken(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            at in 0usize..400,
            bit in 0u8..8,
            cut in 0usize..400,
        ) {
            let (mut a, pa, mut b, pb) = pair();
            proptest::prop_assert!(b.receive(&junk, addr(A)).is_err());
            proptest::prop_assert!(a.receive(&junk, addr(B)).is_err());
            let (id, request) = probe(&mut a, pb, 1_000);
            let mut bent = request.clone();
            let i = at % bent.len();
            bent[i] ^= 1 << bit;
            proptest::prop_assert!(b.receive(&bent, addr(A)).is_err());
            proptest::prop_assert!(b.receive(&request[..cut.min(request.len() - 1)], addr(A)).is_err());
            proptest::prop_assert!(b.receive(&request, addr(A)).is_ok());
            let answer = b.answer(&pa, id, &response(1)).expect("b answers");
            let mut bent = answer.clone();
            let i = at % bent.len();
            bent[i] ^= 1 << bit;
            proptest::prop_assert!(a.receive(&bent, addr(B)).is_err());
            proptest::prop_assert!(a.receive(&answer[..cut.min(answer.len() - 1)], addr(B)).is_err());
            proptest::prop_assert!(a.receive(&answer, addr(B)).is_ok());
        }
    }
}
