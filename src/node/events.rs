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
//! tests, which have no WebSocket client). This module keeps the data
//! ([`FlashRing`], [`FlashReport`]); the HTTP handlers that stream it are in
//! [`super::http::stream`].
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

use super::audio::Audio;
use firefly_player::{Flash, PlayerEvent};
use firefly_swarm::{
    Client, ControlRequest, ControlResponse, Event, MAX_PLAYOUT_FLASHES, Playout, PlayoutFlash,
    Refusal,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

/// How often this node's flashes are sampled into its heartbeat report.
const PLAYOUT_EVERY: Duration = Duration::from_millis(250);
/// A player silent this long is reported as playing nothing.
const PLAYOUT_STALE: Duration = Duration::from_millis(1000);
/// How often the event stream looks for peers' new flashes and download progress.
pub(crate) const POLL_SWARM_EVERY: Duration = Duration::from_millis(250);

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
    /// The frame's index among those the player rendered since the output
    /// started (a `wav:` file holds those, and the silence of its
    /// underruns); `None` for a peer's flash.
    #[serde(default)]
    pub(crate) output_frame: Option<u64>,
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
            output_frame: Some(flash.output_frame),
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

/// The node's volume as last set, in thousandths (1000: unchanged), and
/// its zone's group volume, which the player applies on top of it.
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    node: Arc<AtomicU32>,
    group: Arc<AtomicU32>,
}

impl Default for Volume {
    fn default() -> Self {
        Self {
            node: Arc::new(AtomicU32::new(1000)),
            group: Arc::new(AtomicU32::new(1000)),
        }
    }
}

impl Volume {
    /// The node's own volume (1.0 is unchanged).
    pub(crate) fn get(&self) -> f32 {
        // At most 4000: exact in f32.
        self.node.load(Ordering::Relaxed) as f32 / 1000.0
    }

    /// The node's own volume in thousandths.
    pub(crate) fn permille(&self) -> u16 {
        u16::try_from(self.node.load(Ordering::Relaxed)).unwrap_or(u16::MAX)
    }

    /// What the player plays at: the node's volume times its zone's, at most 4.0.
    fn played(&self, node: f32) -> f32 {
        let group = self.group.load(Ordering::Relaxed) as f32 / 1000.0;
        (node * group).clamp(0.0, 4.0)
    }

    /// Ramps the player to `volume` (0.0 to 4.0) times the zone's volume and remembers it.
    pub(crate) fn set(&self, audio: &Audio, volume: f32) -> Result<(), VolumeError> {
        let Some(player) = audio.player() else {
            return Err(VolumeError::NoOutput);
        };
        if !(0.0..=4.0).contains(&volume) {
            return Err(VolumeError::Player(
                firefly_player::PlayError::InvalidVolume(volume),
            ));
        }
        player
            .set_volume(self.played(volume))
            .map_err(VolumeError::Player)?;
        // In range (checked above): fits in u32 thousandths.
        self.node
            .store((volume * 1000.0).round() as u32, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the zone's group volume, in thousandths, and ramps the player to it.
    pub(crate) fn set_group(&self, audio: &Audio, permille: u16) {
        self.group.store(u32::from(permille), Ordering::Relaxed);
        if let Some(player) = audio.player()
            && let Err(err) = player.set_volume(self.played(self.get()))
        {
            tracing::warn!(%err, "cannot apply the zone's volume");
        }
    }
}

/// Why a volume could not be set.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    /// The node plays nothing (`--output null`).
    #[error("this node has no output (--output null)")]
    NoOutput,
    /// The player refused it (its error kept, not flattened to text).
    #[error("the player refused the volume")]
    Player(#[source] firefly_player::PlayError),
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
            Err(err) => ControlResponse::Refused(Refusal::NoOutput(err.to_string())),
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
