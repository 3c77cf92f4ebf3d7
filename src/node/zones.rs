//! Zones, sans-IO: a node's own placement, how zone settings converge, the
//! zones a node sees, and what a zone request (create, move, merge, split,
//! rename) asks of which node.
//!
//! Every node is in exactly one zone: the zone its own [`Placement`] names
//! (the default zone until it is moved). The node is its placement's only
//! writer ([`apply_change`]): a move asked anywhere is a request sent to
//! the moved node, applied there one at a time, so no two placements of
//! one node can disagree after a partition — the higher counter is the
//! newer. A zone's shared settings (name, group volume) travel in every
//! member's placement and converge on the one that supersedes the others
//! ([`converge`], [`ZoneSettings::supersedes`]).
//!
//! A zone exists while it has a member: creating a zone moves nodes into a
//! new id, and moving the last node out ends it (its music stops with that
//! node, and nothing remembers it). Roles are derived per zone from the
//! members that name the zone ([`in_zone`]); sessions carry their zone.
//!
//! What it is not: it sends nothing and reads no clock; the placement
//! service (`placement.rs`) and the driver do the I/O.

use firefly_swarm::zones::{MAX_ZONE_NAME_LEN, check_zone_name};
use firefly_swarm::{
    MAX_COUNTER, Member, PeerId, Placement, PlacementChange, ZoneId, ZoneSettings,
};
use std::collections::BTreeMap;

/// Why a zone request cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ZoneError {
    /// No alive node is in the zone.
    #[error("no zone {0:?} (see GET /api/zones)")]
    UnknownZone(String),
    /// No alive node has that id or name.
    #[error("no alive node has the id or name {0:?} (see GET /api/zones)")]
    UnknownNode(String),
    /// Several nodes have that name.
    #[error("several nodes are named {0:?}: give its peer id")]
    AmbiguousNode(String),
    /// A zone merged into itself.
    #[error("cannot merge zone {0:?} into itself")]
    MergeIntoItself(String),
    /// A node named in a split is not in the zone split.
    #[error("node {node:?} is not in zone {zone:?}")]
    NotInZone {
        /// The node.
        node: String,
        /// The zone.
        zone: String,
    },
    /// A zone needs at least one member.
    #[error("a zone needs at least one node: name the nodes that form it")]
    NoNodes,
    /// A split naming every member would leave the zone empty.
    #[error("a split that takes every node of {0:?} leaves it empty: rename it instead")]
    WholeZone(String),
    /// A bad zone name.
    #[error("{0}")]
    BadName(String),
}

/// The settings a node takes when moved into `zone` without being told
/// them: the default zone's for the default zone, else named after its id.
pub(crate) fn fresh_settings(zone: &ZoneId) -> ZoneSettings {
    if *zone == ZoneId::default_zone() {
        return ZoneSettings::default();
    }
    ZoneSettings {
        name: zone.to_string(),
        ..ZoneSettings::default()
    }
}

/// This node's placement after `change`. The counter moves one step when
/// anything changed; settings given for the zone the node stays in are
/// taken only if they supersede its own (so a late or repeated rename
/// cannot undo a newer one).
pub(crate) fn apply_change(current: &Placement, change: &PlacementChange) -> Placement {
    let mut next = current.clone();
    match &change.zone {
        Some(zone) if *zone != current.zone => {
            next.zone = zone.clone();
            next.settings = change
                .settings
                .clone()
                .unwrap_or_else(|| fresh_settings(zone));
        }
        _ => {
            if let Some(settings) = &change.settings
                && settings.supersedes(&current.settings)
            {
                next.settings = settings.clone();
            }
        }
    }
    if let Some(channel) = change.channel {
        next.channel = channel;
    }
    if let Some(ms) = change.delay_ms {
        next.delay_ms = ms;
    }
    if next != *current {
        next.counter = current.counter.saturating_add(1).min(MAX_COUNTER);
    }
    next
}

/// The zone settings this node should take from its zone-mates'
/// placements: the one that supersedes its own, if any.
pub(crate) fn converge<'a>(
    current: &Placement,
    mates: impl IntoIterator<Item = &'a Placement>,
) -> Option<ZoneSettings> {
    mates
        .into_iter()
        .filter(|p| p.zone == current.zone)
        .map(|p| &p.settings)
        .filter(|s| s.supersedes(&current.settings))
        .max_by(|a, b| {
            if a.supersedes(b) {
                std::cmp::Ordering::Greater
            } else if b.supersedes(a) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .cloned()
}

/// The members that play in `zone`.
pub(crate) fn in_zone<'a>(
    members: &'a [Member],
    zone: &'a ZoneId,
) -> impl Iterator<Item = &'a Member> {
    members
        .iter()
        .filter(move |m| m.status.placement.zone == *zone)
}

