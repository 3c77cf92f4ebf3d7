//! The node's playback driver: the I/O shell around [`LocalPlay`].
//!
//! One task ([`spawn`]) owns the node's playback machine ([`LocalPlay`]:
//! roles, the session applied last, what the player and the downloads are
//! doing) and turns what happens into its inputs: a timer tick with the
//! swarm's members and the clock's status, the end of the current track,
//! the local API's commands, the swarm's sessions, control requests and
//! clock events, and what the tasks it started report (a download done or
//! failed, safe to stream, a prepare answered). After each input it carries
//! out the machine's [`Action`]s in order: the player (play, follow, pause,
//! stop), downloads and their watchers, answers, gossip, heartbeat status,
//! the stored snapshot. What only I/O can find out (a track's file is
//! missing, its exact length, whether the player took it) goes back to the
//! machine at once, and what that brings is carried out before the next
//! action. It decides nothing itself.
//!
//! Slow work runs in tasks that report back as inputs, so ticks and other
//! nodes' commands go on meanwhile: preparing every member for a new track
//! (over `/firefly/control/1`), forwarding a command to the coordinator
//! (with retries through a failover), a download (the swarm's transfer
//! service), judging whether a download can be played while it goes on
//! ([`stream::Headroom`]; played then from its chunks as they arrive,
//! [`stream::PartialSource`]), and answering a prepare once the track can
//! start from its beginning (or the wait is over).
//!
//! [`Control`] is the handle the HTTP API holds.

