//! The node's own placement (zone, zone settings, channel map, delay trim):
//! applied one change at a time, stored, and put to work.
//!
//! [`Placements`] is the single writer of this node's placement
//! (`zones.rs` holds the rules): local API requests and peers'
//! `/firefly/control/1` [`ControlRequest::Place`] requests go through
//! [`Placements::apply`], serialized by one lock, so two moves of this
//! node asked at once from two places are applied in turn (the later one
//! wins; each caller gets the placement after its own). Each change is
//! stored in `SETTINGS`, pushed to the player (channel map, latency trim,
//! group volume) and published on a watch channel: the driver follows the
//! zone from it and reports the placement in heartbeats.
//! [`keep_converged`] takes zone-mates' newer zone settings every second.
//!
//! The delay trim is the latency trim (`--latency-ms`): the same number,
//! stored under the same key, so `--latency-ms` given at start sets it.

use super::audio::Audio;
use super::events::Volume;
use super::persist;
use super::zones;
use firefly_library::Library;
use firefly_player::ChannelMap as PlayerChannels;
use firefly_swarm::{
    ChannelMap, Client, ControlRequest, ControlResponse, Event, Placement, PlacementChange,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};

/// How often zone settings are compared with the zone-mates'.
const CONVERGE_EVERY: Duration = Duration::from_secs(1);

/// This node's placement; see the module doc.
#[derive(Clone)]
pub(crate) struct Placements {
    /// Held across a whole change (compute, store, apply): the serializer.
    current: Arc<Mutex<Placement>>,
    published: watch::Sender<Placement>,
    library: Library,
    audio: Audio,
    volume: Volume,
}

impl Placements {
    /// The placement stored last (the default zone if none), with the
    /// latency trim in force as its delay, applied to the player.
    pub(crate) async fn open(
        library: Library,
        audio: Audio,
        volume: Volume,
        latency_ms: i64,
    ) -> Self {
        let reading = library.clone();
        let stored = tokio::task::spawn_blocking(move || persist::saved_placement(&reading))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let placement = zones::apply_change(
            &stored,
            &PlacementChange {
                delay_ms: Some(latency_ms),
                ..PlacementChange::default()
            },
        );
        let (published, _) = watch::channel(placement.clone());
        let placements = Self {
            current: Arc::new(Mutex::new(placement.clone())),
            published,
            library,
            audio,
            volume,
        };
        placements.put_to_work(None, &placement);
        placements
    }

    /// The placement now.
    pub(crate) fn get(&self) -> Placement {
        self.published.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Placement> {
        self.published.subscribe()
    }

    /// Applies `change`; returns the placement after it.
    pub(crate) async fn apply(&self, change: &PlacementChange) -> Placement {
        self.apply_with(|_| Some(change.clone())).await
    }

    /// Applies the change `decide` makes of the placement as it is under
    /// the lock (none: no change); returns the placement after it.
    async fn apply_with(
        &self,
        decide: impl FnOnce(&Placement) -> Option<PlacementChange>,
    ) -> Placement {
        let mut current = self.current.lock().await;
        let Some(change) = decide(&current) else {
            return current.clone();
        };
        let next = zones::apply_change(&current, &change);
        if next == *current {
            return next;
        }
        let library = self.library.clone();
        let (stored, delay_changed) = (next.clone(), next.delay_ms != current.delay_ms);
        let _ = tokio::task::spawn_blocking(move || {
            persist::save_placement(&library, &stored);
            if delay_changed {
                persist::save_latency(&library, stored.delay_ms);
            }
        })
        .await;
        self.put_to_work(Some(&current), &next);
        if next.zone != current.zone {
            tracing::info!(zone = %next.zone, name = %next.settings.name, "moved to another zone");
        }
        *current = next.clone();
        self.published.send_replace(next.clone());
        next
    }

    /// Pushes what changed from `before` to the player.
    fn put_to_work(&self, before: Option<&Placement>, next: &Placement) {
        if before.is_none_or(|b| b.settings.volume_permille != next.settings.volume_permille) {
            self.volume
                .set_group(&self.audio, next.settings.volume_permille);
        }
        let Some(player) = self.audio.player() else {
            return;
        };
        if before.is_none_or(|b| b.channel != next.channel) {
            let map = match next.channel {
                ChannelMap::Stereo => PlayerChannels::Stereo,
                ChannelMap::Left => PlayerChannels::Left,
                ChannelMap::Right => PlayerChannels::Right,
                ChannelMap::Mono => PlayerChannels::Mono,
            };
            if let Err(err) = player.set_channel_map(map) {
                tracing::warn!(%err, "cannot set the channel map");
            }
        }
        if before.is_some_and(|b| b.delay_ms != next.delay_ms)
            && let Err(err) = player.set_latency_trim(next.delay_ms.saturating_mul(1000))
        {
            tracing::warn!(%err, "cannot set the delay trim");
        }
    }

    /// Answers `event` if it is a placement request; hands any other event back.
    pub(crate) async fn intercept(&self, client: &Client, event: Event) -> Option<Event> {
        let Event::ControlRequest {
            key,
            request: ControlRequest::Place(change),
            ..
        } = event
        else {
            return Some(event);
        };
        // Bounds were checked on arrival (`ControlRequest::check`).
        let placed = self.apply(&change).await;
        let _ = client
            .respond_control(key, ControlResponse::Placed(Box::new(placed)))
            .await;
        None
    }
}

/// Takes zone-mates' zone settings when they supersede this node's (a
/// rename or group volume this node missed, a healed partition), every
/// [`CONVERGE_EVERY`], until the swarm stops.
pub(crate) async fn keep_converged(placements: Placements, client: Client) {
    let mut tick = tokio::time::interval(CONVERGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(members) = client.members().await else {
            return;
        };
        placements
            .apply_with(|mine| {
                let settings = zones::converge(mine, members.iter().map(|m| &m.status.placement))?;
                Some(PlacementChange {
                    settings: Some(settings),
                    ..PlacementChange::default()
                })
            })
            .await;
    }
}