/// The coordinator of `zone` that `members`' heartbeats name (as
/// [`zones`] derives it), if any.
pub(crate) fn coordinator_of(members: &[Member], zone: &ZoneId) -> Option<PeerId> {
    let seats: Vec<Seat> = in_zone(members, zone).map(Seat::of).collect();
    zones(&seats).into_iter().find_map(|z| z.coordinator)
}

/// A zone request's name: display text (control and direction characters
/// dropped), trimmed; refused when empty or longer than
/// [`MAX_ZONE_NAME_LEN`] bytes.
pub(crate) fn clean_name(asked: &str) -> Result<String, ZoneError> {
    let cleaned = firefly_library::display_text(asked).trim().to_string();
    if cleaned.len() > MAX_ZONE_NAME_LEN {
        return Err(ZoneError::BadName(format!(
            "a zone name is at most {MAX_ZONE_NAME_LEN} bytes, not {}",
            cleaned.len()
        )));
    }
    check_zone_name(&cleaned).map_err(ZoneError::BadName)?;
    Ok(cleaned)
}

/// A new zone's id from random bits.
pub(crate) fn new_zone_id(bits: u64) -> ZoneId {
    // 'z' and 16 hex digits: a valid id by construction.
    ZoneId::try_from(format!("z{bits:016x}")).unwrap_or_default()
}

/// One node as the zones view needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seat {
    /// The node.
    pub(crate) peer: PeerId,
    /// Its name.
    pub(crate) name: String,
    /// Its placement.
    pub(crate) placement: Placement,
    /// Whom it names coordinator.
    pub(crate) coordinator: Option<PeerId>,
}

impl Seat {
    /// A swarm member's seat.
    pub(crate) fn of(member: &Member) -> Self {
        Self {
            peer: member.peer,
            name: member.name.clone(),
            placement: member.status.placement.clone(),
            coordinator: member.status.roles.coordinator,
        }
    }
}

/// A zone as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    /// Its id.
    pub(crate) id: ZoneId,
    /// Its settings (the superseding ones among its members').
    pub(crate) settings: ZoneSettings,
    /// Its members, by name then id.
    pub(crate) members: Vec<Seat>,
    /// Its coordinator: the member that claims the role and that most
    /// members name (ties: lowest id), if any.
    pub(crate) coordinator: Option<PeerId>,
}

/// The zones `seats` (this node's among them) form: every seat in exactly
/// one zone, zones by name then id.
pub(crate) fn zones(seats: &[Seat]) -> Vec<Zone> {
    let mut by_id: BTreeMap<&ZoneId, Vec<&Seat>> = BTreeMap::new();
    for seat in seats {
        by_id.entry(&seat.placement.zone).or_default().push(seat);
    }
    let mut zones: Vec<Zone> = by_id
        .into_iter()
        .map(|(id, members)| {
            let mut settings = members[0].placement.settings.clone();
            for m in &members {
                if m.placement.settings.supersedes(&settings) {
                    settings = m.placement.settings.clone();
                }
            }
            let support = |c: PeerId| members.iter().filter(|m| m.coordinator == Some(c)).count();
            let coordinator = members
                .iter()
                .filter(|m| m.coordinator == Some(m.peer))
                .map(|m| (support(m.peer), std::cmp::Reverse(m.peer)))
                .max()
                .map(|(_, std::cmp::Reverse(peer))| peer);
            let mut members: Vec<Seat> = members.into_iter().cloned().collect();
            members.sort_by(|a, b| (&a.name, a.peer).cmp(&(&b.name, b.peer)));
            Zone {
                id: id.clone(),
                settings,
                members,
                coordinator,
            }
        })
        .collect();
    zones.sort_by(|a, b| (&a.settings.name, &a.id).cmp(&(&b.settings.name, &b.id)));
    zones
}

/// The seat `node` (a peer id or a unique name) names.
pub(crate) fn find_node<'a>(seats: &'a [Seat], node: &str) -> Result<&'a Seat, ZoneError> {
    if let Some(seat) = seats.iter().find(|s| s.peer.to_string() == node) {
        return Ok(seat);
    }
    let named: Vec<&Seat> = seats.iter().filter(|s| s.name == node).collect();
    match named.as_slice() {
        [seat] => Ok(seat),
        [] => Err(ZoneError::UnknownNode(node.to_string())),
        _ => Err(ZoneError::AmbiguousNode(node.to_string())),
    }
}

