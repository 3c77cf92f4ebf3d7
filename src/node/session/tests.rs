//! Unit and property tests of the session state machine.

use super::*;
use proptest::prelude::*;

const T1: TrackId = TrackId([1; 32]);
const T2: TrackId = TrackId([2; 32]);
const T3: TrackId = TrackId([3; 32]);

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
        duration_micros: Some(10_000_000),
        ..Session::default()
    }
}

fn publish(decision: Result<Decision, Refusal>) -> Session {
    match decision {
        Ok(Decision::Publish(s)) => s,
        other => panic!("{other:?}"),
    }
}

fn prepare(decision: Result<Decision, Refusal>) -> Session {
    match decision {
        Ok(Decision::Prepare(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn play_prepares_then_starts_far_enough_ahead() {
    let idle = Session::default();
    let request = ControlRequest::Play {
        track: T1,
        position_micros: 5_000,
    };
    let prepared = prepare(decide(&idle, 2, &request, 1_000_000, 0));
    let session = start(prepared, 1_100_000);
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
    let paused = publish(decide(&s, 1, &ControlRequest::Pause, 2_000_000, 0));
    assert_eq!(paused.state, PlaybackState::Paused);
    assert_eq!(
        paused.position_micros,
        1_000_000 + 2_000_000 + LEAD_MICROS as u64
    );
    assert_eq!(
        paused.start,
        2_000_000 + LEAD_MICROS,
        "paused at an instant"
    );
    assert_eq!(plan(Some(&s), &paused), Some(Action::Pause));
    let resumed = publish(decide(&paused, 1, &ControlRequest::Resume, 9_000_000, 0));
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
    let sought = publish(decide(
        &s,
        1,
        &ControlRequest::Seek {
            position_micros: 42,
        },
        100,
        0,
    ));
    assert_eq!(
        (sought.position_micros, sought.start),
        (42, 100 + LEAD_MICROS)
    );
    let next = prepare(decide(&s, 1, &ControlRequest::Next, 0, 0));
    assert_eq!((next.track, next.queue.as_slice()), (Some(T2), &[][..]));
    assert_eq!(next.history, vec![T1]);
    let empty = Session {
        queue: vec![],
        ..s.clone()
    };
    assert_eq!(
        decide(&empty, 1, &ControlRequest::Next, 0, 0),
        Err(Refusal::EmptyQueue)
    );
    let queued = publish(decide(
        &s,
        1,
        &ControlRequest::Queue { tracks: vec![T1] },
        0,
        0,
    ));
    assert_eq!(queued.queue, vec![T2, T1]);
    assert_eq!(plan(Some(&s), &queued), None, "queueing changes no sound");
    assert!(matches!(
        decide(
            &s,
            1,
            &ControlRequest::Seek {
                position_micros: 11_000_000
            },
            0,
            0
        ),
        Err(Refusal::PastTheEnd { .. })
    ));
}

#[test]
fn queue_insert_remove_move_and_clear() {
    let s = playing_at(0, 0);
    let q = publish(decide(
        &s,
        1,
        &ControlRequest::QueueInsert {
            tracks: vec![T3, T1],
            at: Some(0),
        },
        0,
        0,
    ));
    assert_eq!(q.queue, vec![T3, T1, T2]);
    let moved = publish(decide(
        &q,
        1,
        &ControlRequest::QueueMove { from: 0, to: 2 },
        0,
        0,
    ));
    assert_eq!(moved.queue, vec![T1, T2, T3]);
    let removed = publish(decide(
        &moved,
        1,
        &ControlRequest::QueueRemove { index: 1 },
        0,
        0,
    ));
    assert_eq!(removed.queue, vec![T1, T3]);
    assert_eq!(
        decide(&removed, 1, &ControlRequest::QueueRemove { index: 2 }, 0, 0),
        Err(Refusal::NoSuchEntry { index: 2, len: 2 })
    );
    let cleared = publish(decide(&removed, 1, &ControlRequest::QueueClear, 0, 0));
    assert!(cleared.queue.is_empty());
    let full = Session {
        queue: vec![T1; MAX_QUEUE],
        ..s.clone()
    };
    assert_eq!(
        decide(
            &full,
            1,
            &ControlRequest::QueueInsert {
                tracks: vec![T2],
                at: None
            },
            0,
            0
        ),
        Err(Refusal::QueueFull {
            max: MAX_QUEUE as u32
        })
    );
}

#[test]
fn the_end_of_a_track_starts_the_next_at_that_very_instant() {
    let s = playing_at(1_000, 2_000_000);
    // 8 s left: the track ends at 1_000 + 8_000_000.
    assert_eq!(s.ends_at(), Some(8_001_000));
    assert_eq!(advance(&s, 1, 8_000_999), None, "not yet");
    let next = advance(&s, 1, 8_001_000).unwrap();
    assert_eq!(
        (next.track, next.start, next.position_micros),
        (Some(T2), 8_001_000, 0)
    );
    assert!(next.queue.is_empty());
    assert_eq!(next.history, vec![T1]);
    assert_eq!(
        plan(Some(&s), &next),
        Some(Action::Follow {
            track: T2,
            at: 8_001_000
        })
    );
    // With the queue empty and no repeat, the end of the track stops.
    let last = Session {
        duration_micros: Some(3_000_000),
        ..next
    };
    let stopped = advance(&last, 1, 99_000_000).unwrap();
    assert_eq!(
        (stopped.state, stopped.track),
        (PlaybackState::Stopped, None)
    );
    assert_eq!(plan(Some(&last), &stopped), Some(Action::Stop));
}

#[test]
fn repeat_one_replays_and_repeat_all_cycles_the_queue() {
    let one = Session {
        repeat: RepeatMode::One,
        ..playing_at(0, 0)
    };
    let again = advance(&one, 1, 10_000_000).unwrap();
    assert_eq!((again.track, again.queue.clone()), (Some(T1), vec![T2]));
    assert_eq!(again.duration_micros, one.duration_micros);
    assert_eq!(
        plan(Some(&one), &again),
        Some(Action::Follow {
            track: T1,
            at: 10_000_000
        })
    );
    let all = Session {
        repeat: RepeatMode::All,
        ..playing_at(0, 0)
    };
    let cycled = advance(&all, 1, 10_000_000).unwrap();
    assert_eq!((cycled.track, cycled.queue), (Some(T2), vec![T1]));
}

#[test]
fn previous_restarts_a_track_well_under_way_and_else_goes_back() {
    let s = Session {
        history: vec![T3],
        ..playing_at(0, 0)
    };
    let back = prepare(decide(&s, 1, &ControlRequest::Prev, 1_000_000, 0));
    assert_eq!((back.track, back.queue.clone()), (Some(T3), vec![T1, T2]));
    assert!(back.history.is_empty());
    let restarted = publish(decide(&s, 1, &ControlRequest::Prev, 5_000_000, 0));
    assert_eq!((restarted.track, restarted.position_micros), (Some(T1), 0));
}

#[test]
fn play_all_replaces_the_queue_and_shuffle_keeps_its_tracks() {
    let s = playing_at(0, 0);
    let all = prepare(decide(
        &s,
        1,
        &ControlRequest::PlayAll {
            tracks: vec![T3, T1, T2],
        },
        0,
        0,
    ));
    assert_eq!((all.track, all.queue.clone()), (Some(T3), vec![T1, T2]));
    let long = Session {
        queue: (0..50u8).map(|i| TrackId([i; 32])).collect(),
        ..s.clone()
    };
    let shuffled = publish(decide(
        &long,
        1,
        &ControlRequest::Shuffle { on: true },
        0,
        7,
    ));
    assert!(shuffled.shuffle);
    assert_ne!(
        shuffled.queue, long.queue,
        "50 tracks stay in order 1 in 50!"
    );
    let mut sorted = shuffled.queue.clone();
    sorted.sort_by_key(|t| t.0);
    assert_eq!(sorted, long.queue);
}

#[test]
fn a_track_gone_leaves_the_queue_and_the_player_moves_on() {
    let s = Session {
        queue: vec![T2, T3, T2],
        ..playing_at(0, 0)
    };
    let without = publish(decide(
        &s,
        1,
        &ControlRequest::TrackGone { track: T2 },
        0,
        0,
    ));
    assert_eq!(without.queue, vec![T3]);
    assert_eq!(without.track, Some(T1));
    let moved_on = prepare(decide(
        &s,
        1,
        &ControlRequest::TrackGone { track: T1 },
        0,
        0,
    ));
    assert_eq!(moved_on.track, Some(T2));
    assert_eq!(moved_on.queue, vec![T3, T2]);
    let lone = Session {
        queue: vec![],
        ..s.clone()
    };
    let stopped = publish(decide(
        &lone,
        1,
        &ControlRequest::TrackGone { track: T1 },
        0,
        0,
    ));
    assert_eq!(
        (stopped.state, stopped.track),
        (PlaybackState::Stopped, None)
    );
}

#[test]
fn counters_saturate_instead_of_wrapping() {
    let s = Session {
        seq: u64::MAX,
        ..playing_at(0, 0)
    };
    let paused = publish(decide(&s, 1, &ControlRequest::Pause, 10, 0));
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
        ControlRequest::Next,
        ControlRequest::Prev,
        ControlRequest::Stop,
    ] {
        assert_eq!(
            decide(&idle, 1, &request, 0, 0),
            Err(Refusal::NothingPlaying),
            "{request:?}"
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

/// A command, the end of the track, or time passing.
#[derive(Debug, Clone)]
enum Input {
    Command(ControlRequest),
    TrackEnds,
    Wait(u32),
}

fn track() -> impl Strategy<Value = TrackId> {
    (0u8..6).prop_map(|i| TrackId([i; 32]))
}

fn input() -> impl Strategy<Value = Input> {
    let tracks = || proptest::collection::vec(track(), 0..40);
    prop_oneof![
        (track(), 0u64..12_000_000).prop_map(|(track, position_micros)| Input::Command(
            ControlRequest::Play {
                track,
                position_micros
            }
        )),
        tracks().prop_map(|tracks| Input::Command(ControlRequest::PlayAll { tracks })),
        Just(Input::Command(ControlRequest::Pause)),
        Just(Input::Command(ControlRequest::Resume)),
        Just(Input::Command(ControlRequest::Next)),
        Just(Input::Command(ControlRequest::Prev)),
        Just(Input::Command(ControlRequest::Stop)),
        (0u64..12_000_000)
            .prop_map(|position_micros| Input::Command(ControlRequest::Seek { position_micros })),
        any::<bool>().prop_map(|on| Input::Command(ControlRequest::Shuffle { on })),
        prop_oneof![
            Just(RepeatMode::Off),
            Just(RepeatMode::One),
            Just(RepeatMode::All)
        ]
        .prop_map(|mode| Input::Command(ControlRequest::Repeat { mode })),
        (
            proptest::collection::vec(track(), 0..300),
            proptest::option::of(0u32..600)
        )
            .prop_map(|(tracks, at)| Input::Command(ControlRequest::QueueInsert { tracks, at })),
        (0u32..40).prop_map(|index| Input::Command(ControlRequest::QueueRemove { index })),
        (0u32..40, 0u32..40)
            .prop_map(|(from, to)| Input::Command(ControlRequest::QueueMove { from, to })),
        Just(Input::Command(ControlRequest::QueueClear)),
        track().prop_map(|track| Input::Command(ControlRequest::TrackGone { track })),
        Just(Input::TrackEnds),
        (0u32..20_000_000).prop_map(Input::Wait),
    ]
}

/// Every track is 10 s long, as the driver would fill in.
fn with_length(mut session: Session) -> Session {
    if session.track.is_some() && session.duration_micros.is_none() {
        session.duration_micros = Some(10_000_000);
    }
    session
}

/// Tracks by how many times each appears.
fn counts(tracks: &[TrackId]) -> std::collections::BTreeMap<u8, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for t in tracks {
        *counts.entry(t.0[0]).or_default() += 1;
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random command sequences keep the machine's invariants.
    #[test]
    fn random_inputs_keep_the_invariants(
        inputs in proptest::collection::vec(input(), 1..60),
        term in 1u64..4,
    ) {
        let mut session = Session::default();
        let mut now: i64 = 1_000_000;
        for (n, input) in inputs.into_iter().enumerate() {
            let before = session.clone();
            let next = match &input {
                Input::Wait(micros) => {
                    now += i64::from(*micros);
                    None
                }
                Input::TrackEnds => {
                    if let Some(ends) = session.ends_at() {
                        now = now.max(ends);
                    }
                    advance(&session, term, now)
                }
                Input::Command(request) => match decide(&session, term, request, now, n as u64) {
                    Ok(Decision::Publish(s)) => Some(s),
                    Ok(Decision::Prepare(s)) => Some(start(s, now)),
                    Err(refusal) => {
                        // A refusal is a reason, never a crash.
                        prop_assert!(!refusal.to_string().is_empty());
                        None
                    }
                },
            };
            let Some(next) = next else { continue };
            let next = with_length(next);
            // Counters only grow.
            prop_assert!(next == before || next.is_newer_than(&before), "{input:?}");
            prop_assert!(next.term >= before.term && next.seq >= before.seq);
            // Bounded, consistent, and fit for the wire.
            prop_assert!(next.queue.len() <= MAX_QUEUE);
            prop_assert!(next.history.len() <= MAX_HISTORY);
            prop_assert!(next.state == PlaybackState::Stopped || next.track.is_some());
            prop_assert_eq!(Session::decode(&next.encode().unwrap()).unwrap(), next.clone());
            // One plan, for one track at a time.
            let action = plan(Some(&before), &next);
            if let Some(Action::Play { track, .. } | Action::Follow { track, .. }) = action {
                prop_assert_eq!(Some(track), next.track);
            }
            // While playing the same track with no command that moves it,
            // the position never goes back.
            let moves = matches!(
                input,
                Input::TrackEnds
                    | Input::Command(
                        ControlRequest::Seek { .. }
                            | ControlRequest::Prev
                            | ControlRequest::Next
                            | ControlRequest::Play { .. }
                            | ControlRequest::PlayAll { .. }
                            | ControlRequest::Stop
                            | ControlRequest::TrackGone { .. }
                    )
            );
            if !moves && before.track == next.track && before.state != PlaybackState::Stopped {
                prop_assert!(
                    next.position_at(now + 500_000) >= before.position_at(now),
                    "{input:?}: {} then {}", before.position_at(now), next.position_at(now + 500_000)
                );
            }
            // Queue edits and shuffles keep the tracks; only their order changes.
            if let Input::Command(
                ControlRequest::QueueMove { .. } | ControlRequest::Shuffle { .. },
            ) = input
            {
                prop_assert_eq!(counts(&next.queue), counts(&before.queue));
            }
            // The end of a playing track starts its successor exactly then.
            if let Input::TrackEnds = input
                && let Some(track) = next.track
            {
                prop_assert_eq!(Some(next.start), before.ends_at());
                prop_assert_eq!(Some(track), before.successor());
            }
            session = next;
        }
    }
}

fn live_source() -> firefly_swarm::LiveRef {
    firefly_swarm::LiveRef {
        origin: firefly_swarm::PeerId::random().to_base58(),
        name: "radio".into(),
        s0: 0,
        rate: 48_000,
        channels: 2,
        block_frames: 960,
        buffer_micros: 400_000,
        codec: "flac".into(),
    }
}

#[test]
fn a_live_source_plays_until_a_command_moves_playback() {
    let s = playing_at(0, 0);
    let source = live_source();
    let live = publish(decide(
        &s,
        1,
        &ControlRequest::PlayLive {
            source: source.clone(),
        },
        1_000_000,
        0,
    ));
    assert_eq!(live.live.as_ref(), Some(&source));
    assert_eq!((live.track, live.state), (None, PlaybackState::Playing));
    assert_eq!(live.history, vec![T1]);
    assert_eq!(live.queue, vec![T2], "the queue stays");
    assert!(
        Session::decode(&live.encode().unwrap()).is_ok(),
        "a valid wire session"
    );
    // The live module plays it, not the driver's plan.
    assert_eq!(plan(Some(&s), &live), None);
    // Queue changes leave it playing.
    let queued = publish(decide(
        &live,
        1,
        &ControlRequest::Queue { tracks: vec![T3] },
        2_000_000,
        0,
    ));
    assert_eq!(queued.live.as_ref(), Some(&source));
    // A pause ends it: a live stream cannot be paused.
    let paused = publish(decide(&queued, 1, &ControlRequest::Pause, 3_000_000, 0));
    assert_eq!(
        (paused.live.as_ref(), paused.state),
        (None, PlaybackState::Stopped)
    );
    assert_eq!(plan(Some(&queued), &paused), Some(Action::Stop));
    // A play of a track replaces it.
    let played = prepare(decide(
        &queued,
        1,
        &ControlRequest::Play {
            track: T3,
            position_micros: 0,
        },
        3_000_000,
        0,
    ));
    assert_eq!(played.live, None);
    assert_eq!(played.track, Some(T3));
    // A saved snapshot does not keep a live stream.
    let saved = crate::node::persist::snapshot(&queued, 5_000_000);
    assert_eq!((saved.live, saved.state), (None, PlaybackState::Stopped));
}
