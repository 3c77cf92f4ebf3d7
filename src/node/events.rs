//! Live events for API clients: every node's flashes, session changes and
//! download progress; and the player's report that heartbeats carry.
//!
//! `GET /api/events` upgrades to a WebSocket that streams one JSON object
//! per message: `{"type":"flash","node":…}` for every output period of this
//! node's player (which source frame sounded at which swarm instant and, on a
//! virtual output, at which true instant) and for every flash a peer reported
//! in its heartbeats (tagged with the peer's id); `{"type":"session",…}`
//! whenever the applied playback session changes; `{"type":"downloads",…}`
//! whenever the downloads under way progress. `GET /api/flashes` returns this
//! node's latest flashes kept in a ring (for scripts and the end-to-end
//! tests, which have no WebSocket client).
//!
//! [`report_playout`] is the other direction: it samples this node's flashes
//! and volume into the swarm's [`Playout`], so peers' pages can flash this
//! node's light from its own playback. [`Volume`] is the node's volume as
//! last set (through its API or a peer's `/firefly/control/1` request, which
//! [`VolumeService`] answers).
//!
//! True instants are `std::time::Instant`s inside the process; they leave
//! it as microseconds since the UNIX epoch, anchored once at start-up to
//! the system clock, so flashes from several processes on one machine are
//! comparable without trusting any node's (skewed) clock.

use super::NodeState;
use super::api::PlaybackReport;
use super::audio::Audio;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use firefly_player::{Flash, PlayerEvent};
use firefly_swarm::{
    Client, ControlRequest, ControlResponse, Event, MAX_PLAYOUT_FLASHES, PeerId, Playout,
    PlayoutFlash,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// How often this node's flashes are sampled into its heartbeat report.
const PLAYOUT_EVERY: Duration = Duration::from_millis(250);
/// A player silent this long is reported as playing nothing.
const PLAYOUT_STALE: Duration = Duration::from_millis(1000);
/// How often the event stream looks for peers' new flashes and download progress.
const POLL_SWARM_EVERY: Duration = Duration::from_millis(250);

/// Flashes kept for `GET /api/flashes` (about 10 s of 10 ms periods).
pub(crate) const FLASH_RING: usize = 1024;

/// One flash as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlashReport {
    /// The player's track number (grows with every start).
    pub(crate) track: u64,
    /// The source frame heard.
    pub(crate) frame: u64,
    /// The exact source position heard, frames.
    pub(crate) position: f64,
    /// When, on this node's swarm clock, µs.
    pub(crate) swarm_us: i64,
    /// When, truly (virtual output only), µs since the UNIX epoch.
    pub(crate) true_unix_us: Option<i64>,
    /// How far the position was from where the timeline says it should be,
    /// source frames (positive: ahead).
    pub(crate) error_frames: f64,
}

fn unix_micros(instant: Instant) -> i64 {
    static ANCHOR: OnceLock<(Instant, i64)> = OnceLock::new();
    let (at, unix) = *ANCHOR.get_or_init(anchor);
    if instant >= at {
        unix + i64::try_from(instant.duration_since(at).as_micros()).unwrap_or(0)
    } else {
        unix - i64::try_from(at.duration_since(instant).as_micros()).unwrap_or(0)
    }
}

/// Pairs an `Instant` with the system clock's reading at the same moment.
/// The two reads are bracketed by monotonic reads and the narrowest bracket
/// of many tries is kept: a process preempted between two reads would
/// otherwise carry that delay as a constant error in every true instant it
/// reports, which sync measurements across processes would take for an
/// offset between the nodes.
fn anchor() -> (Instant, i64) {
    let unix_now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
    };
    let mut best: Option<(std::time::Duration, Instant, i64)> = None;
    for _ in 0..200 {
        let before = Instant::now();
        let unix = unix_now();
        let after = Instant::now();
        let width = after.duration_since(before);
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, unix));
        }
    }
    best.map_or_else(|| (Instant::now(), unix_now()), |(_, at, unix)| (at, unix))
}

impl FlashReport {
    pub(crate) fn of(flash: &Flash) -> Self {
        Self {
            track: flash.track,
            frame: flash.frame,
            position: flash.position,
            swarm_us: flash.swarm.as_micros(),
            true_unix_us: flash.true_instant.map(unix_micros),
            error_frames: flash.error_frames,
        }
    }
}

/// The latest flashes.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlashRing {
    inner: Arc<Mutex<VecDeque<FlashReport>>>,
}

impl FlashRing {
    /// Keeps `flash`, dropping the oldest beyond [`FLASH_RING`].
    pub(crate) fn push(&self, flash: FlashReport) {
        // Plain data; a panicking holder cannot leave it unusable.
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == FLASH_RING {
            ring.pop_front();
        }
        ring.push_back(flash);
    }

    /// Every kept flash, oldest first.
    pub(crate) fn all(&self) -> Vec<FlashReport> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().copied().collect()
    }
}

/// The node's volume as last set, in thousandths (1000: unchanged).
#[derive(Debug, Clone)]
pub(crate) struct Volume(Arc<AtomicU32>);

