//! The node's playback driver: roles, sessions and the player, wired to the swarm.
//!
//! One task ([`spawn`]) owns the node's [`Roles`] and the session it last
//! applied. Every tick it feeds membership to the roles, reports its view and
//! playback in heartbeats and, as coordinator, re-gossips the session (so
//! late joiners get it). It takes the swarm's session and control events and
//! the local API's commands:
//!
//! - as coordinator it decides ([`session::decide`]), prepares new tracks on
//!   every alive member over `/firefly/control/1` in a task that reports
//!   back ([`Input::PrepareDone`]; the loop goes on meanwhile), then decides
//!   again on the session as it is by then, publishes it and applies it. At
//!   the end of a track it starts the successor at that very instant
//!   ([`session::advance`]), and every node queues the successor in its
//!   player beforehand so that it follows without a gap;
//! - otherwise it forwards commands to the coordinator (off the loop, with
//!   retries through a failover) and answers prepares. A node that lacks
//!   the track starts downloading it from the peers that hold it (the
//!   swarm's transfer service) and answers once it can start from the
//!   beginning while the rest downloads ([`stream::Headroom`]: the first
//!   seconds present, the transfer several times faster than playback), or
//!   when the wait is over. It then starts with everyone, reading the chunks
//!   as they arrive ([`stream::PartialSource`]); otherwise it joins the
//!   running session at the current position, in step, as soon as that is
//!   safe or the download is complete.
//! - A play waits for this node's clock to sync, and a failed download is
//!   retried while the session still plays the track.
//!
//! [`Control`] is the handle the HTTP API holds.

use super::announce::{NodeEvent, Role, announce};
use super::audio::Audio;
use super::persist;
use super::roles::{MemberView, Roles};
use super::session::{self, Action, Decision};
use super::stream::{self, Headroom, PartialSource};
use super::zone_sessions::ZoneSessions;
use super::zones;
use firefly_library::{Library, TrackId};
use firefly_player::Decoder;
use firefly_swarm::{
    Client, ControlRequest, ControlResponse, Event, NodeStatus, Now, PeerId, Placement,
    PlaybackState, PlaybackSummary, Refusal, RoleView, Session, SwarmMicros, ZoneId,
};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

mod zoning;

/// How often roles are re-derived and status is reported.
const TICK: Duration = Duration::from_millis(250);
/// How often the coordinator re-gossips an unchanged session, in ticks.
const REPUBLISH_TICKS: u32 = 4;
/// A clock step at least this large restarts playback at the timeline's
/// position, µs (smaller ones the player slews away in well under a second).
const STEP_REPLAY_MICROS: u64 = 500;
/// How long a prepare may take before the node is left to join late.
const PREPARE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a node lacking a track waits, answering a prepare, for the
/// download to be safe to start from (inside [`PREPARE_TIMEOUT`]).
const PREPARE_WAIT: Duration = Duration::from_millis(1300);
/// The furthest start position a prepare's "safe from the beginning"
/// covers, µs (it saw [`stream::AHEAD_MICROS`] of audio from the start).
const PREPARED_MAX_POSITION: u64 = 1_000_000;
/// How long after a failed download the session's track is tried again.
const RETRY_PLAY: Duration = Duration::from_secs(1);
/// How long a command waits for a coordinator (covers a failover).
const FORWARD_PATIENCE: Duration = Duration::from_millis(4500);

/// Why a playback command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CommandFailed {
    /// The command is not valid now (nothing playing, unknown track…).
    #[error(transparent)]
    Refused(Refusal),
    /// No coordinator could be reached in time.
    #[error("no coordinator answered: {0}")]
    Unavailable(String),
}

enum Input {
    Local {
        request: ControlRequest,
        reply: oneshot::Sender<Result<Session, CommandFailed>>,
    },
    Swarm(Event),
    /// A download started by [`Driver::fetch`] finished.
    Downloaded(TrackId),
    /// A download started by [`Driver::fetch`] failed.
    FetchFailed(TrackId),
    /// A watcher of a download gave up (the session moved on, or the
    /// download ended first).
    Unwatched(TrackId),
    /// A prepare found `track` (downloading) safe to start from its
    /// beginning, at `rate` bytes/s, `ratio` times playback.
    Prepared {
        track: TrackId,
        rate: f64,
        ratio: f64,
    },
    /// The members were asked to prepare `track` for `request` (or the
    /// start position was refused).
    PrepareDone {
        request: ControlRequest,
        track: TrackId,
        result: Result<(), CommandFailed>,
        reply: Reply,
    },
    /// A track still downloading can be played safely from now on
    /// ([`stream::Headroom`]), at `rate` bytes/s, `ratio` times playback.
    Streamable {
        track: TrackId,
        rate: f64,
        ratio: f64,
    },
}

/// The API's handle on the driver.
#[derive(Clone)]
pub(crate) struct Control {
    inputs: mpsc::Sender<Input>,
    roles: watch::Receiver<RoleView>,
    session: watch::Receiver<Session>,
    zone_sessions: watch::Receiver<BTreeMap<ZoneId, Session>>,
}

