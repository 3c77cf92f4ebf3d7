//! Downloads: manifests, then chunks from the holders the scheduler picks,
//! verified and stored until the track is complete.

use super::*;

impl Transfer {
    pub(super) fn download(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        track: TrackId,
        reply: oneshot::Sender<Result<PathBuf, TransferError>>,
    ) {
        if self.library.is_none() {
            let _ = reply.send(Err(TransferError::NoLibrary));
            return;
        }
        if let Some(download) = self.downloads.get_mut(&track) {
            download.waiters.push(reply);
            self.pump(io, now, track);
            return;
        }
        if let Some(waiters) = self.starting.get_mut(&track) {
            waiters.push(reply);
            return;
        }
        if let Some(fetch) = self.fetches.get_mut(&track) {
            fetch.waiters.push(reply);
            return;
        }
        let candidates: Vec<PeerId> = self
            .catalog
            .get(&track)
            .map(|e| {
                e.holders
                    .iter()
                    .copied()
                    .filter(|p| *p != self.local)
                    .collect()
            })
            .unwrap_or_default();
        if candidates.is_empty()
            && !self
                .catalog
                .get(&track)
                .is_some_and(|e| e.holders.contains(&self.local))
        {
            let _ = reply.send(Err(TransferError::NoHolder(track)));
            return;
        }
        self.fetches.insert(
            track,
            ManifestFetch {
                candidates,
                waiters: vec![reply],
            },
        );
        self.ask_next_manifest(io, track);
    }

