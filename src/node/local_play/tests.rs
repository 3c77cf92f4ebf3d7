//! Unit and property tests of the playback machine, driven by a model of
//! the driver ([`World`]): a library holding some tracks, downloads that
//! finish or fail when the test says, and a player with one track and one
//! queued successor.

use super::*;
use firefly_swarm::{RepeatMode, playback::SESSION_VERSION};
use proptest::prelude::*;

const T1: TrackId = TrackId([1; 32]);
const T2: TrackId = TrackId([2; 32]);
const T3: TrackId = TrackId([3; 32]);
const TRACKS: [TrackId; 3] = [T1, T2, T3];
const S: i64 = 1_000_000;
/// The swarm timeline's offset from the local clock in these tests.
const OFFSET: i64 = 7_000_000;

fn length_of(track: TrackId) -> u64 {
    // 2, 3 and 4 s: long enough to pause in, short enough to end often.
    (u64::from(track.0[0]) + 1) * 1_000_000
}

/// What the driver would do, modelled: it keeps every action, feeds back
/// what the I/O would find out, and checks the rules a driver relies on.
struct World {
    now: Moment,
    held: HashSet<TrackId>,
    /// Downloads the machine started and that have not ended.
    downloading: HashSet<TrackId>,
    /// The player: what it plays, and what it queued to follow.
    playing: Option<TrackId>,
    followed: Option<TrackId>,
    /// Every action carried out, in order (replies as numbers).
    log: Vec<Action<u32>>,
    /// Commands answered, by reply number.
    answered: Vec<u32>,
    /// Prepares are answered at once (`true`) or left to the test.
    prepare_at_once: bool,
    pending_prepares: Vec<(ControlRequest, TrackId, u32)>,
}

impl World {
    fn new(held: &[TrackId]) -> Self {
        Self {
            now: at(0),
            held: held.iter().copied().collect(),
            downloading: HashSet::new(),
            playing: None,
            followed: None,
            log: Vec::new(),
            answered: Vec::new(),
            prepare_at_once: true,
            pending_prepares: Vec::new(),
        }
    }

    /// Carries out the machine's actions as the driver does (what an action
    /// hands back is carried out before the next one); returns them.
    fn drain(&mut self, machine: &mut LocalPlay<u32>) -> Vec<Action<u32>> {
        let mut todo: VecDeque<Action<u32>> = VecDeque::new();
        let mut done = Vec::new();
        loop {
            let fresh: Vec<_> = std::iter::from_fn(|| machine.poll_action()).collect();
            for action in fresh.into_iter().rev() {
                todo.push_front(action);
            }
            let Some(action) = todo.pop_front() else {
                break;
            };
            self.carry_out(machine, &action);
            done.push(action);
        }
        done
    }

    fn carry_out(&mut self, machine: &mut LocalPlay<u32>, action: &Action<u32>) {
        let now = self.now;
        match action {
            Action::Measure { session, reply } => {
                let mut session = session.clone();
                session.duration_micros = session.track.map(length_of);
                machine.handle_measured(now, session, *reply);
            }
            Action::Answer { reply, .. } | Action::Ready { reply, .. } => {
                self.answered.push(*reply);
            }
            Action::PrepareMembers {
                request,
                track,
                reply,
                ..
            } => {
                if self.prepare_at_once {
                    machine.handle_prepare_done(now, request.clone(), *track, Ok(()), *reply, 7);
                } else {
                    self.pending_prepares
                        .push((request.clone(), *track, *reply));
                }
            }
            Action::Play { track, stream, .. } => {
                let outcome = if self.held.contains(track) {
                    PlayOutcome::Started
                } else if stream.is_some() {
                    PlayOutcome::Streaming
                } else {
                    PlayOutcome::Missing
                };
                if outcome != PlayOutcome::Missing {
                    self.playing = Some(*track);
                    // The player's play replaces what it queued to follow.
                    self.followed = None;
                }
                machine.handle_played(now, *track, outcome);
            }
            Action::Stream { track, .. } => {
                self.playing = Some(*track);
                self.followed = None;
                machine.handle_played(now, *track, PlayOutcome::Streaming);
            }
            Action::Follow { track, .. } => {
                if self.held.contains(track) {
                    self.followed = Some(*track);
                } else {
                    machine.handle_follow_failed(*track, true);
                }
            }
            Action::Unfollow => self.followed = None,
            Action::StopAt { .. } | Action::Silence => {
                self.playing = None;
                self.followed = None;
            }
            Action::Fetch(track) => {
                assert!(
                    self.downloading.insert(*track),
                    "a second download of a track under way"
                );
            }
            _ => {}
        }
        self.log.push(action.clone());
    }

    fn wait(&mut self, micros: i64) {
        self.now = Moment {
            local: self.now.local + micros,
            swarm: self.now.swarm + micros,
        };
    }
}

