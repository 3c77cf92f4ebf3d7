//! The driver's zone side: handing the machine this node's placement when
//! it changes, and keeping every zone's latest session (for the API, and
//! for joining a zone as soon as its coordinator is known). A child of the
//! driver so it reaches its state; the rules are in `zones.rs`,
//! `zone_sessions.rs` and `LocalPlay::handle_zone`.

use super::Driver;
use firefly_swarm::{Member, PeerId, Placement, Session, ZoneId};
use std::collections::HashSet;

impl Driver {
    /// The placement service changed this node's placement: the machine
    /// moves zones if the zone changed (from then on the driver hands it
    /// the new zone's members), roles are derived again at once, and the
    /// heartbeats carry the new placement.
    pub(super) async fn follow_placement(&mut self, next: Placement) {
        let moved = next.zone != self.placement.zone;
        self.machine.handle_zone(self.moment(), &next);
        self.placement = next;
        self.carry_out().await;
        if moved {
            // Roles among the new zone's members, and its session, now.
            self.on_tick().await;
        }
    }

    /// Keeps `session` from `from` as its zone's latest if `from` coordinates
    /// that zone by its own heartbeat.
    pub(super) async fn record_zone_session(&mut self, from: PeerId, session: &Session) {
        if let Ok(members) = self.client.members().await
            && self.zone_sessions.handle_session(&members, from, session)
        {
            let _ = self.zone_sessions_tx.send(self.zone_sessions.all());
        }
    }

    /// Forgets the sessions of zones no member is in any more.
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

    /// Hands the machine this zone's latest session as if just gossiped:
    /// a node just moved here (or whose zone failed over before the next
    /// gossip) joins it as soon as its roles name the coordinator that
    /// published it. The machine ignores it otherwise (not its
    /// coordinator's, or not newer than the one applied).
    pub(super) fn join_zone_session(&mut self) {
        if let Some((from, session)) = self.zone_sessions.latest(&self.placement.zone).cloned() {
            self.machine.handle_session(self.moment(), from, session);
        }
    }
}
