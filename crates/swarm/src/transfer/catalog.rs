//! The swarm catalog: the union of every node's tracks, with the peers that
//! hold each one.
//!
//! [`SwarmCatalog`] is fed library deltas (from gossip or from a
//! `/firefly/library/1` response) and full lists, per peer, and tracks the
//! last library version it knows of each peer. When a peer's announced
//! version jumps past what it knows, it answers [`SyncNeed::Fetch`] with the
//! version to ask from, and remembers that a fetch is under way so that a
//! burst of gossip produces one request, not many. Plain data in and out: no
//! I/O, no clock. The local node is a peer like any other here (feed it its
//! own deltas), so the catalog is truly the union of all nodes' tracks.

use firefly_library::{TrackId, display_text};
use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::wire::{LibraryBody, LibraryDelta, MAX_TRACKS_PER_RESPONSE, TrackSummary};

/// Most tracks one peer may hold in this node's catalog; more is refused,
/// so one peer cannot grow the catalog without bound.
pub const MAX_TRACKS_PER_PEER: usize = MAX_TRACKS_PER_RESPONSE;
/// Most memory the catalog's entries may take in all, estimated by
/// [`entry_cost`]: the bound over every peer together, so that many
/// identities cannot add up what one may not. 50,000 tracks with ordinary
/// tags take about a third of it.
pub const MAX_CATALOG_BYTES: usize = 24 * 1024 * 1024;

/// Estimated memory of one catalog entry: its text plus a fixed overhead for
/// the ids, numbers and tree nodes.
pub fn entry_cost(summary: &TrackSummary) -> usize {
    let meta = &summary.meta;
    256 + meta.title.len()
        + meta.artist.as_ref().map_or(0, String::len)
        + meta.album.as_ref().map_or(0, String::len)
        + meta.codec.len()
        + meta.extension.len()
}

/// A track in the catalog and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The summary first learned for the track.
    pub summary: TrackSummary,
    /// Peers holding the whole track. Invariant: never empty (an entry
    /// whose last holder goes is removed).
    pub holders: BTreeSet<PeerId>,
}

/// What the catalog needs after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNeed {
    /// Nothing: the input was applied or was old news.
    None,
    /// Ask the peer on `/firefly/library/1` for everything after `since`.
    Fetch {
        /// The last version of the peer's library this node knows.
        since: u64,
    },
}

/// Why a library response or delta from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The deltas do not start at or before the version this node knows.
    #[error("deltas start at version {from} but this node knows version {known}")]
    Gap {
        /// Start of the first delta.
        from: u64,
        /// The version this node knows.
        known: u64,
    },
    /// Applying it would give the peer more than [`MAX_TRACKS_PER_PEER`] tracks.
    #[error("peer would hold more than {MAX_TRACKS_PER_PEER} tracks")]
    TooManyTracks,
    /// Applying it would grow the catalog past [`MAX_CATALOG_BYTES`].
    #[error("the catalog is full ({MAX_CATALOG_BYTES} bytes)")]
    Full,
}

#[derive(Debug, Default)]
struct PeerLibrary {
    /// The last version of this peer's library applied here.
    version: u64,
    tracks: BTreeSet<TrackId>,
    /// A `/firefly/library/1` request to this peer is under way.
    fetching: bool,
}

/// The union of every known node's library. See the module docs.
#[derive(Debug, Default)]
pub struct SwarmCatalog {
    tracks: BTreeMap<TrackId, CatalogEntry>,
    peers: HashMap<PeerId, PeerLibrary>,
    /// Invariant: the sum of [`entry_cost`] over `tracks`, at most
    /// [`MAX_CATALOG_BYTES`].
    cost: usize,
}

