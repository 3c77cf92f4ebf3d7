//! Membership: who is in the swarm, learned from gossiped heartbeats.
//!
//! Every node publishes a [`Heartbeat`] on `firefly/heartbeat/1` every
//! heartbeat period. `Membership` is the sans-IO table those heartbeats
//! feed: a peer joins with its first valid heartbeat, stays while they keep
//! arriving, and is expired after the member timeout of silence, or at once
//! when its heartbeat says it is leaving (a clean stop's goodbye, so the
//! others re-elect a coordinator now instead of after the timeout). It takes
//! `now` as a parameter and reads no clock, so it is tested without sockets.
//! [`Membership::handle_gossip`] takes a heartbeat as it arrived and returns
//! a [`HeartbeatOutcome`]; the event loop (`event_loop::membership`) acts on
//! it and publishes this node's own heartbeats.
//!
//! Bounds: heartbeats are size-checked and version-checked before decoding
//! is trusted ([`crate::wire`]), names are limited to [`MAX_NAME_LEN`] bytes,
//! the player's report to [`crate::MAX_PLAYOUT_FLASHES`] flashes in time
//! order and a volume of at most [`crate::MAX_VOLUME_PERMILLE`],
//! the table holds at most [`MAX_MEMBERS`] peers, and a member that
//! heartbeats faster than a quarter period is ignored (gossip flood) unless
//! the heartbeats are a backlog (see [`Membership::handle_heartbeat`]).
//!
//! A member silent for [`STALL_PERIODS`] heartbeat periods while still
//! connected is reported once ([`Membership::poll_stalled`]) so that the
//! node closes its connections: a TCP connection that outlives a partition
//! sits in retransmission backoff (the gap doubles each time, 6 s and more
//! after a few seconds cut off), so after the heal nothing would cross it
//! for seconds; a fresh dial crosses at once.

use crate::status::{MAX_NAME_LEN, NodeStatus};
use crate::wire::{self, MAX_GOSSIP_BYTES, WireError};
use firefly_clock::LocalMicros;
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The gossipsub topic heartbeats travel on.
pub const HEARTBEAT_TOPIC: &str = "firefly/heartbeat/1";
/// The heartbeat message version this node speaks.
pub const HEARTBEAT_VERSION: u16 = 1;
/// Most members one node keeps track of; heartbeats from further peers are ignored.
pub const MAX_MEMBERS: usize = 1024;
/// How much earlier than its earliest estimated start a member's quick
/// heartbeat may claim to have started (its uptime running ahead of this
/// node's clock) before it counts as a flood rather than a backlog, µs.
const BACKLOG_SLACK_MICROS: i64 = 5_000_000;
/// Heartbeat periods of silence after which a member's connection is taken
/// to be stalled (three missed heartbeats; roles give up on a member after
/// 2.5 periods, membership after 5).
pub const STALL_PERIODS: i64 = 3;

/// One node's periodic "I am alive" message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Message version ([`HEARTBEAT_VERSION`]).
    pub version: u16,
    /// The node's human name (at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// How long the node has been up, in milliseconds (role election prefers
    /// the longest-standing member).
    pub uptime_ms: u64,
    /// Library version, role view, playback summary and load.
    pub status: NodeStatus,
    /// The node is stopping: members drop it at once (a goodbye). Absent
    /// (false) in older heartbeats.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

impl Heartbeat {
    /// Encodes the heartbeat for gossip.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(self)
    }

    /// Decodes and checks a heartbeat from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut heartbeat: Heartbeat = wire::decode(bytes, MAX_GOSSIP_BYTES)?;
        wire::check_version(heartbeat.version, HEARTBEAT_VERSION)?;
        if heartbeat.name.len() > MAX_NAME_LEN {
            return Err(WireError::Invalid(format!(
                "name of {} bytes is longer than {MAX_NAME_LEN}",
                heartbeat.name.len()
            )));
        }
        if heartbeat.name.chars().any(char::is_control) {
            return Err(WireError::Invalid(
                "name contains control characters".into(),
            ));
        }
        heartbeat
            .status
            .playout
            .check()
            .map_err(WireError::Invalid)?;
        heartbeat.status.roles.check().map_err(WireError::Invalid)?;
        crate::live::check_sources(&mut heartbeat.status.live)?;
        heartbeat
            .status
            .placement
            .check()
            .map_err(WireError::Invalid)?;
        // Shown in every view and log: no direction overrides either.
        heartbeat.name = firefly_library::display_text(&heartbeat.name);
        Ok(heartbeat)
    }
}

