//! The time exchange `/firefly/time/2` and the swarm clock it feeds.
//!
//! The event loop owns a [`SwarmClock`] keyed by [`PeerId`] and drives it as
//! the clock crate's doc prescribes: members are added and removed as they
//! join and leave, the peers [`SwarmClock::poll_probe`] names get a time
//! request as a UDP datagram where the pair's datagram path works
//! (`time_datagram`) and on their long-lived stream ([`crate::time_stream`])
//! otherwise, and every
//! reply becomes a [`Sample`] for [`SwarmClock::handle_sample`]. Stamps, as
//! close to the wire as the stream lets us: the asker's stream task takes
//! `t1` from its local clock as it writes the request and `t4` as it reads
//! the answer; the answerer's stream task takes `t2` (local) as it reads the
//! request, and the event loop turns it into *swarm* time and stamps `t3` on
//! its swarm clock just before handing the answer back to the task.
//! Estimating offset and skew is the clock crate's job, not this module's.
//! This module holds the messages and their decoding; the loop side that
//! drives the clock is `event_loop::time`, the streams `time_stream`.
//!
//! Beside `(t2, t3)` the answer carries the answerer's [`firefly_clock::PeerView`]: its raw
//! measurement of the asker's clock and its drift compensation. The two
//! directions are not equally fast (the answer waits on the answerer's event
//! loop) and each side would see the other ahead; the asker uses the
//! views to cancel that shared bias and to keep the swarm's common rate near
//! its members' clocks (see [`SwarmClock::handle_peer_view`]). It also
//! carries the answerer's *local* stamps of `t2` and `t3` and its swarm
//! clock's rate then, so the asker fits the answerer's crystal rather than
//! its ever-corrected swarm clock ([`firefly_clock::PeerLocal`]). Nodes that
//! send no view or no local stamps (older ones) are still understood: the
//! fields default.

use firefly_clock::{LocalMicros, PeerLocal, Sample, SwarmClock, SwarmMicros};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const TIME_PROTOCOL: StreamProtocol = StreamProtocol::new("/firefly/time/2");
/// Largest time request or response accepted, in bytes (they are ~20
/// and ~100).
pub const MAX_TIME_MESSAGE_BYTES: u64 = 256;

/// The key a pair of nodes' time datagrams are authenticated with (see
/// `time_datagram`).
pub type TimeKey = [u8; 32];

/// `t1`: when the asker sent the request, on the asker's local clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRequest {
    /// Asker's send time, microseconds.
    pub t1: i64,
    /// On the stream only: the key the asker's time datagrams to the
    /// answerer, and their answers, are authenticated with. Absent (older
    /// nodes, or an asker without a time socket): no datagrams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<TimeKey>,
}

/// `(t2, t3)`: when the answerer received the request and sent the
/// response, on the answerer's swarm clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// Answerer's receive time, swarm microseconds.
    pub t2: i64,
    /// Answerer's send time, swarm microseconds.
    pub t3: i64,
    /// The answerer's own measurement of the asker's swarm clock minus its
    /// own, µs, uncorrected (absent until it has one). With `skew` it lets
    /// the asker cancel the bias both directions share and the swarm's
    /// common drift (see [`SwarmClock::handle_peer_view`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number::optional"
    )]
    pub view: Option<f64>,
    /// The answerer's drift compensation against its local clock, ppm.
    #[serde(default, deserialize_with = "number::required")]
    pub skew_ppm: f64,
    /// The answerer is still acquiring the swarm's timeline: synced nodes
    /// do not follow it. Absent (older nodes): synced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsynced: bool,
    /// `t2` on the answerer's **local** clock, µs. With `l3` and `rate_ppb`
    /// the asker fits the answerer's local clock (a crystal, linear) rather
    /// than its swarm clock (bent by every correction), see
    /// [`firefly_clock::PeerLocal`]. Absent (older nodes): swarm stamps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<i64>,
    /// `t3` on the answerer's local clock, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3: Option<i64>,
    /// The answerer's swarm clock rate against its local clock when it
    /// stamped `t3`, minus one, in parts per billion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_ppb: Option<i64>,
    /// The answerer's own measurement of the asker's timeline rate minus
    /// its own, ppb (see [`firefly_clock::PeerView::rate`]). Absent until it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_rate_ppb: Option<i64>,
    /// How long the answerer has been synced, ms (see
    /// [`firefly_clock::PeerView::synced_for_micros`]). Absent while unsynced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_ms: Option<u64>,
    /// On the stream only: the answerer holds the key of the request and
    /// answers the asker's time datagrams. Absent (older nodes): it does not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub datagrams: bool,
    /// On the stream only: the UDP port of the answerer's time socket, for
    /// an asker connected to it over QUIC: its datagrams go to the
    /// connection's remote IP at this port. Absent: no socket, or an older
    /// node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagram_port: Option<u16>,
}