use super::announce::{NodeEvent, Role, announce};
use super::audio::Audio;
use super::local_play::{Action, LocalPlay, Moment, PlayOutcome, Throughput};
use super::persist;
use super::roles::MemberView;
use super::stream::{self, Headroom, PartialSource};
use super::zone_sessions::ZoneSessions;
use super::zones;
use firefly_library::{Library, TrackId};
use firefly_player::Decoder;
use firefly_swarm::{
    Client, ControlRequest, ControlResponse, Event, NodeStatus, Now, PeerId, Placement,
    PlaybackState, Refusal, RoleView, Session, SwarmMicros, ZoneId,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

mod zoning;

/// How often roles are re-derived and status is reported.
const TICK: Duration = Duration::from_millis(250);
/// How often the library's version is read for the status report. The
/// report goes out every [`TICK`] but heartbeats carry it once a second,
/// so reading the version (a blocking-pool wake-up and a database read
/// transaction) every tick cost CPU for nothing (issue 13's CPU goal).
const VERSION_EVERY: Duration = Duration::from_secs(1);
/// How long a prepare may take before the node is left to join late.
const PREPARE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a node lacking a track waits, answering a prepare, for the
/// download to be safe to start from (inside [`PREPARE_TIMEOUT`]).
const PREPARE_WAIT: Duration = Duration::from_millis(1300);
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
    /// A command from the local API, for `zone`'s session (this node's
    /// zone when `None`).
    Local {
        zone: Option<ZoneId>,
        request: ControlRequest,
        reply: oneshot::Sender<Result<Session, CommandFailed>>,
    },
    Swarm(Event),
    /// A download started by [`Action::Fetch`] finished.
    Downloaded(TrackId),
    /// A download started by [`Action::Fetch`] failed.
    FetchFailed(TrackId),
    /// A watcher of a download gave up (the session moved on, or the
    /// download ended first).
    Unwatched(TrackId),
    /// A prepare found `track` (downloading) safe to start from its
    /// beginning, at `pace`.
    Prepared {
        track: TrackId,
        pace: Throughput,
    },
    /// The members were asked to prepare `track` for `request` (or the
    /// start position was refused).
    PrepareDone {
        request: ControlRequest,
        track: TrackId,
        result: Result<(), Refusal>,
        reply: Reply,
    },
    /// A track still downloading can be played safely from now on
    /// ([`stream::Headroom`]), at `pace`.
    Streamable {
        track: TrackId,
        pace: Throughput,
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
    /// The latest session of every zone, as its coordinator gossiped it.
    pub(crate) fn zone_sessions(&self) -> BTreeMap<ZoneId, Session> {
        self.zone_sessions.borrow().clone()
    }

    /// Runs a playback command through the coordinator; returns the session it made.
    pub(crate) async fn command(&self, request: ControlRequest) -> Result<Session, CommandFailed> {
        self.command_in(None, request).await
    }

    /// Runs a playback command through the coordinator of `zone` (this
    /// node's when `None`); returns the session it made.
    pub(crate) async fn command_in(
        &self,
        zone: Option<ZoneId>,
        request: ControlRequest,
    ) -> Result<Session, CommandFailed> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Local {
                zone,
                request,
                reply,
            })
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
    machine: LocalPlay<Reply>,
    roles_tx: watch::Sender<RoleView>,
    session_tx: watch::Sender<Session>,
    inputs: mpsc::Sender<Input>,
    /// This node's placement as the machine follows it (the zone whose
    /// members its roles are derived among); reported in heartbeats.
    placement: Placement,
    /// Where the placement service publishes changes.
    placements: watch::Receiver<Placement>,
    /// Every zone's latest session.
    zone_sessions: ZoneSessions,
    zone_sessions_tx: watch::Sender<BTreeMap<ZoneId, Session>>,
    /// Stores session snapshots without holding up the actions after them.
    saver: persist::SessionSaver,
    /// The library's version as last read, and when (see [`VERSION_EVERY`]).
    library_version: Option<(u64, tokio::time::Instant)>,
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
        machine: LocalPlay::new(client.peer_id(), now()).in_zone(placement.zone.clone()),
        placement,
        placements,
        zone_sessions: ZoneSessions::default(),
        zone_sessions_tx,
        saver: persist::SessionSaver::spawn(library.clone()),
        library_version: None,
        client,
        library,
        audio,
        now,
        roles_tx,
        session_tx,
        inputs: inputs.clone(),
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
        let library = self.library.clone();
        if let Ok(Some(restored)) =
            tokio::task::spawn_blocking(move || persist::saved_session(&library)).await
        {
            self.machine.handle_restored(restored);
            self.carry_out().await;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut placements = self.placements.clone();
        loop {
            let boundary = self.machine.poll_timeout().map(|ends| {
                let left = ends.saturating_sub(self.swarm_now()).max(0);
                Duration::from_micros(u64::try_from(left).unwrap_or(0))
            });
            tokio::select! {
                _ = tick.tick() => self.on_tick().await,
                Ok(()) = placements.changed() => {
                    let placement = placements.borrow_and_update().clone();
                    self.follow_placement(placement).await;
                }
                () = tokio::time::sleep(boundary.unwrap_or(TICK)), if boundary.is_some() => {
                    self.refresh_clock().await;
                    self.machine.handle_timeout(self.moment());
                }
                input = inputs.recv() => match input {
                    None => break,
                    Some(input) => self.on_input(input).await,
                },
            }
            self.carry_out().await;
        }
    }

    /// The library's version, read at most every [`VERSION_EVERY`].
    async fn library_version(&mut self) -> u64 {
        let now = tokio::time::Instant::now();
        if let Some((version, at)) = self.library_version
            && now.duration_since(at) < VERSION_EVERY
        {
            return version;
        }
        let library = self.library.clone();
        let version = tokio::task::spawn_blocking(move || library.version())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        self.library_version = Some((version, now));
        version
    }

    fn swarm_now(&self) -> i64 {
        self.audio.timeline.swarm_now().as_micros()
    }

    fn moment(&self) -> Moment {
        Moment {
            local: (self.now)(),
            swarm: self.swarm_now(),
        }
    }

    /// Whether this node's swarm clock has synced with its peers (a lone
    /// node counts as synced: there is no one to be out of step with).
    async fn clock_synced(&self) -> bool {
        let lone = self.client.members().await.is_ok_and(|m| m.is_empty());
        lone || self.client.clock().await.is_ok_and(|c| c.synced)
    }

    /// Tells the machine the clock's status as it is now (a play waits
    /// for it).
    async fn refresh_clock(&mut self) {
        let synced = self.clock_synced().await;
        self.machine.handle_clock_status(synced);
    }

    async fn on_tick(&mut self) {
        let Ok(members) = self.client.members().await else {
            return;
        };
        // Roles are derived among this zone's members only.
        let views: Vec<MemberView> = zones::in_zone(&members, &self.placement.zone)
            .map(MemberView::of)
            .collect();
        let synced = members.is_empty() || self.client.clock().await.is_ok_and(|c| c.synced);
        self.machine.handle_tick(self.moment(), &views, synced);
        self.keep_zone_sessions(&members);
        self.join_zone_session();
    }

    async fn on_input(&mut self, input: Input) {
        let seed = rand::random::<u64>();
        match input {
            Input::Local {
                zone,
                request,
                reply,
            } => {
                self.refresh_clock().await;
                let now = self.moment();
                let reply = Reply::Local(reply);
                match zone {
                    Some(zone) => self
                        .machine
                        .handle_zone_command(now, zone, request, reply, seed),
                    None => self.machine.handle_command(now, request, reply, seed),
                }
            }
            Input::Swarm(event) => self.on_swarm(event, seed).await,
            Input::Downloaded(track) => {
                self.refresh_clock().await;
                self.machine.handle_downloaded(self.moment(), track);
            }
            Input::FetchFailed(track) => self.machine.handle_fetch_failed(self.moment(), track),
            Input::Unwatched(track) => self.machine.handle_unwatched(track),
            Input::Prepared { track, pace } => self.machine.handle_prepared(track, pace),
            Input::Streamable { track, pace } => {
                let held = self.path_of(track).await.is_some();
                self.machine.handle_streamable(track, pace, held);
            }
            Input::PrepareDone {
                request,
                track,
                result,
                reply,
            } => {
                self.refresh_clock().await;
                let now = self.moment();
                self.machine
                    .handle_prepare_done(now, request, track, result, reply, seed);
            }
        }
    }

    async fn on_swarm(&mut self, event: Event, seed: u64) {
        match event {
            Event::ClockSynced => self.machine.handle_clock_synced(self.moment()),
            Event::ClockStepped { by_micros } => {
                self.refresh_clock().await;
                self.machine.handle_clock_stepped(self.moment(), by_micros);
            }
            Event::Session { from, session } => {
                self.record_zone_session(from, &session).await;
                self.refresh_clock().await;
                self.machine.handle_session(self.moment(), from, *session);
            }
            Event::ControlRequest {
                peer,
                key,
                request: ControlRequest::Prepare { track, .. },
            } => {
                let members = self.client.members().await.unwrap_or_default();
                let views: Vec<MemberView> = members.iter().map(MemberView::of).collect();
                let held = self.path_of(track).await.is_some();
                self.machine
                    .handle_prepare(peer, track, Reply::Remote(key), &views, held);
            }
            Event::ControlRequest { peer, key, request } => {
                self.refresh_clock().await;
                let now = self.moment();
                self.machine
                    .handle_request(now, peer, request, Reply::Remote(key), seed);
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    /// Carries out the machine's actions in order; what an action hands
    /// back to the machine is carried out before the next one.
    async fn carry_out(&mut self) {
        let mut todo: VecDeque<Action<Reply>> = VecDeque::new();
        loop {
            let fresh: Vec<Action<Reply>> =
                std::iter::from_fn(|| self.machine.poll_action()).collect();
            for action in fresh.into_iter().rev() {
                todo.push_front(action);
            }
            let Some(action) = todo.pop_front() else {
                return;
            };
            self.carry_out_one(action).await;
        }
    }

    async fn carry_out_one(&mut self, action: Action<Reply>) {
        match action {
            Action::RoleChanged(view) => {
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
            Action::Penalize { peer, why } => {
                let _ = self.client.penalize(peer, why).await;
            }
            Action::Announce(event) => announce(&event),
            Action::Applied(session) => {
                let _ = self.session_tx.send(session);
            }
            Action::Save(snapshot) => self.saver.save(snapshot),
            Action::Report { roles, playback } => {
                let version = self.library_version().await;
                let status = NodeStatus {
                    library_version: version,
                    roles,
                    playback,
                    placement: self.placement.clone(),
                    ..NodeStatus::default()
                };
                let _ = self.client.set_status(status).await;
            }
            Action::Gossip(session) => {
                let _ = self.client.publish_session(session).await;
            }
            Action::Measure { mut session, reply } => {
                if let Some(track) = session.track {
                    session.duration_micros = self.length_of(track).await;
                }
                self.machine.handle_measured(self.moment(), session, reply);
            }
            Action::Answer { reply, result } => {
                reply
                    .send(&self.client, result.map_err(CommandFailed::Refused))
                    .await;
            }
            Action::Ready { reply, has_track } => reply.ready(&self.client, has_track).await,
            Action::Forward {
                zone,
                request,
                reply,
            } => match reply {
                Reply::Local(reply) => {
                    let route = Route {
                        client: self.client.clone(),
                        roles: self.roles_tx.subscribe(),
                        placements: self.placements.clone(),
                        inputs: self.inputs.clone(),
                    };
                    tokio::spawn(forward(route, zone, request, reply));
                }
                remote @ Reply::Remote(_) => {
                    let refused = Err(CommandFailed::Refused(Refusal::NotCoordinator));
                    remote.send(&self.client, refused).await;
                }
            },
            Action::PrepareMembers {
                request,
                track,
                term,
                position_micros,
                reply,
            } => {
                let (client, library) = (self.client.clone(), self.library.clone());
                let inputs = self.inputs.clone();
                let zone = self.placement.zone.clone();
                tokio::spawn(async move {
                    let mut result = check_position(&library, track, position_micros).await;
                    if result.is_ok()
                        && prepare_everywhere(&client, &library, &zone, term, track).await == 0
                    {
                        result = Err(Refusal::NoHolder(track));
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
            Action::PrepareStreaming { track, reply } => match reply {
                Reply::Remote(key) => self.prepare_streaming(track, key),
                local @ Reply::Local(_) => local.ready(&self.client, false).await,
            },
            Action::Play {
                track,
                position_micros,
                at,
                stream,
            } => {
                let outcome = self.play(track, position_micros, at, stream).await;
                self.machine.handle_played(self.moment(), track, outcome);
            }
            Action::Stream {
                track,
                position_micros,
                at,
                pace,
            } => {
                let outcome = if self.stream_from(track, position_micros, at, pace).await {
                    PlayOutcome::Streaming
                } else {
                    PlayOutcome::Failed
                };
                self.machine.handle_played(self.moment(), track, outcome);
            }
            Action::Follow { track, at } => {
                if let Err(missing) = self.follow(track, at).await {
                    self.machine.handle_follow_failed(track, missing);
                }
            }
            Action::Unfollow => {
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.unfollow()
                {
                    tracing::warn!(%err, "cannot unqueue the next track");
                }
            }
            Action::PauseAt { at } => {
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.pause_at(SwarmMicros(at))
                {
                    tracing::warn!(%err, "cannot pause");
                }
            }
            Action::StopAt { at } => {
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.stop_at(SwarmMicros(at))
                {
                    tracing::warn!(%err, "cannot stop");
                }
            }
            Action::Silence => {
                if let Some(player) = self.audio.player()
                    && let Err(err) = player.stop()
                {
                    tracing::warn!(%err, "cannot stop");
                }
            }
            Action::Fetch(track) => self.fetch(track),
            Action::Watch(track) => self.watch(track),
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

    /// The file holding `track` on this node, if any.
    async fn path_of(&self, track: TrackId) -> Option<std::path::PathBuf> {
        let library = self.library.clone();
        tokio::task::spawn_blocking(move || library.track_paths(track))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|paths| paths.into_iter().find(|p| p.is_file()))
    }

    /// Plays `track` from its file, or from its download at `stream`'s
    /// pace when the node holds no file.
    async fn play(
        &mut self,
        track: TrackId,
        position_micros: u64,
        at: i64,
        stream: Option<Throughput>,
    ) -> PlayOutcome {
        let Some(path) = self.path_of(track).await else {
            if let Some(pace) = stream
                && self.stream_from(track, position_micros, at, pace).await
            {
                return PlayOutcome::Streaming;
            }
            return PlayOutcome::Missing;
        };
        let hint = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_string);
        match std::fs::File::open(&path) {
            Ok(file) => {
                if self.start(Box::new(file), hint, position_micros, at).await {
                    PlayOutcome::Started
                } else {
                    PlayOutcome::Failed
                }
            }
            Err(err) => {
                tracing::warn!(%err, path = %path.display(), "cannot open the track");
                PlayOutcome::Failed
            }
        }
    }

    /// Plays `track` (still downloading) from the library's chunks so that
    /// `position_micros` sounds at `at`; whether the player took it.
    async fn stream_from(
        &mut self,
        track: TrackId,
        position_micros: u64,
        at: i64,
        pace: Throughput,
    ) -> bool {
        let library = self.library.clone();
        let Some(manifest) =
            tokio::task::spawn_blocking(move || stream::manifest_of(&library, track))
                .await
                .ok()
                .flatten()
        else {
            return false;
        };
        announce(&NodeEvent::Joining {
            track: track.to_hex(),
            during_download: true,
            why: format!(
                "while it downloads ({:.1} MB/s, {:.1}x playback)",
                pace.rate / 1e6,
                pace.ratio
            ),
        });
        let source = PartialSource::new(self.library.clone(), &manifest);
        let hint = manifest.meta.extension.clone();
        self.start(Box::new(source), Some(hint), position_micros, at)
            .await
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
        match player.play(decoder, frame, SwarmMicros(at)) {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(%err, "cannot play");
                false
            }
        }
    }

    /// Queues `track` in the player to follow the current track from its
    /// first frame at `at`; `Err(true)` when the node holds no file of it,
    /// `Err(false)` when it would not open or the player refused it.
    async fn follow(&mut self, track: TrackId, at: i64) -> Result<(), bool> {
        let path = self.path_of(track).await.ok_or(true)?;
        let channels = self
            .audio
            .player()
            .map(|p| p.format().channels)
            .ok_or(false)?;
        let opened = tokio::task::spawn_blocking(move || Decoder::open_file(&path, channels)).await;
        let Ok(Ok(decoder)) = opened else {
            tracing::warn!(track = %track.to_hex(), "cannot open the next track");
            return Err(false);
        };
        let mut player = self.audio.player().ok_or(false)?;
        player.follow(decoder, 0, SwarmMicros(at)).map_err(|err| {
            tracing::warn!(%err, "cannot queue the next track");
            false
        })?;
        Ok(())
    }

    /// Downloads `track` off the loop; reports [`Input::Downloaded`] or
    /// [`Input::FetchFailed`].
    fn fetch(&self, track: TrackId) {
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

    /// Judges, off the loop, when `track` (downloading) may start; sends
    /// [`Input::Streamable`] then. Ends when the session moves to another
    /// track or the download ends ([`Input::Unwatched`]).
    fn watch(&self, track: TrackId) {
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
                Some(pace) => Input::Streamable { track, pace },
                None => Input::Unwatched(track),
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
            if let Some(pace) = judged {
                // Told before answering, so the driver knows before the session comes.
                let _ = inputs.send(Input::Prepared { track, pace }).await;
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
}

/// Samples `track`'s download every 100 ms until playing it from the
/// position `position` gives (`Some(None)`: not playing yet) is safe
/// ([`Headroom`]); returns the download's pace then. `None` when `position` gives up (`None`), the track is
/// held (the download finished), it has no known duration, or `deadline`
/// passes.
async fn judge(
    library: Library,
    now: Now,
    track: TrackId,
    position: impl Fn() -> Option<Option<u64>>,
    deadline: Option<tokio::time::Instant>,
) -> Option<Throughput> {
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
            return Some(Throughput {
                rate,
                ratio: rate / judge.playback_rate(),
            });
        }
    }
}

/// What a forwarded command needs to find its zone's coordinator.
struct Route {
    client: Client,
    /// This node's roles (its own zone's coordinator).
    roles: watch::Receiver<RoleView>,
    /// This node's placement (which zone is its own).
    placements: watch::Receiver<Placement>,
    inputs: mpsc::Sender<Input>,
}

impl Route {
    /// The coordinator of `zone` as this node sees it now: its own roles'
    /// for its own zone, else the one that zone's members' heartbeats name.
    async fn coordinator_of(&mut self, zone: &ZoneId) -> Option<PeerId> {
        if *zone == self.placements.borrow().zone {
            return self.roles.borrow_and_update().coordinator;
        }
        let members = self.client.members().await.unwrap_or_default();
        zones::coordinator_of(&members, zone)
    }
}

/// Sends a command to `zone`'s coordinator, retrying through a failover
/// (and through a move: a coordinator that left the zone refuses it).
async fn forward(
    mut route: Route,
    zone: ZoneId,
    request: ControlRequest,
    reply: oneshot::Sender<Result<Session, CommandFailed>>,
) {
    let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
    let mut last = String::from("no coordinator yet");
    let me = route.client.peer_id();
    let wrapped = ControlRequest::InZone {
        zone: zone.clone(),
        command: Box::new(request.clone()),
    };
    while tokio::time::Instant::now() < deadline {
        match route.coordinator_of(&zone).await {
            Some(c) if c == me => {
                // This node took over meanwhile: let the driver coordinate.
                let local = Input::Local {
                    zone: Some(zone),
                    request,
                    reply,
                };
                let _ = route.inputs.send(local).await;
                return;
            }
            Some(c) => match route.client.control(c, wrapped.clone()).await {
                Ok(ControlResponse::Session(session)) => {
                    let _ = reply.send(Ok(*session));
                    return;
                }
                Ok(ControlResponse::Refused(Refusal::NotCoordinator)) => {
                    last = format!("{c} is no longer the coordinator of zone {zone}");
                }
                Ok(ControlResponse::Refused(refusal @ Refusal::WrongZone { .. })) => {
                    last = format!("{c}: {refusal}");
                }
                Ok(ControlResponse::Refused(refusal)) => {
                    let _ = reply.send(Err(CommandFailed::Refused(refusal)));
                    return;
                }
                Ok(other) => last = format!("unexpected answer {other:?}"),
                Err(err) => last = err.to_string(),
            },
            None => last = format!("zone {zone} has no coordinator yet"),
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), route.roles.changed()).await;
    }
    let _ = reply.send(Err(CommandFailed::Unavailable(last)));
}

/// Refuses a start position past the end of a track this node knows.
async fn check_position(library: &Library, track: TrackId, position: u64) -> Result<(), Refusal> {
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
        return Err(Refusal::PastTheEnd {
            position_ms: position / 1000,
            duration_ms,
        });
    }
    Ok(())
}

/// Asks every alive member of `zone` to prepare `track`; returns how many hold it
/// (this node included). Late or failing members join late.
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
#[derive(Debug)]
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

    /// Answers a prepare: ready, holding the track or not.
    async fn ready(self, client: &Client, has_track: bool) {
        match self {
            Reply::Remote(key) => {
                let response = ControlResponse::Ready { has_track };
                tracing::debug!(?response, "control request answered");
                let _ = client.respond_control(key, response).await;
            }
            // A prepare only comes from a peer.
            Reply::Local(reply) => {
                let _ = reply.send(Err(CommandFailed::Refused(Refusal::NotACommand)));
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
