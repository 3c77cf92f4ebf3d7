//! Routing of gossipsub messages to the module that owns each topic.
//!
//! Gossipsub runs with strict signing and `validate_messages`: nothing is
//! forwarded until this node has checked it. Every message is handed to its
//! topic's handler, which returns a verdict; rejected messages count against
//! the sender in gossipsub and in [`crate::Stats`].

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
                if verdict == MessageAcceptance::Reject {
                    tracing::debug!(peer = %propagation_source, "rejected gossip message");
                    self.penalize(arrived, propagation_source, "malformed gossip");
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }
}