/// A peer that is currently a member of the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub peer: PeerId,
    /// Its human name, from its latest heartbeat.
    pub name: String,
    /// Its uptime when its latest heartbeat was sent, in milliseconds.
    pub uptime_ms: u64,
    /// Its status, from its latest heartbeat.
    pub status: NodeStatus,
    /// When this node first heard from it (local clock).
    pub joined_at: LocalMicros,
    /// When this node last heard from it (local clock).
    pub last_seen: LocalMicros,
}

/// What a heartbeat did to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeartbeatOutcome {
    /// The peer was not a member and now is (boxed: a member is large and
    /// joins are rare).
    Joined(Box<Member>),
    /// A known member refreshed its entry.
    Refreshed,
    /// The heartbeat came too soon after the previous one and was dropped.
    Flood,
    /// The table is full; the new peer was not added.
    Full,
    /// The member said goodbye and was removed (boxed, as for `Joined`).
    Left(Box<Member>),
    /// A goodbye from a peer that is not a member: nothing to do.
    NotMember,
    /// The bytes are not a valid heartbeat (the sender is to be penalized).
    Malformed(WireError),
}

impl HeartbeatOutcome {
    /// What gossipsub should do with the message: forward what the table
    /// took, reject what is malformed (gossipsub scores that against the
    /// sender), drop the rest.
    pub(crate) fn acceptance(&self) -> MessageAcceptance {
        match self {
            Self::Joined(_) | Self::Refreshed | Self::Left(_) => MessageAcceptance::Accept,
            Self::Malformed(_) => MessageAcceptance::Reject,
            Self::Flood | Self::Full | Self::NotMember => MessageAcceptance::Ignore,
        }
    }
}