fn at(micros: i64) -> Moment {
    Moment {
        local: LocalMicros(micros),
        swarm: micros + OFFSET,
    }
}

fn plays(actions: &[Action<u32>]) -> Vec<TrackId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Play { track, .. } | Action::Stream { track, .. } => Some(*track),
            _ => None,
        })
        .collect()
}

fn fetches(actions: &[Action<u32>]) -> Vec<TrackId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch(track) => Some(*track),
            _ => None,
        })
        .collect()
}

/// A lone node that has become coordinator (term 1), its clock synced.
fn coordinator(world: &mut World) -> LocalPlay<u32> {
    let mut machine = LocalPlay::new(PeerId::random(), world.now.local);
    world.wait(3 * S);
    machine.handle_tick(world.now, &[], true);
    world.drain(&mut machine);
    assert!(machine.is_coordinator());
    machine
}

/// A node following `coordinator`, which claims the role at term 1.
fn follower(world: &mut World, coordinator: PeerId, synced: bool) -> LocalPlay<u32> {
    let mut machine = LocalPlay::new(PeerId::random(), world.now.local);
    world.wait(S);
    machine.handle_tick(world.now, &[claiming(coordinator, world.now)], synced);
    world.drain(&mut machine);
    assert_eq!(machine.roles().coordinator, Some(coordinator));
    machine
}

fn claiming(peer: PeerId, now: Moment) -> MemberView {
    MemberView {
        peer,
        started_at: LocalMicros(0),
        last_seen: now.local,
        view: RoleView {
            coordinator: Some(peer),
            term: 1,
        },
    }
}

fn playing(track: TrackId, seq: u64, start: i64, position: u64) -> Session {
    Session {
        version: SESSION_VERSION,
        term: 1,
        seq,
        track: Some(track),
        state: PlaybackState::Playing,
        start,
        position_micros: position,
        duration_micros: Some(length_of(track)),
        ..Session::default()
    }
}

#[test]
fn a_play_command_prepares_the_members_then_plays_gossips_and_answers() {
    let mut world = World::new(&[T1]);
    let mut machine = coordinator(&mut world);
    world.prepare_at_once = false;
    let play = ControlRequest::Play {
        track: T1,
        position_micros: 0,
    };
    machine.handle_command(world.now, play, 1, 0);
    let actions = world.drain(&mut machine);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::PrepareMembers {
                track: T1,
                term: 1,
                reply: 1,
                ..
            }]
        ),
        "{actions:?}"
    );
    assert!(
        machine.applied().is_none(),
        "nothing applied before the prepare"
    );
    // The prepare reports back later; the machine decides again then.
    world.wait(300_000);
    let (request, track, reply) = world.pending_prepares.remove(0);
    machine.handle_prepare_done(world.now, request, track, Ok(()), reply, 0);
    let actions = world.drain(&mut machine);
    assert_eq!(plays(&actions), vec![T1]);
    let applied = machine.applied().unwrap().clone();
    assert_eq!(applied.start, world.now.swarm + session::LEAD_MICROS);
    assert_eq!(applied.duration_micros, Some(length_of(T1)), "measured");
    let gossiped = actions
        .iter()
        .position(|a| matches!(a, Action::Gossip(s) if *s == applied));
    let answered = actions
        .iter()
        .position(|a| matches!(a, Action::Answer { reply: 1, result: Ok(s) } if *s == applied));
    assert!(gossiped.is_some() && answered > gossiped, "{actions:?}");
    assert_eq!(world.playing, Some(T1));
}

#[test]
fn a_refused_prepare_is_answered_with_its_refusal_and_applies_nothing() {
    let mut world = World::new(&[]);
    let mut machine = coordinator(&mut world);
    machine.handle_prepare_done(
        world.now,
        ControlRequest::Play {
            track: T2,
            position_micros: 0,
        },
        T2,
        Err(Refusal::NoHolder(T2)),
        4,
        0,
    );
    let actions = world.drain(&mut machine);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Answer {
                reply: 4,
                result: Err(Refusal::NoHolder(T2))
            }]
        ),
        "{actions:?}"
    );
    assert!(machine.applied().is_none());
}

#[test]
fn a_follower_forwards_commands_and_refuses_peers_commands() {
    let mut world = World::new(&[]);
    let mut machine = follower(&mut world, PeerId::random(), true);
    machine.handle_command(world.now, ControlRequest::Pause, 1, 0);
    machine.handle_request(world.now, PeerId::random(), ControlRequest::Next, 2, 0);
    let actions = world.drain(&mut machine);
    assert!(
        matches!(
            actions.as_slice(),
            [
                Action::Forward {
                    request: ControlRequest::Pause,
                    reply: 1,
                    ..
                },
                Action::Answer {
                    reply: 2,
                    result: Err(Refusal::NotCoordinator)
                }
            ]
        ),
        "{actions:?}"
    );
}

