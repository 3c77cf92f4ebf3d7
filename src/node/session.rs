//! The playback session state machine, sans-IO.
//!
//! Two halves, both pure functions of plain data and `now` (swarm µs):
//!
//! - the coordinator's: [`decide`] turns a command ([`ControlRequest`]) and
//!   the current [`Session`] into a [`Decision`] — publish a new session
//!   anchored far enough ahead ([`LEAD_MICROS`]) to reach every node, or first
//!   *prepare* a new track on every node and [`start`] it once they answered;
//! - every node's: [`plan`] compares the session it last applied with a newer
//!   one and says what its player must do ([`Action`]). A session that moves
//!   nothing audible (a failover re-publishing the same anchor under a new
//!   term) plans nothing, so the music has no gap. A node that joins late
//!   plays the same anchor and the player starts it at the current position.
//!
//! What it is not: networking or audio; `driver` does both.

use firefly_library::TrackId;
use firefly_swarm::playback::SESSION_VERSION;
use firefly_swarm::{ControlRequest, MAX_COUNTER, PlaybackState, Session};

/// How far ahead of "now" a change is anchored, µs: enough for gossip to
/// reach every node and for its player to have audio decoded.
pub(crate) const LEAD_MICROS: i64 = 100_000;

/// What the coordinator does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Publish this session (and apply it).
    Publish(Session),
    /// Prepare `track` on every node, then [`start`] it at `position_micros`
    /// with this queue.
    Prepare {
        /// The track.
        track: TrackId,
        /// Where to start, µs.
        position_micros: u64,
        /// The queue after the track starts.
        queue: Vec<TrackId>,
    },
}

/// Why the coordinator refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CommandError {
    /// Pause, resume or seek with nothing loaded.
    #[error("nothing is playing")]
    NothingPlaying,
    /// Next with an empty queue.
    #[error("the queue is empty")]
    EmptyQueue,
    /// The queue would grow past its bound.
    #[error("the queue is full ({max} tracks)")]
    QueueFull {
        /// The bound.
        max: usize,
    },
    /// A prepare sent to the coordinator as if it were a command.
    #[error("not a playback command")]
    NotACommand,
}

/// The change counter after `seq`: one step, never past [`MAX_COUNTER`]
/// (peers refuse larger ones) and never wrapping.
pub(crate) fn next_seq(seq: u64) -> u64 {
    seq.saturating_add(1).min(MAX_COUNTER)
}

/// Decides what command `request` does to `current` at swarm instant `now`.
/// The returned session (if any) is `current`'s successor in `term`.
pub(crate) fn decide(
    current: &Session,
    term: u64,
    request: &ControlRequest,
    now: i64,
) -> Result<Decision, CommandError> {
    let at = now.saturating_add(LEAD_MICROS);
    let next = |state, position_micros, start| Session {
        version: SESSION_VERSION,
        term: term.max(current.term),
        seq: next_seq(current.seq),
        queue: current.queue.clone(),
        track: current.track,
        state,
        start,
        position_micros,
    };
    match request {
        ControlRequest::Play {
            track,
            position_micros,
        } => Ok(Decision::Prepare {
            track: *track,
            position_micros: *position_micros,
            queue: current.queue.clone(),
        }),
        ControlRequest::Next => match current.queue.split_first() {
            Some((track, rest)) => Ok(Decision::Prepare {
                track: *track,
                position_micros: 0,
                queue: rest.to_vec(),
            }),
            None => Err(CommandError::EmptyQueue),
        },
        ControlRequest::Queue { tracks } => {
            let max = firefly_swarm::playback::MAX_QUEUE;
            if current.queue.len() + tracks.len() > max {
                return Err(CommandError::QueueFull { max });
            }
            let mut session = next(current.state, current.position_micros, current.start);
            session.queue.extend_from_slice(tracks);
            Ok(Decision::Publish(session))
        }
        _ if current.track.is_none() => match request {
            ControlRequest::Prepare { .. } => Err(CommandError::NotACommand),
            _ => Err(CommandError::NothingPlaying),
        },
        ControlRequest::Pause => {
            if current.state == PlaybackState::Paused {
                return Ok(Decision::Publish(current.clone()));
            }
            Ok(Decision::Publish(next(
                PlaybackState::Paused,
                current.position_at(at),
                at,
            )))
        }
        ControlRequest::Resume => {
            if current.state == PlaybackState::Playing {
                return Ok(Decision::Publish(current.clone()));
            }
            Ok(Decision::Publish(next(
                PlaybackState::Playing,
                current.position_micros,
                at,
            )))
        }
        ControlRequest::Seek { position_micros } => {
            let state = match current.state {
                PlaybackState::Stopped => PlaybackState::Playing,
                other => other,
            };
            Ok(Decision::Publish(next(state, *position_micros, at)))
        }
        _ => Err(CommandError::NotACommand),
    }
}

/// The session that starts a prepared track at swarm instant `now` + lead.
pub(crate) fn start(
    current: &Session,
    term: u64,
    track: TrackId,
    position_micros: u64,
    queue: Vec<TrackId>,
    now: i64,
) -> Session {
    Session {
        version: SESSION_VERSION,
        term: term.max(current.term),
        seq: next_seq(current.seq),
        queue,
        track: Some(track),
        state: PlaybackState::Playing,
        start: now.saturating_add(LEAD_MICROS),
        position_micros,
    }
}

/// What a node's player must do for a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Play `track` so that `position_micros` sounds at swarm instant `at`
    /// (joining in step if `at` has passed).
    Play {
        /// The track.
        track: TrackId,
        /// The anchor position, µs.
        position_micros: u64,
        /// The anchor instant, swarm µs.
        at: i64,
    },
    /// Pause.
    Pause,
    /// Stop.
    Stop,
}

