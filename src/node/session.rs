//! The playback session state machine, sans-IO.
//!
//! Two halves, both pure functions of plain data and `now` (swarm µs):
//!
//! - the coordinator's: [`decide`] turns a command ([`ControlRequest`]) and
//!   the current [`Session`] into a [`Decision`] — publish a new session
//!   anchored far enough ahead ([`LEAD_MICROS`]) to reach every node, or first
//!   *prepare* a new track on every node and [`start`] it once they answered.
//!   [`advance`] is the input "the current track ends at its scheduled
//!   instant": the successor starts exactly then (gapless), or, at the end
//!   of the queue, playback stops. The queue, the history (for "previous"),
//!   shuffle and repeat live in the session, so every node shows them and a
//!   new coordinator carries them on.
//! - every node's: [`plan`] compares the session it last applied with a newer
//!   one and says what its player must do ([`Action`]). A session that moves
//!   nothing audible (a failover re-publishing the same anchor under a new
//!   term) plans nothing, so the music has no gap; the successor starting at
//!   the instant its predecessor ends is [`Action::Follow`], which a node
//!   already queued in its player and so leaves alone.
//!
//! Invariants every session made here keeps (checked by the property
//! tests): its `(term, seq)` only grows; the queue stays within
//! [`MAX_QUEUE`] and the history within [`MAX_HISTORY`]; playing or paused
//! means a track; and it passes the wire's checks ([`Session::decode`]).
//!
//! What it is not: networking or audio; `driver` does both.

use firefly_library::TrackId;
use firefly_swarm::playback::{MAX_HISTORY, MAX_QUEUE, SESSION_VERSION};
use firefly_swarm::{ControlRequest, MAX_COUNTER, PlaybackState, Refusal, RepeatMode, Session};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// How far ahead of "now" a change is anchored, µs: enough for gossip to
/// reach every node and for its player to have audio decoded (measured:
/// the session reaches a follower in a few ms on a LAN; decoding a seek
/// takes a few ms more), and inside the 150 ms from command to sound.
/// 100 ms was once too little on a loaded machine: one node of three
/// started a `next` one period late (a full test suite beside two builds).
pub(crate) const LEAD_MICROS: i64 = 120_000;

/// "Previous" past this far into a track restarts it instead, µs.
pub(crate) const PREV_RESTARTS_AFTER_MICROS: u64 = 3_000_000;

/// What the coordinator does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Publish this session (and apply it).
    Publish(Session),
    /// Prepare the session's track on every node, then [`start`] this
    /// session (its `start` is set then).
    Prepare(Session),
}

/// The change counter after `seq`: one step, never past [`MAX_COUNTER`]
/// (peers refuse larger ones) and never wrapping.
pub(crate) fn next_seq(seq: u64) -> u64 {
    seq.saturating_add(1).min(MAX_COUNTER)
}

/// `current`'s successor in `term`, otherwise unchanged.
fn successor_of(current: &Session, term: u64) -> Session {
    Session {
        version: SESSION_VERSION,
        term: term.max(current.term),
        seq: next_seq(current.seq),
        ..current.clone()
    }
}

/// Appends `track` to `history`, dropping the oldest past [`MAX_HISTORY`].
fn remember(history: &mut Vec<TrackId>, track: Option<TrackId>) {
    if let Some(track) = track {
        history.push(track);
        if history.len() > MAX_HISTORY {
            history.remove(0);
        }
    }
}

/// `next` switched to `track` playing from `position_micros` (its length
/// unknown until the driver fills it in); the track it leaves goes to the
/// history.
fn switch_to(next: &mut Session, track: TrackId, position_micros: u64, state: PlaybackState) {
    if next.track != Some(track) {
        remember(&mut next.history, next.track);
        next.duration_micros = None;
    }
    next.track = Some(track);
    next.position_micros = position_micros;
    next.state = state;
}