#[test]
fn a_command_for_another_zone_is_refused_by_the_coordinator_and_forwarded_by_the_api() {
    let mut world = World::new(&[T1]);
    let mut machine = coordinator(&mut world);
    let kitchen: ZoneId = "kitchen".parse().unwrap();
    let mine = ZoneId::default();
    let wrapped = |zone: &ZoneId| ControlRequest::InZone {
        zone: zone.clone(),
        command: Box::new(ControlRequest::Stop),
    };
    // From a peer: the coordinator of the default zone refuses the
    // kitchen's command, typed, and carries out its own zone's.
    machine.handle_request(world.now, PeerId::random(), wrapped(&kitchen), 1, 0);
    machine.handle_request(world.now, PeerId::random(), wrapped(&mine), 2, 0);
    // From the local API: the kitchen's command goes to the kitchen.
    machine.handle_zone_command(world.now, kitchen.clone(), ControlRequest::Pause, 3, 0);
    let actions = world.drain(&mut machine);
    let refused = actions.iter().any(|a| {
        matches!(a, Action::Answer { reply: 1, result: Err(Refusal::WrongZone { asked, mine: m }) }
            if *asked == kitchen && *m == mine)
    });
    assert!(refused, "{actions:?}");
    // Stop with nothing loaded: decided (refused as such), not as a wrong zone.
    let decided = actions.iter().any(|a| {
        matches!(
            a,
            Action::Answer {
                reply: 2,
                result: Err(Refusal::NothingPlaying) | Ok(_)
            }
        )
    });
    assert!(decided, "{actions:?}");
    let forwarded = actions.iter().any(|a| {
        matches!(a, Action::Forward { zone, request: ControlRequest::Pause, reply: 3 } if *zone == kitchen)
    });
    assert!(forwarded, "{actions:?}");
}

#[test]
fn a_session_already_applied_brings_no_action() {
    let mut world = World::new(&[T1]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let session = playing(T1, 1, world.now.swarm + 100_000, 0);
    machine.handle_session(world.now, boss, session.clone());
    assert_eq!(plays(&world.drain(&mut machine)), vec![T1]);
    machine.handle_session(world.now, boss, session.clone());
    let mut older = session;
    older.seq = 0;
    machine.handle_session(world.now, boss, older);
    let actions = world.drain(&mut machine);
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn a_session_from_anyone_but_the_coordinator_is_ignored() {
    let mut world = World::new(&[T1]);
    let mut machine = follower(&mut world, PeerId::random(), true);
    let mut session = playing(T1, 1, world.now.swarm, 0);
    session.term = 9;
    machine.handle_session(world.now, PeerId::random(), session);
    assert!(world.drain(&mut machine).is_empty());
    assert!(machine.applied().is_none());
}

#[test]
fn a_missing_track_is_fetched_and_watched_and_played_once_downloaded() {
    let mut world = World::new(&[]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let session = playing(T1, 1, world.now.swarm, 0);
    machine.handle_session(world.now, boss, session.clone());
    let actions = world.drain(&mut machine);
    assert_eq!(plays(&actions), vec![T1]);
    assert_eq!(fetches(&actions), vec![T1]);
    assert!(actions.iter().any(|a| matches!(a, Action::Watch(T1))));
    assert!(actions.iter().any(|a| matches!(a, Action::Silence)));
    assert!(actions.iter().any(
        |a| matches!(a, Action::Announce(NodeEvent::AwaitingDownload { track }) if *track == T1.to_hex())
    ));
    // A prepare for it now downloads nothing more.
    machine.handle_prepare(boss, T1, 5, &[], false);
    let actions = world.drain(&mut machine);
    assert!(fetches(&actions).is_empty(), "{actions:?}");
    world.wait(2 * S);
    world.held.insert(T1);
    world.downloading.remove(&T1);
    machine.handle_downloaded(world.now, T1);
    let actions = world.drain(&mut machine);
    let anchor = actions.iter().find_map(|a| match a {
        Action::Play {
            track: T1,
            position_micros,
            at,
            ..
        } => Some((*position_micros, *at)),
        _ => None,
    });
    // Joined in step: the session's own anchor (the player skips ahead).
    assert_eq!(anchor, Some((0, session.start)));
    assert_eq!(world.playing, Some(T1));
}

#[test]
fn a_failed_download_is_retried_while_the_session_still_plays_the_track() {
    let mut world = World::new(&[]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let session = playing(T1, 1, world.now.swarm, 0);
    machine.handle_session(world.now, boss, session.clone());
    world.drain(&mut machine);
    world.downloading.remove(&T1);
    machine.handle_fetch_failed(world.now, T1);
    assert!(world.drain(&mut machine).is_empty());
    let member = |w: &World| [claiming(boss, w.now)];
    // Not before the retry delay.
    world.wait(RETRY_PLAY_MICROS / 2);
    machine.handle_tick(world.now, &member(&world), true);
    assert!(plays(&world.drain(&mut machine)).is_empty());
    world.wait(RETRY_PLAY_MICROS / 2);
    machine.handle_tick(world.now, &member(&world), true);
    let actions = world.drain(&mut machine);
    assert_eq!(plays(&actions), vec![T1]);
    assert_eq!(fetches(&actions), vec![T1], "fetched again");
    // Once the session moves on, a failure is not retried.
    world.downloading.remove(&T1);
    let mut paused = session;
    paused.seq = 2;
    paused.state = PlaybackState::Paused;
    machine.handle_session(world.now, boss, paused);
    machine.handle_fetch_failed(world.now, T1);
    world.drain(&mut machine);
    world.wait(2 * RETRY_PLAY_MICROS);
    machine.handle_tick(world.now, &member(&world), true);
    let actions = world.drain(&mut machine);
    assert!(plays(&actions).is_empty() && fetches(&actions).is_empty());
}

#[test]
fn a_play_waits_for_the_clock_to_sync_and_a_large_step_replays() {
    let mut world = World::new(&[T1]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, false);
    machine.handle_session(world.now, boss, playing(T1, 1, world.now.swarm, 0));
    assert!(plays(&world.drain(&mut machine)).is_empty(), "deferred");
    machine.handle_clock_synced(world.now);
    assert_eq!(plays(&world.drain(&mut machine)), vec![T1]);
    machine.handle_clock_stepped(world.now, i64::try_from(STEP_REPLAY_MICROS).unwrap() - 1);
    assert!(plays(&world.drain(&mut machine)).is_empty(), "slewed away");
    machine.handle_clock_stepped(world.now, -(STEP_REPLAY_MICROS as i64));
    assert_eq!(plays(&world.drain(&mut machine)), vec![T1]);
}

#[test]
fn a_prepare_from_a_non_coordinator_is_refused_and_penalized_unless_it_claims_the_role() {
    let mut world = World::new(&[T1]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let (rogue, newcomer) = (PeerId::random(), PeerId::random());
    machine.handle_prepare(rogue, T1, 1, &[], true);
    machine.handle_prepare(newcomer, T1, 2, &[claiming(newcomer, world.now)], true);
    machine.handle_prepare(boss, T1, 3, &[], true);
    let actions = world.drain(&mut machine);
    let penalized: Vec<PeerId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Penalize { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(penalized, vec![rogue]);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Answer {
            reply: 2,
            result: Err(Refusal::NotCoordinator)
        }
    )));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Ready {
            reply: 3,
            has_track: true
        }
    )));
}

