//! Routing of gossipsub messages to the module that owns each topic.
//!
//! Gossipsub runs with strict signing and `validate_messages`: nothing is
//! forwarded until this node has checked it. Every message is handed to its
//! topic's handler, which returns a verdict; a rejected message strikes the
//! peer that passed it on and counts in [`crate::Stats`]. Messages gossipsub
//! itself refuses (bad or missing signatures) never get here: they lower the
//! sender's gossipsub score, which [`watch_gossip_scores`] turns into
//! strikes ([`crate::gossip_score`]).
//!
//! [`watch_gossip_scores`]: EventLoop::watch_gossip_scores

use super::EventLoop;
use crate::membership::HEARTBEAT_TOPIC;
use crate::transfer::wire::LIBRARY_TOPIC;
use firefly_clock::LocalMicros;
use libp2p::gossipsub::{self, MessageAcceptance};

impl EventLoop {
    /// Handles a gossipsub event that reached the loop at `arrived`.
    pub(crate) fn on_gossipsub_event(&mut self, arrived: LocalMicros, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = match message.source {
                    // Strict validation already drops unsigned messages; a
                    // message without an author cannot be attributed.
                    None => MessageAcceptance::Reject,
                    Some(source) => match message.topic.as_str() {
                        HEARTBEAT_TOPIC => self.on_heartbeat(arrived, source, &message.data),
                        crate::playback::PLAYBACK_TOPIC => self.on_session(source, &message.data),
                        LIBRARY_TOPIC => self.on_library_gossip(source, &message.data),
                        other => {
                            tracing::debug!(topic = other, "gossip on a topic nobody handles");
                            MessageAcceptance::Ignore
                        }
                    },
                };
                let report = if verdict == MessageAcceptance::Reject {
                    tracing::debug!(peer = %propagation_source, "rejected gossip message");
                    self.penalize(arrived, propagation_source, "malformed gossip");
                    // Struck here already: gossipsub's score is left to
                    // what only gossipsub sees (see `gossip_score`).
                    MessageAcceptance::Ignore
                } else {
                    verdict
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, report);
            }
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }

    /// Reads the connected peers' gossipsub scores and strikes those that
    /// sent messages gossipsub refused (see [`crate::gossip_score`]).
    pub(crate) fn watch_gossip_scores(&mut self, now: LocalMicros) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let scores: Vec<(libp2p::PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter_map(|peer| gossipsub.peer_score(peer).map(|score| (*peer, score)))
            .collect();
        for peer in self.gossip_scores.handle_scores(scores) {
            self.penalize(now, peer, "invalid or forged gossip");
        }
    }
}