/// What applying `new` after `applied` takes; `None` when `new` is not newer
/// or changes nothing audible.
pub(crate) fn plan(applied: Option<&Session>, new: &Session) -> Option<Action> {
    if let Some(old) = applied {
        if !new.is_newer_than(old) {
            return None;
        }
        let same_sound = old.track == new.track
            && old.state == new.state
            && (new.state != PlaybackState::Playing
                || (old.start, old.position_micros) == (new.start, new.position_micros));
        if same_sound {
            return None;
        }
    }
    match (new.state, new.track) {
        (PlaybackState::Playing, Some(track)) => Some(Action::Play {
            track,
            position_micros: new.position_micros,
            at: new.start,
        }),
        (PlaybackState::Paused, Some(_)) => Some(Action::Pause),
        _ if applied.is_none() => None,
        _ => Some(Action::Stop),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T1: TrackId = TrackId([1; 32]);
    const T2: TrackId = TrackId([2; 32]);

    fn playing_at(start: i64, position: u64) -> Session {
        Session {
            version: SESSION_VERSION,
            term: 1,
            seq: 3,
            queue: vec![T2],
            track: Some(T1),
            state: PlaybackState::Playing,
            start,
            position_micros: position,
        }
    }

    #[test]
    fn play_prepares_then_starts_far_enough_ahead() {
        let idle = Session::default();
        let request = ControlRequest::Play {
            track: T1,
            position_micros: 5_000,
        };
        let decision = decide(&idle, 2, &request, 1_000_000).unwrap();
        let Decision::Prepare {
            track,
            position_micros,
            queue,
        } = decision
        else {
            panic!("{decision:?}")
        };
        let session = start(&idle, 2, track, position_micros, queue, 1_100_000);
        assert_eq!(session.start, 1_100_000 + LEAD_MICROS);
        assert_eq!((session.term, session.seq), (2, 1));
        assert_eq!(
            plan(None, &session),
            Some(Action::Play {
                track: T1,
                position_micros: 5_000,
                at: 1_100_000 + LEAD_MICROS
            })
        );
    }

    #[test]
    fn pause_holds_the_position_at_the_anchor_and_resume_continues_from_it() {
        let s = playing_at(0, 1_000_000);
        let Decision::Publish(paused) = decide(&s, 1, &ControlRequest::Pause, 2_000_000).unwrap()
        else {
            panic!()
        };
        assert_eq!(paused.state, PlaybackState::Paused);
        assert_eq!(
            paused.position_micros,
            1_000_000 + 2_000_000 + LEAD_MICROS as u64
        );
        assert_eq!(plan(Some(&s), &paused), Some(Action::Pause));
        let Decision::Publish(resumed) =
            decide(&paused, 1, &ControlRequest::Resume, 9_000_000).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            plan(Some(&paused), &resumed),
            Some(Action::Play {
                track: T1,
                position_micros: paused.position_micros,
                at: 9_000_000 + LEAD_MICROS
            })
        );
    }

    #[test]
    fn seek_next_and_queue() {
        let s = playing_at(0, 0);
        let Decision::Publish(sought) = decide(
            &s,
            1,
            &ControlRequest::Seek {
                position_micros: 42,
            },
            100,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (sought.position_micros, sought.start),
            (42, 100 + LEAD_MICROS)
        );
        assert_eq!(
            decide(&s, 1, &ControlRequest::Next, 0),
            Ok(Decision::Prepare {
                track: T2,
                position_micros: 0,
                queue: vec![]
            })
        );
        let empty = Session {
            queue: vec![],
            ..s.clone()
        };
        assert_eq!(
            decide(&empty, 1, &ControlRequest::Next, 0),
            Err(CommandError::EmptyQueue)
        );
        let Decision::Publish(queued) =
            decide(&s, 1, &ControlRequest::Queue { tracks: vec![T1] }, 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(queued.queue, vec![T2, T1]);
        assert_eq!(plan(Some(&s), &queued), None, "queueing changes no sound");
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let s = Session {
            seq: u64::MAX,
            ..playing_at(0, 0)
        };
        let Decision::Publish(paused) = decide(&s, 1, &ControlRequest::Pause, 10).unwrap() else {
            panic!()
        };
        assert_eq!(paused.seq, MAX_COUNTER);
        assert_eq!(next_seq(MAX_COUNTER - 1), MAX_COUNTER);
    }

    #[test]
    fn commands_without_a_track_are_refused() {
        let idle = Session::default();
        for request in [
            ControlRequest::Pause,
            ControlRequest::Resume,
            ControlRequest::Seek { position_micros: 1 },
        ] {
            assert_eq!(
                decide(&idle, 1, &request, 0),
                Err(CommandError::NothingPlaying)
            );
        }
    }

    #[test]
    fn a_failover_republishing_the_same_anchor_does_not_interrupt() {
        let s = playing_at(5_000, 0);
        let carried = Session {
            term: 2,
            seq: s.seq + 1,
            ..s.clone()
        };
        assert_eq!(plan(Some(&s), &carried), None);
        // Older sessions are ignored, whatever they say.
        let stale = Session {
            seq: 1,
            state: PlaybackState::Stopped,
            ..s.clone()
        };
        assert_eq!(plan(Some(&s), &stale), None);
        // A late joiner plays the same anchor (the player starts mid-track).
        assert_eq!(
            plan(None, &s),
            Some(Action::Play {
                track: T1,
                position_micros: 0,
                at: 5_000
            })
        );
    }
}