impl Control {
    /// The latest session of every other zone, as its coordinator gossiped it.
    pub(crate) fn zone_sessions(&self) -> BTreeMap<ZoneId, Session> {
        self.zone_sessions.borrow().clone()
    }

    /// Runs a playback command through the coordinator; returns the session it made.
    pub(crate) async fn command(&self, request: ControlRequest) -> Result<Session, CommandFailed> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Local { request, reply })
            .await
            .map_err(|_| CommandFailed::Unavailable("the node is shutting down".into()))?;
        answer
            .await
            .map_err(|_| CommandFailed::Unavailable("the node is shutting down".into()))?
    }

    /// This node's role view.
    pub(crate) fn roles(&self) -> RoleView {
        self.roles.borrow().clone()
    }

    /// The session this node last applied.
    pub(crate) fn session(&self) -> Session {
        self.session.borrow().clone()
    }

    /// A receiver that wakes on every applied session.
    pub(crate) fn session_changes(&self) -> watch::Receiver<Session> {
        self.session.clone()
    }

    /// Hands a swarm event to the driver (drops it if the driver is gone).
    pub(crate) async fn swarm_event(&self, event: Event) {
        let _ = self.inputs.send(Input::Swarm(event)).await;
    }
}

struct Driver {
    client: Client,
    library: Library,
    audio: Audio,
    now: Now,
    roles: Roles,
    roles_tx: watch::Sender<RoleView>,
    session_tx: watch::Sender<Session>,
    applied: Option<Session>,
    /// Who made `applied`: the coordinator it came from, or this node.
    applied_from: Option<PeerId>,
    inputs: mpsc::Sender<Input>,
    ticks: u32,
    /// Downloads this driver started and that have not finished.
    fetching: HashSet<TrackId>,
    /// Tracks a watcher is judging for [`Input::Streamable`].
    watching: HashSet<TrackId>,
    /// The track the player plays from a download still under way.
    streaming: Option<TrackId>,
    /// A play waits for this node's clock to sync (the session it plays is `applied`).
    deferred: bool,
    /// Tracks a prepare found safe to start from their beginning while
    /// they download: (rate bytes/s, ratio to playback).
    prepared: std::collections::HashMap<TrackId, (f64, f64)>,
    /// When to try the applied session's track again after its download
    /// failed (e.g. the session arrived before the scan or the catalog did).
    retry_at: Option<tokio::time::Instant>,
    /// What the player has queued to follow the current track: (its first
    /// frame's swarm instant, the track).
    following: Option<(i64, TrackId)>,
    /// The snapshot of the session stored last ([`persist`]).
    saved: Option<Session>,
    /// This node's placement as the roles and sessions follow it (the zone
    /// its roles are derived in); reported in heartbeats.
    placement: Placement,
    /// Where the placement service publishes changes.
    placements: watch::Receiver<Placement>,
    /// Every zone's latest session.
    zone_sessions: ZoneSessions,
    zone_sessions_tx: watch::Sender<BTreeMap<ZoneId, Session>>,
}

/// Starts the driver; returns its handle.
pub(crate) fn spawn(
    client: Client,
    library: Library,
    audio: Audio,
    now: Now,
    placements: watch::Receiver<Placement>,
) -> Control {
    let (inputs, receiver) = mpsc::channel(256);
    let (roles_tx, roles) = watch::channel(RoleView::default());
    let placement = placements.borrow().clone();
    let (session_tx, session) = watch::channel(Session {
        zone: placement.zone.clone(),
        ..Session::default()
    });
    let (zone_sessions_tx, zone_sessions) = watch::channel(BTreeMap::new());
    let driver = Driver {
        placement,
        placements,
        zone_sessions: ZoneSessions::default(),
        zone_sessions_tx,
        roles: Roles::new(client.peer_id(), now()),
        client,
        library,
        audio,
        now,
        roles_tx,
        session_tx,
        applied: None,
        applied_from: None,
        inputs: inputs.clone(),
        ticks: 0,
        fetching: HashSet::new(),
        watching: HashSet::new(),
        streaming: None,
        deferred: false,
        retry_at: None,
        following: None,
        saved: None,
        prepared: std::collections::HashMap::new(),
    };
    tokio::spawn(driver.run(receiver));
    Control {
        inputs,
        roles,
        session,
        zone_sessions,
    }
}

