//! The one dispatcher of the transfer's request-response protocols.
//!
//! Chunks, manifests, library sync and covers receive events of the same
//! shape, and most of each event is handled the same way whatever the
//! protocol: a malformed request strikes its sender, a non-member's request
//! is refused as unavailable, an inbound failure is the stream's trouble, a
//! failed outbound request is counted. [`Transfer::triage`] does that once
//! and hands the protocol's own handler only what is its business, as an
//! [`Exchange`]: a member's request to serve, an answer to one of this
//! node's requests, or a request of this node's that failed.

use super::*;
use libp2p::request_response::Codec;

/// What is left of a request-response event for the protocol's handler.
pub(super) enum Exchange<Req, Resp> {
    /// A member's well-formed request, to serve.
    Request {
        peer: PeerId,
        request: Req,
        channel: ResponseChannel<Resp>,
    },
    /// The answer to one of this node's requests.
    Response {
        peer: PeerId,
        request_id: OutboundRequestId,
        response: Resp,
    },
    /// One of this node's requests failed (already counted and logged).
    Failed {
        peer: PeerId,
        request_id: OutboundRequestId,
        error: OutboundFailure,
    },
}

impl Transfer {
    /// Handles what every transfer protocol handles alike (see the module
    /// doc) and returns the rest. `protocol` names it in logs; `unavailable`
    /// is its refusal of a non-member, sent through `behaviour`.
    pub(super) fn triage<C, Req, Resp>(
        &mut self,
        protocol: &'static str,
        behaviour: &mut request_response::Behaviour<C>,
        event: request_response::Event<Inbound<Req>, Resp>,
        unavailable: impl FnOnce() -> Resp,
    ) -> Option<Exchange<Req, Resp>>
    where
        C: Codec<Request = Inbound<Req>, Response = Resp> + Send + Clone + 'static,
    {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => match request {
                    Inbound::Request(request) if self.is_member(&peer) => Some(Exchange::Request {
                        peer,
                        request,
                        channel,
                    }),
                    Inbound::Request(_) => {
                        // Not a member (yet): refused plainly, so an honest
                        // newcomer retries instead of seeing a broken stream.
                        self.stats.requests_refused += 1;
                        let _ = behaviour.send_response(channel, unavailable());
                        None
                    }
                    Inbound::Malformed(reason) => {
                        self.malformed_request(peer, &reason);
                        None
                    }
                },
                Message::Response {
                    request_id,
                    response,
                } => Some(Exchange::Response {
                    peer,
                    request_id,
                    response,
                }),
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, protocol, "transfer request failed");
                self.stats.requests_failed += 1;
                Some(Exchange::Failed {
                    peer,
                    request_id,
                    error,
                })
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.note_inbound_failure(peer, &error);
                None
            }
            request_response::Event::ResponseSent { .. } => None,
        }
    }
}
