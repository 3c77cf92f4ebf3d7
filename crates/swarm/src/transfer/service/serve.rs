//! Serving: answering peers' chunk, manifest and library requests, within
//! the per-peer and upload limits.

use super::*;

impl Transfer {
    pub(super) fn serve_chunks(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        request: ChunksRequest,
        channel: ResponseChannel<ChunksResponse>,
    ) {
        let refusal = match request.validate() {
            Err(WireError::UnsupportedVersion { .. }) => Some(Refusal::UnsupportedVersion {
                supported: WIRE_VERSION,
            }),
            Err(_) => Some(Refusal::Invalid),
            Ok(()) if self.library.is_none() => Some(Refusal::Unavailable),
            Ok(()) if self.inbound.get(&peer).copied().unwrap_or(0) >= MAX_INBOUND_PER_PEER => {
                // A downloader keeps at most this many requests in flight
                // per peer (the scheduler's default): more is a flood.
                self.strikes.push((peer, "too many chunk requests at once"));
                Some(Refusal::Busy)
            }
            Ok(()) => None,
        };
        if let Some(refusal) = refusal {
            if !matches!(refusal, Refusal::Busy | Refusal::Unavailable) {
                self.stats.messages_rejected += 1;
            }
            if refusal == Refusal::Invalid {
                self.strikes.push((peer, "invalid chunk request"));
            }
            self.stats.requests_refused += 1;
            let _ = io
                .chunks
                .send_response(channel, ChunksResponse::refused(refusal));
            return;
        }
        if self.fault == Some(Fault::StallChunks) {
            if self.stalled.len() >= MAX_STALLED {
                self.stalled.remove(0);
            }
            self.stalled.push(channel);
            return;
        }
        let Some(library) = self.library.clone() else {
            return;
        };
        *self.inbound.entry(peer).or_default() += 1;
        let done = self.done_tx.clone();
        let corrupt = self.fault == Some(Fault::CorruptChunks);
        tokio::task::spawn_blocking(move || {
            let (mut response, chunks, payload) = read_chunks(&library, &request.ids);
            if corrupt && let ChunksBody::Chunks(replies) = &mut response.body {
                for reply in replies {
                    if let ChunkReply::Data(ChunkBytes(bytes)) = reply
                        && let Some(first) = bytes.first_mut()
                    {
                        *first ^= 0x5A;
                    }
                }
            }
            let _ = done.blocking_send(Done::ChunksRead {
                peer,
                channel,
                response,
                chunks,
                payload,
            });
        });
    }

    pub(super) fn send_chunks_response(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        channel: ResponseChannel<ChunksResponse>,
        response: ChunksResponse,
    ) {
        if let Some(count) = self.inbound.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.inbound.remove(&peer);
            }
        }
        if io.chunks.send_response(channel, response).is_err() {
            tracing::debug!(%peer, "chunk requester went away before the response");
        }
    }

    pub(super) fn serve_manifest(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        request: ManifestRequest,
        channel: ResponseChannel<ManifestResponse>,
    ) {
        if let Err(err) = request.validate() {
            tracing::debug!(%peer, %err, "manifest request refused");
            self.stats.messages_rejected += 1;
            self.stats.requests_refused += 1;
            let _ = io.manifests.send_response(
                channel,
                ManifestResponse::new(ManifestBody::Refused(refusal_for(&err))),
            );
            return;
        }
        let Some(library) = self.library.clone() else {
            let _ = io.manifests.send_response(
                channel,
                ManifestResponse::new(ManifestBody::Refused(Refusal::Unavailable)),
            );
            return;
        };
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let body = match library.manifest(request.track) {
                Ok(Some(manifest)) => ManifestBody::Found(Box::new(manifest)),
                Ok(None) => ManifestBody::NotFound,
                Err(err) => {
                    tracing::warn!(%err, "reading a manifest failed");
                    ManifestBody::Refused(Refusal::Unavailable)
                }
            };
            let _ = done.blocking_send(Done::ManifestRead {
                channel,
                response: ManifestResponse::new(body),
            });
        });
    }

    pub(super) fn serve_library(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        request: LibraryRequest,
        channel: ResponseChannel<LibraryResponse>,
    ) {
        if let Err(err) = request.validate() {
            tracing::debug!(%peer, %err, "library request refused");
            self.stats.messages_rejected += 1;
            self.stats.requests_refused += 1;
            let _ = io.library.send_response(
                channel,
                LibraryResponse::new(LibraryBody::Refused(refusal_for(&err))),
            );
            return;
        }
        let Some(library) = self.library.clone() else {
            let _ = io.library.send_response(
                channel,
                LibraryResponse::new(LibraryBody::Refused(Refusal::Unavailable)),
            );
            return;
        };
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let body = match library.changes_since(request.since) {
                Ok(changes) => library_body(changes),
                Err(err) => {
                    tracing::warn!(%err, "reading library changes failed");
                    LibraryBody::Refused(Refusal::Unavailable)
                }
            };
            let _ = done.blocking_send(Done::LibraryRead {
                channel,
                response: LibraryResponse::new(body),
            });
        });
    }

    pub(super) fn note_inbound_failure(&mut self, peer: PeerId, error: &InboundFailure) {
        // Requests that do not decode arrive as `Inbound::Malformed`; what
        // is left is the stream's own trouble, not the peer's input.
        tracing::debug!(%peer, %error, "inbound transfer request failed");
    }
}

/// The refusal that answers a request that failed validation.
fn refusal_for(err: &WireError) -> Refusal {
    match err {
        WireError::UnsupportedVersion { .. } => Refusal::UnsupportedVersion {
            supported: WIRE_VERSION,
        },
        _ => Refusal::Invalid,
    }
}

/// Reads the chunks `ids` names, in order, until the payload budget is
/// spent. Returns the response, the chunks in it and their bytes.
fn read_chunks(library: &Library, ids: &[ChunkId]) -> (ChunksResponse, u64, u64) {
    let mut replies = Vec::with_capacity(ids.len());
    let mut payload = 0u64;
    let mut chunks = 0u64;
    for id in ids {
        match library.read_chunk(*id) {
            Ok(bytes) => {
                let len = bytes.len() as u64;
                if payload + len > MAX_RESPONSE_PAYLOAD {
                    // The rest is not sent; the requester asks again.
                    break;
                }
                payload += len;
                chunks += 1;
                replies.push(ChunkReply::Data(ChunkBytes(bytes)));
            }
            Err(ReadChunkError::NotFound(_) | ReadChunkError::Unavailable(_)) => {
                replies.push(ChunkReply::Missing);
            }
            Err(err) => {
                tracing::warn!(%err, "reading a chunk failed");
                replies.push(ChunkReply::Missing);
            }
        }
    }
    (ChunksResponse::chunks(replies), chunks, payload)
}