impl Driver {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        // The session stored before a restart: paused where it was, carried
        // on under a new term if this node coordinates.
        let library = self.library.clone();
        if let Ok(Some(restored)) =
            tokio::task::spawn_blocking(move || persist::saved_session(&library)).await
            // Another zone's session is not this node's to carry on.
            && restored.zone == self.placement.zone
        {
            announce(&NodeEvent::SessionRestored {
                state: format!("{:?}", restored.state).to_lowercase(),
                track: restored.track.map(|t| t.to_hex()),
                position_ms: restored.position_micros / 1000,
                queued: restored.queue.len(),
            });
            self.saved = Some(restored.clone());
            let _ = self.session_tx.send(restored.clone());
            self.applied = Some(restored);
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut placements = self.placements.clone();
        loop {
            // Only the coordinator moves the queue on.
            let boundary = self
                .roles
                .is_coordinator()
                .then(|| self.until_boundary())
                .flatten();
            tokio::select! {
                _ = tick.tick() => self.on_tick().await,
                Ok(()) = placements.changed() => {
                    let placement = placements.borrow_and_update().clone();
                    self.follow_placement(placement).await;
                }
                () = tokio::time::sleep(boundary.unwrap_or(TICK)), if boundary.is_some() => {
                    self.on_boundary().await;
                }
                input = inputs.recv() => match input {
                    None => break,
                    Some(Input::Local { request, reply }) => self.on_local(request, reply).await,
                    Some(Input::Swarm(event)) => self.on_swarm(event).await,
                    Some(Input::Downloaded(track)) => self.on_downloaded(track).await,
                    Some(Input::FetchFailed(track)) => {
                        self.fetching.remove(&track);
                        if self.applied.as_ref().is_some_and(|s| {
                            s.track == Some(track) && s.state == PlaybackState::Playing
                        }) {
                            self.retry_at = Some(tokio::time::Instant::now() + RETRY_PLAY);
                        }
                    }
                    Some(Input::Unwatched(track)) => {
                        self.watching.remove(&track);
                    }
                    Some(Input::Prepared { track, rate, ratio }) => {
                        self.prepared.insert(track, (rate, ratio));
                    }
                    Some(Input::Streamable { track, rate, ratio }) => {
                        self.on_streamable(track, rate, ratio).await;
                    }
                    Some(Input::PrepareDone { request, track, result, reply }) => {
                        self.on_prepare_done(request, track, result, reply).await;
                    }
                },
            }
        }
    }

    fn swarm_now(&self) -> i64 {
        self.audio.timeline.swarm_now().as_micros()
    }

    fn current(&self) -> Session {
        self.applied.clone().unwrap_or_default()
    }

