//! Live sources on this node, and the live stream its session plays.
//!
//! Origin side: each source added (`--source NAME=SPEC`, `POST
//! /api/sources`) runs a task that reads the source ([`firefly_live`]'s
//! reading thread), cuts its audio into blocks on the swarm timeline (a
//! `Cutter`: capture started at the swarm instant the source was added),
//! and, while anyone listens, encodes each block once (FLAC) and hands it to
//! every subscriber (a new one first gets the blocks of the last buffer
//! still to sound): members' `/firefly/live/1` streams, and this node's own
//! player. A subscriber that falls behind loses blocks (its member conceals
//! them); nothing waits for it. The sources travel in heartbeats
//! (`Client::set_live_sources`), so every node lists them.
//!
//! Member side: this module watches the applied session. When it plays a
//! live source, the node subscribes to the origin, decodes the blocks and
//! hands them to the player (`Player::play_live`: block `k` sounds at its
//! instant, gaps are silence). When the stream ends (the source ended, the
//! origin left), the player stops at once, the reason is kept for the API,
//! and the coordinator stops the session so that the swarm can play
//! something else.

use super::audio::Audio;
use super::driver;
use firefly_live::{
    BlockDecoder, BlockEncoder, Codec, Cutter, SourceEvent, SourceSpec, StreamClock,
};
use firefly_player::{LiveFrames, SwarmMicros, map_channels};
use firefly_swarm::live::{LiveFrame, LiveFrameError, read_frame, read_request, write_frame};
use firefly_swarm::{
    Client, ControlRequest, LiveRef, LiveSourceInfo, PeerId, PlaybackState, Session,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// How often the origin looks for audio and cuts blocks.
const ORIGIN_TICK: Duration = Duration::from_millis(5);
/// Frames queued for one subscriber (about 1.3 s of 20 ms blocks); a
/// subscriber further behind loses blocks.
const SUBSCRIBER_QUEUE: usize = 64;
/// Longest wait for a member's request or an origin's answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a stream ended this node, if it coordinates, stops the session.
const STOP_AFTER_END_FOR: Duration = Duration::from_secs(8);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a source could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddError {
    #[error("source name must be 1 to 64 letters, digits, '-', '_' or '.'")]
    Name,
    #[error("a source named {0:?} exists")]
    Exists(String),
    #[error("at most {0} sources on a node")]
    Full(usize),
    #[error(transparent)]
    Spec(#[from] firefly_live::SpecError),
    #[error("cannot open the source: {0}")]
    Open(String),
}

/// A source as the API lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct SourceView {
    pub(crate) name: String,
    /// The node it is on (peer id) and its name.
    pub(crate) node: String,
    pub(crate) node_name: String,
    /// Whether it is on this node.
    pub(crate) local: bool,
    /// `pipe`, `url` or `cmd`.
    pub(crate) kind: String,
    /// What it reads (this node's sources only).
    pub(crate) spec: Option<String>,
    /// e.g. "48000 Hz 2 ch flac".
    pub(crate) format: String,
    pub(crate) flowing: bool,
    /// Peak of the latest block, 0 to 1.
    pub(crate) level: f32,
    pub(crate) problem: Option<String>,
    pub(crate) ended: bool,
    /// This node's sources: the stream position the next frame from the
    /// source takes, and the wall-clock instant (Unix µs) that was so (for
    /// measuring source-to-sound delay).
    pub(crate) captured_frame: Option<u64>,
    pub(crate) captured_unix_us: Option<i64>,
    /// What a play request names.
    pub(crate) stream: LiveRef,
}

/// What this node plays live, for the API.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct LiveStatus {
    /// The stream the session plays, if it plays one.
    pub(crate) playing: Option<LiveRef>,
    /// Why the last live stream stopped, if it did.
    pub(crate) ended: Option<String>,
    /// Blocks received, dropped as late, concealed as silence.
    pub(crate) blocks: u64,
    pub(crate) late: u64,
    pub(crate) concealed: u64,
    /// Encoded block bytes received (the stream's payload).
    pub(crate) bytes: u64,
}

