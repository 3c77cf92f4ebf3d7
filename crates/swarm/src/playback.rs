//! The playback session gossiped on `firefly/playback/1`.
//!
//! The coordinator publishes its authoritative [`Session`] on every change
//! (and again every few seconds, so late joiners learn it): the term it
//! coordinates in, a change counter, the queue, the track, and the anchor
//! "position `position_micros` sounds at swarm instant `start`". Every node
//! derives what to play from it. This module holds the wire type, its checks
//! and [`handle_gossip`], which says what an arriving session comes to; the
//! event loop (`event_loop::playback`) publishes and delivers them
//! ([`crate::Client::publish_session`], [`crate::Event::Session`]). What a
//! node *does* with a session is the node's business.

use crate::status::{MAX_COUNTER, PlaybackState};
use crate::wire::{self, MAX_GOSSIP_BYTES, WireError};
use firefly_library::TrackId;
use libp2p::gossipsub::MessageAcceptance;
use serde::{Deserialize, Serialize};

/// The gossipsub topic sessions travel on.
pub const PLAYBACK_TOPIC: &str = "firefly/playback/1";
/// The session message version this node speaks.
pub const SESSION_VERSION: u16 = 1;
/// Longest queue a session may carry.
pub const MAX_QUEUE: usize = 512;
/// Most tracks a session remembers having played (for "previous").
pub const MAX_HISTORY: usize = 64;

/// What happens at the end of a track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepeatMode {
    /// The queue plays once; its end stops playback.
    #[default]
    Off,
    /// The current track plays again and again.
    One,
    /// A finished track goes to the back of the queue.
    All,
}

/// The coordinator's authoritative playback session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Message version ([`SESSION_VERSION`]).
    pub version: u16,
    /// The coordinator's term when it made this session.
    pub term: u64,
    /// Changes made to the session (orders sessions within a term and across
    /// a failover, which carries it on).
    pub seq: u64,
    /// Tracks to play after the current one.
    pub queue: Vec<TrackId>,
    /// The current track, if any.
    pub track: Option<TrackId>,
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Swarm instant (µs) at which `position_micros` sounds (or sounded).
    pub start: i64,
    /// Position in the track at `start`, µs (for a pause: where it holds).
    pub position_micros: u64,
    /// The current track's length, µs, if known: while it plays, the
    /// successor ([`Session::successor`]) starts at `start` + this −
    /// `position_micros`, gaplessly.
    #[serde(default)]
    pub duration_micros: Option<u64>,
    /// Whether shuffle is on (the queue was shuffled when it was turned on).
    #[serde(default)]
    pub shuffle: bool,
    /// What happens at the end of a track.
    #[serde(default)]
    pub repeat: RepeatMode,
    /// Tracks played before the current one, the latest last (at most
    /// [`MAX_HISTORY`]).
    #[serde(default)]
    pub history: Vec<TrackId>,
    /// The live source played instead of a track, if any (`track` is then
    /// `None`; a live source cannot be paused or sought).
    #[serde(default)]
    pub live: Option<crate::live::LiveRef>,
    /// The zone this session plays in (only that zone's members apply it);
    /// the default zone in older sessions.
    #[serde(default)]
    pub zone: crate::zones::ZoneId,
}

impl Session {
    /// Where the track is at swarm instant `at`, µs.
    pub fn position_at(&self, at: i64) -> u64 {
        match self.state {
            PlaybackState::Playing if at > self.start => self
                .position_micros
                .saturating_add(u64::try_from(at - self.start).unwrap_or(0)),
            _ => self.position_micros,
        }
    }

    /// The track that follows the current one when it ends: itself under
    /// [`RepeatMode::One`], else the queue's head, else (under
    /// [`RepeatMode::All`]) itself again.
    pub fn successor(&self) -> Option<TrackId> {
        let track = self.track?;
        match self.repeat {
            RepeatMode::One => Some(track),
            RepeatMode::All => Some(self.queue.first().copied().unwrap_or(track)),
            RepeatMode::Off => self.queue.first().copied(),
        }
    }

    /// The swarm instant the current track ends, while it plays and its
    /// length is known.
    pub fn ends_at(&self) -> Option<i64> {
        if self.state != PlaybackState::Playing {
            return None;
        }
        // A track of no length has no end to schedule from.
        let left = self
            .duration_micros
            .filter(|d| *d > 0)?
            .saturating_sub(self.position_micros);
        Some(
            self.start
                .saturating_add(i64::try_from(left).unwrap_or(i64::MAX)),
        )
    }

    /// Whether `self` is newer than `other` (term first, then change counter).
    pub fn is_newer_than(&self, other: &Session) -> bool {
        (self.term, self.seq) > (other.term, other.seq)
    }