/// The sans-IO membership table.
///
/// Invariant: every member's `last_seen` is within `timeout` of the `now` of
/// the latest [`Membership::handle_timeout`] call, because that call removes
/// the rest; [`Membership::poll_timeout`] says when the next removal is due.
#[derive(Debug)]
pub(crate) struct Membership {
    members: BTreeMap<PeerId, Member>,
    /// Each member's earliest estimated start on this node's clock (arrival
    /// minus uptime, over its heartbeats that were not quick), for telling a
    /// backlog from a flood: a delayed heartbeat only makes the estimate
    /// later, so the earliest one is the least delayed. Invariant: the same
    /// keys as `members`.
    started: BTreeMap<PeerId, LocalMicros>,
    /// Members reported stalled and not heard from since. Invariant: a
    /// subset of the keys of `members`.
    stalled: std::collections::BTreeSet<PeerId>,
    timeout: i64,
    min_gap: i64,
    stall: i64,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Membership {
    /// A table that expires members after `timeout` of silence and drops
    /// heartbeats arriving less than a quarter of `heartbeat_interval` apart.
    pub(crate) fn new(timeout: Duration, heartbeat_interval: Duration) -> Self {
        Self {
            members: BTreeMap::new(),
            started: BTreeMap::new(),
            stalled: std::collections::BTreeSet::new(),
            timeout: micros(timeout),
            min_gap: micros(heartbeat_interval) / 4,
            stall: micros(heartbeat_interval).saturating_mul(STALL_PERIODS),
        }
    }

    /// Feeds a heartbeat from `peer` as it arrived on the topic at `now`:
    /// checked by [`Heartbeat::decode`], then [`Self::handle_heartbeat`].
    pub(crate) fn handle_gossip(
        &mut self,
        now: LocalMicros,
        peer: PeerId,
        bytes: &[u8],
    ) -> HeartbeatOutcome {
        match Heartbeat::decode(bytes) {
            Ok(heartbeat) => self.handle_heartbeat(now, peer, heartbeat),
            Err(err) => HeartbeatOutcome::Malformed(err),
        }
    }

    /// Feeds a valid heartbeat from `peer` received at `now`.
    ///
    /// A heartbeat less than a quarter period after the previous one is a
    /// flood unless it belongs to a backlog (a healed partition, a stalled
    /// link), which arrives all at once but was sent in time: the sender's
    /// uptime moved on by a quarter period or more since its previous
    /// heartbeat, and it claims no earlier start than the member's earliest
    /// estimated start (less [`BACKLOG_SLACK_MICROS`]), that is, its uptime does
    /// not run ahead of this node's clock. The estimate is anchored on the
    /// least delayed heartbeat, not the first: a member that (re)joined with
    /// the first heartbeat of a backlog would otherwise have the rest of that
    /// backlog, and every later one, taken for a flood.
    pub(crate) fn handle_heartbeat(
        &mut self,
        now: LocalMicros,
        peer: PeerId,
        heartbeat: Heartbeat,
    ) -> HeartbeatOutcome {
        if heartbeat.leaving {
            // Only the member itself can say this (gossip messages are
            // signed by their author), and it is sent once per stop: no
            // flood check, and no join.
            self.started.remove(&peer);
            self.stalled.remove(&peer);
            return match self.members.remove(&peer) {
                Some(member) => HeartbeatOutcome::Left(Box::new(member)),
                None => HeartbeatOutcome::NotMember,
            };
        }
        let uptime = i64::try_from(heartbeat.uptime_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let claimed_start = LocalMicros(now.as_micros().saturating_sub(uptime));
        if let Some(member) = self.members.get_mut(&peer) {
            let started = self.started.entry(peer).or_insert(claimed_start);
            if now - member.last_seen < self.min_gap {
                let min_gap_ms = u64::try_from(self.min_gap / 1000).unwrap_or(0);
                let spaced = heartbeat.uptime_ms >= member.uptime_ms.saturating_add(min_gap_ms);
                let in_time = claimed_start - *started >= -BACKLOG_SLACK_MICROS;
                if !(spaced && in_time) {
                    return HeartbeatOutcome::Flood;
                }
            } else if claimed_start < *started {
                // Not quick, so at most four a period: may move the anchor.
                *started = claimed_start;
            }
            self.stalled.remove(&peer);
            member.name = heartbeat.name;
            member.uptime_ms = heartbeat.uptime_ms;
            member.status = heartbeat.status;
            member.last_seen = now;
            return HeartbeatOutcome::Refreshed;
        }
        if self.members.len() >= MAX_MEMBERS {
            return HeartbeatOutcome::Full;
        }
        let member = Member {
            peer,
            name: heartbeat.name,
            uptime_ms: heartbeat.uptime_ms,
            status: heartbeat.status,
            joined_at: now,
            last_seen: now,
        };
        self.members.insert(peer, member.clone());
        self.started.insert(peer, claimed_start);
        HeartbeatOutcome::Joined(Box::new(member))
    }

    /// Removes and returns every member silent for longer than the timeout.
    pub(crate) fn handle_timeout(&mut self, now: LocalMicros) -> Vec<Member> {
        let timeout = self.timeout;
        let expired: Vec<PeerId> = self
            .members
            .values()
            .filter(|m| now - m.last_seen > timeout)
            .map(|m| m.peer)
            .collect();
        for peer in &expired {
            self.started.remove(peer);
            self.stalled.remove(peer);
        }
        expired
            .iter()
            .filter_map(|peer| self.members.remove(peer))
            .collect()
    }

    /// When the next member would expire or stall, if there is any member.
    pub(crate) fn poll_timeout(&self) -> Option<LocalMicros> {
        let expiry = self
            .members
            .values()
            .map(|m| m.last_seen + self.timeout + 1);
        let stall = self
            .members
            .values()
            .filter(|m| !self.stalled.contains(&m.peer))
            .map(|m| m.last_seen + self.stall + 1);
        expiry.chain(stall).min()
    }

    /// The members silent for [`STALL_PERIODS`] heartbeat periods at `now`
    /// and not reported since they were last heard; each is reported once
    /// per silence.
    pub(crate) fn poll_stalled(&mut self, now: LocalMicros) -> Vec<PeerId> {
        let stalled: Vec<PeerId> = self
            .members
            .values()
            .filter(|m| now - m.last_seen > self.stall && !self.stalled.contains(&m.peer))
            .map(|m| m.peer)
            .collect();
        self.stalled.extend(stalled.iter().copied());
        stalled
    }

    /// The current members, ordered by peer id.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The member `peer`, if it is one.
    pub(crate) fn member(&self, peer: &PeerId) -> Option<&Member> {
        self.members.get(peer)
    }

    /// Whether `peer` is a member.
    pub(crate) fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains_key(peer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::status::{MAX_PLAYOUT_FLASHES, MAX_VOLUME_PERMILLE, Playout, PlayoutFlash};

    fn heartbeat(name: &str) -> Heartbeat {
        Heartbeat {
            version: HEARTBEAT_VERSION,
            name: name.into(),
            uptime_ms: 1,
            status: NodeStatus::default(),
            leaving: false,
        }
    }

    #[test]
    fn join_refresh_and_expire() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let peer = PeerId::random();
        let t0 = LocalMicros(1_000_000);
        assert!(matches!(
            table.handle_heartbeat(t0, peer, heartbeat("a")),
            HeartbeatOutcome::Joined(_)
        ));
        assert_eq!(
            table.handle_heartbeat(t0 + 1_000_000, peer, heartbeat("a")),
            HeartbeatOutcome::Refreshed
        );
        // Silent from t0+1s: stalled after t0+4s, still there at t0+6s,
        // gone just after.
        assert_eq!(table.poll_stalled(t0 + 4_000_001), vec![peer]);
        assert!(table.handle_timeout(t0 + 6_000_000).is_empty());
        assert_eq!(table.poll_timeout(), Some(t0 + 6_000_001));
        let gone = table.handle_timeout(t0 + 6_000_001);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].peer, peer);
        assert!(!table.is_member(&peer));
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn a_goodbye_removes_the_member_at_once() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let (peer, other) = (PeerId::random(), PeerId::random());
        let t0 = LocalMicros(0);
        table.handle_heartbeat(t0, peer, heartbeat("a"));
        table.handle_heartbeat(t0, other, heartbeat("b"));
        let goodbye = Heartbeat {
            leaving: true,
            ..heartbeat("a")
        };
        // Right after a heartbeat (no flood check), well before the timeout.
        let HeartbeatOutcome::Left(member) =
            table.handle_heartbeat(t0 + 1_000, peer, goodbye.clone())
        else {
            panic!("the goodbye did not remove the member");
        };
        assert_eq!(member.peer, peer);
        assert!(!table.is_member(&peer));
        assert!(table.is_member(&other));
        // Said again (every heartbeat of a stopping node says it): nothing.
        assert_eq!(
            table.handle_heartbeat(t0 + 2_000, peer, goodbye.clone()),
            HeartbeatOutcome::NotMember
        );
        assert!(!table.is_member(&peer));
        // It reads back, and older heartbeats (without the field) do not leave.
        let bytes = goodbye.encode().unwrap();
        assert!(Heartbeat::decode(&bytes).unwrap().leaving);
        assert!(
            !Heartbeat::decode(&heartbeat("c").encode().unwrap())
                .unwrap()
                .leaving
        );
        // A node that comes back joins again.
        assert!(matches!(
            table.handle_heartbeat(t0 + 3_000, peer, heartbeat("a")),
            HeartbeatOutcome::Joined(_)
        ));
    }

