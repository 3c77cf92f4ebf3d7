//! What this node's player must do, sans-IO.
//!
//! [`LocalPlay`] is the playback state of one node: its [`Roles`], the
//! session it applied last, and what its player and downloads are doing
//! (fetching, watching a download, streaming one, queued to follow, waiting
//! for the clock, retrying). It reads no clock, opens no file and sends
//! nothing. The driver (`driver.rs`) feeds it inputs and carries out the
//! [`Action`]s it returns, in order, until [`LocalPlay::poll_action`] is
//! empty:
//!
//! - inputs (`handle_*`): timer ticks with the members and the clock status,
//!   the end of the current track ([`LocalPlay::handle_timeout`], armed from
//!   [`LocalPlay::poll_timeout`]), commands from the local API and from peers,
//!   sessions from the coordinator, prepares, download progress (downloaded,
//!   failed, safe to stream, prepared) and clock events (synced, stepped);
//! - reports back (`handle_*` too): what an action found out that only I/O
//!   can (the track's file is missing, its length, whether the player took
//!   it). The driver hands these back at once, before the next action, so
//!   the machine sees them in the order the old inline code did.
//!
//! Every input takes the time as a parameter ([`Moment`]: the local
//! monotonic clock for roles and retries, the swarm timeline for sessions);
//! the caller's time never goes backwards.
//!
//! Invariants (checked by the property tests in `local_play/tests.rs`):
//! at most one track is played at a time (every [`Action::Play`] replaces
//! the previous one); a session not newer than the applied one changes
//! nothing; one download per track at a time; a failed download of the
//! track the session plays is tried again ([`RETRY_PLAY_MICROS`]) while the
//! session still plays it.
//!
//! What it is not: the session's rules ([`session`] decides, advances and
//! plans) or the role rule ([`Roles`]); it wires both to one node's player.

use super::announce::NodeEvent;
use super::persist;
use super::roles::{MemberView, Roles};
use super::session::{self, Decision};
use firefly_clock::LocalMicros;
use firefly_library::TrackId;
use firefly_swarm::{
    ControlRequest, PeerId, Placement, PlaybackState, PlaybackSummary, Refusal, RoleView, Session,
    ZoneId,
};
use std::collections::{HashMap, HashSet, VecDeque};

/// How often the coordinator re-gossips an unchanged session, in ticks.
pub(crate) const REPUBLISH_TICKS: u32 = 4;
/// How often the session's snapshot is stored while it plays, in ticks.
pub(crate) const SAVE_TICKS: u32 = 2;
/// A clock step at least this large restarts playback at the timeline's
/// position, µs (smaller ones the player slews away in well under a second).
pub(crate) const STEP_REPLAY_MICROS: u64 = 500;
/// The furthest start position a prepare's "safe from the beginning"
/// covers, µs (it saw `stream::AHEAD_MICROS` of audio from the start).
pub(crate) const PREPARED_MAX_POSITION: u64 = 1_000_000;
/// How long after a failed download the session's track is tried again, µs.
pub(crate) const RETRY_PLAY_MICROS: i64 = 1_000_000;
/// How long a node moved into a zone with no coordinator waits before
/// electing, µs: a heartbeat period and a half, so that nodes moved
/// together (a new zone of several) hear each other's new zone first and
/// elect one coordinator rather than each itself.
pub(crate) const REJOIN_GRACE_MICROS: i64 = 1_500_000;
/// How many prepared-but-not-yet-played tracks are remembered.
const MAX_PREPARED: usize = 16;

/// The time of an input on both of the node's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moment {
    /// The local monotonic clock (roles, retries).
    pub(crate) local: LocalMicros,
    /// The swarm timeline, µs (sessions).
    pub(crate) swarm: i64,
}

/// How fast a download goes: bytes/s, and that as a multiple of playback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Throughput {
    /// Bytes per second.
    pub(crate) rate: f64,
    /// `rate` divided by the track's playback rate in bytes per second.
    pub(crate) ratio: f64,
}

/// What happened when the driver carried out an [`Action::Play`] or
/// [`Action::Stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlayOutcome {
    /// The player plays the track's file.
    Started,
    /// The player plays the track from its download under way.
    Streaming,
    /// The node holds no file of the track (and streaming was not allowed
    /// or failed).
    Missing,
    /// The track could not be opened or the player refused it (logged).
    Failed,
}

