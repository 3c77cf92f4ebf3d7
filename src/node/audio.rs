//! The node's player: which output it sounds on, and its events.
//!
//! [`OutputArg`] is `firefly up --output`: a [`firefly_player::OutputChoice`]
//! or `null` (no sound: the node takes part in the swarm and its sessions but
//! plays nothing). [`Audio::start`] builds a [`Player`] on the node's
//! [`NodeTimeline`] and spawns a task that drains the player's events into a
//! broadcast channel (the `/api/events` WebSocket, the demo's sync figures).
//!
//! What it is not: the playback session logic; that is `session`'s.

use super::timeline::NodeTimeline;
use anyhow::Context;
use firefly_player::{OutputChoice, Player, PlayerConfig, PlayerEvent};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;

/// How many player events a slow listener may fall behind before losing some.
const EVENT_BACKLOG: usize = 1024;
/// How often the player's event queue is drained. Each drain wakes the
/// runtime and every listener of the broadcast; at 20 ms that was about
/// 0.2 % of a core per node (`BENCHMARKS.md`, "CPU of a playing node"), and
/// nothing waits on an event for timing: changes are anchored on the swarm
/// clock `LEAD_MICROS` ahead, and the engine plays the next track on its own.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// `--output`: a real or clocked output, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputArg {
    /// Sound on this output.
    Play(OutputChoice),
    /// No sound at all.
    Null,
}

impl std::str::FromStr for OutputArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "null" {
            return Ok(Self::Null);
        }
        s.parse::<OutputChoice>()
            .map(Self::Play)
            .map_err(|err| format!("{err} (or null)"))
    }
}

/// The node's player, shared by the session logic and the API.
#[derive(Clone)]
pub(crate) struct Audio {
    /// The player; `None` with `--output null`.
    player: Option<Arc<Mutex<Player>>>,
    /// Its timeline (the swarm clock).
    pub(crate) timeline: Arc<NodeTimeline>,
    /// Every player event, for whoever listens.
    pub(crate) events: broadcast::Sender<PlayerEvent>,
    /// The latest flashes.
    pub(crate) flashes: super::events::FlashRing,
}

impl Audio {
    /// Opens `output` and starts a player on `timeline` compensating `latency_ms`.
    pub(crate) fn start(
        output: &OutputArg,
        timeline: Arc<NodeTimeline>,
        latency_ms: i64,
    ) -> anyhow::Result<Self> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        let player = match output {
            OutputArg::Null => None,
            OutputArg::Play(choice) => {
                let opened = choice
                    .open()
                    .with_context(|| format!("cannot open the output {choice:?}"))?;
                let config = PlayerConfig {
                    latency_trim_micros: latency_ms.saturating_mul(1000),
                    ..PlayerConfig::default()
                };
                let player = Player::start(opened, timeline.clone(), config)
                    .context("cannot start the player")?;
                Some(Arc::new(Mutex::new(player)))
            }
        };
        let flashes = super::events::FlashRing::default();
        if let Some(player) = &player {
            tokio::spawn(forward_events(
                Arc::clone(player),
                Arc::clone(&timeline),
                events.clone(),
                flashes.clone(),
            ));
        }
        Ok(Self {
            player,
            timeline,
            events,
            flashes,
        })
    }

    /// What the output has seen (timing, underruns, the device's rate);
    /// `None` with `--output null`.
    pub(crate) fn output_report(&self) -> Option<OutputReport> {
        let player = self.player()?;
        let report = player.output_report()?;
        Some(OutputReport {
            timing: report.timing.as_str(),
            underruns: report.underruns,
            bad_delays: report.bad_delays,
            device_rate_ppm: report.device_rate_ppm,
            delay_us: report.delay_micros,
            jitter_us: report.jitter_micros,
            periods: report.periods,
            reopens: report.reopens,
            realtime: report.realtime,
        })
    }

    /// The player, locked; `None` with `--output null`.
    pub(crate) fn player(&self) -> Option<MutexGuard<'_, Player>> {
        // The player is a set of channels; a panicking holder leaves them usable.
        self.player
            .as_ref()
            .map(|p| p.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// `output` in `GET /api/state`: how the node's output is timed and how it fares.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct OutputReport {
    /// "reported" (the device's own playback instants), "callback-only" (the
    /// host reports no delay: latency unknown), "unpaced" (the device does
    /// not pace itself), "lost" (the device went away; reopening), "starting".
    pub(crate) timing: &'static str,
    /// Times the device ran dry.
    pub(crate) underruns: u64,
    /// Delay reports ignored as nonsense.
    pub(crate) bad_delays: u64,
    /// The device's frame rate against this node's clock, ppm off nominal.
    pub(crate) device_rate_ppm: Option<f64>,
    /// The last delay the device reported, µs.
    pub(crate) delay_us: Option<i64>,
    /// Scatter of its playback instants around the fit, µs.
    pub(crate) jitter_us: f64,
    /// Periods played.
    pub(crate) periods: u64,
    /// Times the device was reopened after going away.
    pub(crate) reopens: u64,
    /// Whether the output's threads run at real-time priority.
    pub(crate) realtime: bool,
}

