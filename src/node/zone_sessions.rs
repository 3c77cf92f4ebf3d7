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

#[cfg(test)]
mod tests {
    use super::*;
    use firefly_swarm::{LocalMicros, NodeStatus, Placement, RoleView};

    fn member(peer: PeerId, zone: &ZoneId, coordinates: bool) -> Member {
        Member {
            peer,
            name: "n".into(),
            uptime_ms: 1000,
            status: NodeStatus {
                roles: RoleView {
                    coordinator: coordinates.then_some(peer),
                    term: 1,
                },
                placement: Placement {
                    zone: zone.clone(),
                    ..Placement::default()
                },
                ..NodeStatus::default()
            },
            joined_at: LocalMicros(0),
            last_seen: LocalMicros(0),
        }
    }

    #[test]
    fn a_zone_session_is_kept_only_from_its_claimed_coordinator_and_only_while_the_zone_lives() {
        let kitchen: ZoneId = "kitchen".parse().unwrap_or_default();
        let (boss, mate, stranger) = (PeerId::random(), PeerId::random(), PeerId::random());
        let members = [
            member(boss, &kitchen, true),
            member(mate, &kitchen, false),
            member(stranger, &ZoneId::default(), true),
        ];
        let session = |seq| Session {
            zone: kitchen.clone(),
            term: 1,
            seq,
            ..Session::default()
        };
        let mut sessions = ZoneSessions::default();
        // Not from a member that coordinates the kitchen by its heartbeat.
        assert!(!sessions.handle_session(&members, mate, &session(1)));
        assert!(!sessions.handle_session(&members, stranger, &session(1)));
        assert!(sessions.latest(&kitchen).is_none());
        assert!(sessions.handle_session(&members, boss, &session(2)));
        // Older from the same coordinator: kept out.
        assert!(!sessions.handle_session(&members, boss, &session(1)));
        assert_eq!(sessions.latest(&kitchen).map(|(_, s)| s.seq), Some(2));
        // The kitchen ends when no one is in it.
        sessions.retain(&HashSet::from([ZoneId::default()]));
        assert!(sessions.all().is_empty());
    }
}