    async fn on_tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        let Ok(members) = self.client.members().await else {
            return;
        };
        // Roles are derived among this zone's members only.
        let views: Vec<MemberView> = zones::in_zone(&members, &self.placement.zone)
            .map(MemberView::of)
            .collect();
        self.keep_zone_sessions(&members);
        let was_coordinator = self.roles.is_coordinator();
        let changed = self.roles.handle_members((self.now)(), &views);
        while let Some(peer) = self.roles.poll_offender() {
            tracing::debug!(%peer, "role claim against the role rule");
            let _ = self
                .client
                .penalize(peer, "role claim against the rule")
                .await;
        }
        if let Some(view) = changed {
            let role = match view.coordinator {
                Some(c) if c == self.client.peer_id() => Role::Coordinator,
                Some(_) => Role::Following,
                None => Role::None,
            };
            announce(&NodeEvent::Role {
                role,
                coordinator: view.coordinator.map(|c| c.to_string()),
                term: view.term,
            });
            let _ = self.roles_tx.send(view);
        }
        self.join_zone_session().await;
        if self
            .retry_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.retry_at = None;
            if let Some(session) = self.applied.clone()
                && session.state == PlaybackState::Playing
                && let Some(track) = session.track
            {
                self.play(track, session.position_micros, session.start)
                    .await;
            }
        }
        if self.deferred && self.clock_synced().await {
            self.replay("now that the clock is synced").await;
        }
        if self.roles.is_coordinator() {
            if !was_coordinator && self.applied.is_some() {
                // Carry the last gossiped session on under the new term.
                let mut carried = self.current();
                carried.term = self.roles.view().term;
                carried.seq = carried
                    .seq
                    .saturating_add(1)
                    .min(firefly_swarm::MAX_COUNTER);
                self.publish(carried).await;
            } else if self.ticks.is_multiple_of(REPUBLISH_TICKS)
                && let Some(session) = self.applied.clone()
            {
                let _ = self.client.publish_session(session).await;
            }
        }
        self.queue_follow().await;
        if self.ticks.is_multiple_of(2) {
            self.save_session().await;
        }
        self.report_status().await;
    }

    /// Stores a snapshot of the applied session when it differs from the
    /// one stored last (while playing: every other tick, as the position
    /// moves on).
    async fn save_session(&mut self) {
        let Some(applied) = &self.applied else {
            return;
        };
        let snapshot = persist::snapshot(applied, self.swarm_now());
        if self.saved.as_ref() == Some(&snapshot) {
            return;
        }
        self.saved = Some(snapshot.clone());
        let library = self.library.clone();
        let _ =
            tokio::task::spawn_blocking(move || persist::save_session(&library, &snapshot)).await;
    }

    async fn report_status(&self) {
        let library = self.library.clone();
        let version = tokio::task::spawn_blocking(move || library.version())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let session = self.current();
        let status = NodeStatus {
            library_version: version,
            roles: self.roles.view(),
            playback: PlaybackSummary {
                state: session.state,
                track: session.track,
                position_ms: session.position_at(self.swarm_now()) / 1000,
            },
            placement: self.placement.clone(),
            ..NodeStatus::default()
        };
        let _ = self.client.set_status(status).await;
    }

    async fn on_local(
        &mut self,
        request: ControlRequest,
        reply: oneshot::Sender<Result<Session, CommandFailed>>,
    ) {
        if self.roles.is_coordinator() {
            self.coordinate(request, Reply::Local(reply)).await;
            return;
        }
        let client = self.client.clone();
        let roles = self.roles_tx.subscribe();
        let inputs = self.inputs.clone();
        tokio::spawn(forward(client, roles, inputs, request, reply));
    }

    async fn on_swarm(&mut self, event: Event) {
        match event {
            Event::ClockSynced => {
                if self.deferred {
                    self.replay("now that the clock is synced").await;
                }
            }
            Event::ClockStepped { by_micros } => {
                // A step moves the timeline under the player by more than it
                // could slew away in seconds (a node that started before it
                // had heard its peers, a healed partition): start again at
                // the timeline's position, in step at once.
                if by_micros.unsigned_abs() >= STEP_REPLAY_MICROS {
                    self.replay("after the swarm clock stepped").await;
                }
            }
            Event::Session { from, session } => {
                if let Ok(members) = self.client.members().await
                    && self.zone_sessions.handle_session(&members, from, &session)
                {
                    let _ = self.zone_sessions_tx.send(self.zone_sessions.all());
                }
                // Only the coordinator the role rule gives (among this
                // zone's members) speaks for the zone (docs/SECURITY.md);
                // others' sessions are ignored, whatever their term, and so
                // are other zones'.
                if session.zone != self.placement.zone {
                    return;
                }
                if self.roles.view().coordinator != Some(from) {
                    tracing::debug!(%from, term = session.term, "session not from the coordinator ignored");
                    return;
                }
                if self.applied_from != Some(from)
                    && let Some(old) = self.applied.as_mut()
                    && !session.is_newer_than(old)
                {
                    // A new coordinator's lineage (a healed partition) may
                    // count lower: its session follows the last one applied.
                    old.term = 0;
                    old.seq = 0;
                }
                self.applied_from = Some(from);
                self.apply(*session).await;
            }
            Event::ControlRequest { peer, key, request } => {
                let response = match request {
                    ControlRequest::Prepare { .. }
                        if self.roles.view().coordinator != Some(peer) =>
                    {
                        // Only the coordinator may make this node download. A
                        // peer that claims the role (elected a moment before
                        // this node saw it) is refused; any other is penalized.
                        let claims_it = self.client.members().await.is_ok_and(|members| {
                            members
                                .iter()
                                .any(|m| m.peer == peer && m.status.roles.coordinator == Some(peer))
                        });
                        if !claims_it {
                            let _ = self
                                .client
                                .penalize(peer, "prepare from a non-coordinator")
                                .await;
                        }
                        ControlResponse::Refused(Refusal::NotCoordinator)
                    }
                    ControlRequest::Prepare { track, .. } => {
                        let has_track = self.path_of(track).await.is_some();
                        if !has_track {
                            // Start fetching now, and answer once the track
                            // can start from the beginning while it
                            // downloads (or the wait is over).
                            self.fetch(track);
                            self.prepare_streaming(track, key);
                            return;
                        }
                        ControlResponse::Ready { has_track }
                    }
                    request if self.roles.is_coordinator() => {
                        // Answered by `coordinate`, now or once the prepare is done.
                        self.coordinate(request, Reply::Remote(key)).await;
                        return;
                    }
                    _ => ControlResponse::Refused(Refusal::NotCoordinator),
                };
                tracing::debug!(%peer, ?response, "control request answered");
                let _ = self.client.respond_control(key, response).await;
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    /// Carries out a command as coordinator. A new track is first prepared
    /// on every member, off the loop ([`Input::PrepareDone`] comes back):
    /// ticks and other commands go on meanwhile.
    async fn coordinate(&mut self, request: ControlRequest, reply: Reply) {
        let term = self.roles.view().term;
        let seed = rand::random::<u64>();
        let decision = session::decide(&self.current(), term, &request, self.swarm_now(), seed);
        match decision {
            Err(refusal) => {
                reply
                    .send(&self.client, Err(CommandFailed::Refused(refusal)))
                    .await
            }
            Ok(Decision::Publish(mut next)) => {
                self.fill_length(&mut next).await;
                self.publish(next.clone()).await;
                reply.send(&self.client, Ok(next)).await;
            }
            Ok(Decision::Prepare(prepared)) => {
                let Some(track) = prepared.track else {
                    let refused = Err(CommandFailed::Refused(Refusal::NothingPlaying));
                    reply.send(&self.client, refused).await;
                    return;
                };
                let (client, library) = (self.client.clone(), self.library.clone());
                let inputs = self.inputs.clone();
                let position = prepared.position_micros;
                let zone = self.placement.zone.clone();
                tokio::spawn(async move {
                    let mut result = check_position(&library, track, position).await;
                    if result.is_ok()
                        && prepare_everywhere(&client, &library, &zone, term, track).await == 0
                    {
                        result = Err(CommandFailed::Refused(Refusal::NoHolder(track)));
                    }
                    let done = Input::PrepareDone {
                        request,
                        track,
                        result,
                        reply,
                    };
                    let _ = inputs.send(done).await;
                });
            }
        }
    }

    /// A prepare is done: start the track, deciding again on the session as
    /// it is now (another command or the end of a track may have come
    /// meanwhile).
    async fn on_prepare_done(
        &mut self,
        request: ControlRequest,
        track: TrackId,
        result: Result<(), CommandFailed>,
        reply: Reply,
    ) {
        if let Err(err) = result {
            reply.send(&self.client, Err(err)).await;
            return;
        }
        if !self.roles.is_coordinator() {
            let refused = Err(CommandFailed::Refused(Refusal::NotCoordinator));
            reply.send(&self.client, refused).await;
            return;
        }
        let term = self.roles.view().term;
        let seed = rand::random::<u64>();
        let now = self.swarm_now();
        let mut next = match session::decide(&self.current(), term, &request, now, seed) {
            Ok(Decision::Prepare(again)) if again.track == Some(track) => {
                session::start(again, now)
            }
            Ok(Decision::Publish(next)) => next,
            // The session moved on to another track meanwhile.
            Ok(Decision::Prepare(_)) => {
                reply
                    .send(&self.client, Err(CommandFailed::Refused(Refusal::Busy)))
                    .await;
                return;
            }
            Err(refusal) => {
                reply
                    .send(&self.client, Err(CommandFailed::Refused(refusal)))
                    .await;
                return;
            }
        };
        self.fill_length(&mut next).await;
        self.publish(next.clone()).await;
        reply.send(&self.client, Ok(next)).await;
    }

    /// Applies and gossips `next`, this node's own session as coordinator
    /// of its zone.
    async fn publish(&mut self, mut next: Session) {
        next.zone = self.placement.zone.clone();
        self.applied_from = Some(self.client.peer_id());
        self.apply(next.clone()).await;
        let _ = self.client.publish_session(next).await;
    }

    /// Fills in the length of `session`'s track when it is not known yet.
    async fn fill_length(&self, session: &mut Session) {
        if session.duration_micros.is_none()
            && let Some(track) = session.track
        {
            session.duration_micros = self.length_of(track).await;
        }
    }

    /// The exact length of `track`, µs: from its decoder's frame count when
    /// this node holds it (the schedule of the next track is exact to the
    /// µs then), else from its manifest (to the ms).
    async fn length_of(&self, track: TrackId) -> Option<u64> {
        let path = self.path_of(track).await;
        let library = self.library.clone();
        tokio::task::spawn_blocking(move || {
            let exact = path.and_then(|path| {
                let decoder = Decoder::open_file(&path, 2).ok()?;
                let info = decoder.info();
                let frames = info.frames?;
                let rate = u128::from(info.sample_rate).max(1);
                u64::try_from((u128::from(frames) * 1_000_000 + rate / 2) / rate).ok()
            });
            exact.or_else(|| {
                let manifest = library.manifest(track).ok()??;
                manifest.meta.duration_ms.map(|ms| ms.saturating_mul(1000))
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// As coordinator, once the current track has reached its end: start
    /// its successor at that very instant (or stop at the end of the queue).
    async fn on_boundary(&mut self) {
        if !self.roles.is_coordinator() {
            return;
        }
        let term = self.roles.view().term;
        let Some(mut next) = session::advance(&self.current(), term, self.swarm_now()) else {
            return;
        };
        self.fill_length(&mut next).await;
        tracing::info!(track = ?next.track, at = next.start, "track ended; the queue moves on");
        self.publish(next).await;
    }

    /// How long until the applied session's track ends, if it plays.
    fn until_boundary(&self) -> Option<Duration> {
        let ends = self.applied.as_ref()?.ends_at()?;
        let left = ends.saturating_sub(self.swarm_now()).max(0);
        Some(Duration::from_micros(u64::try_from(left).unwrap_or(0)))
    }

    /// Queues, in the player, the track that follows the applied one at the
    /// instant the applied one ends, so that it plays on without a gap; or
    /// cancels what was queued when the session no longer calls for it.
    async fn queue_follow(&mut self) {
        let want = self
            .applied
            .as_ref()
            .and_then(|s| Some((s.ends_at()?, s.successor()?)));
        if want == self.following {
            return;
        }
        let Some((at, track)) = want else {
            self.following = None;
            if let Some(player) = self.audio.player()
                && let Err(err) = player.unfollow()
            {
                tracing::warn!(%err, "cannot unqueue the next track");
            }
            return;
        };
        let Some(path) = self.path_of(track).await else {
            // Fetched now, queued once here (`on_downloaded`, or the tick).
            self.fetch(track);
            return;
        };
        let Some(channels) = self.audio.player().map(|p| p.format().channels) else {
            return;
        };
        let opened = tokio::task::spawn_blocking(move || Decoder::open_file(&path, channels)).await;
        let Ok(Ok(decoder)) = opened else {
            tracing::warn!(track = %track.to_hex(), "cannot open the next track");
            return;
        };
        let Some(mut player) = self.audio.player() else {
            return;
        };
        match player.follow(decoder, 0, SwarmMicros(at)) {
            Ok(_) => self.following = Some((at, track)),
            Err(err) => tracing::warn!(%err, "cannot queue the next track"),
        }
    }

    /// The file holding `track` on this node, if any.
    async fn path_of(&self, track: TrackId) -> Option<std::path::PathBuf> {
        let library = self.library.clone();
        tokio::task::spawn_blocking(move || library.track_paths(track))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|paths| paths.into_iter().find(|p| p.is_file()))
    }

    /// Applies a session newer than the applied one to the player.
    async fn apply(&mut self, new: Session) {
        if self
            .applied
            .as_ref()
            .is_some_and(|old| !new.is_newer_than(old))
        {
            return;
        }
        let action = session::plan(self.applied.as_ref(), &new);
        self.applied = Some(new.clone());
        let _ = self.session_tx.send(new.clone());
        self.save_session().await;
        let Some(action) = action else {
            return;
        };
        tracing::info!(?action, "playback");
        match action {
            Action::Play {
                track,
                position_micros,
                at,
            } => self.play(track, position_micros, at).await,
            Action::Follow { track, at } => {
                if self.following.take() == Some((at, track)) {
                    // Queued in the player already: it plays on by itself.
                } else {
                    self.play(track, 0, at).await;
                }
            }
            // Silent at the session's instant on every node, on the same frame.
            Action::Pause => {
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.pause_at(SwarmMicros(new.start))
                {
                    tracing::warn!(%err, "cannot pause");
                }
            }
            Action::Stop => {
                self.following = None;
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.stop_at(SwarmMicros(new.start))
                {
                    tracing::warn!(%err, "cannot stop");
                }
            }
        }
        self.queue_follow().await;
    }

    /// A track finished downloading: join the session if it still plays it.
    async fn on_downloaded(&mut self, track: TrackId) {
        self.fetching.remove(&track);
        self.queue_follow().await;
        if self.streaming == Some(track) {
            // Already playing it from the download; the file serves the next play.
            self.streaming = None;
            return;
        }
        if let Some(session) = &self.applied
            && session.track == Some(track)
            && session.state == PlaybackState::Playing
        {
            let (position, at) = (session.position_micros, session.start);
            announce(&NodeEvent::Joining {
                track: track.to_hex(),
                during_download: false,
                why: "after its download".into(),
            });
            self.play(track, position, at).await;
        }
    }

    /// Starts downloading `track` unless this driver already is.
    fn fetch(&mut self, track: TrackId) {
        if !self.fetching.insert(track) {
            return;
        }
        let (client, inputs) = (self.client.clone(), self.inputs.clone());
        tokio::spawn(async move {
            let input = match client.download(track).await {
                Ok(_) => Input::Downloaded(track),
                Err(err) => {
                    announce(&NodeEvent::DownloadFailed {
                        track: track.to_hex(),
                        error: err.to_string(),
                    });
                    // So that a later play fetches again.
                    Input::FetchFailed(track)
                }
            };
            let _ = inputs.send(input).await;
        });
    }

    /// Answers a prepare for `track` (downloading) once it can start from
    /// its beginning while it downloads, or when [`PREPARE_WAIT`] is over.
    fn prepare_streaming(&self, track: TrackId, key: firefly_swarm::RequestKey) {
        let (library, now, client) = (self.library.clone(), self.now.clone(), self.client.clone());
        let reading = self.library.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + PREPARE_WAIT;
            let judged = judge(library, now, track, || Some(Some(0)), Some(deadline)).await;
            if let Some((rate, ratio)) = judged {
                // Told before answering, so the driver knows before the session comes.
                let _ = inputs.send(Input::Prepared { track, rate, ratio }).await;
            }
            // The download may also have finished within the wait.
            let held = tokio::task::spawn_blocking(move || {
                reading
                    .track_paths(track)
                    .is_ok_and(|p| p.iter().any(|p| p.is_file()))
            })
            .await
            .unwrap_or(false);
            let response = ControlResponse::Ready {
                has_track: judged.is_some() || held,
            };
            let _ = client.respond_control(key, response).await;
        });
    }

    /// A watcher found `track` safe to play while it downloads.
    async fn on_streamable(&mut self, track: TrackId, rate: f64, ratio: f64) {
        self.watching.remove(&track);
        let Some(session) = self.applied.clone() else {
            return;
        };
        if session.track != Some(track)
            || session.state != PlaybackState::Playing
            || self.streaming == Some(track)
        {
            return;
        }
        if self.path_of(track).await.is_some() {
            // Finished meanwhile: `on_downloaded` plays the file.
            return;
        }
        self.stream_from(track, session.position_micros, session.start, rate, ratio)
            .await;
    }

    /// Plays `track` (still downloading) from the library's chunks so that
    /// `position_micros` sounds at `at`.
    async fn stream_from(
        &mut self,
        track: TrackId,
        position_micros: u64,
        at: i64,
        rate: f64,
        ratio: f64,
    ) {
        let library = self.library.clone();
        let Some(manifest) =
            tokio::task::spawn_blocking(move || stream::manifest_of(&library, track))
                .await
                .ok()
                .flatten()
        else {
            return;
        };
        announce(&NodeEvent::Joining {
            track: track.to_hex(),
            during_download: true,
            why: format!(
                "while it downloads ({:.1} MB/s, {ratio:.1}x playback)",
                rate / 1e6
            ),
        });
        let source = PartialSource::new(self.library.clone(), &manifest);
        let hint = manifest.meta.extension.clone();
        if self
            .start(Box::new(source), Some(hint), position_micros, at)
            .await
        {
            self.streaming = Some(track);
        }
    }

    /// Plays the applied session again at the timeline's position, if it plays.
    async fn replay(&mut self, why: &str) {
        self.deferred = false;
        if let Some(session) = self.applied.clone()
            && session.state == PlaybackState::Playing
            && let Some(track) = session.track
        {
            announce(&NodeEvent::Joining {
                track: track.to_hex(),
                during_download: false,
                why: why.to_string(),
            });
            self.play(track, session.position_micros, session.start)
                .await;
        }
    }

    /// Whether this node's swarm clock has synced with its peers (a lone
    /// node counts as synced: there is no one to be out of step with).
    async fn clock_synced(&self) -> bool {
        let lone = self.client.members().await.is_ok_and(|m| m.is_empty());
        lone || self.client.clock().await.is_ok_and(|c| c.synced)
    }

    async fn play(&mut self, track: TrackId, position_micros: u64, at: i64) {
        self.streaming = None;
        if !self.clock_synced().await {
            // Playing on an unsynced clock would start out of step and then
            // jump; the tick plays the session once the clock has synced.
            self.deferred = true;
            return;
        }
        self.deferred = false;
        let Some(path) = self.path_of(track).await else {
            if let Some((rate, ratio)) = self.prepared.remove(&track)
                && position_micros <= PREPARED_MAX_POSITION
            {
                // The prepare found it safe to start from the beginning.
                self.stream_from(track, position_micros, at, rate, ratio)
                    .await;
                if self.streaming == Some(track) {
                    return;
                }
            }
            announce(&NodeEvent::AwaitingDownload {
                track: track.to_hex(),
            });
            // Whatever played before is no longer the session's sound.
            if let Some(player) = self.audio.player()
                && let Err(err) = player.stop()
            {
                tracing::warn!(%err, "cannot stop");
            }
            self.fetch(track);
            self.watch(track);
            return;
        };
        let hint = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_string);
        match std::fs::File::open(&path) {
            Ok(file) => {
                self.start(Box::new(file), hint, position_micros, at).await;
            }
            Err(err) => tracing::warn!(%err, path = %path.display(), "cannot open the track"),
        }
    }

    /// Judges, off the loop, when `track` (downloading) may start; sends
    /// [`Input::Streamable`] then. Ends when the session moves to another
    /// track or the download ends.
    fn watch(&mut self, track: TrackId) {
        if !self.watching.insert(track) {
            return;
        }
        let library = self.library.clone();
        let timeline = self.audio.timeline.clone();
        let sessions = self.session_tx.subscribe();
        let inputs = self.inputs.clone();
        let now = self.now.clone();
        tokio::spawn(async move {
            // The position the session plays now; none once it plays something else.
            let position = || {
                let session = sessions.borrow().clone();
                (session.track == Some(track)).then(|| {
                    (session.state == PlaybackState::Playing)
                        .then(|| session.position_at(timeline.swarm_now().as_micros()))
                })
            };
            let input = match judge(library, now, track, position, None).await {
                Some((rate, ratio)) => Input::Streamable { track, rate, ratio },
                None => Input::Unwatched(track),
            };
            let _ = inputs.send(input).await;
        });
    }

    /// Opens `source` and plays it so that `position_micros` sounds at
    /// swarm instant `at`; whether the player took it.
    async fn start(
        &mut self,
        source: Box<dyn firefly_player::MediaSource>,
        hint: Option<String>,
        position_micros: u64,
        at: i64,
    ) -> bool {
        let Some(channels) = self.audio.player().map(|p| p.format().channels) else {
            return false;
        };
        let opened =
            tokio::task::spawn_blocking(move || Decoder::open(source, hint.as_deref(), channels))
                .await;
        let decoder = match opened {
            Ok(Ok(decoder)) => decoder,
            Ok(Err(err)) => {
                tracing::warn!(%err, "cannot open the track");
                return false;
            }
            Err(err) => {
                tracing::warn!(%err, "the decoder task failed");
                return false;
            }
        };
        let rate = u128::from(decoder.info().sample_rate);
        let frame = u64::try_from(u128::from(position_micros) * rate / 1_000_000).unwrap_or(0);
        let Some(mut player) = self.audio.player() else {
            return false;
        };
        // A play replaces what was queued to follow.
        self.following = None;
        match player.play(decoder, frame, SwarmMicros(at)) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(%err, "cannot play");
                false
            }
        }
    }
}

/// Samples `track`'s download every 100 ms until playing it from the
/// position `position` gives (`Some(None)`: not playing yet) is safe
/// ([`Headroom`]); returns the download rate (bytes/s) and its ratio to
/// playback then. `None` when `position` gives up (`None`), the track is
/// held (the download finished), it has no known duration, or `deadline`
/// passes.
async fn judge(
    library: Library,
    now: Now,
    track: TrackId,
    position: impl Fn() -> Option<Option<u64>>,
    deadline: Option<tokio::time::Instant>,
) -> Option<(f64, f64)> {
    let mut headroom: Option<Headroom> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return None;
        }
        let at = position()?;
        let reading = library.clone();
        let seen = tokio::task::spawn_blocking(move || {
            let held = !reading.track_paths(track).ok()?.is_empty();
            let manifest = stream::manifest_of(&reading, track)?;
            let missing = reading.missing_chunks(track).ok()?;
            Some((held, stream::present_prefix(&manifest, &missing), manifest))
        })
        .await
        .ok()
        .flatten();
        let Some((held, prefix, manifest)) = seen else {
            continue;
        };
        if held {
            return None;
        }
        let duration_ms = manifest.meta.duration_ms?;
        let judge = headroom
            .get_or_insert_with(|| Headroom::new(manifest.size, duration_ms.saturating_mul(1000)));
        judge.handle_sample(now().as_micros(), prefix);
        if let Some(at) = at
            && judge.is_safe(at, prefix)
        {
            let rate = judge.download_rate().unwrap_or(0.0);
            return Some((rate, rate / judge.playback_rate()));
        }
    }
}