impl Default for Volume {
    fn default() -> Self {
        Self(Arc::new(AtomicU32::new(1000)))
    }
}

impl Volume {
    /// The volume (1.0 is unchanged).
    pub(crate) fn get(&self) -> f32 {
        // At most 4000: exact in f32.
        self.0.load(Ordering::Relaxed) as f32 / 1000.0
    }

    fn permille(&self) -> u16 {
        u16::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(u16::MAX)
    }

    /// Ramps the player to `volume` (0.0 to 4.0) and remembers it.
    pub(crate) fn set(&self, audio: &Audio, volume: f32) -> Result<(), VolumeError> {
        let Some(player) = audio.player() else {
            return Err(VolumeError::NoOutput);
        };
        player
            .set_volume(volume)
            .map_err(|err| VolumeError::Player(err.to_string()))?;
        // In range (the player checked it): fits in u32 thousandths.
        self.0
            .store((volume * 1000.0).round() as u32, Ordering::Relaxed);
        Ok(())
    }
}

/// Why a volume could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VolumeError {
    /// The node plays nothing (`--output null`).
    #[error("this node has no output (--output null)")]
    NoOutput,
    /// The player refused it.
    #[error("the player refused the volume: {0}")]
    Player(String),
}

/// Answers peers' `/firefly/control/1` volume requests with this node's player.
#[derive(Clone)]
pub(crate) struct VolumeService {
    pub(crate) client: Client,
    pub(crate) audio: Audio,
    pub(crate) volume: Volume,
}

impl VolumeService {
    /// Answers `event` if it is a volume request; hands any other event back.
    pub(crate) async fn intercept(&self, event: Event) -> Option<Event> {
        let Event::ControlRequest {
            key,
            request: ControlRequest::Volume { volume_permille },
            ..
        } = event
        else {
            return Some(event);
        };
        let response = match self
            .volume
            .set(&self.audio, f32::from(volume_permille) / 1000.0)
        {
            Ok(()) => ControlResponse::Volume {
                volume_permille: self.volume.permille(),
            },
            Err(err) => ControlResponse::Refused {
                reason: err.to_string(),
            },
        };
        let _ = self.client.respond_control(key, response).await;
        None
    }
}