struct Origin {
    spec: SourceSpec,
    stream: LiveRef,
    report: Arc<Mutex<OriginReport>>,
    subscribe: mpsc::Sender<mpsc::Sender<Arc<LiveFrame>>>,
    task: AbortHandle,
}

#[derive(Debug, Default, Clone)]
struct OriginReport {
    flowing: bool,
    level: f32,
    problem: Option<String>,
    ended: bool,
    /// (stream position of the next source frame, Unix µs then).
    capture: Option<(u64, i64)>,
}

struct Playing {
    stream: LiveRef,
    frames: Option<LiveFrames>,
    task: AbortHandle,
}

struct Inner {
    client: Client,
    audio: Audio,
    buffer_micros: i64,
    origins: Mutex<BTreeMap<String, Origin>>,
    playing: Mutex<Option<Playing>>,
    status: Mutex<LiveStatus>,
    control: OnceLock<driver::Control>,
}

/// The node's live sources and live playback; cheap to clone.
#[derive(Clone)]
pub(crate) struct Live(Arc<Inner>);

impl Live {
    /// Starts serving `/firefly/live/1` and advertising sources; blocks sound
    /// `buffer_micros` after capture.
    pub(crate) fn start(client: Client, audio: Audio, buffer_micros: i64) -> Self {
        let live = Self(Arc::new(Inner {
            client,
            audio,
            buffer_micros,
            origins: Mutex::new(BTreeMap::new()),
            playing: Mutex::new(None),
            status: Mutex::new(LiveStatus::default()),
            control: OnceLock::new(),
        }));
        tokio::spawn(live.clone().accept_members());
        tokio::spawn(live.clone().advertise());
        live
    }