#[test]
fn a_prepared_download_streams_from_the_start_but_not_from_far_in() {
    let mut world = World::new(&[]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let pace = Throughput {
        rate: 4e6,
        ratio: 20.0,
    };
    machine.handle_prepare(boss, T1, 1, &[], false);
    machine.handle_prepared(T1, pace);
    let actions = world.drain(&mut machine);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PrepareStreaming {
            track: T1,
            reply: 1
        }
    )));
    machine.handle_session(world.now, boss, playing(T1, 1, world.now.swarm, 0));
    let actions = world.drain(&mut machine);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Play { track: T1, stream: Some(p), .. } if *p == pace)),
        "{actions:?}"
    );
    assert_eq!(world.playing, Some(T1));
    // T2 was prepared too, but the session starts it past what the prepare saw.
    machine.handle_prepared(T2, pace);
    let far = PREPARED_MAX_POSITION + 1;
    machine.handle_session(world.now, boss, playing(T2, 2, world.now.swarm, far));
    let actions = world.drain(&mut machine);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Play {
                track: T2,
                stream: None,
                ..
            }
        )),
        "{actions:?}"
    );
    // A watcher then finds it safe: streamed at the session's anchor.
    machine.handle_streamable(T2, pace, false);
    let actions = world.drain(&mut machine);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Stream { track: T2, position_micros, .. } if *position_micros == far
        )),
        "{actions:?}"
    );
    // Once it downloads, the stream plays on (no second play).
    world.held.insert(T2);
    machine.handle_downloaded(world.now, T2);
    assert!(plays(&world.drain(&mut machine)).is_empty());
}