/// Sends a command to the coordinator, retrying through a failover.
async fn forward(
    client: Client,
    mut roles: watch::Receiver<RoleView>,
    inputs: mpsc::Sender<Input>,
    request: ControlRequest,
    reply: oneshot::Sender<Result<Session, CommandFailed>>,
) {
    let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
    let mut last = String::from("no coordinator yet");
    while tokio::time::Instant::now() < deadline {
        let coordinator: Option<PeerId> = roles.borrow_and_update().coordinator;
        match coordinator {
            Some(c) if c == client.peer_id() => {
                // This node took over meanwhile: let the driver coordinate.
                let _ = inputs.send(Input::Local { request, reply }).await;
                return;
            }
            Some(c) => match client.control(c, request.clone()).await {
                Ok(ControlResponse::Session(session)) => {
                    let _ = reply.send(Ok(*session));
                    return;
                }
                Ok(ControlResponse::Refused(Refusal::NotCoordinator)) => {
                    last = format!("{c} is no longer the coordinator");
                }
                Ok(ControlResponse::Refused(refusal)) => {
                    let _ = reply.send(Err(CommandFailed::Refused(refusal)));
                    return;
                }
                Ok(other) => last = format!("unexpected answer {other:?}"),
                Err(err) => last = err.to_string(),
            },
            None => {}
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), roles.changed()).await;
    }
    let _ = reply.send(Err(CommandFailed::Unavailable(last)));
}