    /// Encodes the session for gossip.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        wire::encode(self)
    }

    /// Decodes and checks a session from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let session: Session = wire::decode(bytes, MAX_GOSSIP_BYTES)?;
        wire::check_version(session.version, SESSION_VERSION)?;
        if session.history.len() > MAX_HISTORY {
            return Err(WireError::Invalid(format!(
                "history of {} tracks is longer than {MAX_HISTORY}",
                session.history.len()
            )));
        }
        if session.queue.len() > MAX_QUEUE {
            return Err(WireError::Invalid(format!(
                "queue of {} tracks is longer than {MAX_QUEUE}",
                session.queue.len()
            )));
        }
        if session.term > MAX_COUNTER || session.seq > MAX_COUNTER {
            return Err(WireError::Invalid(format!(
                "term {} or seq {} is above {MAX_COUNTER}",
                session.term, session.seq
            )));
        }
        if let Some(live) = &session.live {
            live.check()?;
        }
        if session.state != PlaybackState::Stopped
            && session.track.is_none()
            && session.live.is_none()
        {
            return Err(WireError::Invalid(
                "playing or paused without a track".into(),
            ));
        }
        Ok(session)
    }
}

/// What a session gossiped by a peer comes to ([`handle_gossip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionOutcome {
    /// A member's well-formed session, for the node (which keeps only its
    /// coordinator's).
    Accepted(Box<Session>),
    /// Well-formed, but its author is not a member: not kept, not forwarded.
    NotMember,
    /// Not a valid session (the sender is to be penalized).
    Malformed(WireError),
}

impl SessionOutcome {
    /// What gossipsub should do with the message.
    pub(crate) fn acceptance(&self) -> MessageAcceptance {
        match self {
            Self::Accepted(_) => MessageAcceptance::Accept,
            Self::NotMember => MessageAcceptance::Ignore,
            Self::Malformed(_) => MessageAcceptance::Reject,
        }
    }
}

/// Takes a session as it arrived on [`PLAYBACK_TOPIC`] from an author that
/// is a member or not.
pub(crate) fn handle_gossip(from_member: bool, bytes: &[u8]) -> SessionOutcome {
    match Session::decode(bytes) {
        Ok(_) if !from_member => SessionOutcome::NotMember,
        Ok(session) => SessionOutcome::Accepted(Box::new(session)),
        Err(err) => SessionOutcome::Malformed(err),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn playing() -> Session {
        Session {
            version: SESSION_VERSION,
            term: 2,
            seq: 5,
            queue: vec![TrackId([1; 32])],
            track: Some(TrackId([2; 32])),
            state: PlaybackState::Playing,
            start: 1_000_000,
            position_micros: 3_000_000,
            ..Session::default()
        }
    }

    #[test]
    fn round_trips_and_positions_follow_the_anchor() {
        let s = playing();
        assert_eq!(Session::decode(&s.encode().unwrap()).unwrap(), s);
        assert_eq!(s.position_at(500_000), 3_000_000);
        assert_eq!(s.position_at(1_250_000), 3_250_000);
        let paused = Session {
            state: PlaybackState::Paused,
            ..s.clone()
        };
        assert_eq!(paused.position_at(9_000_000), 3_000_000);
        assert!(
            Session {
                seq: 6,
                ..s.clone()
            }
            .is_newer_than(&s)
        );
        assert!(
            Session {
                term: 3,
                seq: 0,
                ..s.clone()
            }
            .is_newer_than(&s)
        );
    }

    #[test]
    fn bad_sessions_are_refused() {
        let wrong_version = Session {
            version: 9,
            ..playing()
        };
        assert!(matches!(
            Session::decode(&wrong_version.encode().unwrap()),
            Err(WireError::UnknownVersion { .. })
        ));
        let trackless = Session {
            track: None,
            ..playing()
        };
        assert!(Session::decode(&trackless.encode().unwrap()).is_err());
        let long = Session {
            queue: vec![TrackId([0; 32]); MAX_QUEUE + 1],
            ..playing()
        };
        assert!(Session::decode(&long.encode().unwrap()).is_err());
        assert!(Session::decode(b"\xff\x00garbage").is_err());
        proptest::proptest!(|(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048))| {
            let _ = Session::decode(&bytes);
        });
        for inflated in [
            Session {
                term: u64::MAX,
                ..playing()
            },
            Session {
                seq: MAX_COUNTER + 1,
                ..playing()
            },
        ] {
            assert!(matches!(
                Session::decode(&inflated.encode().unwrap()),
                Err(WireError::Invalid(_))
            ));
        }
    }
}