#[test]
fn the_successor_is_queued_in_the_player_and_the_end_of_the_track_plays_on() {
    let mut world = World::new(&[T1, T2]);
    let mut machine = coordinator(&mut world);
    machine.handle_command(
        world.now,
        ControlRequest::PlayAll {
            tracks: vec![T1, T2],
        },
        1,
        0,
    );
    let actions = world.drain(&mut machine);
    assert_eq!(plays(&actions), vec![T1]);
    let ends = machine.applied().unwrap().ends_at().unwrap();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Follow { track: T2, at } if *at == ends)),
        "{actions:?}"
    );
    assert_eq!(world.followed, Some(T2));
    assert_eq!(machine.poll_timeout(), Some(ends));
    world.wait(ends - world.now.swarm);
    machine.handle_timeout(world.now);
    let actions = world.drain(&mut machine);
    assert!(plays(&actions).is_empty(), "queued already: {actions:?}");
    let applied = machine.applied().unwrap();
    assert_eq!((applied.track, applied.start), (Some(T2), ends));
    assert!(actions.iter().any(|a| matches!(a, Action::Gossip(_))));
    // The end of the queue stops.
    let ends = applied.ends_at().unwrap();
    world.wait(ends - world.now.swarm);
    machine.handle_timeout(world.now);
    world.drain(&mut machine);
    assert_eq!(machine.applied().unwrap().state, PlaybackState::Stopped);
    assert_eq!(machine.poll_timeout(), None);
}

#[test]
fn a_successor_the_node_lacks_is_fetched_before_the_boundary() {
    let mut world = World::new(&[T1]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let mut session = playing(T1, 1, world.now.swarm, 0);
    session.queue = vec![T3];
    machine.handle_session(world.now, boss, session);
    let actions = world.drain(&mut machine);
    assert_eq!(fetches(&actions), vec![T3]);
    assert_eq!(world.followed, None);
    world.held.insert(T3);
    world.downloading.remove(&T3);
    machine.handle_downloaded(world.now, T3);
    world.drain(&mut machine);
    assert_eq!(world.followed, Some(T3));
}

#[test]
fn a_new_coordinator_carries_the_session_on_under_its_term() {
    let mut world = World::new(&[T1]);
    let boss = PeerId::random();
    let mut machine = follower(&mut world, boss, true);
    let session = playing(T1, 5, world.now.swarm, 0);
    machine.handle_session(world.now, boss, session.clone());
    world.drain(&mut machine);
    // The coordinator falls silent; this node is elected.
    world.wait(3 * S);
    machine.handle_tick(world.now, &[], true);
    let actions = world.drain(&mut machine);
    assert!(machine.is_coordinator());
    assert!(plays(&actions).is_empty(), "no gap: {actions:?}");
    let carried = machine.applied().unwrap();
    assert_eq!((carried.term, carried.seq), (2, 6));
    assert_eq!((carried.start, carried.position_micros), (session.start, 0));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Gossip(s) if s == carried))
    );
}

/// Two nodes of a zone that each elected themselves tie; the lower id
/// wins. A person started music on the loser meanwhile: the winner, which
/// had none, carries the loser's session on once it yields, so the music
/// plays on. A winner with music of its own keeps it (a defined result).
#[test]
fn a_tie_between_two_self_elected_coordinators_keeps_the_losers_music() {
    for winner_plays in [false, true] {
        let mut world = World::new(&[T1, T2]);
        let (a, b) = {
            let (x, y) = (PeerId::random(), PeerId::random());
            (x.min(y), x.max(y))
        };
        let mut machine: LocalPlay<u32> = LocalPlay::new(a, world.now.local);
        world.wait(3 * S);
        machine.handle_tick(world.now, &[], true);
        world.drain(&mut machine);
        assert!(machine.is_coordinator());
        if winner_plays {
            let play = ControlRequest::Play {
                track: T2,
                position_micros: 0,
            };
            machine.handle_command(world.now, play, 1, 0);
            world.drain(&mut machine);
            assert_eq!(machine.applied().and_then(|s| s.track), Some(T2));
        }
        // B claims the role too (it elected itself): a tie, A keeps it.
        world.wait(S / 4);
        machine.handle_tick(world.now, &[claiming(b, world.now)], true);
        world.drain(&mut machine);
        assert!(machine.is_coordinator());
        let term = machine.roles().term;
        // B's session, playing T1, from before it yielded.
        let theirs = playing(T1, 3, world.now.swarm + 200_000, 0);
        machine.handle_session(world.now, b, theirs.clone());
        assert!(
            world.drain(&mut machine).is_empty(),
            "a rival's session is not applied"
        );
        // B yields: its heartbeat names A.
        world.wait(S / 4);
        let yielded = MemberView {
            view: RoleView {
                coordinator: Some(a),
                term,
            },
            ..claiming(b, world.now)
        };
        machine.handle_tick(world.now, std::slice::from_ref(&yielded), true);
        let actions = world.drain(&mut machine);
        let applied = machine.applied().unwrap().clone();
        if winner_plays {
            assert_eq!(applied.track, Some(T2), "{actions:?}");
            continue;
        }
        assert_eq!(applied.track, Some(T1), "{actions:?}");
        assert_eq!(applied.term, term);
        assert!(applied.seq > theirs.seq);
        assert_eq!(
            (applied.start, applied.position_micros),
            (theirs.start, theirs.position_micros),
            "the music plays on where it was"
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Gossip(s) if *s == applied)),
            "{actions:?}"
        );
        // Once only.
        world.wait(S / 4);
        machine.handle_tick(world.now, &[yielded], true);
        assert_eq!(machine.applied(), Some(&applied));
    }
}