/// Refuses a start position past the end of a track this node knows.
async fn check_position(
    library: &Library,
    track: TrackId,
    position: u64,
) -> Result<(), CommandFailed> {
    if position == 0 {
        return Ok(());
    }
    let library = library.clone();
    let manifest = tokio::task::spawn_blocking(move || library.manifest(track))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    if let Some(duration_ms) = manifest.and_then(|m| m.meta.duration_ms)
        && position / 1000 > duration_ms
    {
        return Err(CommandFailed::Refused(Refusal::PastTheEnd {
            position_ms: position / 1000,
            duration_ms,
        }));
    }
    Ok(())
}

/// Asks every alive member of `zone` to prepare `track`; returns how many
/// hold it (this node included). Late or failing members join late.
async fn prepare_everywhere(
    client: &Client,
    library: &Library,
    zone: &ZoneId,
    term: u64,
    track: TrackId,
) -> usize {
    let members = client.members().await.unwrap_or_default();
    let asks = zones::in_zone(&members, zone).map(|member| {
        let client = client.clone();
        async move {
            let ask = client.control(member.peer, ControlRequest::Prepare { term, track });
            match tokio::time::timeout(PREPARE_TIMEOUT, ask).await {
                Ok(Ok(ControlResponse::Ready { has_track })) => has_track,
                other => {
                    tracing::info!(peer = %member.peer, ?other, "no ready from a member; it joins late");
                    false
                }
            }
        }
    });
    let ready = futures::future::join_all(asks).await;
    let reading = library.clone();
    let mine = tokio::task::spawn_blocking(move || {
        reading
            .track_paths(track)
            .is_ok_and(|paths| paths.iter().any(|p| p.is_file()))
    })
    .await
    .unwrap_or(false);
    usize::from(mine) + ready.into_iter().filter(|has| *has).count()
}

/// Where a command's answer goes: the local API, or a peer that sent it.
enum Reply {
    Local(oneshot::Sender<Result<Session, CommandFailed>>),
    Remote(firefly_swarm::RequestKey),
}

impl Reply {
    async fn send(self, client: &Client, result: Result<Session, CommandFailed>) {
        match self {
            Reply::Local(reply) => {
                let _ = reply.send(result);
            }
            Reply::Remote(key) => {
                let response = match result {
                    Ok(session) => ControlResponse::Session(Box::new(session)),
                    Err(CommandFailed::Refused(refusal)) => ControlResponse::Refused(refusal),
                    // Not on the coordinator's own path; say so rather than drop it.
                    Err(CommandFailed::Unavailable(_)) => ControlResponse::Refused(Refusal::Busy),
                };
                tracing::debug!(?response, "control request answered");
                let _ = client.respond_control(key, response).await;
            }
        }
    }
}

/// The playback state a session shows the API: position now, in ms.
pub(crate) fn position_ms(session: &Session, swarm_now: i64) -> u64 {
    match session.state {
        PlaybackState::Stopped => 0,
        _ => session.position_at(swarm_now) / 1000,
    }
}
