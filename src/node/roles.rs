//! Who coordinates playback: the role derived from membership.
//!
//! [`Roles`] is sans-IO: the node feeds it the members it knows (from the
//! swarm's heartbeats: when each was last heard, how long it has been up,
//! and whom it believes is coordinator at which term) with `now`, and reads
//! back this node's [`RoleView`]. It reads no clock and sends nothing.
//!
//! The rules (`DESIGN.md`, Roles; `docs/SECURITY.md`, why):
//!
//! 1. A member is *alive* for roles while it was heard within the silence
//!    limit (default 2.5 s of 1 s heartbeats, so a dead coordinator is
//!    replaced within 3 s, well before membership's own 5 s expiry).
//! 2. A *candidate* is an alive member that claims the role itself (its own
//!    heartbeat names it coordinator), or this node when it coordinates. Its
//!    *support* is the candidate itself plus every alive member (this node
//!    included) whose view names it. When there are candidates, the one with
//!    the most support wins, ties going to the lowest `PeerId`. This is how a
//!    newcomer adopts the sitting coordinator, how a healed partition becomes
//!    one swarm (the bigger side wins), and why one member claiming the role
//!    for itself changes nothing: it has no support but its own. Terms do not
//!    pick the coordinator; they only order sessions.
//! 3. With no candidate (and, for a fresh node, after a grace period to hear
//!    the others first), this node elects: the longest-standing alive member
//!    (earliest start, ties by lowest `PeerId`). Survivors of a failover see
//!    the same members and so elect the same node; if they ever differ,
//!    rule 2 settles it.
//! 4. Terms move one step at a time. The highest *legitimate* term is this
//!    node's own or a supported candidate's (support of two or more); a
//!    follower takes its coordinator's term, an election goes one above the
//!    highest legitimate term, and a coordinator that wins a merge goes one
//!    above the side it absorbed — whether that side still claims the role
//!    or already follows it at its own higher term (its claim may never have
//!    arrived), so every member ends on one term. A claimed term more than
//!    one step above the
//!    highest legitimate term is never adopted, and a member claiming the role
//!    for itself at such a term breaks the rule: it is reported
//!    ([`Roles::poll_offender`], once per heartbeat) for the node to penalize.
//!    Every term stays at most [`MAX_COUNTER`], so nothing wraps.
//!
//! The term only grows: nothing here ever lowers it.