    /// Follows the session the driver applies (plays its live source, if any).
    pub(crate) fn follow(&self, control: driver::Control) {
        let mut changes = control.session_changes();
        let _ = self.0.control.set(control);
        let live = self.clone();
        tokio::spawn(async move {
            loop {
                let session = changes.borrow_and_update().clone();
                live.on_session(&session);
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn swarm_now(&self) -> SwarmMicros {
        self.0.audio.timeline.swarm_now()
    }

    /// Adds a source on this node and starts reading it, sounding the node's
    /// buffer after capture, or `buffer_micros`.
    pub(crate) fn add(
        &self,
        name: &str,
        spec: &str,
        buffer_micros: Option<i64>,
    ) -> Result<SourceView, AddError> {
        let valid = !name.is_empty()
            && name.len() <= firefly_swarm::live::MAX_SOURCE_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(AddError::Name);
        }
        let spec: SourceSpec = spec.parse()?;
        let mut origins = lock(&self.0.origins);
        if origins.contains_key(name) {
            return Err(AddError::Exists(name.to_owned()));
        }
        if origins.len() >= firefly_swarm::live::MAX_SOURCES {
            return Err(AddError::Full(firefly_swarm::live::MAX_SOURCES));
        }
        let source = spec.open().map_err(|e| AddError::Open(e.to_string()))?;
        let codec = Codec::Flac;
        let clock = StreamClock::new(
            self.swarm_now(),
            source.rate(),
            firefly_live::block_frames(source.rate()),
            buffer_micros.unwrap_or(self.0.buffer_micros),
        )
        .map_err(|e| AddError::Open(e.to_string()))?;
        let encoder =
            BlockEncoder::new(codec, clock.rate(), source.channels(), clock.block_frames())
                .map_err(|e| AddError::Open(e.to_string()))?;
        let stream = LiveRef {
            origin: self.0.client.peer_id().to_base58(),
            name: name.to_owned(),
            s0: clock.s0().as_micros(),
            rate: clock.rate(),
            channels: source.channels(),
            block_frames: clock.block_frames(),
            buffer_micros: clock.buffer_micros(),
            codec: codec.name().to_owned(),
        };
        let report = Arc::new(Mutex::new(OriginReport::default()));
        let (subscribe, subscriptions) = mpsc::channel(8);
        let task = tokio::spawn(run_origin(
            name.to_owned(),
            source,
            Cutter::new(clock, stream.channels, clock.s0()),
            encoder,
            Arc::clone(&report),
            subscriptions,
            self.0.audio.timeline.clone(),
        ))
        .abort_handle();
        tracing::info!(name, %spec, "live source added");
        origins.insert(
            name.to_owned(),
            Origin {
                spec,
                stream,
                report,
                subscribe,
                task,
            },
        );
        drop(origins);
        Ok(self
            .local_views()
            .into_iter()
            .find(|v| v.name == name)
            .expect("the source was just inserted under this name"))
    }

    /// Removes this node's source `name` (its listeners hear that it ended).
    pub(crate) fn remove(&self, name: &str) -> bool {
        let Some(origin) = lock(&self.0.origins).remove(name) else {
            return false;
        };
        // Dropping the task drops the subscribers' senders: their streams end.
        origin.task.abort();
        tracing::info!(name, "live source removed");
        true
    }

    fn local_views(&self) -> Vec<SourceView> {
        let me = self.0.client.peer_id().to_base58();
        lock(&self.0.origins)
            .iter()
            .map(|(name, origin)| {
                let report = lock(&origin.report).clone();
                SourceView {
                    name: name.clone(),
                    node: me.clone(),
                    node_name: String::new(),
                    local: true,
                    kind: origin.spec.kind().to_owned(),
                    spec: Some(origin.spec.to_string()),
                    format: format_of(&origin.stream),
                    flowing: report.flowing,
                    level: report.level,
                    problem: report.problem,
                    ended: report.ended,
                    captured_frame: report.capture.map(|c| c.0),
                    captured_unix_us: report.capture.map(|c| c.1),
                    stream: origin.stream.clone(),
                }
            })
            .collect()
    }

    /// Every source in the swarm: this node's, then the members'.
    pub(crate) async fn list(&self, own_name: &str) -> Vec<SourceView> {
        let mut views = self.local_views();
        for view in &mut views {
            view.node_name = own_name.to_owned();
        }
        for member in self.0.client.members().await.unwrap_or_default() {
            for info in member.status.live {
                views.push(SourceView {
                    name: info.stream.name.clone(),
                    node: member.peer.to_base58(),
                    node_name: member.name.clone(),
                    local: false,
                    kind: info.kind,
                    spec: None,
                    format: format_of(&info.stream),
                    flowing: info.flowing,
                    level: f32::from(info.level_permille) / 1000.0,
                    problem: info.problem,
                    ended: info.ended,
                    captured_frame: None,
                    captured_unix_us: None,
                    stream: info.stream,
                });
            }
        }
        views
    }

    /// What this node plays live.
    pub(crate) fn status(&self) -> LiveStatus {
        let mut status = lock(&self.0.status).clone();
        if let Some(playing) = lock(&self.0.playing).as_ref()
            && let Some(frames) = &playing.frames
        {
            let stats = frames.stats();
            (status.blocks, status.late, status.concealed) =
                (stats.accepted, stats.late, stats.concealed);
        }
        status
    }

    /// Heartbeats carry this node's sources, refreshed every second.
    async fn advertise(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let infos = lock(&self.0.origins)
                .values()
                .map(|origin| {
                    let report = lock(&origin.report).clone();
                    LiveSourceInfo {
                        stream: origin.stream.clone(),
                        kind: origin.spec.kind().to_owned(),
                        flowing: report.flowing,
                        level_permille: (report.level.clamp(0.0, 1.0) * 1000.0) as u16,
                        problem: report.problem.map(|p| {
                            p.chars()
                                .take(firefly_swarm::live::MAX_LIVE_TEXT / 4)
                                .collect()
                        }),
                        ended: report.ended,
                    }
                })
                .collect();
            if self.0.client.set_live_sources(infos).await.is_err() {
                return;
            }
        }
    }

    /// Serves members' subscriptions.
    async fn accept_members(self) {
        let Some(mut incoming) = self.0.client.live().accept() else {
            tracing::error!("the live protocol is taken; live sources will not be served");
            return;
        };
        while let Some((peer, stream)) = futures::StreamExt::next(&mut incoming).await {
            tokio::spawn(self.clone().serve_member(peer, stream));
        }
    }

    async fn serve_member(self, peer: PeerId, mut stream: libp2p::Stream) {
        let name = match tokio::time::timeout(OPEN_TIMEOUT, read_request(&mut stream)).await {
            Ok(Ok(name)) => name,
            Ok(Err(err)) => {
                if err.is_malformed() {
                    let _ = self.0.client.penalize(peer, "malformed live request").await;
                }
                return;
            }
            Err(_) => return,
        };
        let Some(mut frames) = self.subscribe_origin(&name).await else {
            let reason = format!("no live source named {name:?} on this node");
            let _ = write_frame(&mut stream, &LiveFrame::End { reason }).await;
            return;
        };
        tracing::debug!(%peer, name, "member listens to a live source");
        while let Some(frame) = frames.recv().await {
            if write_frame(&mut stream, &frame).await.is_err() {
                return;
            }
        }
        let _ = write_frame(
            &mut stream,
            &LiveFrame::End {
                reason: format!("the live source {name:?} was removed"),
            },
        )
        .await;
        let _ = futures::AsyncWriteExt::close(&mut stream).await;
    }

    /// A queue of the source's frames (the recent ones still to sound, then
    /// each as it is cut); `None` if there is no such source.
    async fn subscribe_origin(&self, name: &str) -> Option<mpsc::Receiver<Arc<LiveFrame>>> {
        let subscribe = lock(&self.0.origins).get(name)?.subscribe.clone();
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        subscribe.send(tx).await.ok()?;
        Some(rx)
    }

    /// The applied session changed: play its live source, or stop listening.
    fn on_session(&self, session: &Session) {
        let wanted = session
            .live
            .clone()
            .filter(|_| session.state == PlaybackState::Playing);
        let mut playing = lock(&self.0.playing);
        if playing.as_ref().map(|p| &p.stream) == wanted.as_ref() {
            return;
        }
        let stopped = playing.take().map(|old| {
            old.task.abort();
            // The driver stops or replaces the sound; the stream ends here.
        });
        let Some(stream) = wanted else {
            let mut status = lock(&self.0.status);
            status.playing = None;
            if stopped.is_some() && status.ended.is_none() {
                // The session moved on (a command, or the coordinator
                // stopping an ended stream before its end reached this node).
                status.ended = Some("the session stopped playing it".into());
            }
            return;
        };
        {
            let mut status = lock(&self.0.status);
            *status = LiveStatus {
                playing: Some(stream.clone()),
                ..LiveStatus::default()
            };
        }
        let frames = self.0.audio.player().map(|player| {
            LiveFrames::new(stream.rate, stream.block_frames, player.format().channels)
        });
        let task =
            tokio::spawn(self.clone().receive(stream.clone(), frames.clone())).abort_handle();
        *playing = Some(Playing {
            stream,
            frames,
            task,
        });
    }

    /// Receives `stream`'s blocks into `frames` until it ends.
    async fn receive(self, stream: LiveRef, frames: Option<LiveFrames>) {
        // Playing on an unsynced clock would start out of step and then
        // jump: wait for the clock, as the driver does for tracks (a lone
        // node playing its own source counts as synced; a node that has
        // just joined may not have heard of its peers yet, so another
        // node's source always waits).
        let own = stream.origin == self.0.client.peer_id().to_base58();
        for _ in 0..100 {
            let lone = own && self.0.client.members().await.is_ok_and(|m| m.is_empty());
            if lone || self.0.client.clock().await.is_ok_and(|c| c.synced) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let (Some(frames), Some(mut player)) = (&frames, self.0.audio.player()) {
            let clock = clock_of(&stream);
            if let Err(err) = player.play_live(frames.clone(), 0, clock.sounds_at(0)) {
                tracing::warn!(%err, "cannot play the live stream");
            }
        }
        let reason = self.receive_blocks(&stream, frames.as_ref()).await;
        tracing::warn!(source = stream.name, reason, "live stream ended");
        if let Some(frames) = &frames {
            frames.end(reason.clone());
        }
        lock(&self.0.status).ended = Some(reason);
        // The coordinator ends the session, so the swarm is free at once.
        let deadline = tokio::time::Instant::now() + STOP_AFTER_END_FOR;
        while tokio::time::Instant::now() < deadline {
            let Some(control) = self.0.control.get() else {
                return;
            };
            let session = control.session();
            if session.live.as_ref() != Some(&stream) {
                return;
            }
            if control.roles().coordinator == Some(self.0.client.peer_id()) {
                if let Err(err) = control.command(ControlRequest::Stop).await {
                    tracing::warn!(%err, "cannot stop the ended live session");
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs the stream; returns why it ended.
    async fn receive_blocks(&self, stream: &LiveRef, frames: Option<&LiveFrames>) -> String {
        let Some(codec) = Codec::from_name(&stream.codec) else {
            return format!("unknown codec {}", stream.codec);
        };
        let mut decoder =
            match BlockDecoder::new(codec, stream.rate, stream.channels, stream.block_frames) {
                Ok(decoder) => decoder,
                Err(err) => return err.to_string(),
            };
        let Ok(origin) = stream.origin.parse::<PeerId>() else {
            return "the origin is not a peer id".into();
        };
        let mut source = if origin == self.0.client.peer_id() {
            match self.subscribe_origin(&stream.name).await {
                Some(rx) => BlockSource::Local(rx),
                None => return format!("no live source named {:?} here", stream.name),
            }
        } else {
            let mut control = self.0.client.live();
            match tokio::time::timeout(OPEN_TIMEOUT, control.subscribe(origin, &stream.name)).await
            {
                Ok(Ok(s)) => BlockSource::Remote(s),
                Ok(Err(err)) => return format!("cannot reach the origin: {err}"),
                Err(_) => return "the origin did not answer".into(),
            }
        };
        let out_channels = frames.map_or(usize::from(stream.channels), LiveFrames::channels);
        let mut decoded = Vec::new();
        let mut mapped = Vec::new();
        loop {
            let frame = match source.next().await {
                Ok(frame) => frame,
                Err(err) => {
                    if err.is_malformed() {
                        let _ = self.0.client.penalize(origin, "malformed live frame").await;
                    }
                    return match err {
                        LiveFrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            "the origin closed the stream".into()
                        }
                        err => format!("the origin's stream broke: {err}"),
                    };
                }
            };
            match frame {
                LiveFrame::End { reason } => return reason,
                LiveFrame::Block { index, data } => {
                    lock(&self.0.status).bytes += data.len() as u64;
                    decoded.clear();
                    if let Err(err) = decoder.decode(&data, &mut decoded) {
                        let _ = self
                            .0
                            .client
                            .penalize(origin, "undecodable live block")
                            .await;
                        return format!("the origin sent a bad block: {err}");
                    }
                    if let Some(frames) = frames {
                        mapped.clear();
                        map_channels(
                            &decoded,
                            usize::from(stream.channels),
                            out_channels,
                            &mut mapped,
                        );
                        frames.insert(index, std::mem::take(&mut mapped));
                    }
                }
            }
        }
    }
}

/// Where a member's blocks come from: the origin's stream, or this node's own source.
enum BlockSource {
    Local(mpsc::Receiver<Arc<LiveFrame>>),
    Remote(libp2p::Stream),
}

impl BlockSource {
    async fn next(&mut self) -> Result<LiveFrame, LiveFrameError> {
        match self {
            Self::Local(rx) => match rx.recv().await {
                Some(frame) => Ok((*frame).clone()),
                None => Ok(LiveFrame::End {
                    reason: "the live source was removed".into(),
                }),
            },
            Self::Remote(stream) => read_frame(stream).await,
        }
    }
}

fn clock_of(stream: &LiveRef) -> StreamClock {
    StreamClock::new(
        SwarmMicros(stream.s0),
        stream.rate,
        stream.block_frames,
        stream.buffer_micros,
    )
    // Checked on the wire (LiveRef::check) and made here by the same rules.
    .unwrap_or_else(|_| {
        StreamClock::new(SwarmMicros(stream.s0), 48_000, 960, 0).expect("constant valid timing")
    })
}

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn format_of(stream: &LiveRef) -> String {
    format!("{} Hz {} ch {}", stream.rate, stream.channels, stream.codec)
}

/// Reads the source, cuts blocks, encodes them while anyone listens.
async fn run_origin(
    name: String,
    mut source: firefly_live::RunningSource,
    mut cutter: Cutter,
    mut encoder: BlockEncoder,
    report: Arc<Mutex<OriginReport>>,
    mut subscriptions: mpsc::Receiver<mpsc::Sender<Arc<LiveFrame>>>,
    timeline: Arc<super::timeline::NodeTimeline>,
) {
    let mut subscribers: Vec<mpsc::Sender<Arc<LiveFrame>>> = Vec::new();
    // The blocks cut within the last buffer (and a little): a new
    // subscriber gets those still to sound, so a joiner has sound at once.
    let clock = *cutter.clock();
    let keep = usize::try_from(clock.buffer_micros() * i64::from(clock.rate()) / 1_000_000)
        .unwrap_or(0)
        / clock.block_frames() as usize
        + 2;
    let mut recent: std::collections::VecDeque<firefly_live::Block> =
        std::collections::VecDeque::with_capacity(keep);
    let mut tick = tokio::time::interval(ORIGIN_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_audio: Option<SwarmMicros> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(subscriber) = subscriptions.recv() => {
                let now = timeline.swarm_now();
                for block in recent.iter().filter(|b| clock.block_sounds_at(b.index) > now + 20_000) {
                    if let Ok(data) = encoder.encode(block.index, &block.samples) {
                        let _ = subscriber.try_send(Arc::new(LiveFrame::Block { index: block.index, data }));
                    }
                }
                subscribers.push(subscriber);
            }
        }
        let now = timeline.swarm_now();
        while cutter.wants_audio(now) {
            match source.try_next() {
                None => break,
                Some(SourceEvent::Audio(samples)) => {
                    cutter.handle_audio(&samples);
                    last_audio = Some(now);
                }
                Some(SourceEvent::Problem(problem)) => {
                    tracing::warn!(source = name, problem, "live source");
                    lock(&report).problem = Some(problem);
                }
                Some(SourceEvent::Ended(reason)) => {
                    tracing::warn!(source = name, reason, "live source ended");
                    {
                        let mut report = lock(&report);
                        report.problem = Some(reason.clone());
                        report.ended = true;
                        report.flowing = false;
                    }
                    let end = Arc::new(LiveFrame::End { reason });
                    for subscriber in &subscribers {
                        let _ = subscriber.send(Arc::clone(&end)).await;
                    }
                    source.stop();
                    // Later subscribers hear the same at once.
                    while let Some(subscriber) = subscriptions.recv().await {
                        let _ = subscriber.send(Arc::clone(&end)).await;
                    }
                    return;
                }
            }
        }
        lock(&report).capture = Some((cutter.written(), unix_micros()));
        while let Some(block) = cutter.poll_block(now) {
            {
                let mut report = lock(&report);
                report.level = block.peak();
                report.flowing = last_audio.is_some_and(|t| now - t < 1_000_000);
            }
            subscribers.retain(|s| !s.is_closed());
            if recent.len() == keep {
                recent.pop_front();
            }
            recent.push_back(block.clone());
            if subscribers.is_empty() {
                continue;
            }
            let data = match encoder.encode(block.index, &block.samples) {
                Ok(data) => data,
                Err(err) => {
                    tracing::warn!(source = name, %err, "cannot encode a live block");
                    continue;
                }
            };
            let frame = Arc::new(LiveFrame::Block {
                index: block.index,
                data,
            });
            for subscriber in &subscribers {
                // A full queue: that subscriber loses this block.
                let _ = subscriber.try_send(Arc::clone(&frame));
            }
        }
    }
}
