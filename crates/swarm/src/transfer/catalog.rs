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

use firefly_library::TrackId;
use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::wire::{LibraryBody, LibraryDelta, MAX_TRACKS_PER_RESPONSE, TrackSummary};

/// Most tracks one peer may hold in this node's catalog; more is refused,
/// so one peer cannot grow the catalog without bound.
pub const MAX_TRACKS_PER_PEER: usize = MAX_TRACKS_PER_RESPONSE;

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
                if tracks.len() > MAX_TRACKS_PER_PEER {
                    return Err(CatalogError::TooManyTracks);
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

    fn add_holder(&mut self, peer: PeerId, summary: &TrackSummary) {
        self.peers
            .entry(peer)
            .or_default()
            .tracks
            .insert(summary.track);
        self.tracks
            .entry(summary.track)
            .or_insert_with(|| CatalogEntry {
                summary: summary.clone(),
                holders: BTreeSet::new(),
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
                self.tracks.remove(&track);
            }
        }
    }
}
