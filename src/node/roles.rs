//! Who coordinates playback: the role derived from membership.
//!
//! [`Roles`] is sans-IO: the node feeds it the members it knows (from the
//! swarm's heartbeats: when each was last heard, how long it has been up,
//! and whom it believes is coordinator at which term) with `now`, and reads
//! back this node's [`RoleView`]. It reads no clock and sends nothing.
//!
//! The rules (`DESIGN.md`, Roles):
//!
//! 1. A member is *alive* for roles while it was heard within the silence
//!    limit (default 2.5 s of 1 s heartbeats, so a dead coordinator is
//!    replaced within 3 s, well before membership's own 5 s expiry).
//! 2. The best view wins: among the views of alive members whose coordinator
//!    is alive (this node's own included), the highest term, and at equal
//!    terms the lowest coordinator `PeerId`. This is how a newcomer adopts the
//!    sitting coordinator and how, after a partition heals, the side with the
//!    higher term is followed without a restart.
//! 3. With no alive coordinator in any view (and, for a fresh node, after a
//!    grace period to hear the others first), this node elects: the
//!    longest-standing alive member (earliest start, ties by lowest `PeerId`)
//!    at a term one above every term seen. Survivors of a failover see the
//!    same members and so elect the same node at the same term; if they ever
//!    differ, rule 2 settles it.
//!
//! The term only grows: nothing here ever lowers it.

use firefly_clock::LocalMicros;
use firefly_swarm::{Member, PeerId, RoleView};

/// Default silence after which a member no longer counts for roles, µs.
pub(crate) const DEFAULT_SILENCE_MICROS: i64 = 2_500_000;
/// Default time a fresh node listens before electing anyone, µs.
pub(crate) const DEFAULT_GRACE_MICROS: i64 = 2_200_000;

/// What this node knows about one other member, for roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberView {
    /// Its identity.
    pub(crate) peer: PeerId,
    /// When it started, on this node's local clock (estimated).
    pub(crate) started_at: LocalMicros,
    /// When it was last heard, on this node's local clock.
    pub(crate) last_seen: LocalMicros,
    /// Whom it believes coordinates, at which term.
    pub(crate) view: RoleView,
}

impl MemberView {
    /// The role-relevant part of a swarm member.
    pub(crate) fn of(member: &Member) -> Self {
        let uptime = i64::try_from(member.uptime_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        Self {
            peer: member.peer,
            started_at: LocalMicros(member.last_seen.as_micros().saturating_sub(uptime)),
            last_seen: member.last_seen,
            view: member.status.roles.clone(),
        }
    }
}

/// The role state machine; see the module doc.
#[derive(Debug)]
pub(crate) struct Roles {
    me: PeerId,
    started_at: LocalMicros,
    /// Invariant: only ever raised (rule "the term only grows").
    term: u64,
    coordinator: Option<PeerId>,
    silence: i64,
    elect_after: LocalMicros,
}

impl Roles {
    /// Roles for node `me`, started at `now`, with the default limits.
    pub(crate) fn new(me: PeerId, now: LocalMicros) -> Self {
        Self::with_limits(me, now, DEFAULT_SILENCE_MICROS, DEFAULT_GRACE_MICROS)
    }

    /// Roles with a given silence limit and start-up grace, µs.
    pub(crate) fn with_limits(me: PeerId, now: LocalMicros, silence: i64, grace: i64) -> Self {
        Self {
            me,
            started_at: now,
            term: 0,
            coordinator: None,
            silence,
            elect_after: now + grace,
        }
    }

    /// This node's view: the coordinator it follows and the term.
    pub(crate) fn view(&self) -> RoleView {
        RoleView {
            coordinator: self.coordinator,
            term: self.term,
        }
    }

    /// Whether this node is the coordinator.
    pub(crate) fn is_coordinator(&self) -> bool {
        self.coordinator == Some(self.me)
    }

    /// Feeds the members known at `now` (this node excluded); returns the new
    /// view if it changed.
    pub(crate) fn handle_members(
        &mut self,
        now: LocalMicros,
        members: &[MemberView],
    ) -> Option<RoleView> {
        let before = self.view();
        let alive: Vec<&MemberView> = members
            .iter()
            .filter(|m| m.peer != self.me && now - m.last_seen <= self.silence)
            .collect();
        let is_alive = |peer: &PeerId| *peer == self.me || alive.iter().any(|m| m.peer == *peer);

        // Rule 2: the best view whose coordinator is alive.
        let mine = self.coordinator.map(|c| (self.term, c));
        let best = alive
            .iter()
            .filter_map(|m| m.view.coordinator.map(|c| (m.view.term, c)))
            .chain(mine)
            .filter(|(_, c)| is_alive(c))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match best {
            Some((term, coordinator)) => {
                // `best` includes this node's own live view, so this never lowers the term.
                self.term = self.term.max(term);
                self.coordinator = Some(coordinator);
            }
            None if now >= self.elect_after => {
                // Rule 3: elect the longest-standing alive member.
                let me = (self.started_at, self.me);
                let chosen = alive
                    .iter()
                    .map(|m| (m.started_at, m.peer))
                    .chain(std::iter::once(me))
                    .min()
                    .map_or(self.me, |(_, peer)| peer);
                let highest = members.iter().map(|m| m.view.term).max().unwrap_or(0);
                self.term = self.term.max(highest) + 1;
                self.coordinator = Some(chosen);
            }
            None => self.coordinator = None,
        }
        let after = self.view();
        (after != before).then_some(after)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn peers(n: usize) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        ids.sort();
        ids
    }