#[test]
fn a_restored_session_is_announced_applied_and_not_stored_again() {
    let mut world = World::new(&[T1]);
    let mut machine: LocalPlay<u32> = LocalPlay::new(PeerId::random(), world.now.local);
    let mut restored = playing(T1, 0, 0, 1_500_000);
    restored.term = 0;
    restored.start = 0;
    restored.state = PlaybackState::Paused;
    machine.handle_restored(restored.clone());
    let actions = world.drain(&mut machine);
    assert!(matches!(
        actions.as_slice(),
        [Action::Announce(NodeEvent::SessionRestored { .. }), Action::Applied(s)] if *s == restored
    ));
    world.wait(S);
    for _ in 0..SAVE_TICKS {
        machine.handle_tick(world.now, &[], true);
    }
    let actions = world.drain(&mut machine);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Save(_))),
        "{actions:?}"
    );
}

// ---- property tests ----

#[derive(Debug, Clone)]
enum Step {
    Wait(u32),
    Tick,
    Command(ControlRequest),
    Downloaded(usize),
    FetchFailed(usize),
    Streamable(usize),
    ClockSynced,
    ClockStepped(i64),
    ClockStatus(bool),
    /// A follower gets an earlier session again.
    Replay(usize),
}

fn track() -> impl Strategy<Value = TrackId> {
    proptest::sample::select(TRACKS.to_vec())
}

fn command() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        track().prop_map(|track| ControlRequest::Play {
            track,
            position_micros: 0
        }),
        proptest::collection::vec(track(), 1..4)
            .prop_map(|tracks| ControlRequest::PlayAll { tracks }),
        Just(ControlRequest::Next),
        Just(ControlRequest::Prev),
        Just(ControlRequest::Pause),
        Just(ControlRequest::Resume),
        Just(ControlRequest::Stop),
        (0u64..2_000_000).prop_map(|position_micros| ControlRequest::Seek { position_micros }),
        proptest::collection::vec(track(), 1..3)
            .prop_map(|tracks| ControlRequest::Queue { tracks }),
        Just(ControlRequest::QueueClear),
        any::<bool>().prop_map(|on| ControlRequest::Shuffle { on }),
        prop_oneof![
            Just(RepeatMode::Off),
            Just(RepeatMode::One),
            Just(RepeatMode::All)
        ]
        .prop_map(|mode| ControlRequest::Repeat { mode }),
        track().prop_map(|track| ControlRequest::TrackGone { track }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u32..1_500_000).prop_map(Step::Wait),
        2 => Just(Step::Tick),
        4 => command().prop_map(Step::Command),
        1 => (0usize..3).prop_map(Step::Downloaded),
        1 => (0usize..3).prop_map(Step::FetchFailed),
        1 => (0usize..3).prop_map(Step::Streamable),
        1 => Just(Step::ClockSynced),
        1 => (-2_000i64..2_000).prop_map(Step::ClockStepped),
        1 => any::<bool>().prop_map(Step::ClockStatus),
        1 => (0usize..64).prop_map(Step::Replay),
    ]
}

/// Whether `request` may move the position or the track (so the position
/// may go back).
fn moves(request: &ControlRequest) -> bool {
    !matches!(
        request,
        ControlRequest::Pause
            | ControlRequest::Resume
            | ControlRequest::Queue { .. }
            | ControlRequest::QueueClear
            | ControlRequest::Shuffle { .. }
            | ControlRequest::Repeat { .. }
    )
}

/// What every step must keep, whatever the machine did.
struct Checks {
    /// (track, position at now) of the applied session while it played, last step.
    last_position: Option<(TrackId, u64)>,
    /// A failed download of the playing track to be tried again by this local instant.
    retry_due: Option<(TrackId, LocalMicros)>,
}

