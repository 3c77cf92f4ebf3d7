//! Library sync: fetching peers' library deltas into the swarm catalog and
//! announcing this node's own changes.

use super::*;

impl Transfer {
    pub(super) fn fetch_library(&mut self, io: &mut TransferIo<'_>, peer: PeerId, since: u64) {
        let id = io
            .library
            .send_request(&peer, LibraryRequest::new(since).into());
        self.outbound_library.insert(id, peer);
    }

    pub(super) fn on_library_response(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        response: LibraryResponse,
    ) {
        if !self.is_member(&peer) {
            // It left while the answer was on its way: keep nothing of it.
            self.catalog.handle_fetch_failed(&peer);
            return;
        }
        if let Err(err) = response.validate() {
            tracing::debug!(%peer, %err, "library response rejected");
            self.stats.messages_rejected += 1;
            self.strikes.push((peer, "invalid library response"));
            self.catalog.handle_fetch_failed(&peer);
            return;
        }
        match self.catalog.handle_response(peer, &response.body) {
            Ok(()) => {
                let version = self.catalog.peer_version(&peer);
                self.events
                    .push(TransferEvent::LibrarySynced { peer, version });
            }
            Err(err @ (CatalogError::Full | CatalogError::TooManyTracks)) => {
                // Asking again would get the same list: the catalog keeps
                // what it holds of the peer and waits for a new version.
                tracing::debug!(%peer, %err, "library response refused");
                self.stats.messages_rejected += 1;
            }
            Err(err) => {
                tracing::debug!(%peer, %err, "library response refused; asking for the full list");
                self.stats.messages_rejected += 1;
                // Ask from scratch: the answer will be the full list.
                if let SyncNeed::Fetch { .. } = self.catalog.handle_version(peer, u64::MAX) {
                    self.fetch_library(io, peer, 0);
                }
            }
        }
    }

    pub(super) fn publish_local_changes(&mut self) {
        let Some(library) = self.library.clone() else {
            return;
        };
        if self.publishing {
            self.republish = true;
            return;
        }
        self.publishing = true;
        let since = self.published;
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = library.changes_since(since);
            let _ = done.blocking_send(Done::LocalChanges { result });
        });
    }

    pub(super) fn on_local_changes(
        &mut self,
        io: &mut TransferIo<'_>,
        result: Result<Changes, firefly_library::StoreError>,
    ) {
        self.publishing = false;
        match result {
            Err(err) => tracing::warn!(%err, "reading local library changes failed"),
            Ok(changes) => {
                let local = self.local;
                let from = self.published;
                let to = changes.version();
                if to != from {
                    let body = library_body(changes);
                    if let Err(err) = self.catalog.handle_response(local, &body) {
                        tracing::warn!(%err, "local library changes did not apply");
                    }
                    // Peers get the delta itself when it is one; after a
                    // full list they get an elided announcement and ask.
                    let delta = match body {
                        LibraryBody::Deltas(mut deltas) if deltas.len() == 1 && from < to => {
                            deltas.pop()
                        }
                        _ => None,
                    }
                    .unwrap_or(LibraryDelta {
                        from: from.min(to.saturating_sub(1)),
                        to,
                        added: Vec::new(),
                        removed: Vec::new(),
                    });
                    let bytes = if delta.added.is_empty() && delta.removed.is_empty() {
                        LibraryAnnounce {
                            version: WIRE_VERSION,
                            delta,
                            elided: true,
                        }
                        .encode()
                    } else {
                        LibraryAnnounce::encode_for(&delta)
                    };
                    self.published = to;
                    if let Err(err) = io.gossipsub.publish(IdentTopic::new(LIBRARY_TOPIC), bytes) {
                        // Peers also learn the version from heartbeats.
                        tracing::debug!(%err, "library delta not gossiped");
                    }
                    self.events
                        .push(TransferEvent::LibraryPublished { version: to });
                }
            }
        }
        if std::mem::take(&mut self.republish) {
            self.publish_local_changes();
        }
    }
}

/// The wire form of what the library says changed.
pub(super) fn library_body(changes: Changes) -> LibraryBody {
    match changes {
        Changes::Delta {
            from,
            to,
            added,
            removed,
        } => {
            if to <= from {
                return LibraryBody::Deltas(Vec::new());
            }
            LibraryBody::Deltas(vec![LibraryDelta {
                from,
                to,
                added: added.iter().map(TrackSummary::of).collect(),
                removed,
            }])
        }
        Changes::Full { version, manifests } => {
            if manifests.len() > MAX_TRACKS_PER_RESPONSE {
                tracing::warn!(
                    tracks = manifests.len(),
                    "library larger than one response; peers see the first {MAX_TRACKS_PER_RESPONSE}"
                );
            }
            LibraryBody::Full {
                at: version,
                tracks: manifests
                    .iter()
                    .take(MAX_TRACKS_PER_RESPONSE)
                    .map(TrackSummary::of)
                    .collect(),
            }
        }
    }
}
