//! Sessions in and out: the loop side of [`crate::playback`].

use super::EventLoop;
use crate::event::Event;
use crate::playback::{PLAYBACK_TOPIC, Session, SessionOutcome, handle_gossip};
use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, MessageAcceptance};

impl EventLoop {
    /// Publishes this node's session (as coordinator).
    pub(crate) fn publish_session(&mut self, session: &Session) {
        let bytes = match session.encode() {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(%err, "cannot encode the playback session");
                return;
            }
        };
        if let Err(err) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(IdentTopic::new(PLAYBACK_TOPIC), bytes)
        {
            // No peers subscribed yet is normal for a lone node.
            tracing::debug!(%err, "playback session not published");
        }
    }

    /// Handles a session gossiped by `source`. Only members' sessions reach
    /// the node (which keeps only its coordinator's); a non-member's is
    /// ignored and not forwarded.
    pub(crate) fn on_session(&mut self, source: PeerId, bytes: &[u8]) -> MessageAcceptance {
        let outcome = handle_gossip(self.membership.is_member(&source), bytes);
        let acceptance = outcome.acceptance();
        match outcome {
            SessionOutcome::Accepted(session) => self.emit(Event::Session {
                from: source,
                session,
            }),
            SessionOutcome::NotMember => self.stats.gossip_ignored += 1,
            SessionOutcome::Malformed(err) => {
                tracing::debug!(peer = %source, %err, "bad playback session");
                self.stats.gossip_rejected += 1;
            }
        }
        acceptance
    }
}