/// Decides what command `request` does to `current` at swarm instant `now`.
/// The returned session is `current`'s successor in `term`. `seed` drives
/// the shuffle.
pub(crate) fn decide(
    current: &Session,
    term: u64,
    request: &ControlRequest,
    now: i64,
    seed: u64,
) -> Result<Decision, Refusal> {
    let at = now.saturating_add(LEAD_MICROS);
    let mut next = successor_of(current, term);
    let full = || Refusal::QueueFull {
        max: MAX_QUEUE as u32,
    };
    if let Some(decision) = live_decision(&mut next, request, at) {
        return Ok(decision);
    }
    match request {
        ControlRequest::Play {
            track,
            position_micros,
        } => {
            switch_to(&mut next, *track, *position_micros, PlaybackState::Playing);
            Ok(Decision::Prepare(next))
        }
        ControlRequest::PlayAll { tracks } => {
            let Some((first, rest)) = tracks.split_first() else {
                return Err(Refusal::Invalid("no tracks to play".into()));
            };
            if rest.len() > MAX_QUEUE {
                return Err(full());
            }
            switch_to(&mut next, *first, 0, PlaybackState::Playing);
            next.queue = rest.to_vec();
            if next.shuffle {
                shuffle(&mut next.queue, seed);
            }
            Ok(Decision::Prepare(next))
        }
        ControlRequest::Next => {
            let Some(track) = current.track else {
                return Err(Refusal::NothingPlaying);
            };
            match next.queue.first().copied() {
                Some(head) => {
                    next.queue.remove(0);
                    if current.repeat == RepeatMode::All {
                        next.queue.push(track);
                    }
                    switch_to(&mut next, head, 0, PlaybackState::Playing);
                    Ok(Decision::Prepare(next))
                }
                // Nothing queued: under a repeat the track plays again.
                None if current.repeat != RepeatMode::Off => {
                    Ok(Decision::Publish(restart(next, at)))
                }
                None => Err(Refusal::EmptyQueue),
            }
        }
        ControlRequest::Prev => {
            if current.track.is_none() {
                return Err(Refusal::NothingPlaying);
            }
            let restart_it =
                current.position_at(now) > PREV_RESTARTS_AFTER_MICROS || current.history.is_empty();
            match next.history.pop() {
                Some(previous) if !restart_it => {
                    next.queue.insert(0, next.track.unwrap_or(previous));
                    next.queue.truncate(MAX_QUEUE);
                    next.track = Some(previous);
                    next.position_micros = 0;
                    next.duration_micros = None;
                    next.state = PlaybackState::Playing;
                    Ok(Decision::Prepare(next))
                }
                _ => Ok(Decision::Publish(restart(successor_of(current, term), at))),
            }
        }
        ControlRequest::Stop => {
            if current.track.is_none() {
                return Err(Refusal::NothingPlaying);
            }
            if current.state == PlaybackState::Stopped {
                return Ok(Decision::Publish(current.clone()));
            }
            next.state = PlaybackState::Stopped;
            next.position_micros = 0;
            next.start = at;
            Ok(Decision::Publish(next))
        }
        ControlRequest::Shuffle { on } => {
            if *on && !current.shuffle {
                shuffle(&mut next.queue, seed);
            }
            next.shuffle = *on;
            Ok(Decision::Publish(next))
        }
        ControlRequest::Repeat { mode } => {
            next.repeat = *mode;
            Ok(Decision::Publish(next))
        }
        ControlRequest::Queue { tracks } => insert(next, tracks, None),
        ControlRequest::QueueInsert { tracks, at } => insert(next, tracks, *at),
        ControlRequest::QueueRemove { index } => {
            let i = entry(&next.queue, *index)?;
            next.queue.remove(i);
            Ok(Decision::Publish(next))
        }
        ControlRequest::QueueMove { from, to } => {
            let from = entry(&next.queue, *from)?;
            let to = entry(&next.queue, *to)?;
            let track = next.queue.remove(from);
            next.queue.insert(to, track);
            Ok(Decision::Publish(next))
        }
        ControlRequest::QueueClear => {
            next.queue.clear();
            Ok(Decision::Publish(next))
        }
        ControlRequest::TrackGone { track } => {
            next.queue.retain(|t| t != track);
            next.history.retain(|t| t != track);
            if current.track != Some(*track) {
                return Ok(Decision::Publish(next));
            }
            // The current track left: on to the next one, as at its end,
            // but never the same track again.
            let state = current.state;
            let Some(head) = next.queue.first().copied() else {
                next.track = None;
                next.duration_micros = None;
                next.state = PlaybackState::Stopped;
                next.position_micros = 0;
                next.start = at;
                return Ok(Decision::Publish(next));
            };
            next.queue.remove(0);
            next.track = Some(head);
            next.duration_micros = None;
            next.position_micros = 0;
            if state == PlaybackState::Playing {
                Ok(Decision::Prepare(next))
            } else {
                next.state = PlaybackState::Paused;
                next.start = at;
                Ok(Decision::Publish(next))
            }
        }
        ControlRequest::Prepare { .. }
        | ControlRequest::Volume { .. }
        | ControlRequest::Place(_) => Err(Refusal::NotACommand),
        _ if current.track.is_none() => Err(Refusal::NothingPlaying),
        ControlRequest::Pause => {
            if current.state != PlaybackState::Playing {
                return Ok(Decision::Publish(current.clone()));
            }
            next.state = PlaybackState::Paused;
            next.position_micros = current.position_at(at);
            next.start = at;
            Ok(Decision::Publish(next))
        }
        ControlRequest::Resume => {
            if current.state == PlaybackState::Playing {
                return Ok(Decision::Publish(current.clone()));
            }
            next.state = PlaybackState::Playing;
            next.start = at;
            Ok(Decision::Publish(next))
        }
        ControlRequest::Seek { position_micros } => {
            if let Some(duration) = current.duration_micros
                && *position_micros > duration
            {
                return Err(Refusal::PastTheEnd {
                    position_ms: position_micros / 1000,
                    duration_ms: duration / 1000,
                });
            }
            if next.state == PlaybackState::Stopped {
                next.state = PlaybackState::Playing;
            }
            next.position_micros = *position_micros;
            next.start = at;
            Ok(Decision::Publish(next))
        }
        _ => Err(Refusal::NotACommand),
    }
}