impl SwarmCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every track, in id order.
    pub fn tracks(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.tracks.values()
    }

    /// One track's entry.
    pub fn get(&self, track: &TrackId) -> Option<&CatalogEntry> {
        self.tracks.get(track)
    }

    /// Number of distinct tracks.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no node holds any track.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The estimated memory the entries take ([`MAX_CATALOG_BYTES`] at most).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// The last version of `peer`'s library applied here (0 when unknown).
    pub fn peer_version(&self, peer: &PeerId) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.version)
    }

    /// The tracks `peer` holds.
    pub fn peer_tracks(&self, peer: &PeerId) -> impl Iterator<Item = &TrackId> {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|p| p.tracks.iter())
    }

    /// A peer says its library is at `version` (e.g. in a heartbeat).
    pub fn handle_version(&mut self, peer: PeerId, version: u64) -> SyncNeed {
        let state = self.peers.entry(peer).or_default();
        if version > state.version {
            Self::fetch(state)
        } else {
            SyncNeed::None
        }
    }

    /// A delta from `peer`'s gossip. `elided` deltas carry no lists and
    /// always lead to a fetch when they are news.
    pub fn handle_announce(
        &mut self,
        peer: PeerId,
        delta: &LibraryDelta,
        elided: bool,
    ) -> SyncNeed {
        let known = self.peer_version(&peer);
        if delta.to <= known {
            return SyncNeed::None;
        }
        if delta.from == known && !elided {
            match self.apply_delta(peer, delta) {
                Ok(()) => return SyncNeed::None,
                Err(err) => {
                    tracing::debug!(%peer, %err, "library announcement refused");
                }
            }
        }
        let state = self.peers.entry(peer).or_default();
        Self::fetch(state)
    }

    /// The answer of `peer` to a `/firefly/library/1` request. Deltas that
    /// are old news are skipped; the rest must follow on from the known
    /// version. A full list replaces what the peer held. Either way the
    /// fetch is over; call [`handle_version`](Self::handle_version) again if
    /// the peer is still ahead.
    pub fn handle_response(
        &mut self,
        peer: PeerId,
        body: &LibraryBody,
    ) -> Result<(), CatalogError> {
        self.peers.entry(peer).or_default().fetching = false;
        match body {
            LibraryBody::Deltas(deltas) => {
                for delta in deltas {
                    let known = self.peer_version(&peer);
                    if delta.to <= known {
                        continue;
                    }
                    if delta.from > known {
                        return Err(CatalogError::Gap {
                            from: delta.from,
                            known,
                        });
                    }
                    // A delta straddling `known` re-applies changes this node
                    // already has; adds and removes are idempotent.
                    self.apply_delta(peer, delta)?;
                }
                Ok(())
            }
            LibraryBody::Full { at, tracks } => {
                if *at < self.peer_version(&peer) {
                    return Ok(());
                }
                let fits = if tracks.len() > MAX_TRACKS_PER_PEER {
                    Err(CatalogError::TooManyTracks)
                } else {
                    self.check_room(tracks)
                };
                if let Err(err) = fits {
                    // Known, though not kept: the same list is not asked again.
                    self.peers.entry(peer).or_default().version = *at;
                    return Err(err);
                }
                let old: Vec<TrackId> = self.peer_tracks(&peer).copied().collect();
                for track in old {
                    self.remove_holder(peer, track);
                }
                for summary in tracks {
                    self.add_holder(peer, summary);
                }
                self.peers.entry(peer).or_default().version = *at;
                Ok(())
            }
            LibraryBody::Refused(_) => Ok(()),
        }
    }

    /// A fetch from `peer` failed; a later announcement may start another.
    pub fn handle_fetch_failed(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.fetching = false;
        }
    }

    /// `peer` left the swarm: it holds nothing any more.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        if let Some(state) = self.peers.remove(peer) {
            for track in state.tracks {
                self.drop_holder(*peer, track);
            }
        }
    }

    fn fetch(state: &mut PeerLibrary) -> SyncNeed {
        if state.fetching {
            SyncNeed::None
        } else {
            state.fetching = true;
            SyncNeed::Fetch {
                since: state.version,
            }
        }
    }

    fn apply_delta(&mut self, peer: PeerId, delta: &LibraryDelta) -> Result<(), CatalogError> {
        let held = self.peers.get(&peer).map_or(0, |p| p.tracks.len());
        if held.saturating_add(delta.added.len()) > MAX_TRACKS_PER_PEER {
            return Err(CatalogError::TooManyTracks);
        }
        self.check_room(&delta.added)?;
        for track in &delta.removed {
            self.remove_holder(peer, *track);
        }
        for summary in &delta.added {
            self.add_holder(peer, summary);
        }
        let state = self.peers.entry(peer).or_default();
        state.version = state.version.max(delta.to);
        Ok(())
    }

    /// Refuses `added` if its new entries would not fit in [`MAX_CATALOG_BYTES`].
    fn check_room(&self, added: &[TrackSummary]) -> Result<(), CatalogError> {
        let more = added
            .iter()
            .filter(|s| !self.tracks.contains_key(&s.track))
            .map(entry_cost)
            .fold(0usize, usize::saturating_add);
        if self.cost.saturating_add(more) > MAX_CATALOG_BYTES {
            return Err(CatalogError::Full);
        }
        Ok(())
    }

    fn add_holder(&mut self, peer: PeerId, summary: &TrackSummary) {
        self.peers
            .entry(peer)
            .or_default()
            .tracks
            .insert(summary.track);
        let cost = &mut self.cost;
        self.tracks
            .entry(summary.track)
            .or_insert_with(|| {
                // Tags from a peer are shown and used for file names: clean them once.
                let mut summary = summary.clone();
                let meta = &mut summary.meta;
                meta.title = display_text(&meta.title);
                meta.artist = meta.artist.as_deref().map(display_text);
                meta.album = meta.album.as_deref().map(display_text);
                *cost = cost.saturating_add(entry_cost(&summary));
                CatalogEntry {
                    summary,
                    holders: BTreeSet::new(),
                }
            })
            .holders
            .insert(peer);
    }

    fn remove_holder(&mut self, peer: PeerId, track: TrackId) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.tracks.remove(&track);
        }
        self.drop_holder(peer, track);
    }

    /// Keeps the `holders` invariant: an entry without holders goes.
    fn drop_holder(&mut self, peer: PeerId, track: TrackId) {
        if let Some(entry) = self.tracks.get_mut(&track) {
            entry.holders.remove(&peer);
            if entry.holders.is_empty() {
                self.cost = self.cost.saturating_sub(entry_cost(&entry.summary));
                self.tracks.remove(&track);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_library::TrackMeta;
    use proptest::prelude::*;

    fn summary(n: u8) -> TrackSummary {
        TrackSummary {
            track: TrackId::of(&[n]),
            size: 100,
            chunks: 1,
            meta: TrackMeta::default(),
        }
    }

    fn delta(from: u64, added: &[u8], removed: &[u8]) -> LibraryDelta {
        LibraryDelta {
            from,
            to: from + 1,
            added: added.iter().map(|n| summary(*n)).collect(),
            removed: removed.iter().map(|n| TrackId::of(&[*n])).collect(),
        }
    }

    fn holders(c: &SwarmCatalog, n: u8) -> Vec<PeerId> {
        c.get(&TrackId::of(&[n]))
            .map(|e| e.holders.iter().copied().collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_catalog_is_the_union_with_holders() {
        let mut c = SwarmCatalog::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(
            c.handle_announce(a, &delta(0, &[1, 2], &[]), false),
            SyncNeed::None
        );
        assert_eq!(
            c.handle_announce(b, &delta(0, &[2, 3], &[]), false),
            SyncNeed::None
        );
        assert_eq!(c.len(), 3);
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(holders(&c, 2), both);
        assert_eq!(
            c.handle_announce(a, &delta(1, &[], &[2]), false),
            SyncNeed::None
        );
        assert_eq!(holders(&c, 2), vec![b]);
        c.remove_peer(&b);
        assert_eq!(c.len(), 1);
        assert_eq!(holders(&c, 1), vec![a]);
    }

    #[test]
    fn a_gap_asks_once_for_what_is_missing() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        c.handle_announce(a, &delta(0, &[1], &[]), false);
        // Version 2 was missed; 3 arrives.
        assert_eq!(
            c.handle_announce(a, &delta(2, &[3], &[]), false),
            SyncNeed::Fetch { since: 1 }
        );
        // A fetch is under way: more gossip or heartbeats do not start another.
        assert_eq!(c.handle_version(a, 3), SyncNeed::None);
        assert_eq!(
            c.handle_announce(a, &delta(3, &[4], &[]), false),
            SyncNeed::None
        );
        c.handle_response(
            a,
            &LibraryBody::Deltas(vec![
                delta(1, &[2], &[]),
                delta(2, &[3], &[]),
                delta(3, &[4], &[]),
            ]),
        )
        .unwrap();
        assert_eq!(c.peer_version(&a), 4);
        assert_eq!(c.len(), 4);
        assert_eq!(c.handle_version(a, 4), SyncNeed::None);
    }

    #[test]
    fn a_full_list_replaces_what_the_peer_held() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        c.handle_announce(a, &delta(0, &[1, 2], &[]), false);
        assert_eq!(c.handle_version(a, 40), SyncNeed::Fetch { since: 1 });
        c.handle_response(
            a,
            &LibraryBody::Full {
                at: 40,
                tracks: vec![summary(2), summary(9)],
            },
        )
        .unwrap();
        assert!(holders(&c, 1).is_empty());
        assert_eq!(holders(&c, 9), vec![a]);
        assert_eq!(c.peer_version(&a), 40);
        // Old news changes nothing.
        assert_eq!(
            c.handle_announce(a, &delta(3, &[7], &[]), false),
            SyncNeed::None
        );
        assert!(holders(&c, 7).is_empty());
    }

    #[test]
    fn deltas_that_do_not_follow_on_are_refused() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        assert_eq!(c.handle_version(a, 5), SyncNeed::Fetch { since: 0 });
        let err = c.handle_response(a, &LibraryBody::Deltas(vec![delta(3, &[1], &[])]));
        assert_eq!(err, Err(CatalogError::Gap { from: 3, known: 0 }));
        assert!(c.is_empty());
        c.handle_fetch_failed(&a);
        assert_eq!(c.handle_version(a, 5), SyncNeed::Fetch { since: 0 });
    }

    #[test]
    fn one_peer_cannot_grow_the_catalog_without_bound() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        let tracks: Vec<TrackSummary> = (0..=MAX_TRACKS_PER_PEER as u32)
            .map(|n| TrackSummary {
                track: TrackId::of(&n.to_le_bytes()),
                ..summary(0)
            })
            .collect();
        let err = c.handle_response(a, &LibraryBody::Full { at: 1, tracks });
        assert_eq!(err, Err(CatalogError::TooManyTracks));
        assert!(c.is_empty());
    }

    #[test]
    fn many_peers_together_cannot_grow_the_catalog_past_its_bound_and_leaving_frees_it() {
        let mut c = SwarmCatalog::new();
        let long = "x".repeat(firefly_library::MAX_TEXT_LEN);
        let fat = |peer: u32, n: u32| TrackSummary {
            track: TrackId::of(&[peer.to_le_bytes(), n.to_le_bytes()].concat()),
            meta: TrackMeta {
                title: long.clone(),
                artist: Some(long.clone()),
                album: Some(long.clone()),
                ..TrackMeta::default()
            },
            ..summary(0)
        };
        let mut peers = Vec::new();
        let mut refused = 0;
        for p in 0..40u32 {
            let peer = PeerId::random();
            peers.push(peer);
            let tracks: Vec<TrackSummary> = (0..1000).map(|n| fat(p, n)).collect();
            if c.handle_response(peer, &LibraryBody::Full { at: 1, tracks })
                == Err(CatalogError::Full)
            {
                refused += 1;
            }
            assert!(c.cost() <= MAX_CATALOG_BYTES);
        }
        assert!(refused > 0);
        for peer in &peers {
            c.remove_peer(peer);
        }
        assert!(c.is_empty());
        assert_eq!(c.cost(), 0);
    }

    #[test]
    fn tags_from_peers_are_cleaned() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        let mut dirty = summary(1);
        dirty.meta.title = "bell\u{7}\u{1b}[2J\nnew\u{202E}3pm".into();
        c.handle_response(
            a,
            &LibraryBody::Full {
                at: 1,
                tracks: vec![dirty.clone()],
            },
        )
        .unwrap();
        let shown = &c.get(&dirty.track).unwrap().summary.meta.title;
        assert_eq!(shown, "bell[2Jnew3pm");
    }

    #[test]
    fn an_elided_announcement_leads_to_a_fetch() {
        let mut c = SwarmCatalog::new();
        let a = PeerId::random();
        let elided = LibraryDelta {
            from: 0,
            to: 1,
            added: vec![],
            removed: vec![],
        };
        assert_eq!(
            c.handle_announce(a, &elided, true),
            SyncNeed::Fetch { since: 0 }
        );
    }

    /// A model node: its library and its version log.
    struct Node {
        id: PeerId,
        tracks: BTreeSet<u8>,
        log: Vec<LibraryDelta>,
        catalog: SwarmCatalog,
    }

    impl Node {
        fn version(&self) -> u64 {
            self.log.len() as u64
        }

        /// What a `/firefly/library/1` responder sends: deltas when it has
        /// them (it keeps only the last few), the full list otherwise.
        fn answer(&self, since: u64, kept: usize) -> LibraryBody {
            let first_kept = self.log.len().saturating_sub(kept) as u64;
            if since >= first_kept {
                LibraryBody::Deltas(self.log[since as usize..].to_vec())
            } else {
                LibraryBody::Full {
                    at: self.version(),
                    tracks: self.tracks.iter().map(|n| summary(*n)).collect(),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Adds and removes on several nodes, gossip that is lost, reordered
        /// or duplicated, then heartbeats and fetches: every node's catalog
        /// converges to the true union with the right holders.
        #[test]
        fn catalogs_converge_after_adds_and_removes(
            nodes in 2usize..6,
            ops in proptest::collection::vec((0usize..6, 0u8..12, any::<bool>()), 1..60),
            deliveries in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4), 0..200),
            kept in 0usize..8,
        ) {
            let mut net: Vec<Node> = (0..nodes)
                .map(|_| Node { id: PeerId::random(), tracks: BTreeSet::new(), log: Vec::new(), catalog: SwarmCatalog::new() })
                .collect();
            // Gossip in flight: (to, from, delta).
            let mut wire: Vec<(usize, usize, LibraryDelta)> = Vec::new();
            for (who, track, add) in ops {
                let who = who % nodes;
                let node = &mut net[who];
                let changed = if add { node.tracks.insert(track) } else { node.tracks.remove(&track) };
                if !changed {
                    continue;
                }
                let v = node.version();
                let d = if add { delta(v, &[track], &[]) } else { delta(v, &[], &[track]) };
                node.log.push(d.clone());
                let id = node.id;
                node.catalog.handle_announce(id, &d, false);
                for to in 0..nodes {
                    if to != who {
                        wire.push((to, who, d.clone()));
                    }
                }
            }
            // Deliver a random selection of gossip: some lost, some twice, out of order.
            for (pick, copies) in deliveries {
                if wire.is_empty() {
                    break;
                }
                let i = pick.index(wire.len());
                let (to, from, d) = wire[i].clone();
                if copies == 0 {
                    wire.swap_remove(i);
                    continue;
                }
                let from_id = net[from].id;
                if let SyncNeed::Fetch { since } = net[to].catalog.handle_announce(from_id, &d, false) {
                    let body = net[from].answer(since, kept);
                    net[to].catalog.handle_response(from_id, &body).unwrap();
                }
            }
            // Heartbeats carry versions; fetch until quiet.
            for _round in 0..3 {
                for to in 0..nodes {
                    for from in 0..nodes {
                        if to == from {
                            continue;
                        }
                        let (from_id, v) = (net[from].id, net[from].version());
                        if let SyncNeed::Fetch { since } = net[to].catalog.handle_version(from_id, v) {
                            let body = net[from].answer(since, kept);
                            net[to].catalog.handle_response(from_id, &body).unwrap();
                        }
                    }
                }
            }
            let mut truth: BTreeMap<TrackId, BTreeSet<PeerId>> = BTreeMap::new();
            for node in &net {
                for t in &node.tracks {
                    truth.entry(TrackId::of(&[*t])).or_default().insert(node.id);
                }
            }
            for node in &net {
                let seen: BTreeMap<TrackId, BTreeSet<PeerId>> = node
                    .catalog
                    .tracks()
                    .map(|e| (e.summary.track, e.holders.clone()))
                    .collect();
                prop_assert_eq!(&seen, &truth);
            }
        }
    }
}