/// One thing the driver must do.
#[derive(Debug, Clone)]
pub(crate) enum Action<R> {
    /// The role view changed: tell the API and the user.
    RoleChanged(RoleView),
    /// Penalize a peer that broke a rule.
    Penalize {
        /// The peer.
        peer: PeerId,
        /// What it did.
        why: &'static str,
    },
    /// Tell the user (an event on stdout).
    Announce(NodeEvent),
    /// This session is applied now (for the API's readers).
    Applied(Session),
    /// Store this snapshot of the session ([`persist`]).
    Save(Session),
    /// Report this node's view and playback in its heartbeats.
    Report {
        /// The role view.
        roles: RoleView,
        /// What plays.
        playback: PlaybackSummary,
    },
    /// Gossip this session (already applied) as coordinator.
    Gossip(Session),
    /// Find out the length of `session`'s track (unknown so far), fill it
    /// in, and hand the session back ([`LocalPlay::handle_measured`]) to
    /// be published.
    Measure {
        /// The session to publish.
        session: Session,
        /// Whom to answer with it, if anyone.
        reply: Option<R>,
    },
    /// Answer a command.
    Answer {
        /// Whom.
        reply: R,
        /// The session it made, or why not.
        result: Result<Session, Refusal>,
    },
    /// Answer a prepare: ready.
    Ready {
        /// Whom.
        reply: R,
        /// Whether this node holds the track.
        has_track: bool,
    },
    /// Send a command to the coordinator (this node is not), retrying
    /// through a failover, and answer `reply` with the result.
    Forward {
        /// The zone whose coordinator it goes to (this node's, or the zone
        /// the command names).
        zone: ZoneId,
        /// The command.
        request: ControlRequest,
        /// Whom to answer.
        reply: R,
    },
    /// As coordinator: check `position_micros` against `track`'s length
    /// and ask every member to prepare `track`, off the loop; report with
    /// [`LocalPlay::handle_prepare_done`].
    PrepareMembers {
        /// The command that asks for the track.
        request: ControlRequest,
        /// The track.
        track: TrackId,
        /// The coordinator's term.
        term: u64,
        /// The start position asked for, µs.
        position_micros: u64,
        /// Whom to answer.
        reply: R,
    },
    /// Answer a prepare for `track` (downloading) once it can start from
    /// its beginning while it downloads, or when the wait is over; report
    /// [`LocalPlay::handle_prepared`] if it can.
    PrepareStreaming {
        /// The track.
        track: TrackId,
        /// Whom to answer.
        reply: R,
    },
    /// Play `track` so that `position_micros` sounds at swarm instant `at`
    /// (joining in step if it has passed), from its file, or, when the node
    /// holds none and `stream` is given, from its download. Report with
    /// [`LocalPlay::handle_played`].
    Play {
        /// The track.
        track: TrackId,
        /// The anchor position, µs.
        position_micros: u64,
        /// The anchor instant, swarm µs.
        at: i64,
        /// The download's pace, if it may be played while it downloads.
        stream: Option<Throughput>,
    },
    /// Play `track` from its download under way, as [`Action::Play`];
    /// report with [`LocalPlay::handle_played`].
    Stream {
        /// The track.
        track: TrackId,
        /// The anchor position, µs.
        position_micros: u64,
        /// The anchor instant, swarm µs.
        at: i64,
        /// The download's pace.
        pace: Throughput,
    },
    /// Queue `track` in the player to follow the current one from its
    /// first frame at `at` (gapless); report a failure with
    /// [`LocalPlay::handle_follow_failed`].
    Follow {
        /// The track.
        track: TrackId,
        /// Its first frame's instant, swarm µs.
        at: i64,
    },
    /// Forget what the player queued to follow.
    Unfollow,
    /// Pause so that the fade-out ends at `at`.
    PauseAt {
        /// Swarm µs.
        at: i64,
    },
    /// Stop so that the fade-out ends at `at`.
    StopAt {
        /// Swarm µs.
        at: i64,
    },
    /// Stop at once: what plays is no longer the session's sound.
    Silence,
    /// Download `track` from the peers that hold it; report with
    /// [`LocalPlay::handle_downloaded`] or [`LocalPlay::handle_fetch_failed`].
    Fetch(TrackId),
    /// Judge `track`'s download until it is safe to play while it
    /// downloads; report with [`LocalPlay::handle_streamable`] or
    /// [`LocalPlay::handle_unwatched`].
    Watch(TrackId),
}