    fn member(peer: PeerId, started: i64, seen: i64, view: RoleView) -> MemberView {
        MemberView {
            peer,
            started_at: LocalMicros(started),
            last_seen: LocalMicros(seen),
            view,
        }
    }

    fn view(coordinator: PeerId, term: u64) -> RoleView {
        RoleView {
            coordinator: Some(coordinator),
            term,
        }
    }

    #[test]
    fn a_lone_node_listens_first_then_coordinates_at_term_one() {
        let me = PeerId::random();
        let mut roles = Roles::new(me, LocalMicros(0));
        assert_eq!(roles.handle_members(LocalMicros(S), &[]), None);
        assert!(!roles.is_coordinator());
        let changed = roles.handle_members(LocalMicros(3 * S), &[]);
        assert_eq!(changed, Some(view(me, 1)));
        assert!(roles.is_coordinator());
    }

    #[test]
    fn a_newcomer_adopts_the_sitting_coordinator_even_if_it_started_later() {
        let ids = peers(2);
        let (old, newcomer) = (ids[1], ids[0]);
        let mut roles = Roles::new(newcomer, LocalMicros(10 * S));
        let others = [member(old, 0, 10 * S, view(old, 4))];
        assert_eq!(
            roles.handle_members(LocalMicros(10 * S + 1), &others),
            Some(view(old, 4))
        );
    }

    #[test]
    fn failover_elects_the_longest_standing_survivor_within_three_seconds() {
        let ids = peers(4);
        let (coord, a, b, c) = (ids[0], ids[1], ids[2], ids[3]);
        // a started first among the survivors; every survivor runs the same rule.
        let start = [(a, S), (b, 2 * S), (c, 3 * S)];
        let dies_at = 20 * S;
        let mut results = Vec::new();
        for (me, my_start) in start {
            let mut roles = Roles::new(me, LocalMicros(my_start));
            let mut others: Vec<MemberView> = start
                .iter()
                .filter(|(p, _)| *p != me)
                .map(|(p, s)| member(*p, *s, dies_at, view(coord, 7)))
                .collect();
            others.push(member(coord, 0, dies_at, view(coord, 7)));
            roles.handle_members(LocalMicros(dies_at), &others);
            assert_eq!(roles.view(), view(coord, 7));
            // Survivors keep heartbeating; the coordinator is silent.
            let mut t = dies_at;
            let mut took = None;
            while t < dies_at + 3 * S {
                t += S / 4;
                for m in others.iter_mut().filter(|m| m.peer != coord) {
                    m.last_seen = LocalMicros(t);
                }
                if roles.handle_members(LocalMicros(t), &others).is_some() {
                    took = Some(t - dies_at);
                    break;
                }
            }
            assert!(took.is_some_and(|d| d <= 3 * S), "{took:?}");
            results.push(roles.view());
        }
        assert!(results.iter().all(|v| *v == view(a, 8)), "{results:?}");
    }

    #[test]
    fn equal_starts_are_broken_by_the_lowest_peer_id() {
        let ids = peers(3);
        let mut roles = Roles::new(ids[2], LocalMicros(0));
        let others = [
            member(ids[1], 0, 3 * S, RoleView::default()),
            member(ids[0], 0, 3 * S, RoleView::default()),
        ];
        assert_eq!(
            roles.handle_members(LocalMicros(3 * S), &others),
            Some(view(ids[0], 1))
        );
    }

    #[test]
    fn after_a_partition_heals_the_higher_term_wins_and_the_term_never_drops() {
        let ids = peers(2);
        let (x, y) = (ids[0], ids[1]);
        // This node coordinates its side at term 1; y's side reached term 5.
        let mut roles = Roles::new(x, LocalMicros(0));
        roles.handle_members(LocalMicros(3 * S), &[]);
        let mut t = 3 * S;
        for _ in 0..2 {
            // Partitioned: a silent peer is ignored and x re-confirms itself.
            t += S;
            roles.handle_members(LocalMicros(t), &[]);
        }
        assert!(roles.is_coordinator());
        t += S;
        let healed = [member(y, 5 * S, t, view(y, 5))];
        assert_eq!(
            roles.handle_members(LocalMicros(t), &healed),
            Some(view(y, 5))
        );
        assert!(!roles.is_coordinator());
        // A stale lower-term view does not pull it back.
        let stale = [member(y, 5 * S, t, view(x, 2))];
        roles.handle_members(LocalMicros(t), &stale);
        assert!(roles.view().term >= 5);
    }

    #[test]
    fn equal_terms_converge_on_the_lowest_coordinator() {
        let ids = peers(2);
        let mut roles = Roles::new(ids[1], LocalMicros(0));
        roles.handle_members(LocalMicros(3 * S), &[]);
        assert_eq!(roles.view(), view(ids[1], 1));
        let other = [member(ids[0], 0, 3 * S, view(ids[0], 1))];
        assert_eq!(
            roles.handle_members(LocalMicros(3 * S), &other),
            Some(view(ids[0], 1))
        );
    }

    #[test]
    fn a_member_estimates_its_start_from_uptime() {
        let m = Member {
            peer: PeerId::random(),
            name: "a".into(),
            uptime_ms: 1_500,
            status: firefly_swarm::NodeStatus::default(),
            joined_at: LocalMicros(9 * S),
            last_seen: LocalMicros(10 * S),
        };
        assert_eq!(
            MemberView::of(&m).started_at,
            LocalMicros(10 * S - 1_500_000)
        );
    }
}
