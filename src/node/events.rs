//! Live events for API clients: the player's flashes and session changes.
//!
//! `GET /api/events` upgrades to a WebSocket that streams one JSON object
//! per message: `{"type":"flash",…}` for every output period (which source
//! frame sounded at which swarm instant and, on a virtual output, at which
//! true instant) and `{"type":"session",…}` whenever the applied playback
//! session changes. `GET /api/flashes` returns the latest flashes kept in a
//! ring (for scripts and the end-to-end tests, which have no WebSocket
//! client).
//!
//! True instants are `std::time::Instant`s inside the process; they leave
//! it as microseconds since the UNIX epoch, anchored once at start-up to
//! the system clock, so flashes from several processes on one machine are
//! comparable without trusting any node's (skewed) clock.

use super::NodeState;
use super::api::PlaybackReport;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use firefly_player::{Flash, PlayerEvent};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast::error::RecvError;

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

/// `GET /api/flashes`.
pub(crate) async fn flashes(State(state): State<NodeState>) -> Json<Vec<FlashReport>> {
    Json(state.audio.flashes.all())
}

/// `GET /api/events`.
pub(crate) async fn events(ws: WebSocketUpgrade, State(state): State<NodeState>) -> Response {
    ws.on_upgrade(move |socket| stream(socket, state))
}

async fn stream(mut socket: WebSocket, state: NodeState) {
    let mut player = state.audio.events.subscribe();
    let mut sessions = state.control.session_changes();
    loop {
        let message = tokio::select! {
            event = player.recv() => match event {
                Ok(PlayerEvent::Flash(flash)) => {
                    serde_json::json!({ "type": "flash", "flash": FlashReport::of(&flash) })
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            changed = sessions.changed() => {
                if changed.is_err() {
                    break;
                }
                let session = sessions.borrow_and_update().clone();
                let now = state.audio.timeline.swarm_now().as_micros();
                serde_json::json!({ "type": "session", "playback": PlaybackReport::of(&session, now) })
            }
        };
        if socket
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
}