impl Checks {
    fn after(
        &mut self,
        machine: &LocalPlay<u32>,
        world: &World,
        step: &Step,
        moved: bool,
        actions: &[Action<u32>],
    ) -> Result<(), TestCaseError> {
        // One track at a time: at most one play per input, and what it
        // plays is the session's track.
        let played = plays(actions);
        prop_assert!(played.len() <= 1, "{played:?}");
        if let Some(track) = played.first() {
            let applied = machine.applied().and_then(|s| s.track);
            prop_assert_eq!(Some(*track), applied);
        }
        // Positions only move forward while the same track plays, unless a
        // command moved them.
        let now = world.now.swarm;
        let position = machine
            .applied()
            .filter(|s| s.state == PlaybackState::Playing)
            .and_then(|s| Some((s.track?, s.position_at(now))));
        if let (Some((was, before)), Some((track, after))) = (self.last_position, position)
            && was == track
            && !moved
        {
            prop_assert!(after >= before, "{step:?}: {before} → {after}");
        }
        self.last_position = position;
        // A failed download of the playing track is tried again.
        if let Step::FetchFailed(_) = step {
            self.retry_due = None;
        }
        if let Some((track, due)) = self.retry_due
            && matches!(step, Step::Tick)
            && world.now.local >= due
        {
            let still = machine
                .applied()
                .is_some_and(|s| s.state == PlaybackState::Playing && s.track == Some(track));
            let retried = played.contains(&track) || fetches(actions).contains(&track);
            prop_assert!(
                !still || retried || !machine.clock_synced,
                "{track:?} not retried"
            );
            self.retry_due = None;
        }
        Ok(())
    }
}

/// Runs `steps` on a coordinator or a follower (which gets every session
/// the coordinator publishes, the old ones again on `Step::Replay`).
fn run(steps: Vec<Step>, held: Vec<bool>) -> Result<(), TestCaseError> {
    let held: Vec<TrackId> = TRACKS
        .iter()
        .zip(held)
        .filter_map(|(t, h)| h.then_some(*t))
        .collect();
    let mut world = World::new(&held);
    let mut boss = coordinator(&mut world);
    let boss_id = boss.me;
    let mut follower_world = World::new(&held);
    follower_world.now = world.now;
    let mut node = follower(&mut follower_world, boss_id, true);
    world.now = follower_world.now;
    let mut published: Vec<Session> = Vec::new();
    let mut checks = [
        Checks {
            last_position: None,
            retry_due: None,
        },
        Checks {
            last_position: None,
            retry_due: None,
        },
    ];
    let mut reply = 0u32;
    for step in steps {
        let now = world.now;
        // Whether the position may go back this round: a command that moves
        // it, or the end of a track (repeat one plays it again from 0).
        let mut moved = matches!(&step, Step::Command(request) if moves(request));
        let member = [claiming(boss_id, now)];
        for (k, (machine, w)) in [(&mut boss, &mut world), (&mut node, &mut follower_world)]
            .into_iter()
            .enumerate()
        {
            w.now = now;
            let pick = |i: usize| TRACKS[i % TRACKS.len()];
            let before_fail = match &step {
                Step::FetchFailed(i) if w.downloading.contains(&pick(*i)) => machine
                    .applied()
                    .filter(|s| s.state == PlaybackState::Playing && s.track == Some(pick(*i)))
                    .map(|_| pick(*i)),
                _ => None,
            };
            match &step {
                Step::Wait(_) => {
                    if k == 0 && machine.poll_timeout().is_some_and(|t| t <= now.swarm) {
                        moved = true;
                        machine.handle_timeout(now);
                    }
                }
                Step::Tick if k == 0 => machine.handle_tick(now, &[], machine.clock_synced),
                Step::Tick => machine.handle_tick(now, &member, machine.clock_synced),
                Step::Command(request) if k == 0 => {
                    reply += 1;
                    machine.handle_command(now, request.clone(), reply, u64::from(reply));
                }
                Step::Command(_) => {}
                Step::Downloaded(i) => {
                    if w.downloading.remove(&pick(*i)) {
                        w.held.insert(pick(*i));
                        machine.handle_downloaded(now, pick(*i));
                    }
                }
                Step::FetchFailed(i) => {
                    if w.downloading.remove(&pick(*i)) {
                        machine.handle_fetch_failed(now, pick(*i));
                    }
                }
                Step::Streamable(i) => {
                    if machine.watching.contains(&pick(*i)) {
                        let pace = Throughput {
                            rate: 1e6,
                            ratio: 10.0,
                        };
                        machine.handle_streamable(pick(*i), pace, w.held.contains(&pick(*i)));
                    }
                }
                Step::ClockSynced => machine.handle_clock_synced(now),
                Step::ClockStepped(by) => machine.handle_clock_stepped(now, *by),
                Step::ClockStatus(synced) => machine.handle_clock_status(*synced || k == 0),
                Step::Replay(i) if k == 1 && !published.is_empty() => {
                    let old = published[i % published.len()].clone();
                    machine.handle_session(now, boss_id, old);
                    let actions = w.drain(machine);
                    // A session already applied (or older) changes nothing.
                    prop_assert!(actions.is_empty(), "{actions:?}");
                }
                Step::Replay(_) => {}
            }
            let actions = w.drain(machine);
            if k == 0 {
                // The follower gets what the coordinator gossips.
                for action in &actions {
                    if let Action::Gossip(session) = action {
                        prop_assert!(session.encode().is_ok());
                        published.push(session.clone());
                    }
                }
            }
            if let Some(track) = before_fail
                && matches!(step, Step::FetchFailed(_))
            {
                checks[k].after(machine, w, &step, moved, &actions)?;
                checks[k].retry_due = Some((track, now.local + RETRY_PLAY_MICROS));
            } else {
                checks[k].after(machine, w, &step, moved, &actions)?;
            }
        }
        // Deliver the coordinator's new sessions to the follower, in order.
        if let Some(latest) = published.last().cloned()
            && node.applied() != Some(&latest)
        {
            node.handle_session(now, boss_id, latest);
            let actions = follower_world.drain(&mut node);
            checks[1].after(&node, &follower_world, &Step::Wait(0), moved, &actions)?;
        }
        if let Step::Wait(micros) = step {
            world.wait(i64::from(micros));
        }
    }
    // Every command was answered exactly once.
    let mut answered = world.answered.clone();
    answered.sort_unstable();
    let asked: Vec<u32> = (1..=reply).collect();
    prop_assert_eq!(answered, asked);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random inputs on a coordinator and a follower keep the invariants:
    /// one track at a time, positions monotonic while playing, one download
    /// per track, a failed download retried while the session plays it, no
    /// action for a session already applied, every command answered once.
    #[test]
    fn random_inputs_keep_the_invariants(
        steps in proptest::collection::vec(step(), 1..80),
        held in proptest::collection::vec(any::<bool>(), 3),
    ) {
        run(steps, held)?;
    }
}