/// The zone `zone` (an id or a name) names among `zones`.
pub(crate) fn find_zone<'a>(zones: &'a [Zone], zone: &str) -> Result<&'a Zone, ZoneError> {
    zones
        .iter()
        .find(|z| z.id.as_str() == zone)
        .or_else(|| zones.iter().find(|z| z.settings.name == zone))
        .ok_or_else(|| ZoneError::UnknownZone(zone.to_string()))
}

/// One placement change to send to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    /// The node that applies it.
    pub(crate) peer: PeerId,
    /// The change.
    pub(crate) change: PlacementChange,
}

fn move_to(peer: PeerId, zone: &Zone) -> Order {
    Order {
        peer,
        change: PlacementChange {
            zone: Some(zone.id.clone()),
            settings: Some(zone.settings.clone()),
            ..PlacementChange::default()
        },
    }
}

/// Moves `node` into `zone` (it joins the zone's playback; if it was the
/// last member of its zone, that zone ends).
pub(crate) fn plan_move(seats: &[Seat], node: &str, zone: &str) -> Result<Vec<Order>, ZoneError> {
    let all = zones(seats);
    let target = find_zone(&all, zone)?;
    let seat = find_node(seats, node)?;
    Ok(vec![move_to(seat.peer, target)])
}

/// Merges zone `from` into `into` ("play everywhere"): every member of
/// `from` moves into `into`, whose session carries on.
pub(crate) fn plan_merge(seats: &[Seat], from: &str, into: &str) -> Result<Vec<Order>, ZoneError> {
    let all = zones(seats);
    let source = find_zone(&all, from)?;
    let target = find_zone(&all, into)?;
    if source.id == target.id {
        return Err(ZoneError::MergeIntoItself(from.to_string()));
    }
    Ok(source
        .members
        .iter()
        .map(|m| move_to(m.peer, target))
        .collect())
}

/// Creates a zone named `name` (id from `bits`) of `nodes`, which leave
/// their zones for it.
pub(crate) fn plan_create(
    seats: &[Seat],
    name: &str,
    nodes: &[String],
    bits: u64,
) -> Result<(ZoneId, Vec<Order>), ZoneError> {
    let name = clean_name(name)?;
    if nodes.is_empty() {
        return Err(ZoneError::NoNodes);
    }
    let peers = nodes
        .iter()
        .map(|n| find_node(seats, n).map(|s| s.peer))
        .collect::<Result<Vec<_>, _>>()?;
    let zone = Zone {
        id: new_zone_id(bits),
        settings: ZoneSettings {
            name,
            ..ZoneSettings::default()
        },
        members: Vec::new(),
        coordinator: None,
    };
    let mut orders: Vec<Order> = Vec::new();
    for peer in peers {
        if !orders.iter().any(|o| o.peer == peer) {
            orders.push(move_to(peer, &zone));
        }
    }
    Ok((zone.id, orders))
}

/// Splits `nodes` off zone `zone` into a new zone named `name`: they must
/// all be in `zone`, and not be all of it.
pub(crate) fn plan_split(
    seats: &[Seat],
    zone: &str,
    name: &str,
    nodes: &[String],
    bits: u64,
) -> Result<(ZoneId, Vec<Order>), ZoneError> {
    let all = zones(seats);
    let source = find_zone(&all, zone)?;
    for node in nodes {
        let seat = find_node(seats, node)?;
        if seat.placement.zone != source.id {
            return Err(ZoneError::NotInZone {
                node: node.clone(),
                zone: zone.to_string(),
            });
        }
    }
    let (id, orders) = plan_create(seats, name, nodes, bits)?;
    if orders.len() >= source.members.len() {
        return Err(ZoneError::WholeZone(zone.to_string()));
    }
    Ok((id, orders))
}

