//! Cover pictures (`/firefly/cover/1`, see [`crate::cover`]): answering
//! members' requests from the library, and fetching a picture from the
//! catalog's holders, one holder after another, checking each answer.

use super::*;
use crate::transfer::cover::{CoverBody, CoverRequest, CoverResponse, verified};
use firefly_library::{Cover, CoverId};

/// Cover fetches under way at once; more are answered "not found" at once
/// (the UI asks again later), so a page of covers cannot pile up requests.
pub(crate) const MAX_COVER_FETCHES: usize = 64;

/// A cover fetch under way: the picture wanted, who waits for it and the
/// holders not asked yet.
pub(crate) struct CoverFetch {
    cover: CoverId,
    reply: oneshot::Sender<Option<Cover>>,
    untried: Vec<PeerId>,
}

impl Transfer {
    /// An event of `/firefly/cover/1`.
    pub(crate) fn handle_cover_event(
        &mut self,
        io: &mut TransferIo<'_>,
        event: request_response::Event<Inbound<CoverRequest>, CoverResponse>,
    ) {
        let unavailable = || CoverResponse::new(CoverBody::Refused(Refusal::Unavailable));
        match self.triage("cover", io.covers, event, unavailable) {
            Some(Exchange::Request {
                peer,
                request,
                channel,
            }) => self.serve_cover(io, peer, request, channel),
            Some(Exchange::Response {
                peer,
                request_id,
                response,
            }) => {
                if let Some(fetch) = self.outbound_covers.remove(&request_id) {
                    self.on_cover(io, peer, fetch, response);
                }
            }
            Some(Exchange::Failed { request_id, .. }) => {
                if let Some(fetch) = self.outbound_covers.remove(&request_id) {
                    self.ask_next_cover(io, fetch);
                }
            }
            None => {}
        }
    }

    /// Fetches the picture `cover` from members holding a track that shows
    /// it; answers `None` when none has it (or too many fetches are under way).
    pub(crate) fn fetch_cover(
        &mut self,
        io: &mut TransferIo<'_>,
        cover: CoverId,
        reply: oneshot::Sender<Option<Cover>>,
    ) {
        if self.outbound_covers.len() >= MAX_COVER_FETCHES {
            let _ = reply.send(None);
            return;
        }
        let mut untried: Vec<PeerId> = self
            .catalog
            .tracks()
            .filter(|entry| entry.summary.meta.cover == Some(cover))
            .flat_map(|entry| entry.holders.iter().copied())
            .filter(|peer| *peer != self.local && self.members.contains(peer))
            .collect();
        untried.sort();
        untried.dedup();
        // Asked from the back: reverse so the lowest peer id goes first.
        untried.reverse();
        self.ask_next_cover(
            io,
            CoverFetch {
                cover,
                reply,
                untried,
            },
        );
    }

    fn ask_next_cover(&mut self, io: &mut TransferIo<'_>, mut fetch: CoverFetch) {
        if fetch.reply.is_closed() {
            return;
        }
        match fetch.untried.pop() {
            Some(peer) => {
                let id = io
                    .covers
                    .send_request(&peer, CoverRequest::new(fetch.cover).into());
                self.outbound_covers.insert(id, fetch);
            }
            None => {
                let _ = fetch.reply.send(None);
            }
        }
    }

    fn on_cover(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        fetch: CoverFetch,
        response: CoverResponse,
    ) {
        match response.body {
            CoverBody::Found(bytes) => match verified(fetch.cover, bytes.0) {
                Some(picture) => {
                    let _ = fetch.reply.send(Some(picture));
                }
                None => {
                    tracing::debug!(%peer, "cover bytes do not match their id");
                    self.stats.messages_rejected += 1;
                    self.strikes
                        .push((peer, "cover bytes do not match their id"));
                    self.ask_next_cover(io, fetch);
                }
            },
            CoverBody::NotFound | CoverBody::Refused(_) => self.ask_next_cover(io, fetch),
        }
    }

    fn serve_cover(
        &mut self,
        io: &mut TransferIo<'_>,
        peer: PeerId,
        request: CoverRequest,
        channel: ResponseChannel<CoverResponse>,
    ) {
        if let Err(err) = request.validate() {
            tracing::debug!(%peer, %err, "cover request refused");
            self.stats.messages_rejected += 1;
            self.stats.requests_refused += 1;
            let refusal = Refusal::UnsupportedVersion {
                supported: WIRE_VERSION,
            };
            let _ = io
                .covers
                .send_response(channel, CoverResponse::new(CoverBody::Refused(refusal)));
            return;
        }
        let Some(library) = self.library.clone() else {
            let _ = io.covers.send_response(
                channel,
                CoverResponse::new(CoverBody::Refused(Refusal::Unavailable)),
            );
            return;
        };
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let body = match library.cover_by_id(request.cover) {
                Ok(Some(cover)) => CoverBody::Found(ChunkBytes(cover.bytes)),
                Ok(None) => CoverBody::NotFound,
                Err(err) => {
                    tracing::warn!(%err, "reading a cover failed");
                    CoverBody::Refused(Refusal::Unavailable)
                }
            };
            let _ = done.blocking_send(Done::CoverRead {
                channel,
                response: CoverResponse::new(body),
            });
        });
    }
}