    pub(super) fn ask_next_manifest(&mut self, io: &mut TransferIo<'_>, track: TrackId) {
        let Some(fetch) = self.fetches.get_mut(&track) else {
            return;
        };
        match fetch.candidates.pop() {
            Some(peer) => {
                let id = io
                    .manifests
                    .send_request(&peer, ManifestRequest::new(track).into());
                self.outbound_manifests.insert(id, (track, peer));
            }
            None => {
                // The local library may hold it (a download of a track we have).
                let local = self.library.clone().filter(|_| {
                    self.catalog
                        .get(&track)
                        .is_some_and(|e| e.holders.contains(&self.local))
                });
                if let (Some(library), Some(fetch)) = (local, self.fetches.remove(&track)) {
                    self.starting.insert(track, fetch.waiters);
                    let done = self.done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = library.manifest(track);
                        if let Ok(Some(manifest)) = result {
                            let started = start_download(&library, &manifest);
                            let _ = done.blocking_send(Done::DownloadStarted {
                                manifest: Box::new(manifest),
                                result: started,
                            });
                        }
                    });
                    return;
                }
                if let Some(fetch) = self.fetches.remove(&track) {
                    for waiter in fetch.waiters {
                        let _ = waiter.send(Err(TransferError::NoManifest(track)));
                    }
                }
            }
        }
    }

    pub(super) fn on_manifest(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        track: TrackId,
        response: ManifestResponse,
    ) {
        if let Err(err) = response.validate(track) {
            tracing::debug!(%peer, %err, "manifest response rejected");
            self.stats.messages_rejected += 1;
            self.strikes.push((peer, "invalid manifest response"));
            self.ask_next_manifest(io, track);
            return;
        }
        let ManifestBody::Found(manifest) = response.body else {
            self.ask_next_manifest(io, track);
            return;
        };
        let (Some(library), Some(fetch)) = (self.library.clone(), self.fetches.remove(&track))
        else {
            return;
        };
        self.starting.insert(track, fetch.waiters);
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = start_download(&library, &manifest);
            let _ = done.blocking_send(Done::DownloadStarted { manifest, result });
        });
    }

    pub(super) fn on_download_started(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        manifest: Manifest,
        result: Result<Started, TransferError>,
    ) {
        let track = manifest.track;
        let waiters = self.starting.remove(&track).unwrap_or_default();
        match result {
            Err(err) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(err.clone()));
                }
            }
            Ok(Started::Done(path)) => {
                for waiter in waiters {
                    let _ = waiter.send(Ok(path.clone()));
                }
            }
            Ok(Started::Missing(missing)) => {
                let missing: HashSet<ChunkId> = missing.into_iter().collect();
                let have = manifest
                    .chunks
                    .iter()
                    .map(|c| c.id)
                    .filter(|id| !missing.contains(id));
                let mut scheduler =
                    DownloadScheduler::new(&manifest, have, self.scheduler_config.clone());
                if let Some(entry) = self.catalog.get(&track) {
                    for holder in entry.holders.iter().filter(|p| **p != self.local) {
                        scheduler.add_peer(*holder, Holding::All);
                    }
                }
                tracing::info!(?track, missing = missing.len(), "download started");
                self.downloads
                    .insert(track, ActiveDownload { scheduler, waiters });
                self.pump(io, now, track);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_chunks_stored(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        track: TrackId,
        peer: PeerId,
        token: RequestToken,
        outcomes: &[(ChunkId, ChunkOutcome)],
        completed: Option<PathBuf>,
    ) {
        for (_, outcome) in outcomes {
            match outcome {
                ChunkOutcome::Verified => {
                    self.stats.chunks_received += 1;
                    if self.members.contains(&peer) {
                        self.traffic.entry(peer).or_default().chunks_received += 1;
                    }
                }
                ChunkOutcome::Corrupt => self.stats.chunks_corrupt += 1,
                ChunkOutcome::Missing => {}
            }
        }
        if outcomes.iter().any(|(_, o)| *o == ChunkOutcome::Corrupt) {
            self.strikes.push((peer, "wrong chunk bytes"));
        }
        if let Some(download) = self.downloads.get_mut(&track) {
            download
                .scheduler
                .handle_response(now, peer, token, outcomes);
        }
        if let Some(path) = completed {
            self.finish(track, path);
            return;
        }
        self.pump(io, now, track);
    }

    pub(super) fn finish(&mut self, track: TrackId, path: PathBuf) {
        if let Some(download) = self.downloads.remove(&track) {
            tracing::info!(?track, path = %path.display(), stats = ?download.scheduler.stats(), "download completed");
            for waiter in download.waiters {
                let _ = waiter.send(Ok(path.clone()));
            }
        }
        self.outbound_chunks.retain(|_, out| out.track != track);
        self.events
            .push(TransferEvent::DownloadCompleted { track, path });
        self.publish_local_changes();
    }

    pub(super) fn on_chunks_response(
        &mut self,
        io: &mut TransferIo<'_>,
        now: LocalMicros,
        peer: PeerId,
        request_id: OutboundRequestId,
        response: ChunksResponse,
    ) {
        let Some(out) = self.outbound_chunks.remove(&request_id) else {
            return;
        };
        let Some(download) = self.downloads.get_mut(&out.track) else {
            return;
        };
        if let Err(err) = response.validate(out.ids.len()) {
            tracing::debug!(%peer, %err, "chunk response rejected");
            self.stats.messages_rejected += 1;
            self.strikes.push((peer, "invalid chunk response"));
            download
                .scheduler
                .handle_failure(now, out.token, Failure::Malformed);
            self.pump(io, now, out.track);
            return;
        }
        let replies = match response.body {
            ChunksBody::Chunks(replies) => replies,
            ChunksBody::Refused(refusal) => {
                tracing::debug!(%peer, ?refusal, "chunk request refused");
                download
                    .scheduler
                    .handle_failure(now, out.token, Failure::Refused);
                self.pump(io, now, out.track);
                return;
            }
        };
        let Some(library) = self.library.clone() else {
            return;
        };
        let done = self.done_tx.clone();
        let (track, token) = (out.track, out.token);
        tokio::task::spawn_blocking(move || {
            let (outcomes, completed) = store_chunks(&library, track, &out.ids, replies);
            let _ = done.blocking_send(Done::ChunksStored {
                track,
                peer,
                token,
                outcomes,
                completed,
            });
        });
    }

    /// Sends every request the scheduler of `track` wants now and acts on its events.
    pub(super) fn pump(&mut self, io: &mut TransferIo<'_>, now: LocalMicros, track: TrackId) {
        let Some(download) = self.downloads.get_mut(&track) else {
            return;
        };
        while let Some(request) = download.scheduler.poll_request(now) {
            let id = io.chunks.send_request(
                &request.peer,
                ChunksRequest::new(request.ids.clone()).into(),
            );
            self.outbound_chunks.insert(
                id,
                OutboundChunks {
                    track,
                    token: request.token,
                    ids: request.ids,
                },
            );
        }
        let mut stalled = None;
        while let Some(event) = download.scheduler.poll_event() {
            match event {
                DownloadEvent::PeerPenalized {
                    peer,
                    reason,
                    until,
                } => {
                    tracing::info!(%peer, ?reason, ?until, "peer penalized");
                    if !matches!(reason, PenaltyReason::Backoff) {
                        self.stats.peers_penalized += 1;
                        self.events
                            .push(TransferEvent::PeerPenalized { peer, reason });
                    }
                }
                DownloadEvent::RequestTimedOut { peer, .. } => {
                    tracing::debug!(%peer, "chunk request stalled");
                    self.stats.requests_failed += 1;
                }
                DownloadEvent::Stalled { unavailable } => stalled = Some(unavailable),
                DownloadEvent::PeerDropped { peer } => {
                    tracing::info!(%peer, "peer dropped from a download after repeated failures");
                }
                DownloadEvent::Completed => {}
            }
        }
        if let Some(unavailable) = stalled
            && download.scheduler.in_flight() == 0
        {
            let missing = download.scheduler.progress();
            tracing::warn!(?track, unavailable, "download stalled");
            if let Some(download) = self.downloads.remove(&track) {
                for waiter in download.waiters {
                    let _ = waiter.send(Err(TransferError::Stalled {
                        track,
                        missing: missing.chunks_total - missing.chunks_have,
                    }));
                }
            }
        }
    }
}