/// Renames zone `zone`, or sets its group volume: new settings one
/// version above the highest its members carry, sent to every member.
pub(crate) fn plan_settings(
    seats: &[Seat],
    zone: &str,
    name: Option<&str>,
    volume_permille: Option<u16>,
) -> Result<(ZoneSettings, Vec<Order>), ZoneError> {
    let all = zones(seats);
    let target = find_zone(&all, zone)?;
    let mut settings = target.settings.clone();
    if let Some(name) = name {
        settings.name = clean_name(name)?;
    }
    if let Some(volume) = volume_permille {
        settings.volume_permille = volume;
    }
    let highest = target
        .members
        .iter()
        .map(|m| m.placement.settings.version)
        .max()
        .unwrap_or(0);
    settings.version = highest.saturating_add(1).min(MAX_COUNTER);
    let orders = target
        .members
        .iter()
        .map(|m| Order {
            peer: m.peer,
            change: PlacementChange {
                settings: Some(settings.clone()),
                ..PlacementChange::default()
            },
        })
        .collect();
    Ok((settings, orders))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_swarm::ChannelMap;
    use proptest::prelude::*;

    /// The same random id for the same number, within a test run.
    fn peer(n: u8) -> PeerId {
        static PEERS: std::sync::OnceLock<Vec<PeerId>> = std::sync::OnceLock::new();
        PEERS.get_or_init(|| (0..16).map(|_| PeerId::random()).collect())[usize::from(n)]
    }

    fn seat(n: u8, zone: &str, name: &str) -> Seat {
        Seat {
            peer: peer(n),
            name: format!("node{n}"),
            placement: Placement {
                zone: zone.parse().unwrap(),
                settings: ZoneSettings {
                    name: name.into(),
                    ..ZoneSettings::default()
                },
                ..Placement::default()
            },
            coordinator: None,
        }
    }

    fn kitchen_and_living() -> Vec<Seat> {
        vec![
            seat(1, "kitchen", "Kitchen"),
            seat(2, "kitchen", "Kitchen"),
            seat(3, "living", "Living room"),
            seat(4, "living", "Living room"),
        ]
    }

    #[test]
    fn a_node_with_nothing_stored_is_in_the_default_zone() {
        let p = Placement::default();
        assert_eq!(p.zone, ZoneId::default_zone());
        assert_eq!(p.channel, ChannelMap::Stereo);
        assert_eq!(fresh_settings(&p.zone), ZoneSettings::default());
    }

    #[test]
    fn a_move_takes_the_new_zone_and_its_settings_and_counts() {
        let p = Placement::default();
        let kitchen = ZoneSettings {
            name: "Kitchen".into(),
            volume_permille: 500,
            version: 4,
        };
        let moved = apply_change(
            &p,
            &PlacementChange {
                zone: Some("kitchen".parse().unwrap()),
                settings: Some(kitchen.clone()),
                ..PlacementChange::default()
            },
        );
        assert_eq!(moved.zone.as_str(), "kitchen");
        assert_eq!(moved.settings, kitchen);
        assert_eq!(moved.counter, 1);
        // The same request again changes nothing.
        let again = apply_change(
            &moved,
            &PlacementChange {
                zone: Some("kitchen".parse().unwrap()),
                settings: Some(kitchen.clone()),
                ..PlacementChange::default()
            },
        );
        assert_eq!(again, moved);
        // An older rename arriving late is ignored.
        let stale = ZoneSettings {
            name: "Old".into(),
            version: 2,
            ..kitchen.clone()
        };
        let kept = apply_change(
            &moved,
            &PlacementChange {
                settings: Some(stale),
                ..PlacementChange::default()
            },
        );
        assert_eq!(kept.settings.name, "Kitchen");
        let left = apply_change(
            &moved,
            &PlacementChange {
                channel: Some(ChannelMap::Left),
                delay_ms: Some(12),
                ..PlacementChange::default()
            },
        );
        assert_eq!(
            (left.channel, left.delay_ms, left.counter),
            (ChannelMap::Left, 12, 2)
        );
    }

    #[test]
    fn merge_split_create_and_their_bad_input() {
        let seats = kitchen_and_living();
        let orders = plan_merge(&seats, "kitchen", "Living room").unwrap();
        assert_eq!(orders.len(), 2);
        assert!(
            orders
                .iter()
                .all(|o| o.change.zone.as_ref().unwrap().as_str() == "living"
                    && o.change.settings.as_ref().unwrap().name == "Living room")
        );
        assert_eq!(
            plan_merge(&seats, "kitchen", "Kitchen"),
            Err(ZoneError::MergeIntoItself("kitchen".into()))
        );
        assert!(matches!(
            plan_merge(&seats, "attic", "kitchen"),
            Err(ZoneError::UnknownZone(_))
        ));
        assert!(matches!(
            plan_move(&seats, "node9", "kitchen"),
            Err(ZoneError::UnknownNode(_))
        ));
        let (id, orders) = plan_split(&seats, "kitchen", "Pantry", &["node1".into()], 7).unwrap();
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].change.zone.as_ref(), Some(&id));
        assert_eq!(
            plan_split(
                &seats,
                "kitchen",
                "Pantry",
                &["node1".into(), "node2".into()],
                7
            ),
            Err(ZoneError::WholeZone("kitchen".into()))
        );
        assert!(matches!(
            plan_split(&seats, "kitchen", "Pantry", &["node3".into()], 7),
            Err(ZoneError::NotInZone { .. })
        ));
        assert_eq!(
            plan_create(&seats, "Attic", &[], 1),
            Err(ZoneError::NoNodes)
        );
        assert!(matches!(
            plan_create(&seats, &"x".repeat(5000), &["node1".into()], 1),
            Err(ZoneError::BadName(_))
        ));
        assert!(matches!(
            plan_create(&seats, "\u{1b}\u{7}\n", &["node1".into()], 1),
            Err(ZoneError::BadName(_))
        ));
        // Control characters are dropped, the rest kept.
        let (_, orders) = plan_create(&seats, " Den\u{1b}\n ", &["node1".into()], 1).unwrap();
        assert_eq!(orders[0].change.settings.as_ref().unwrap().name, "Den");
        let (settings, orders) = plan_settings(&seats, "kitchen", Some("Cuisine"), None).unwrap();
        assert_eq!(
            (settings.name.as_str(), settings.version, orders.len()),
            ("Cuisine", 1, 2)
        );
    }

    #[test]
    fn the_zone_coordinator_is_the_supported_claimant() {
        let mut seats = kitchen_and_living();
        seats[0].coordinator = Some(peer(1));
        seats[1].coordinator = Some(peer(1));
        seats[2].coordinator = Some(peer(3));
        seats[3].coordinator = Some(peer(3));
        let zones = zones(&seats);
        assert_eq!(zones.len(), 2);
        assert_eq!(zones[0].settings.name, "Kitchen");
        assert_eq!(zones[0].coordinator, Some(peer(1)));
        assert_eq!(zones[1].coordinator, Some(peer(3)));
    }

    fn arb_settings() -> impl Strategy<Value = ZoneSettings> {
        (0u64..5, 0u16..3, "[ab]").prop_map(|(version, v, name)| ZoneSettings {
            name,
            volume_permille: 900 + v,
            version,
        })
    }

    proptest! {
        /// Every node ends in exactly one zone, and counters only grow,
        /// whatever the changes.
        #[test]
        fn placements_only_move_forward(
            changes in proptest::collection::vec(
                (proptest::option::of(0u8..3), proptest::option::of(arb_settings()), proptest::option::of(0u8..4)),
                0..30,
            )
        ) {
            let mut p = Placement::default();
            for (zone, settings, channel) in changes {
                let change = PlacementChange {
                    zone: zone.map(|z| ZoneId::try_from(format!("z{z}")).unwrap()),
                    settings,
                    channel: channel.map(|c| [ChannelMap::Stereo, ChannelMap::Left, ChannelMap::Right, ChannelMap::Mono][usize::from(c)]),
                    delay_ms: None,
                };
                let next = apply_change(&p, &change);
                prop_assert!(next.counter >= p.counter);
                prop_assert!(next.check().is_ok());
                if let Some(z) = &change.zone { prop_assert_eq!(&next.zone, z); }
                p = next;
            }
        }

        /// Members that gossip their settings to each other end on one,
        /// in any order.
        #[test]
        fn zone_settings_converge(all in proptest::collection::vec(arb_settings(), 1..6), order in proptest::collection::vec(0usize..6, 0..40)) {
            let mut placements: Vec<Placement> = all.into_iter().map(|settings| Placement { settings, ..Placement::default() }).collect();
            let best = placements.iter().map(|p| p.settings.clone()).reduce(|a, b| if b.supersedes(&a) { b } else { a }).unwrap();
            // A few random pairwise exchanges, then a full round.
            let n = placements.len();
            let rounds: Vec<usize> = order.into_iter().map(|i| i % n).chain(0..n).chain(0..n).collect();
            for i in rounds {
                let others: Vec<Placement> = placements.clone();
                if let Some(s) = converge(&placements[i], &others) {
                    placements[i].settings = s;
                }
            }
            for p in &placements {
                prop_assert_eq!(&p.settings, &best);
            }
        }
    }
}