/// One node's playback state machine; see the module doc. `R` is whom a
/// command's answer goes to (opaque here).
#[derive(Debug)]
pub(crate) struct LocalPlay<R> {
    me: PeerId,
    roles: Roles,
    /// The session applied last. Invariant: only replaced by a newer one
    /// (`Session::is_newer_than`), or renumbered when a new coordinator's
    /// lineage takes over (`handle_session`).
    applied: Option<Session>,
    /// Who made `applied`: the coordinator it came from, or this node.
    applied_from: Option<PeerId>,
    ticks: u32,
    /// Whether this node's swarm clock is synced (a lone node counts as
    /// synced), as the driver last said.
    clock_synced: bool,
    /// Downloads started and not finished. Invariant: one per track.
    fetching: HashSet<TrackId>,
    /// Downloads being judged for [`LocalPlay::handle_streamable`].
    watching: HashSet<TrackId>,
    /// The track the player plays from a download still under way.
    streaming: Option<TrackId>,
    /// A play waits for the clock to sync (the session it plays is `applied`).
    deferred: bool,
    /// Tracks a prepare found safe to start from their beginning while
    /// they download (at most [`MAX_PREPARED`]).
    prepared: HashMap<TrackId, Throughput>,
    /// When to try the applied session's track again after its download
    /// failed (e.g. the session arrived before the scan or the catalog did).
    retry_at: Option<LocalMicros>,
    /// What the player has queued to follow the current track: (its first
    /// frame's swarm instant, the track).
    following: Option<(i64, TrackId)>,
    /// The snapshot of the session stored last.
    saved: Option<Session>,
    /// The zone this node plays in: its roles are derived among the
    /// members the driver hands in (this zone's), and it applies and
    /// publishes only this zone's sessions.
    zone: ZoneId,
    /// The latest session with music gossiped in this zone by another
    /// coordinator while this node coordinates too (both elected themselves
    /// and tie): carried on if that one yields to this node while this
    /// node's own session has nothing to play ([`LocalPlay::handle_tick`]).
    /// One at most.
    rival: Option<(PeerId, Session)>,
    actions: VecDeque<Action<R>>,
}

impl<R> LocalPlay<R> {
    /// The machine of node `me`, started at local instant `now`.
    pub(crate) fn new(me: PeerId, now: LocalMicros) -> Self {
        Self::with_roles(me, Roles::new(me, now))
    }

    /// The machine of node `me` with the given roles (tests shorten their
    /// limits).
    pub(crate) fn with_roles(me: PeerId, roles: Roles) -> Self {
        Self {
            me,
            roles,
            applied: None,
            applied_from: None,
            ticks: 0,
            clock_synced: false,
            fetching: HashSet::new(),
            watching: HashSet::new(),
            streaming: None,
            deferred: false,
            prepared: HashMap::new(),
            retry_at: None,
            following: None,
            saved: None,
            zone: ZoneId::default(),
            rival: None,
            actions: VecDeque::new(),
        }
    }

    /// The machine, in `zone` from the start (a restarted node's stored zone).
    pub(crate) fn in_zone(mut self, zone: ZoneId) -> Self {
        self.zone = zone;
        self
    }

    // ---- getters ----

    /// This node's role view.
    #[cfg(test)]
    pub(crate) fn roles(&self) -> RoleView {
        self.roles.view()
    }

    /// Whether this node coordinates.
    #[cfg(test)]
    pub(crate) fn is_coordinator(&self) -> bool {
        self.roles.is_coordinator()
    }

    /// The session applied last, if any.
    #[cfg(test)]
    pub(crate) fn applied(&self) -> Option<&Session> {
        self.applied.as_ref()
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_action(&mut self) -> Option<Action<R>> {
        self.actions.pop_front()
    }

    /// The swarm instant at which [`LocalPlay::handle_timeout`] is due:
    /// the end of the current track, when this node coordinates (only the
    /// coordinator moves the queue on).
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        if !self.roles.is_coordinator() {
            return None;
        }
        self.applied.as_ref()?.ends_at()
    }

    // ---- inputs ----

