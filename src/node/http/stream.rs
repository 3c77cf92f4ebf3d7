//! The live part of the API: `GET /api/events` (a WebSocket streaming
//! flashes, session changes and download progress) and `GET /api/flashes`.
//! What it streams is described in [`crate::node::events`].

use super::playback::PlaybackReport;
use crate::node::NodeState;
use crate::node::events::{FlashReport, POLL_SWARM_EVERY};
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use firefly_player::PlayerEvent;
use firefly_swarm::{PeerId, PlayoutFlash};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::broadcast::error::RecvError;

/// `GET /api/flashes`.
pub(crate) async fn flashes(State(state): State<NodeState>) -> Json<Vec<FlashReport>> {
    Json(state.audio.flashes.all())
}

/// `GET /api/events`.
pub(crate) async fn events(ws: WebSocketUpgrade, State(state): State<NodeState>) -> Response {
    ws.on_upgrade(move |socket| stream(socket, state))
}

pub(crate) async fn stream(mut socket: WebSocket, state: NodeState) {
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
                        output_frame: None,
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