    #[test]
    fn flooding_member_is_ignored() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let peer = PeerId::random();
        let t0 = LocalMicros(0);
        table.handle_heartbeat(t0, peer, heartbeat("a"));
        assert_eq!(
            table.handle_heartbeat(t0 + 10_000, peer, heartbeat("a")),
            HeartbeatOutcome::Flood
        );
    }

    #[test]
    fn a_backlog_after_a_partition_is_not_a_flood() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let peer = PeerId::random();
        let beat = |uptime_ms| Heartbeat {
            uptime_ms,
            ..heartbeat("a")
        };
        table.handle_heartbeat(LocalMicros(0), peer, beat(1_000));
        // Cut off for 4 s: the four heartbeats sent meanwhile arrive together.
        let healed = LocalMicros(4_000_000);
        for uptime in [2_000, 3_000, 4_000, 5_000] {
            assert_eq!(
                table.handle_heartbeat(healed, peer, beat(uptime)),
                HeartbeatOutcome::Refreshed
            );
        }
        // Claiming uptime faster than time passes is a flood.
        assert_eq!(
            table.handle_heartbeat(healed, peer, beat(60_000)),
            HeartbeatOutcome::Flood
        );
    }

    #[test]
    fn a_member_that_rejoined_from_a_backlog_is_not_taken_for_a_flood_later() {
        // Issue 14's second heal: the member rejoined with the *first*
        // heartbeat of a 7 s backlog (sender's uptime = real time here), so
        // an anchor on that first heartbeat lagged 7 s behind for good, and
        // the next, shorter backlog was taken for a flood and penalized.
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let peer = PeerId::random();
        let s = 1_000_000;
        let beat = |uptime_ms| Heartbeat {
            uptime_ms,
            ..heartbeat("a")
        };
        let rejoined = LocalMicros(20 * s);
        for uptime in (13..=18).map(|k| k * 1_000) {
            let outcome = table.handle_heartbeat(rejoined, peer, beat(uptime));
            assert!(
                matches!(
                    outcome,
                    HeartbeatOutcome::Joined(_) | HeartbeatOutcome::Refreshed
                ),
                "{uptime}: {outcome:?}"
            );
        }
        // Back in step: the anchor moves to these timely heartbeats.
        for k in 21..=25 {
            let at = LocalMicros(k * s);
            let uptime = u64::try_from(k).unwrap() * 1_000;
            assert_eq!(
                table.handle_heartbeat(at, peer, beat(uptime)),
                HeartbeatOutcome::Refreshed
            );
        }
        // Cut off again for 4 s (not long enough to expire): that backlog
        // is honest too.
        let healed = LocalMicros(29 * s);
        for uptime in (26..=29).map(|k| k * 1_000) {
            assert_eq!(
                table.handle_heartbeat(healed, peer, beat(uptime)),
                HeartbeatOutcome::Refreshed,
                "{uptime}"
            );
        }
        assert_eq!(table.members().next().unwrap().uptime_ms, 29_000);
        // Uptime running ahead of this node's clock is still a flood.
        assert_eq!(
            table.handle_heartbeat(healed, peer, beat(40_000)),
            HeartbeatOutcome::Flood
        );
    }

    #[test]
    fn a_member_silent_while_connected_is_reported_stalled_once_per_silence() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        let peer = PeerId::random();
        let s = 1_000_000;
        table.handle_heartbeat(LocalMicros(0), peer, heartbeat("a"));
        assert_eq!(table.poll_timeout(), Some(LocalMicros(3 * s + 1)));
        assert!(table.poll_stalled(LocalMicros(3 * s)).is_empty());
        assert_eq!(table.poll_stalled(LocalMicros(3 * s + 1)), vec![peer]);
        assert!(table.poll_stalled(LocalMicros(4 * s)).is_empty());
        assert_eq!(table.poll_timeout(), Some(LocalMicros(5 * s + 1)));
        // Heard again: a new silence is reported again.
        let beat = Heartbeat {
            uptime_ms: 4_000,
            ..heartbeat("a")
        };
        table.handle_heartbeat(LocalMicros(4 * s), peer, beat);
        assert_eq!(table.poll_stalled(LocalMicros(7 * s + 1)), vec![peer]);
    }

    #[test]
    fn table_is_bounded() {
        let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
        for _ in 0..MAX_MEMBERS {
            table.handle_heartbeat(LocalMicros(0), PeerId::random(), heartbeat("x"));
        }
        assert_eq!(
            table.handle_heartbeat(LocalMicros(0), PeerId::random(), heartbeat("x")),
            HeartbeatOutcome::Full
        );
    }

    #[test]
    fn bad_heartbeats_are_rejected() {
        let mut wrong_version = heartbeat("a");
        wrong_version.version = 2;
        assert!(matches!(
            Heartbeat::decode(&wrong_version.encode().unwrap()),
            Err(WireError::UnknownVersion { found: 2, .. })
        ));
        let long = heartbeat(&"n".repeat(MAX_NAME_LEN + 1));
        assert!(matches!(
            Heartbeat::decode(&long.encode().unwrap()),
            Err(WireError::Invalid(_))
        ));
        let mut inflated = heartbeat("a");
        inflated.status.roles.term = u64::MAX;
        assert!(matches!(
            Heartbeat::decode(&inflated.encode().unwrap()),
            Err(WireError::Invalid(_))
        ));
        let reversed = heartbeat("al\u{202E}ahp");
        assert_eq!(
            Heartbeat::decode(&reversed.encode().unwrap()).unwrap().name,
            "alahp"
        );
        assert!(matches!(
            Heartbeat::decode(&[0xff; 10]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Heartbeat::decode(&vec![0u8; MAX_GOSSIP_BYTES + 1]),
            Err(WireError::TooLarge { .. })
        ));
        let good = heartbeat("kitchen");
        assert_eq!(Heartbeat::decode(&good.encode().unwrap()).unwrap(), good);
    }

    fn flash(swarm_us: i64) -> PlayoutFlash {
        PlayoutFlash {
            track: 1,
            frame: 100,
            swarm_us,
            error_frames: 0,
        }
    }

    #[test]
    fn playout_reports_are_bounded_and_checked() {
        let mut good = heartbeat("den");
        good.status.playout = Playout {
            volume_permille: Some(800),
            flashes: (0..MAX_PLAYOUT_FLASHES as i64).map(flash).collect(),
        };
        assert_eq!(Heartbeat::decode(&good.encode().unwrap()).unwrap(), good);

        let mut too_many = good.clone();
        too_many.status.playout.flashes.push(flash(1000));
        let mut unordered = good.clone();
        unordered.status.playout.flashes.swap(0, 1);
        let mut repeated = good.clone();
        repeated.status.playout.flashes[1].swarm_us = 0;
        let mut loud = good.clone();
        loud.status.playout.volume_permille = Some(MAX_VOLUME_PERMILLE + 1);
        for bad in [too_many, unordered, repeated, loud] {
            assert!(
                matches!(
                    Heartbeat::decode(&bad.encode().unwrap()),
                    Err(WireError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = Heartbeat::decode(&bytes);
        }

        /// The heartbeat handler, fed what the decoder lets through from a
        /// few peers with arbitrary names, uptimes, versions and role
        /// claims at arbitrary spacing, never panics and keeps its table
        /// consistent: members are the peers heard within the timeout, with
        /// clean names and the latest accepted uptime.
        #[test]
        fn the_heartbeat_handler_survives_arbitrary_heartbeats(
            steps in proptest::collection::vec(
                (
                    0usize..5,
                    0i64..4_000_000,
                    proptest::prelude::any::<u64>(),
                    proptest::prelude::any::<String>(),
                    proptest::prelude::any::<(u64, u64, bool)>(),
                ),
                1..60,
            ),
        ) {
            let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
            let mut table = Membership::new(Duration::from_secs(5), Duration::from_secs(1));
            let mut now = LocalMicros(1_000_000);
            for (who, gap, uptime_ms, name, (version, term, claims)) in steps {
                now = now + gap;
                let mut status = NodeStatus { library_version: version, ..NodeStatus::default() };
                status.roles.term = term;
                if claims {
                    status.roles.coordinator = Some(peers[who]);
                }
                let sent = Heartbeat { version: HEARTBEAT_VERSION, name, uptime_ms, status, leaving: false };
                let Ok(bytes) = sent.encode() else { continue };
                let Ok(heartbeat) = Heartbeat::decode(&bytes) else { continue };
                let outcome = table.handle_heartbeat(now, peers[who], heartbeat.clone());
                if matches!(outcome, HeartbeatOutcome::Joined(_) | HeartbeatOutcome::Refreshed) {
                    let member = table.members().find(|m| m.peer == peers[who]).unwrap();
                    proptest::prop_assert_eq!(member.uptime_ms, heartbeat.uptime_ms);
                    proptest::prop_assert_eq!(member.last_seen, now);
                }
                let _ = table.handle_timeout(now);
                proptest::prop_assert!(table.members().count() <= peers.len());
                for member in table.members() {
                    proptest::prop_assert!(now - member.last_seen <= 5_000_000);
                    proptest::prop_assert!(!member.name.chars().any(char::is_control));
                    proptest::prop_assert!(table.started.contains_key(&member.peer));
                }
                proptest::prop_assert_eq!(table.started.len(), table.members().count());
                proptest::prop_assert!(table.stalled.iter().all(|p| table.is_member(p)));
            }
        }
    }
}