    /// The session stored before a restart: paused where it was, carried
    /// on under a new term if this node coordinates.
    pub(crate) fn handle_restored(&mut self, restored: Session) {
        if restored.zone != self.zone {
            // Another zone's session is not this node's to carry on.
            return;
        }
        self.push(Action::Announce(NodeEvent::SessionRestored {
            state: format!("{:?}", restored.state).to_lowercase(),
            track: restored.track.map(|t| t.to_hex()),
            position_ms: restored.position_micros / 1000,
            queued: restored.queue.len(),
        }));
        self.saved = Some(restored.clone());
        self.push(Action::Applied(restored.clone()));
        self.applied = Some(restored);
    }

    /// The clock's status as the driver read it just now.
    pub(crate) fn handle_clock_status(&mut self, synced: bool) {
        self.clock_synced = synced;
    }

    /// The timer: `members` are the members the swarm knows now, `synced`
    /// the clock's status.
    pub(crate) fn handle_tick(&mut self, now: Moment, members: &[MemberView], synced: bool) {
        self.ticks = self.ticks.wrapping_add(1);
        self.clock_synced = synced;
        let was_coordinator = self.roles.is_coordinator();
        let changed = self.roles.handle_members(now.local, members);
        while let Some(peer) = self.roles.poll_offender() {
            tracing::debug!(%peer, "role claim against the role rule");
            self.push(Action::Penalize {
                peer,
                why: "role claim against the rule",
            });
        }
        if let Some(view) = changed {
            self.push(Action::RoleChanged(view));
        }
        if self.retry_at.is_some_and(|at| at <= now.local) {
            self.retry_at = None;
            if let Some((track, position, at)) = self.playing() {
                self.play(now, track, position, at);
            }
        }
        if self.deferred && self.clock_synced {
            self.replay(now, "now that the clock is synced");
        }
        if self.roles.is_coordinator() {
            if let Some(mut absorbed) = self.absorbed_rival(members) {
                // A tie: the rival yielded with music; this node had none.
                // Carry its session on under this node's term, so the
                // music a person started there plays on everywhere.
                tracing::info!(track = ?absorbed.track, "carrying on the session of a coordinator that yielded");
                let own_seq = self.applied.as_ref().map_or(0, |s| s.seq);
                absorbed.term = self.roles.view().term;
                absorbed.seq = session::next_seq(absorbed.seq.max(own_seq));
                self.publish(now, absorbed, None);
            } else if !was_coordinator && let Some(mut carried) = self.applied.clone() {
                // Carry the last gossiped session on under the new term.
                carried.term = self.roles.view().term;
                carried.seq = session::next_seq(carried.seq);
                self.publish(now, carried, None);
            } else if self.ticks.is_multiple_of(REPUBLISH_TICKS)
                && let Some(session) = self.applied.clone()
            {
                self.push(Action::Gossip(session));
            }
        }
        self.queue_follow();
        if self.ticks.is_multiple_of(SAVE_TICKS) {
            self.save(now);
        }
        let session = self.applied.clone().unwrap_or_default();
        self.push(Action::Report {
            roles: self.roles.view(),
            playback: PlaybackSummary {
                state: session.state,
                track: session.track,
                position_ms: session.position_at(now.swarm) / 1000,
            },
        });
    }

    /// The rival's session ([`LocalPlay::rival`]) if the rival now follows
    /// this node and this node's own session has nothing to play; the rival
    /// is forgotten once it follows.
    fn absorbed_rival(&mut self, members: &[MemberView]) -> Option<Session> {
        let (peer, _) = self.rival.as_ref()?;
        let yielded = members
            .iter()
            .any(|m| m.peer == *peer && m.view.coordinator == Some(self.me));
        if !yielded {
            return None;
        }
        let (_, session) = self.rival.take()?;
        let silent = self
            .applied
            .as_ref()
            .is_none_or(|s| s.track.is_none() && s.live.is_none());
        silent.then_some(session)
    }

    /// The instant [`LocalPlay::poll_timeout`] gave has come: as
    /// coordinator, the current track's successor starts at the very
    /// instant it ends (or playback stops at the end of the queue).
    pub(crate) fn handle_timeout(&mut self, now: Moment) {
        if !self.roles.is_coordinator() {
            return;
        }
        let term = self.roles.view().term;
        let Some(next) = self
            .applied
            .as_ref()
            .and_then(|current| session::advance(current, term, now.swarm))
        else {
            return;
        };
        tracing::info!(track = ?next.track, at = next.start, "track ended; the queue moves on");
        self.publish(now, next, None);
    }

    /// The swarm clock synced.
    pub(crate) fn handle_clock_synced(&mut self, now: Moment) {
        self.clock_synced = true;
        if self.deferred {
            self.replay(now, "now that the clock is synced");
        }
    }