use firefly_clock::LocalMicros;
use firefly_swarm::{MAX_COUNTER, Member, PeerId, RoleView};
use std::collections::HashMap;

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
    /// Members whose claims broke rule 4, to be penalized.
    offenders: Vec<PeerId>,
    /// The heartbeat (by `last_seen`) each offender was last reported for,
    /// so one heartbeat is reported once. Invariant: only alive members.
    reported: HashMap<PeerId, LocalMicros>,
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
            offenders: Vec::new(),
            reported: HashMap::new(),
        }
    }

    /// Starts over among the members of another zone at `now`: no
    /// coordinator and term 0 (terms order one zone's sessions, so they are
    /// per zone), electing only after `grace` when the zone has no
    /// candidate. The node's start stays its own: it is what the others
    /// see in its heartbeats.
    pub(crate) fn rejoin(&mut self, now: LocalMicros, grace: i64) {
        self.term = 0;
        self.coordinator = None;
        self.elect_after = now + grace;
        self.offenders.clear();
        self.reported.clear();
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

    /// A member whose claim broke the rules since the last call, to be
    /// penalized (each offending heartbeat is reported once).
    pub(crate) fn poll_offender(&mut self) -> Option<PeerId> {
        self.offenders.pop()
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
        self.reported
            .retain(|peer, _| alive.iter().any(|m| m.peer == *peer));

        // Rule 2: candidates and their support.
        let claims_itself = |m: &MemberView| m.view.coordinator == Some(m.peer);
        let support = |c: PeerId| {
            let followers = alive
                .iter()
                .filter(|m| m.view.coordinator == Some(c))
                .count();
            // A candidate that claims itself is among its followers.
            followers + usize::from(self.coordinator == Some(c))
        };
        let mut candidates: Vec<(PeerId, u64)> = alive
            .iter()
            .filter(|m| claims_itself(m))
            .map(|m| (m.peer, m.view.term))
            .collect();
        if self.is_coordinator() {
            candidates.push((self.me, self.term));
        }
        // The coordinator this node follows stays a candidate while it is
        // alive and follows no one else (it may not have heard of its own
        // election yet).
        if let Some(c) = self.coordinator
            && c != self.me
            && !candidates.iter().any(|(other, _)| *other == c)
            && alive
                .iter()
                .any(|m| m.peer == c && m.view.coordinator.is_none_or(|x| x == c))
        {
            candidates.push((c, self.term));
        }

        // Rule 4: the highest legitimate term, and the claims that break it.
        let legitimate = candidates
            .iter()
            .filter(|(c, _)| support(*c) >= 2)
            .map(|(_, t)| *t)
            .chain(std::iter::once(self.term))
            .max()
            .unwrap_or(self.term);
        let ceiling = legitimate.saturating_add(1).min(MAX_COUNTER);

        let chosen = candidates
            .iter()
            .map(|(c, _)| (support(*c), *c))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, c)| c);
        // A losing claim of the role above the ceiling breaks rule 4.
        for m in alive
            .iter()
            .filter(|m| claims_itself(m) && m.view.term > ceiling && chosen != Some(m.peer))
        {
            if self.reported.get(&m.peer) != Some(&m.last_seen) {
                self.reported.insert(m.peer, m.last_seen);
                self.offenders.push(m.peer);
            }
        }
        match chosen {
            Some(c) if c == self.me => {
                // Won a merge: sessions must outrank those of the side
                // absorbed, which may still claim the role or already follow
                // this node at its own (higher) term.
                let rival = candidates
                    .iter()
                    .filter(|(other, t)| *other != self.me && *t <= ceiling)
                    .map(|(_, t)| *t)
                    .filter(|t| *t >= self.term);
                let follower = alive
                    .iter()
                    .filter(|m| m.view.coordinator == Some(self.me))
                    .map(|m| m.view.term)
                    .filter(|t| *t > self.term && *t <= ceiling);
                if let Some(t) = rival.chain(follower).max() {
                    self.term = t.saturating_add(1).min(MAX_COUNTER);
                }
                self.coordinator = Some(c);
            }
            Some(c) => {
                // It won by support, not by its term: follow its term (at
                // most MAX_COUNTER, checked on arrival).
                let claimed = candidates
                    .iter()
                    .find(|(other, _)| *other == c)
                    .map_or(0, |(_, t)| *t);
                self.term = self.term.max(claimed);
                self.coordinator = Some(c);
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
                let highest = alive
                    .iter()
                    .map(|m| m.view.term)
                    .filter(|t| *t <= ceiling)
                    .chain(std::iter::once(legitimate))
                    .max()
                    .unwrap_or(legitimate);
                if self.coordinator != Some(chosen) {
                    self.term = self.term.max(highest.saturating_add(1).min(MAX_COUNTER));
                    self.coordinator = Some(chosen);
                }
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

    #[test]
    fn a_node_moved_to_another_zone_follows_its_coordinator_at_its_term() {
        let ids = peers(3);
        let (me, theirs, mate) = (ids[0], ids[1], ids[2]);
        let mut roles = Roles::with_limits(me, LocalMicros(0), 2 * S, 0);
        // Alone in its first zone: it coordinates, term 1.
        roles.handle_members(LocalMicros(S), &[]);
        assert!(roles.is_coordinator());
        for _ in 0..5 {
            roles.rejoin(LocalMicros(S), 0);
            roles.handle_members(LocalMicros(S), &[]);
        }
        assert_eq!(roles.view().term, 1);
        // Moved into a zone whose coordinator is at term 1 with a follower.
        roles.rejoin(LocalMicros(2 * S), S);
        let zone = [
            MemberView {
                peer: theirs,
                started_at: LocalMicros(-10 * S),
                last_seen: LocalMicros(2 * S),
                view: RoleView {
                    coordinator: Some(theirs),
                    term: 1,
                },
            },
            MemberView {
                peer: mate,
                started_at: LocalMicros(-5 * S),
                last_seen: LocalMicros(2 * S),
                view: RoleView {
                    coordinator: Some(theirs),
                    term: 1,
                },
            },
        ];
        assert_eq!(
            roles.handle_members(LocalMicros(2 * S), &zone),
            Some(RoleView {
                coordinator: Some(theirs),
                term: 1
            })
        );
        assert_eq!(roles.poll_offender(), None);
        // A zone with no one else: it elects itself once the grace is over.
        roles.rejoin(LocalMicros(3 * S), S);
        assert_eq!(roles.handle_members(LocalMicros(3 * S), &[]), None);
        assert_eq!(roles.view(), RoleView::default());
        assert!(roles.handle_members(LocalMicros(4 * S), &[]).is_some());
        assert!(roles.is_coordinator());
    }

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
    fn after_a_partition_heals_the_bigger_side_wins_and_the_term_never_drops() {
        let ids = peers(4);
        let (x, y, y1, y2) = (ids[0], ids[1], ids[2], ids[3]);
        // This node coordinates its side alone at term 1; y's side of three
        // reached term 2 (it lost its coordinator during the partition).
        let mut roles = Roles::new(x, LocalMicros(0));
        roles.handle_members(LocalMicros(3 * S), &[]);
        assert_eq!(roles.view(), view(x, 1));
        let t = 10 * S;
        let healed = [
            member(y, 5 * S, t, view(y, 2)),
            member(y1, 5 * S, t, view(y, 2)),
            member(y2, 5 * S, t, view(y, 2)),
        ];
        assert_eq!(
            roles.handle_members(LocalMicros(t), &healed),
            Some(view(y, 2))
        );
        assert!(!roles.is_coordinator());
        assert_eq!(roles.poll_offender(), None, "an honest heal is no offence");
        // A stale lower-term view does not pull it back.
        let stale = [member(y, 5 * S, t, view(x, 1))];
        roles.handle_members(LocalMicros(t), &stale);
        assert!(roles.view().term >= 2);
    }

    #[test]
    fn a_coordinator_that_wins_a_merge_goes_one_term_above_the_side_it_absorbs() {
        let ids = peers(3);
        let (x, x1, y) = (ids[0], ids[1], ids[2]);
        let mut roles = Roles::new(x, LocalMicros(0));
        roles.handle_members(LocalMicros(3 * S), &[]);
        let t = 10 * S;
        // x has a follower; y is alone at term 2.
        let healed = [member(x1, 0, t, view(x, 1)), member(y, 0, t, view(y, 2))];
        roles.handle_members(LocalMicros(t), &healed);
        assert_eq!(roles.view(), view(x, 3));
        assert_eq!(roles.poll_offender(), None);
    }

    #[test]
    fn a_coordinator_whose_absorbed_follower_holds_a_higher_term_goes_above_it() {
        // Issue 14's second heal: a follower cut off alone elected itself one
        // term up while the majority stayed where it was; its claim was lost
        // in the heal and the first heartbeat the coordinator heard from it
        // already followed the coordinator, at that higher term. The terms
        // must still agree.
        let ids = peers(3);
        let (coord, other, lone) = (ids[0], ids[1], ids[2]);
        let mut roles = Roles::new(coord, LocalMicros(0));
        let mut t = 3 * S;
        let before = [
            member(other, S, t, RoleView::default()),
            member(lone, S, t, RoleView::default()),
        ];
        roles.handle_members(LocalMicros(t), &before);
        assert_eq!(roles.view(), view(coord, 1));
        t += S;
        let following = [
            member(other, S, t, view(coord, 1)),
            member(lone, S, t, view(coord, 1)),
        ];
        assert_eq!(roles.handle_members(LocalMicros(t), &following), None);
        // Partition: `lone` falls silent and elects itself at 2 (unseen here).
        t += 4 * S;
        let split = [
            member(other, S, t, view(coord, 1)),
            member(lone, S, t - 4 * S, view(coord, 1)),
        ];
        assert_eq!(roles.handle_members(LocalMicros(t), &split), None);
        // Heal: the first heartbeat heard from `lone` already follows back.
        t += S;
        let healed = [
            member(other, S, t, view(coord, 1)),
            member(lone, S, t, view(coord, 2)),
        ];
        assert_eq!(
            roles.handle_members(LocalMicros(t), &healed),
            Some(view(coord, 3))
        );
        assert_eq!(roles.poll_offender(), None, "an honest heal is no offence");
        // Once everyone follows at 3, the term stays there.
        t += S;
        let agreed = [
            member(other, S, t, view(coord, 3)),
            member(lone, S, t, view(coord, 3)),
        ];
        assert_eq!(roles.handle_members(LocalMicros(t), &agreed), None);
        assert_eq!(roles.view(), view(coord, 3));
    }

    #[test]
    fn a_member_claiming_the_role_for_itself_takes_nothing_and_is_reported_once_per_heartbeat() {
        let ids = peers(3);
        let (me, coord, rogue) = (ids[2], ids[1], ids[0]);
        let mut roles = Roles::new(me, LocalMicros(0));
        let mut t = 3 * S;
        let honest = member(coord, 0, t, view(coord, 3));
        roles.handle_members(LocalMicros(t), std::slice::from_ref(&honest));
        assert_eq!(roles.view(), view(coord, 3));
        // The rogue has the lowest id, claims a long uptime and a huge term.
        for term in [4, 1 << 40, MAX_COUNTER] {
            t += S;
            let others = [
                member(coord, 0, t, view(coord, 3)),
                member(rogue, -1_000 * S, t, view(rogue, term)),
            ];
            assert_eq!(roles.handle_members(LocalMicros(t), &others), None);
            assert_eq!(roles.view(), view(coord, 3));
            // The same heartbeat seen again by the next tick is not reported again.
            roles.handle_members(LocalMicros(t + S / 4), &others);
            let reported: Vec<PeerId> = std::iter::from_fn(|| roles.poll_offender()).collect();
            if term == 4 {
                assert!(reported.is_empty(), "one step up is within the rule");
            } else {
                assert_eq!(reported, vec![rogue]);
            }
        }
    }

    #[test]
    fn terms_never_wrap() {
        let ids = peers(2);
        let mut roles = Roles::new(ids[1], LocalMicros(0));
        let others = [member(ids[0], 0, 3 * S, view(ids[0], MAX_COUNTER))];
        roles.handle_members(LocalMicros(3 * S), &others);
        assert_eq!(roles.view(), view(ids[0], MAX_COUNTER));
        // Its coordinator goes silent: the election saturates instead of wrapping.
        roles.handle_members(LocalMicros(10 * S), &[]);
        assert_eq!(roles.view(), view(ids[1], MAX_COUNTER));
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