impl TimeResponse {
    /// The answerer's local stamps, when it sent all of them.
    pub fn peer_local(&self) -> Option<PeerLocal> {
        Some(PeerLocal {
            t2: LocalMicros(self.l2?),
            t3: LocalMicros(self.l3?),
            rate_ppb: self.rate_ppb?,
        })
    }
}

/// Numbers as other implementations send them: CBOR has integers and floats,
/// and an encoder may well write `0` rather than `0.0`; both are accepted
/// where a float is expected.
mod number {
    use serde::Deserializer;
    use serde::de::{Error, Visitor};
    use std::fmt;

    struct Number;

    impl Visitor<'_> for Number {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_i128<E: Error>(self, v: i128) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u128<E: Error>(self, v: u128) -> Result<f64, E> {
            Ok(v as f64)
        }
    }

    struct MaybeNumber;

    impl<'de> Visitor<'de> for MaybeNumber {
        type Value = Option<f64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number or null")
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            required(d).map(Some)
        }
    }

    pub(super) fn required<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(Number)
    }

    pub(super) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(MaybeNumber)
    }
}

/// One completed exchange with a peer: the four NTP timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSample {
    /// The peer that answered.
    pub peer: PeerId,
    /// The stamps, as the clock crate takes them.
    pub sample: Sample,
}

impl TimeSample {
    /// The peer's swarm clock minus this node's local clock:
    /// `((t2 − t1) + (t3 − t4)) / 2`.
    pub fn offset_micros(&self) -> i64 {
        let s = &self.sample;
        let a = s.t2.as_micros().saturating_sub(s.t1.as_micros());
        let b = s.t3.as_micros().saturating_sub(s.t4.as_micros());
        (a / 2).saturating_add(b / 2)
    }

    /// Round-trip network delay: `(t4 − t1) − (t3 − t2)`.
    pub fn delay_micros(&self) -> i64 {
        let s = &self.sample;
        (s.t4 - s.t1).saturating_sub(s.t3 - s.t2)
    }
}

/// What the swarm clock looks like right now, for the node and the UI.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockStatus {
    /// The swarm time now.
    pub now: SwarmMicros,
    /// Whether the clock follows the swarm's timeline yet.
    pub synced: bool,
    /// Rate of the swarm clock against the local clock, ppm.
    pub skew_ppm: f64,
    /// Estimated distance from the peers' consensus, µs (one sigma).
    pub sync_error_micros: Option<f64>,
    /// Drift compensation (the skew without the slew in progress), ppm.
    pub drift_ppm: f64,
    /// Phase slew in progress, ppm.
    pub slew_ppm: f64,
    /// What is known about each member's clock.
    pub peers: Vec<(PeerId, firefly_clock::PeerInfo)>,
    /// Sample counters (refused samples are bad input from peers).
    pub stats: firefly_clock::Stats,
}