    /// The swarm clock stepped by `by_micros`.
    pub(crate) fn handle_clock_stepped(&mut self, now: Moment, by_micros: i64) {
        // A step moves the timeline under the player by more than it could
        // slew away in seconds (a node that started before it had heard its
        // peers, a healed partition): start again at the timeline's
        // position, in step at once.
        if by_micros.unsigned_abs() >= STEP_REPLAY_MICROS {
            self.replay(now, "after the swarm clock stepped");
        }
    }

    /// A command from the local API. `seed` drives a shuffle.
    pub(crate) fn handle_command(
        &mut self,
        now: Moment,
        request: ControlRequest,
        reply: R,
        seed: u64,
    ) {
        if self.roles.is_coordinator() {
            self.coordinate(now, request, reply, seed);
        } else {
            let zone = self.zone.clone();
            self.push(Action::Forward {
                zone,
                request,
                reply,
            });
        }
    }

    /// A command from the local API for `zone`'s session: carried out as
    /// [`LocalPlay::handle_command`] when `zone` is this node's, else
    /// forwarded to that zone's coordinator.
    pub(crate) fn handle_zone_command(
        &mut self,
        now: Moment,
        zone: ZoneId,
        request: ControlRequest,
        reply: R,
        seed: u64,
    ) {
        if zone == self.zone {
            self.handle_command(now, request, reply, seed);
        } else {
            self.push(Action::Forward {
                zone,
                request,
                reply,
            });
        }
    }

    /// A command from peer `peer` (not a prepare: [`LocalPlay::handle_prepare`]).
    pub(crate) fn handle_request(
        &mut self,
        now: Moment,
        peer: PeerId,
        request: ControlRequest,
        reply: R,
        seed: u64,
    ) {
        // A command names its zone (a bare one, from an older node, is for
        // the zone of whoever coordinates).
        let request = match request {
            ControlRequest::InZone { zone, .. } if zone != self.zone => {
                tracing::debug!(%peer, %zone, "a command for another zone refused");
                let mine = self.zone.clone();
                self.push(Action::Answer {
                    reply,
                    result: Err(Refusal::WrongZone { asked: zone, mine }),
                });
                return;
            }
            ControlRequest::InZone { command, .. } => *command,
            bare => bare,
        };
        if self.roles.is_coordinator() {
            self.coordinate(now, request, reply, seed);
        } else {
            tracing::debug!(%peer, "a command for the coordinator refused");
            self.push(Action::Answer {
                reply,
                result: Err(Refusal::NotCoordinator),
            });
        }
    }

    /// Peer `peer` asks this node to prepare `track`. `members` are the
    /// members as the swarm knows them right now (whether `peer` claims the
    /// role), `held` whether this node holds a file of `track`.
    pub(crate) fn handle_prepare(
        &mut self,
        peer: PeerId,
        track: TrackId,
        reply: R,
        members: &[MemberView],
        held: bool,
    ) {
        if self.roles.view().coordinator != Some(peer) {
            // Only the coordinator may make this node download. A peer that
            // claims the role (elected a moment before this node saw it) is
            // refused; any other is penalized.
            let claims_it = members
                .iter()
                .any(|m| m.peer == peer && m.view.coordinator == Some(peer));
            if !claims_it {
                self.push(Action::Penalize {
                    peer,
                    why: "prepare from a non-coordinator",
                });
            }
            self.push(Action::Answer {
                reply,
                result: Err(Refusal::NotCoordinator),
            });
            return;
        }
        if held {
            self.push(Action::Ready {
                reply,
                has_track: true,
            });
            return;
        }
        // Start fetching now, and answer once the track can start from the
        // beginning while it downloads (or the wait is over).
        self.fetch(track);
        self.push(Action::PrepareStreaming { track, reply });
    }