/// Verifies and stores the answered chunks of one response in one
/// [`Library::accept_chunks`] call (one sync, one transaction). Chunks whose
/// storing failed on this node's side are left out of the outcomes, so they
/// are fetched again without blaming the peer.
fn store_chunks(
    library: &Library,
    track: TrackId,
    ids: &[ChunkId],
    replies: Vec<ChunkReply>,
) -> (Vec<(ChunkId, ChunkOutcome)>, Option<PathBuf>) {
    let mut outcomes = Vec::with_capacity(replies.len());
    let mut batch = Vec::with_capacity(replies.len());
    for (id, reply) in ids.iter().zip(replies) {
        match reply {
            ChunkReply::Missing => outcomes.push((*id, ChunkOutcome::Missing)),
            ChunkReply::Data(ChunkBytes(bytes)) => batch.push((*id, bytes)),
        }
    }
    if batch.is_empty() {
        return (outcomes, None);
    }
    match library.accept_chunks(track, &batch) {
        Ok(stored) => {
            let refused: HashSet<ChunkId> = stored
                .refused
                .iter()
                .filter(|(_, why)| {
                    matches!(
                        why,
                        DownloadError::WrongBytes(_) | DownloadError::NotInManifest { .. }
                    )
                })
                .map(|(id, _)| *id)
                .collect();
            for (id, _) in &batch {
                let outcome = if refused.contains(id) {
                    ChunkOutcome::Corrupt
                } else {
                    ChunkOutcome::Verified
                };
                outcomes.push((*id, outcome));
            }
            let completed = match stored.accepted {
                Accepted::Completed(path) => Some(path),
                Accepted::Pending { .. } => None,
            };
            (outcomes, completed)
        }
        Err(err) => {
            tracing::warn!(%err, ?track, chunks = batch.len(), "storing chunks failed");
            (outcomes, None)
        }
    }
}

/// Starts (or resumes) a download in the library and lists what is missing.
fn start_download(library: &Library, manifest: &Manifest) -> Result<Started, TransferError> {
    let failed = |err| TransferError::Library(Arc::new(err));
    match library.start_download(manifest).map_err(failed)? {
        DownloadStatus::Have(paths) => paths
            .into_iter()
            .next()
            .map(Started::Done)
            .ok_or(TransferError::NoFile(manifest.track)),
        DownloadStatus::Completed(path) => Ok(Started::Done(path)),
        DownloadStatus::Pending { .. } => library
            .missing_chunks(manifest.track)
            .map(Started::Missing)
            .map_err(failed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firefly_library::{ChunkRef, ManifestError, TrackMeta};
    use std::error::Error as _;

    /// Regression (issue 15, item 8): the library's error crossed
    /// `spawn_blocking` as a `String`; its kind must survive.
    #[test]
    fn a_library_refusal_keeps_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let library = Library::open_in(dir.path()).unwrap();
        let chunk = ChunkRef {
            id: ChunkId::of(b"chunk"),
            len: 5,
        };
        let manifest = Manifest {
            track: TrackId::of(b"track"),
            // The chunks add up to 5 bytes, not 6.
            size: 6,
            chunks: vec![chunk],
            meta: TrackMeta {
                title: "Song".into(),
                codec: "flac".into(),
                extension: "flac".into(),
                ..TrackMeta::default()
            },
        };
        let Err(TransferError::Library(err)) = start_download(&library, &manifest) else {
            panic!("an inconsistent manifest was accepted");
        };
        assert!(matches!(
            err.as_ref(),
            DownloadError::InvalidManifest(ManifestError::SizeMismatch { sum: 5, size: 6 })
        ));
        // And it reaches a caller through the client's error as its source.
        let failed = crate::ClientError::Transfer(TransferError::Library(err));
        let source = failed.source().unwrap();
        assert!(source.downcast_ref::<Arc<DownloadError>>().is_some());
    }
}