/// Keeps the swarm's [`Playout`] (this node's latest flashes, one per
/// [`PLAYOUT_EVERY`], and its volume) current until the swarm stops.
pub(crate) async fn report_playout(client: Client, audio: Audio, volume: Volume) {
    let mut player = audio.events.subscribe();
    let mut tick = tokio::time::interval(PLAYOUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latest: Option<(PlayoutFlash, Instant)> = None;
    let mut sampled: VecDeque<PlayoutFlash> = VecDeque::new();
    let mut sent = None;
    let mut player_open = true;
    loop {
        tokio::select! {
            event = player.recv(), if player_open => match event {
                Ok(PlayerEvent::Flash(flash)) => {
                    let report = PlayoutFlash {
                        track: flash.track,
                        frame: flash.frame,
                        swarm_us: flash.swarm.as_micros(),
                        // Saturating: an error of 2^31 frames is hours anyway.
                        error_frames: flash.error_frames.round() as i32,
                    };
                    latest = Some((report, Instant::now()));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                // The player is gone: only the volume is reported from now on.
                Err(RecvError::Closed) => player_open = false,
            },
            _ = tick.tick() => {
                match latest {
                    Some((flash, at)) if at.elapsed() < PLAYOUT_STALE => {
                        // Strictly increasing swarm instants (the check peers
                        // apply): the same flash again adds nothing, an older
                        // one (the clock stepped back) starts the list afresh.
                        if sampled.back() != Some(&flash) {
                            if sampled.back().is_some_and(|last| last.swarm_us >= flash.swarm_us) {
                                sampled.clear();
                            }
                            sampled.push_back(flash);
                        }
                        while sampled.len() > MAX_PLAYOUT_FLASHES / 2 {
                            sampled.pop_front();
                        }
                    }
                    _ => sampled.clear(),
                }
                let playout = Playout {
                    volume_permille: audio.player().is_some().then(|| volume.permille()),
                    flashes: sampled.iter().copied().collect(),
                };
                if sent.as_ref() != Some(&playout) {
                    if client.set_playout(playout.clone()).await.is_err() {
                        return;
                    }
                    sent = Some(playout);
                }
            }
        }
    }
}

/// `GET /api/flashes`.
pub(crate) async fn flashes(State(state): State<NodeState>) -> Json<Vec<FlashReport>> {
    Json(state.audio.flashes.all())
}

/// `GET /api/events`.
pub(crate) async fn events(ws: WebSocketUpgrade, State(state): State<NodeState>) -> Response {
    ws.on_upgrade(move |socket| stream(socket, state))
}

async fn stream(mut socket: WebSocket, state: NodeState) {
    let me = state.swarm.peer_id().to_string();
    let mut player = state.audio.events.subscribe();
    let mut sessions = state.control.session_changes();
    let mut poll = tokio::time::interval(POLL_SWARM_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peers = PeerFlashes::default();
    let mut downloads: Option<Vec<DownloadEvent>> = None;
    let mut player_open = true;
    loop {
        let messages = tokio::select! {
            event = player.recv(), if player_open => match event {
                Ok(PlayerEvent::Flash(flash)) => vec![flash_event(&me, &FlashReport::of(&flash))],
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => continue,
                // The player is gone: peers' flashes still come.
                Err(RecvError::Closed) => {
                    player_open = false;
                    continue;
                }
            },
            changed = sessions.changed() => {
                if changed.is_err() {
                    break;
                }
                let session = sessions.borrow_and_update().clone();
                let now = state.audio.timeline.swarm_now().as_micros();
                vec![serde_json::json!({ "type": "session", "playback": PlaybackReport::of(&session, now) })]
            }
            _ = poll.tick() => {
                let Ok(members) = state.swarm.members().await else { break };
                let mut out: Vec<serde_json::Value> = peers
                    .fresh(members.iter().map(|m| (m.peer, m.status.playout.flashes.as_slice())))
                    .into_iter()
                    .map(|(peer, flash)| flash_event(&peer.to_string(), &flash))
                    .collect();
                let Ok(now) = state.swarm.downloads().await else { break };
                let now: Vec<DownloadEvent> = now
                    .into_iter()
                    .map(|(track, p)| DownloadEvent::of(track, &p))
                    .collect();
                if downloads.as_ref() != Some(&now) {
                    out.push(serde_json::json!({ "type": "downloads", "downloads": now }));
                    downloads = Some(now);
                }
                out
            }
        };
        for message in messages {
            if socket
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn flash_event(node: &str, flash: &FlashReport) -> serde_json::Value {
    serde_json::json!({ "type": "flash", "node": node, "flash": flash })
}

/// A download under way, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DownloadEvent {
    pub(crate) track: String,
    pub(crate) chunks_have: usize,
    pub(crate) chunks_total: usize,
    pub(crate) bytes_have: u64,
    pub(crate) bytes_total: u64,
}

impl DownloadEvent {
    pub(crate) fn of(
        track: firefly_library::TrackId,
        p: &firefly_swarm::transfer::Progress,
    ) -> Self {
        Self {
            track: track.to_hex(),
            chunks_have: p.chunks_have,
            chunks_total: p.chunks_total,
            bytes_have: p.bytes_have,
            bytes_total: p.bytes_total,
        }
    }
}

/// Which of each peer's reported flashes one event stream has already sent.
#[derive(Debug, Default)]
struct PeerFlashes {
    /// Per peer: the latest swarm instant sent.
    sent: HashMap<PeerId, i64>,
}

impl PeerFlashes {
    /// The flashes not sent before, oldest first per peer; forgets peers
    /// no longer listed.
    fn fresh<'a>(
        &mut self,
        members: impl Iterator<Item = (PeerId, &'a [PlayoutFlash])>,
    ) -> Vec<(PeerId, FlashReport)> {
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        for (peer, flashes) in members {
            let last = self.sent.get(&peer).copied().unwrap_or(i64::MIN);
            let mut newest = last;
            for f in flashes.iter().filter(|f| f.swarm_us > last) {
                newest = newest.max(f.swarm_us);
                out.push((
                    peer,
                    FlashReport {
                        track: f.track,
                        frame: f.frame,
                        // Heartbeats carry whole frames.
                        position: f.frame as f64,
                        swarm_us: f.swarm_us,
                        true_unix_us: None,
                        error_frames: f64::from(f.error_frames),
                    },
                ));
            }
            // A peer whose clock stepped back starts afresh next time.
            let restarted = flashes.last().is_some_and(|f| f.swarm_us < last);
            seen.insert(peer, if restarted { i64::MIN } else { newest });
        }
        self.sent = seen.into_iter().collect();
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flash(swarm_us: i64) -> PlayoutFlash {
        PlayoutFlash {
            track: 2,
            frame: 10,
            swarm_us,
            error_frames: 0,
        }
    }

    #[test]
    fn each_peer_flash_is_forwarded_once_with_its_peer() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut peers = PeerFlashes::default();
        let first = [flash(1), flash(2)];
        let out = peers.fresh([(a, &first[..]), (b, &[][..])].into_iter());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(p, _)| *p == a));
        // The next heartbeat repeats flash 2 and adds 3: only 3 is new.
        let second = [flash(2), flash(3)];
        let out = peers.fresh([(a, &second[..]), (b, &[flash(7)][..])].into_iter());
        let got: Vec<(PeerId, i64)> = out.iter().map(|(p, f)| (*p, f.swarm_us)).collect();
        assert_eq!(got, vec![(a, 3), (b, 7)]);
        // A peer that left and came back is new again.
        peers.fresh([(b, &[flash(7)][..])].into_iter());
        let out = peers.fresh([(a, &second[..])].into_iter());
        assert_eq!(out.len(), 2);
    }
}