    /// The members were asked to prepare `track` for `request` (or the
    /// start position was refused): start it, deciding again on the session
    /// as it is now (another command or the end of a track may have come
    /// meanwhile).
    pub(crate) fn handle_prepare_done(
        &mut self,
        now: Moment,
        request: ControlRequest,
        track: TrackId,
        result: Result<(), Refusal>,
        reply: R,
        seed: u64,
    ) {
        let refused = |this: &mut Self, reply, refusal| {
            this.push(Action::Answer {
                reply,
                result: Err(refusal),
            });
        };
        if let Err(refusal) = result {
            return refused(self, reply, refusal);
        }
        if !self.roles.is_coordinator() {
            return refused(self, reply, Refusal::NotCoordinator);
        }
        let term = self.roles.view().term;
        let current = self.applied.clone().unwrap_or_default();
        let next = match session::decide(&current, term, &request, now.swarm, seed) {
            Ok(Decision::Prepare(again)) if again.track == Some(track) => {
                session::start(again, now.swarm)
            }
            Ok(Decision::Publish(next)) => next,
            // The session moved on to another track meanwhile.
            Ok(Decision::Prepare(_)) => return refused(self, reply, Refusal::Busy),
            Err(refusal) => return refused(self, reply, refusal),
        };
        self.publish(now, next, Some(reply));
    }

    /// The length of a [`Action::Measure`]d session's track is filled in
    /// (as far as it could be): publish it.
    pub(crate) fn handle_measured(&mut self, now: Moment, session: Session, reply: Option<R>) {
        if session.zone != self.zone {
            // Made for the zone this node left meanwhile.
            if let Some(reply) = reply {
                self.push(Action::Answer {
                    reply,
                    result: Err(Refusal::NotCoordinator),
                });
            }
            return;
        }
        self.applied_from = Some(self.me);
        // Gossiped before this node's own player acts on it: opening a
        // track here takes a while, and the other members must get the
        // session well within its lead.
        self.push(Action::Gossip(session.clone()));
        self.apply(now, session.clone());
        if let Some(reply) = reply {
            self.push(Action::Answer {
                reply,
                result: Ok(session),
            });
        }
    }

    /// A session gossiped by `from`.
    pub(crate) fn handle_session(&mut self, now: Moment, from: PeerId, session: Session) {
        if session.zone != self.zone {
            // Another zone's (each zone's members apply their own).
            return;
        }
        // Only the coordinator the role rule gives speaks for the swarm
        // (docs/SECURITY.md); others' sessions are ignored, whatever their
        // term.
        if self.roles.view().coordinator != Some(from) {
            tracing::debug!(%from, term = session.term, "session not from the coordinator ignored");
            if self.roles.is_coordinator() && (session.track.is_some() || session.live.is_some()) {
                // Another coordinator of this zone: kept in case it yields.
                self.rival = Some((from, session));
            }
            return;
        }
        if self.applied_from != Some(from)
            && let Some(old) = self.applied.as_mut()
            && !session.is_newer_than(old)
        {
            // A new coordinator's lineage (a healed partition) may count
            // lower: its session follows the last one applied.
            old.term = 0;
            old.seq = 0;
        }
        self.applied_from = Some(from);
        self.apply(now, session);
    }

    /// This node was moved to `placement`'s zone (from now on the driver
    /// hands in that zone's members): it stops the old zone's music at
    /// once, forgets its session, and derives roles among the new zone's
    /// members from scratch (term 0: terms order one zone's sessions). A
    /// sitting coordinator there is followed on the next tick, whose
    /// session the node then applies (joining a playing track in step);
    /// a zone with no coordinator elects after [`REJOIN_GRACE_MICROS`].
    /// A change of anything but the zone changes nothing here.
    pub(crate) fn handle_zone(&mut self, now: Moment, placement: &Placement) {
        if placement.zone == self.zone {
            return;
        }
        let from = std::mem::replace(&mut self.zone, placement.zone.clone());
        self.push(Action::Announce(NodeEvent::ZoneChanged {
            from: from.to_string(),
            zone: self.zone.to_string(),
            name: placement.settings.name.clone(),
        }));
        self.roles.rejoin(now.local, REJOIN_GRACE_MICROS);
        self.push(Action::RoleChanged(self.roles.view()));
        self.applied = None;
        self.applied_from = None;
        self.rival = None;
        self.streaming = None;
        self.deferred = false;
        self.retry_at = None;
        self.following = None;
        self.push(Action::Silence);
        self.push(Action::Applied(Session {
            zone: self.zone.clone(),
            ..Session::default()
        }));
    }