/// `next` playing its track again from the start at `at`.
/// What `request` does to a live session, or to any session for a
/// [`ControlRequest::PlayLive`]: a live source plays until a command moves
/// playback (pause, stop, seek, next, previous, resume end it: a live
/// stream cannot be paused or sought); queue and mode changes leave it
/// playing. `None`: decide as for a track (the live source is gone from
/// `next` when the command moves playback).
fn live_decision(next: &mut Session, request: &ControlRequest, at: i64) -> Option<Decision> {
    if let ControlRequest::PlayLive { source } = request {
        remember(&mut next.history, next.track.take());
        next.duration_micros = None;
        next.live = Some(source.clone());
        next.state = PlaybackState::Playing;
        next.position_micros = 0;
        next.start = at;
        return Some(Decision::Publish(next.clone()));
    }
    let moves_playback = matches!(
        request,
        ControlRequest::Play { .. }
            | ControlRequest::PlayAll { .. }
            | ControlRequest::Pause
            | ControlRequest::Resume
            | ControlRequest::Stop
            | ControlRequest::Seek { .. }
            | ControlRequest::Next
            | ControlRequest::Prev
            | ControlRequest::TrackGone { .. }
    );
    if next.live.is_none() || !moves_playback {
        return None;
    }
    next.live = None;
    next.state = PlaybackState::Stopped;
    next.position_micros = 0;
    next.start = at;
    match request {
        ControlRequest::Play { .. } | ControlRequest::PlayAll { .. } => None,
        _ => Some(Decision::Publish(next.clone())),
    }
}

fn restart(mut next: Session, at: i64) -> Session {
    next.state = PlaybackState::Playing;
    next.position_micros = 0;
    next.start = at;
    next
}

/// The queue index `index` names, if it is in the queue.
fn entry(queue: &[TrackId], index: u32) -> Result<usize, Refusal> {
    let len = queue.len();
    usize::try_from(index)
        .ok()
        .filter(|i| *i < len)
        .ok_or(Refusal::NoSuchEntry {
            index,
            len: len as u32,
        })
}

/// `next` with `tracks` inserted into its queue at `at` (none: appended).
fn insert(mut next: Session, tracks: &[TrackId], at: Option<u32>) -> Result<Decision, Refusal> {
    if next.queue.len().saturating_add(tracks.len()) > MAX_QUEUE {
        return Err(Refusal::QueueFull {
            max: MAX_QUEUE as u32,
        });
    }
    let len = next.queue.len();
    let at = at.map_or(len, |at| usize::try_from(at).unwrap_or(len).min(len));
    next.queue.splice(at..at, tracks.iter().copied());
    Ok(Decision::Publish(next))
}

/// Shuffles `queue` in place, reproducibly from `seed`.
fn shuffle(queue: &mut [TrackId], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    queue.shuffle(&mut rng);
}

/// The session that starts a prepared session at swarm instant `now` + lead.
pub(crate) fn start(mut prepared: Session, now: i64) -> Session {
    prepared.start = now.saturating_add(LEAD_MICROS);
    prepared
}

/// What the end of the current track does, once `now` has reached it: the
/// successor starts at the very instant the track ends (gapless), or at the
/// end of the queue playback stops. `None` while the track still plays, or
/// when its end is unknown.
pub(crate) fn advance(current: &Session, term: u64, now: i64) -> Option<Session> {
    let ends_at = current.ends_at()?;
    if now < ends_at {
        return None;
    }
    let mut next = successor_of(current, term);
    next.start = ends_at;
    next.position_micros = 0;
    match (current.repeat, current.successor()) {
        (_, None) => {
            remember(&mut next.history, current.track);
            next.track = None;
            next.duration_micros = None;
            next.state = PlaybackState::Stopped;
        }
        (RepeatMode::One, Some(_)) => {}
        (repeat, Some(track)) => {
            if !next.queue.is_empty() {
                next.queue.remove(0);
                if repeat == RepeatMode::All
                    && let Some(finished) = current.track
                {
                    next.queue.push(finished);
                }
            }
            if Some(track) != current.track {
                next.duration_micros = None;
            }
            remember(&mut next.history, current.track);
            next.track = Some(track);
        }
    }
    Some(next)
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
    /// `track` follows the applied one from its first frame at `at`, the
    /// instant the applied one ends: a player that queued it plays on.
    Follow {
        /// The track.
        track: TrackId,
        /// Its first frame's instant, swarm µs.
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
        if same_sound && old.live == new.live {
            return None;
        }
        if new.state == PlaybackState::Playing
            && new.position_micros == 0
            && old.ends_at() == Some(new.start)
            && new.track.is_some()
            && old.successor() == new.track
            && let Some(track) = new.track
        {
            return Some(Action::Follow {
                track,
                at: new.start,
            });
        }
    }
    if new.live.is_some() {
        // The live module plays it (`node::live`).
        return None;
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
mod tests;
