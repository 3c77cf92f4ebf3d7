//! The driver's zone side: following this node's placement from one zone
//! to another, and joining a zone's playback as soon as its coordinator is
//! known. A child of the driver so it reaches its state; the rules are in
//! `zones.rs` and `zone_sessions.rs`.
//!
//! A move: the roles start over among the new zone's members (term 0,
//! terms are per zone; a zone's sitting coordinator is followed at once, an
//! election in a zone with none waits [`REJOIN_GRACE_MICROS`]), the old
//! zone's music stops at once, and the session
//! applied is forgotten. On the same tick the roles name the new zone's
//! coordinator, whose latest session (kept from gossip) is applied: a track
//! that plays is joined at its current position, in step, by the usual
//! mid-track join. A move into a zone with no one else in it leaves the
//! node the coordinator of a stopped session.

use super::super::announce::{NodeEvent, announce};
use super::Driver;
use firefly_swarm::{Member, Placement, Session, ZoneId};
use std::collections::HashSet;

/// How long a node moved into a zone with no coordinator waits before
/// electing, µs: a heartbeat period and a half, so that nodes moved
/// together (a new zone of several) hear each other's new zone first and
/// elect one coordinator rather than each itself.
const REJOIN_GRACE_MICROS: i64 = 1_500_000;

impl Driver {
    /// The placement service changed this node's placement.
    pub(super) async fn follow_placement(&mut self, next: Placement) {
        let moved = next.zone != self.placement.zone;
        let from = std::mem::replace(&mut self.placement, next);
        if moved {
            announce(&NodeEvent::ZoneChanged {
                from: from.zone.to_string(),
                zone: self.placement.zone.to_string(),
                name: self.placement.settings.name.clone(),
            });
            self.roles.rejoin((self.now)(), REJOIN_GRACE_MICROS);
            let _ = self.roles_tx.send(self.roles.view());
            if let Some(player) = self.audio.player()
                && let Err(err) = player.stop()
            {
                tracing::warn!(%err, "cannot stop the old zone's music");
            }
            self.applied = None;
            self.applied_from = None;
            self.following = None;
            self.streaming = None;
            self.deferred = false;
            self.retry_at = None;
            let _ = self.session_tx.send(Session {
                zone: self.placement.zone.clone(),
                ..Session::default()
            });
            // Roles among the new zone's members, and its session, now.
            self.on_tick().await;
        } else {
            self.report_status().await;
        }
    }

    /// Keeps the zone sessions of zones that still have members.
    pub(super) fn keep_zone_sessions(&mut self, members: &[Member]) {
        let zones: HashSet<ZoneId> = members
            .iter()
            .map(|m| m.status.placement.zone.clone())
            .chain(std::iter::once(self.placement.zone.clone()))
            .collect();
        let before = self.zone_sessions.all().len();
        self.zone_sessions.retain(&zones);
        if self.zone_sessions.all().len() != before {
            let _ = self.zone_sessions_tx.send(self.zone_sessions.all());
        }
    }

    /// Applies the zone's latest session when this node follows a
    /// coordinator whose session it has not applied yet (just moved here,
    /// or the zone failed over before its gossip came).
    pub(super) async fn join_zone_session(&mut self) {
        let Some(coordinator) = self.roles.view().coordinator else {
            return;
        };
        if coordinator == self.client.peer_id() || self.applied_from == Some(coordinator) {
            return;
        }
        let Some((from, session)) = self.zone_sessions.latest(&self.placement.zone).cloned() else {
            return;
        };
        if from != coordinator {
            return;
        }
        if let Some(old) = self.applied.as_mut()
            && !session.is_newer_than(old)
        {
            // Another lineage: its session follows the last one applied.
            old.term = 0;
            old.seq = 0;
        }
        self.applied_from = Some(from);
        self.apply(session).await;
    }
}