    /// The driver carried out a [`Action::Play`] or [`Action::Stream`] of
    /// `track`.
    pub(crate) fn handle_played(&mut self, now: Moment, track: TrackId, outcome: PlayOutcome) {
        match outcome {
            PlayOutcome::Started => {
                // A play replaces what was queued to follow.
                self.following = None;
            }
            PlayOutcome::Streaming => {
                self.following = None;
                self.streaming = Some(track);
            }
            PlayOutcome::Missing => {
                self.push(Action::Announce(NodeEvent::AwaitingDownload {
                    track: track.to_hex(),
                }));
                // Whatever played before is no longer the session's sound
                // (and what was queued to follow it goes with it).
                self.following = None;
                self.push(Action::Silence);
                self.fetch(track);
                self.watch(track);
            }
            PlayOutcome::Failed => {}
        }
        let _ = now;
        self.queue_follow();
    }

    /// What [`Action::Follow`] asked could not be queued: `missing` when
    /// the node holds no file of `track` (it is fetched then), else it
    /// would not open (tried again on the next tick).
    pub(crate) fn handle_follow_failed(&mut self, track: TrackId, missing: bool) {
        if self.following.is_some_and(|(_, t)| t == track) {
            self.following = None;
        }
        if missing {
            // Fetched now, queued once here (`handle_downloaded`, or the tick).
            self.fetch(track);
        }
    }

    /// A download of `track` finished: join the session if it still plays it.
    pub(crate) fn handle_downloaded(&mut self, now: Moment, track: TrackId) {
        self.fetching.remove(&track);
        self.queue_follow();
        if self.streaming == Some(track) {
            // Already playing it from the download; the file serves the next play.
            self.streaming = None;
            return;
        }
        if let Some((playing, position, at)) = self.playing()
            && playing == track
        {
            self.push(Action::Announce(NodeEvent::Joining {
                track: track.to_hex(),
                during_download: false,
                why: "after its download".into(),
            }));
            self.play(now, track, position, at);
        }
    }

    /// A download of `track` failed (announced by the driver).
    pub(crate) fn handle_fetch_failed(&mut self, now: Moment, track: TrackId) {
        self.fetching.remove(&track);
        if self.playing().is_some_and(|(t, _, _)| t == track) {
            self.retry_at = Some(now.local + RETRY_PLAY_MICROS);
        }
    }

    /// A watcher of `track`'s download gave up (the session moved on, or
    /// the download ended first).
    pub(crate) fn handle_unwatched(&mut self, track: TrackId) {
        self.watching.remove(&track);
    }

    /// A prepare found `track` (downloading) safe to start from its
    /// beginning, at `pace`.
    pub(crate) fn handle_prepared(&mut self, track: TrackId, pace: Throughput) {
        if self.prepared.len() >= MAX_PREPARED && !self.prepared.contains_key(&track) {
            self.prepared.clear();
        }
        self.prepared.insert(track, pace);
    }

    /// A watcher found `track` safe to play while it downloads, at `pace`;
    /// `held` whether its file is complete meanwhile.
    pub(crate) fn handle_streamable(&mut self, track: TrackId, pace: Throughput, held: bool) {
        self.watching.remove(&track);
        let Some((playing, position_micros, at)) = self.playing() else {
            return;
        };
        if playing != track || self.streaming == Some(track) || held {
            // Another track, streamed already, or finished meanwhile
            // (`handle_downloaded` plays the file).
            return;
        }
        self.push(Action::Stream {
            track,
            position_micros,
            at,
            pace,
        });
    }

    // ---- inner steps ----

    fn push(&mut self, action: Action<R>) {
        self.actions.push_back(action);
    }

    /// The applied session's (track, anchor position, anchor instant) if it plays.
    fn playing(&self) -> Option<(TrackId, u64, i64)> {
        let session = self.applied.as_ref()?;
        if session.state != PlaybackState::Playing {
            return None;
        }
        Some((session.track?, session.position_micros, session.start))
    }

    /// Carries out a command as coordinator. A new track is first prepared
    /// on every member, off the loop ([`LocalPlay::handle_prepare_done`]).
    fn coordinate(&mut self, now: Moment, request: ControlRequest, reply: R, seed: u64) {
        let term = self.roles.view().term;
        let current = self.applied.clone().unwrap_or_default();
        match session::decide(&current, term, &request, now.swarm, seed) {
            Err(refusal) => self.push(Action::Answer {
                reply,
                result: Err(refusal),
            }),
            Ok(Decision::Publish(next)) => self.publish(now, next, Some(reply)),
            Ok(Decision::Prepare(prepared)) => match prepared.track {
                None => self.push(Action::Answer {
                    reply,
                    result: Err(Refusal::NothingPlaying),
                }),
                Some(track) => self.push(Action::PrepareMembers {
                    request,
                    track,
                    term,
                    position_micros: prepared.position_micros,
                    reply,
                }),
            },
        }
    }