/// Reads the clock's state for [`crate::Client::clock`].
pub(crate) fn clock_status(clock: &SwarmClock<PeerId>, now: LocalMicros) -> ClockStatus {
    ClockStatus {
        now: clock.to_swarm(now),
        synced: clock.is_synced(),
        skew_ppm: clock.skew_ppm(),
        sync_error_micros: clock.sync_error_micros(),
        drift_ppm: clock.drift_compensation_ppm(),
        slew_ppm: clock.slew_ppm(),
        peers: clock.peers().map(|(p, info)| (*p, info.clone())).collect(),
        stats: clock.stats().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes `value` as CBOR the way another implementation might.
    fn cbor(value: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    #[test]
    fn a_cbor_integer_is_accepted_where_a_float_is_expected() {
        use ciborium::Value;
        let message = Value::Map(vec![
            (Value::Text("t2".into()), Value::Integer(5.into())),
            (Value::Text("t3".into()), Value::Integer(7.into())),
            (Value::Text("view".into()), Value::Integer((-12).into())),
            (Value::Text("skew_ppm".into()), Value::Integer(3.into())),
        ]);
        let bytes = cbor(&message);
        let r: TimeResponse = cbor4ii::serde::from_slice(&bytes).expect("integers read as floats");
        assert_eq!((r.t2, r.t3, r.view, r.skew_ppm), (5, 7, Some(-12.0), 3.0));
        // Floats, null and absent fields still read as before.
        let message = Value::Map(vec![
            (Value::Text("t2".into()), Value::Integer(5.into())),
            (Value::Text("t3".into()), Value::Integer(7.into())),
            (Value::Text("view".into()), Value::Null),
            (Value::Text("skew_ppm".into()), Value::Float(-1.123_456_789)),
        ]);
        let r: TimeResponse =
            cbor4ii::serde::from_slice(&cbor(&message)).expect("a valid response");
        assert_eq!((r.view, r.skew_ppm), (None, -1.123_456_789));
        let message = Value::Map(vec![
            (Value::Text("t2".into()), Value::Integer(5.into())),
            (Value::Text("t3".into()), Value::Integer(7.into())),
        ]);
        let r: TimeResponse =
            cbor4ii::serde::from_slice(&cbor(&message)).expect("a valid response");
        assert_eq!((r.view, r.skew_ppm), (None, 0.0));
        // Not a number at all: an error, not a panic.
        let message = Value::Map(vec![
            (Value::Text("t2".into()), Value::Integer(5.into())),
            (Value::Text("t3".into()), Value::Integer(7.into())),
            (Value::Text("skew_ppm".into()), Value::Text("fast".into())),
        ]);
        assert!(cbor4ii::serde::from_slice::<TimeResponse>(&cbor(&message)).is_err());
    }

    #[test]
    fn local_stamps_travel_and_older_answers_still_read() {
        let response = TimeResponse {
            t2: 5,
            t3: 7,
            view: None,
            skew_ppm: 1.5,
            unsynced: false,
            l2: Some(-40),
            l3: Some(-38),
            rate_ppb: Some(1_500),
            view_rate_ppb: Some(-2_000_000),
            synced_ms: Some(u64::MAX),
            datagrams: true,
            datagram_port: Some(u16::MAX),
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &response).expect("encodes");
        assert!(bytes.len() as u64 <= MAX_TIME_MESSAGE_BYTES);
        let back: TimeResponse = cbor4ii::serde::from_slice(&bytes).expect("decodes");
        assert_eq!(
            (
                back.view_rate_ppb,
                back.synced_ms,
                back.datagrams,
                back.datagram_port
            ),
            (Some(-2_000_000), Some(u64::MAX), true, Some(u16::MAX))
        );
        // A request with its key fits a frame too.
        let request = TimeRequest {
            t1: i64::MIN,
            key: Some([0xff; 32]),
        };
        let request_bytes = cbor4ii::serde::to_vec(Vec::new(), &request).expect("encodes");
        assert!(request_bytes.len() as u64 <= MAX_TIME_MESSAGE_BYTES);
        let back: TimeRequest = cbor4ii::serde::from_slice(&request_bytes).expect("decodes");
        assert_eq!(back, request);
        let back: TimeResponse = cbor4ii::serde::from_slice(&bytes).expect("decodes");
        assert_eq!(
            back.peer_local(),
            Some(PeerLocal {
                t2: LocalMicros(-40),
                t3: LocalMicros(-38),
                rate_ppb: 1_500
            })
        );
        // An older node's answer: swarm stamps only.
        let older = TimeResponse {
            l2: None,
            l3: None,
            rate_ppb: None,
            view_rate_ppb: None,
            synced_ms: None,
            datagrams: false,
            datagram_port: None,
            ..response
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &older).expect("encodes");
        let back: TimeResponse = cbor4ii::serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back.peer_local(), None);
    }

    #[test]
    fn offset_and_delay_follow_the_ntp_formulas() {
        // Peer is 1000 µs ahead; 100 µs each way; 50 µs processing.
        let sample = TimeSample {
            peer: PeerId::random(),
            sample: Sample {
                t1: LocalMicros(10_000),
                t2: SwarmMicros(10_000 + 100 + 1000),
                t3: SwarmMicros(10_000 + 150 + 1000),
                t4: LocalMicros(10_250),
            },
        };
        assert_eq!(sample.offset_micros(), 1000);
        assert_eq!(sample.delay_micros(), 200);
    }
}