/// Drain ticks between two logged clock anchors (about a second).
const ANCHOR_EVERY_TICKS: u64 = 1_000 / DRAIN_EVERY.as_millis() as u64;

/// Logs the local clock against the system's wall clock, read back to back,
/// so that `firefly bench heard --logs` can put every node's flashes (local
/// instants) and swarm clock on one time axis.
fn log_clock_anchor(timeline: &NodeTimeline) {
    use firefly_player::Timeline;
    if !tracing::enabled!(target: "firefly_device_timing", tracing::Level::TRACE) {
        return;
    }
    let before = timeline.now().as_micros();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let after = timeline.now().as_micros();
    tracing::trace!(
        target: "firefly_device_timing",
        local = before + (after - before) / 2,
        unix_us = unix as u64,
        read_us = after - before,
        "anchor"
    );
}

/// Moves the player's events to the broadcast channel until the player is gone.
async fn forward_events(
    player: Arc<Mutex<Player>>,
    timeline: Arc<NodeTimeline>,
    events: broadcast::Sender<PlayerEvent>,
    flashes: super::events::FlashRing,
) {
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    let mut ticks = 0u64;
    loop {
        tick.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(ANCHOR_EVERY_TICKS) {
            log_clock_anchor(&timeline);
        }
        let drained: Vec<PlayerEvent> = {
            let player = player
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::iter::from_fn(|| player.poll_event())
                .take(4096)
                .collect()
        };
        for event in drained {
            match &event {
                PlayerEvent::Flash(flash) => {
                    flashes.push(super::events::FlashReport::of(flash));
                    // Every period's phase error and clock mapping, for
                    // `firefly bench heard --logs` (lined up with the sound).
                    tracing::trace!(
                        target: "firefly_device_timing",
                        local = flash.local.as_micros(),
                        swarm = flash.swarm.as_micros(),
                        error_frames = flash.error_frames,
                        "flash"
                    );
                }
                other => tracing::debug!(target: "firefly_device_timing", event = ?other, "player"),
            }
            // No listener is fine: events are only for those who watch.
            let _ = events.send(event);
        }
        if Arc::strong_count(&player) == 1 {
            break;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_arg_accepts_null_and_the_player_forms() {
        assert_eq!("null".parse::<OutputArg>(), Ok(OutputArg::Null));
        assert_eq!(
            "virtual".parse::<OutputArg>(),
            Ok(OutputArg::Play(OutputChoice::Virtual))
        );
        assert_eq!(
            "wav:/tmp/a.wav".parse::<OutputArg>(),
            Ok(OutputArg::Play(OutputChoice::Wav("/tmp/a.wav".into())))
        );
        let err = "speaker".parse::<OutputArg>().err().unwrap_or_default();
        assert!(err.contains("null") && err.contains("virtual"), "{err}");
    }
}