    /// Applies and gossips `next`, this node's own session as coordinator
    /// (its track's length found out first when it is not known).
    fn publish(&mut self, now: Moment, mut next: Session, reply: Option<R>) {
        // Sessions carry their zone: only its members apply them.
        next.zone = self.zone.clone();
        if next.duration_micros.is_none() && next.track.is_some() {
            self.push(Action::Measure {
                session: next,
                reply,
            });
        } else {
            self.handle_measured(now, next, reply);
        }
    }

    /// Applies a session newer than the applied one to the player.
    fn apply(&mut self, now: Moment, new: Session) {
        if self
            .applied
            .as_ref()
            .is_some_and(|old| !new.is_newer_than(old))
        {
            return;
        }
        let action = session::plan(self.applied.as_ref(), &new);
        self.applied = Some(new.clone());
        self.push(Action::Applied(new.clone()));
        self.save(now);
        let Some(action) = action else {
            self.queue_follow();
            return;
        };
        tracing::info!(?action, "playback");
        let played = match action {
            session::Action::Play {
                track,
                position_micros,
                at,
            } => self.play(now, track, position_micros, at),
            session::Action::Follow { track, at } => {
                if self.following.take() == Some((at, track)) {
                    // Queued in the player already: it plays on by itself.
                    false
                } else {
                    self.play(now, track, 0, at)
                }
            }
            // Silent at the session's instant on every node, on the same frame.
            session::Action::Pause => {
                self.push(Action::PauseAt { at: new.start });
                false
            }
            session::Action::Stop => {
                self.following = None;
                self.push(Action::StopAt { at: new.start });
                false
            }
        };
        if !played {
            // Otherwise once the player has answered (`handle_played`).
            self.queue_follow();
        }
    }

    /// Plays the applied session again at the timeline's position, if it plays.
    fn replay(&mut self, now: Moment, why: &str) {
        self.deferred = false;
        if let Some((track, position, at)) = self.playing() {
            self.push(Action::Announce(NodeEvent::Joining {
                track: track.to_hex(),
                during_download: false,
                why: why.to_string(),
            }));
            self.play(now, track, position, at);
        }
    }

    /// Asks the player to play `track`; whether it was asked (not when the
    /// clock is not synced yet: playing on an unsynced clock would start out
    /// of step and then jump, so the tick plays the session once it synced).
    fn play(&mut self, _now: Moment, track: TrackId, position_micros: u64, at: i64) -> bool {
        self.streaming = None;
        if !self.clock_synced {
            self.deferred = true;
            return false;
        }
        self.deferred = false;
        // A prepare found it safe to start from the beginning while it downloads.
        let stream = self
            .prepared
            .remove(&track)
            .filter(|_| position_micros <= PREPARED_MAX_POSITION);
        self.push(Action::Play {
            track,
            position_micros,
            at,
            stream,
        });
        true
    }

    /// Queues, in the player, the track that follows the applied one at the
    /// instant the applied one ends, so that it plays on without a gap; or
    /// cancels what was queued when the session no longer calls for it.
    fn queue_follow(&mut self) {
        let want = self
            .applied
            .as_ref()
            .and_then(|s| Some((s.ends_at()?, s.successor()?)));
        if want == self.following {
            return;
        }
        self.following = want;
        match want {
            None => self.push(Action::Unfollow),
            Some((at, track)) => self.push(Action::Follow { track, at }),
        }
    }

    /// Stores a snapshot of the applied session when it differs from the
    /// one stored last.
    fn save(&mut self, now: Moment) {
        let Some(applied) = &self.applied else {
            return;
        };
        let snapshot = persist::snapshot(applied, now.swarm);
        if self.saved.as_ref() == Some(&snapshot) {
            return;
        }
        self.saved = Some(snapshot.clone());
        self.push(Action::Save(snapshot));
    }

    /// Starts downloading `track` unless a download of it is under way.
    fn fetch(&mut self, track: TrackId) {
        if self.fetching.insert(track) {
            self.push(Action::Fetch(track));
        }
    }

    /// Starts judging `track`'s download unless that is under way.
    fn watch(&mut self, track: TrackId) {
        if self.watching.insert(track) {
            self.push(Action::Watch(track));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
