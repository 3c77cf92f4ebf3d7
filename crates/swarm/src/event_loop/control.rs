//! Control requests in and out: the loop side of [`crate::control`].
//!
//! Sends this node's requests, hands inbound ones to [`ControlState`] with
//! what membership says of the sender, and carries out its outcome: the
//! node is told of a parked request, a refusal is sent, bad input struck.

use super::EventLoop;
use crate::control::{ControlCommand, ControlEvent, ControlResponse, InboundOutcome};
use crate::error::ClientError;
use crate::event::Event;
use libp2p::request_response;

impl EventLoop {
    /// Carries out a client's control command.
    pub(crate) fn on_control_command(&mut self, command: ControlCommand) {
        match command {
            ControlCommand::Send {
                peer,
                request,
                reply,
            } => {
                if !self.swarm.is_connected(&peer) {
                    let _ = reply.send(Err(ClientError::Request(format!(
                        "{peer} is not connected"
                    ))));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .control
                    .send_request(&peer, request.into());
                self.control.park_outbound(id, reply);
            }
            ControlCommand::Respond { key, response } => {
                if let Some(channel) = self.control.take_inbound(key)
                    && self
                        .swarm
                        .behaviour_mut()
                        .control
                        .send_response(channel, response)
                        .is_err()
                {
                    tracing::debug!("control request abandoned before the response");
                }
            }
            ControlCommand::Publish { session } => self.publish_session(&session),
        }
    }

    /// Handles a `/firefly/control/1` event.
    pub(crate) fn on_control_event(&mut self, event: ControlEvent) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let is_member = self.membership.is_member(&peer);
                    let outcome = self
                        .control
                        .handle_request(peer, is_member, request, channel);
                    self.on_control_outcome(peer, outcome);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.control.take_outbound(request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "control request failed");
                if let Some(reply) = self.control.take_outbound(request_id) {
                    let _ = reply.send(Err(ClientError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound control request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_control_outcome(&mut self, peer: libp2p::PeerId, outcome: InboundOutcome) {
        match outcome {
            InboundOutcome::Parked { key, request } => {
                self.emit(Event::ControlRequest { peer, key, request });
            }
            InboundOutcome::Refused {
                channel,
                refusal,
                strike,
            } => {
                if let Some(reason) = strike {
                    if matches!(refusal, crate::control::Refusal::Invalid(_)) {
                        self.stats.gossip_rejected += 1;
                    }
                    let now = (self.now)();
                    self.penalize(now, peer, reason);
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .control
                    .send_response(channel, ControlResponse::Refused(refusal));
            }
            InboundOutcome::Malformed(reason) => {
                tracing::debug!(%peer, reason, "malformed control request");
                self.stats.requests_malformed += 1;
                let now = (self.now)();
                self.penalize(now, peer, "malformed control request");
            }
        }
    }
}