/// A follower playing in the default zone is moved to the kitchen: it goes
/// silent at once, forgets the old zone's session, ignores that zone's
/// sessions from then on, follows the kitchen's coordinator on the next
/// tick and joins the kitchen's track mid-way; what it publishes as the
/// kitchen's coordinator later carries the kitchen's zone.
#[test]
fn a_moved_node_leaves_its_zone_and_joins_the_new_zones_playback() {
    let mut world = World::new(&[T1, T2]);
    let old_boss = PeerId::random();
    let mut machine = follower(&mut world, old_boss, true);
    machine.handle_session(world.now, old_boss, playing(T1, 1, world.now.swarm, 0));
    assert_eq!(plays(&world.drain(&mut machine)), vec![T1]);

    let kitchen = Placement {
        zone: "kitchen".parse().unwrap(),
        ..Placement::default()
    };
    machine.handle_zone(world.now, &kitchen);
    let actions = world.drain(&mut machine);
    assert!(
        actions.iter().any(|a| matches!(a, Action::Silence)),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RoleChanged(v) if *v == RoleView::default()))
    );
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Applied(s) if s.zone == kitchen.zone && s.track.is_none())
        )
    );
    assert!(machine.applied().is_none());
    // The same placement again (or another channel) changes nothing.
    machine.handle_zone(world.now, &kitchen);
    assert!(world.drain(&mut machine).is_empty());

    // The old zone's sessions are not this node's any more.
    machine.handle_session(world.now, old_boss, playing(T1, 2, world.now.swarm, 0));
    assert!(world.drain(&mut machine).is_empty());

    // The kitchen's coordinator is followed at once, and its session (a
    // track under way for 2 s) joined where it is.
    let boss = PeerId::random();
    world.wait(S / 4);
    machine.handle_tick(world.now, &[claiming(boss, world.now)], true);
    world.drain(&mut machine);
    assert_eq!(machine.roles().coordinator, Some(boss));
    let mut theirs = playing(T2, 7, world.now.swarm - 2 * S, 0);
    theirs.zone = kitchen.zone.clone();
    let mut wrong_zone = theirs.clone();
    wrong_zone.zone = ZoneId::default();
    wrong_zone.seq = 8;
    machine.handle_session(world.now, boss, wrong_zone);
    assert!(world.drain(&mut machine).is_empty());
    machine.handle_session(world.now, boss, theirs.clone());
    let actions = world.drain(&mut machine);
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::Play { track, at, .. } if *track == T2 && *at == theirs.start)
        ),
        "{actions:?}"
    );

    // Alone in a new zone, it elects itself after the grace, and what it
    // publishes is that zone's.
    let den = Placement {
        zone: "den".parse().unwrap(),
        ..Placement::default()
    };
    machine.handle_zone(world.now, &den);
    world.drain(&mut machine);
    machine.handle_tick(world.now, &[], true);
    assert!(!machine.is_coordinator(), "not before the grace");
    world.wait(REJOIN_GRACE_MICROS);
    machine.handle_tick(world.now, &[], true);
    world.drain(&mut machine);
    assert!(machine.is_coordinator());
    machine.handle_command(
        world.now,
        ControlRequest::Play {
            track: T1,
            position_micros: 0,
        },
        1,
        0,
    );
    let actions = world.drain(&mut machine);
    let gossiped: Vec<&Session> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Gossip(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!gossiped.is_empty(), "{actions:?}");
    assert!(gossiped.iter().all(|s| s.zone == den.zone), "{gossiped:?}");
}
