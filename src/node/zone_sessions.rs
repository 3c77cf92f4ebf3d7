//! The latest session of every zone, as its coordinator gossiped it: what
//! `/api/zones` shows as each zone's now playing, and what a node moved
//! into a zone joins at once instead of waiting for the next gossip.
//!
//! Sans-IO. A session is kept for zone Z only from a member that says, in
//! its heartbeat, that it is in Z and coordinates it (the node applies only
//! its own zone's session, from the coordinator its roles derive; this
//! record is for showing and joining, and joining still waits for the
//! roles to name that coordinator). Zones with no member left are dropped,
//! so the record is bounded by the number of members.

use firefly_swarm::{Member, PeerId, Session, ZoneId};
use std::collections::{BTreeMap, HashSet};

/// The latest session of each zone and who published it.
#[derive(Debug, Default, Clone)]
pub(crate) struct ZoneSessions {
    by_zone: BTreeMap<ZoneId, (PeerId, Session)>,
}

impl ZoneSessions {
    /// Records `session` gossiped by `from` if `from` (one of `members`)
    /// coordinates the session's zone by its own heartbeat, and the session
    /// is newer than the zone's last or comes from another coordinator (a
    /// failover's lineage may count lower). Returns whether it was kept.
    pub(crate) fn handle_session(
        &mut self,
        members: &[Member],
        from: PeerId,
        session: &Session,
    ) -> bool {
        let claims = members.iter().any(|m| {
            m.peer == from
                && m.status.roles.coordinator == Some(from)
                && m.status.placement.zone == session.zone
        });
        if !claims {
            return false;
        }
        let keep = self
            .by_zone
            .get(&session.zone)
            .is_none_or(|(by, last)| *by != from || session.is_newer_than(last));
        if keep {
            self.by_zone
                .insert(session.zone.clone(), (from, session.clone()));
        }
        keep
    }

    /// The zone's latest session and its publisher.
    pub(crate) fn latest(&self, zone: &ZoneId) -> Option<&(PeerId, Session)> {
        self.by_zone.get(zone)
    }

    /// Forgets zones none of `zones` names.
    pub(crate) fn retain(&mut self, zones: &HashSet<ZoneId>) {
        self.by_zone.retain(|zone, _| zones.contains(zone));
    }

    /// Every zone's latest session.
    pub(crate) fn all(&self) -> BTreeMap<ZoneId, Session> {
        self.by_zone
            .iter()
            .map(|(zone, (_, session))| (zone.clone(), session.clone()))
            .collect()
    }
}
