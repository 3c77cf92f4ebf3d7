//! Heartbeats in and out: the loop side of [`crate::membership`].
//!
//! Publishes this node's heartbeat, feeds peers' heartbeats to the
//! membership table and carries out what it says: a join or a departure
//! reaches the clock, the transfer protocols and the node; a flood is struck.

use super::EventLoop;
use crate::event::Event;
use crate::membership::{HEARTBEAT_TOPIC, HEARTBEAT_VERSION, Heartbeat, HeartbeatOutcome, Member};
use crate::status::NodeStatus;
use firefly_clock::LocalMicros;
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;

impl EventLoop {
    /// Publishes this node's heartbeat.
    pub(crate) fn publish_heartbeat(&mut self, now: LocalMicros) {
        let heartbeat = Heartbeat {
            version: HEARTBEAT_VERSION,
            name: self.name.clone(),
            uptime_ms: u64::try_from((now - self.started_at) / 1000).unwrap_or(0),
            status: NodeStatus {
                playout: self.playout.clone(),
                live: self.live_sources.clone(),
                ..self.transfer.stamp_status(self.status.clone())
            },
            leaving: self.leaving,
        };
        let bytes = match heartbeat.encode() {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!(%err, "cannot encode own heartbeat");
                return;
            }
        };
        let topic = libp2p::gossipsub::IdentTopic::new(HEARTBEAT_TOPIC);
        if let Err(err) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            // With no peer subscribed yet this is expected; nothing to retry.
            tracing::debug!(%err, "heartbeat not published");
        }
    }

    /// Handles a heartbeat authored by `source`; returns the validation
    /// verdict gossipsub should act on.
    pub(crate) fn on_heartbeat(
        &mut self,
        now: LocalMicros,
        source: PeerId,
        data: &[u8],
    ) -> MessageAcceptance {
        if source == *self.swarm.local_peer_id() {
            return MessageAcceptance::Ignore;
        }
        let outcome = self.membership.handle_gossip(now, source, data);
        let acceptance = outcome.acceptance();
        match outcome {
            HeartbeatOutcome::Joined(member) => {
                tracing::info!(peer = %member.peer, name = %member.name, "member joined");
                self.clock.add_peer(now, member.peer);
                self.on_member_joined_transfer(member.peer);
                self.drive_clock(now);
                let library_version = member.status.library_version;
                self.emit(Event::PeerJoined {
                    peer: member.peer,
                    name: member.name,
                });
                self.on_peer_library_version(source, library_version);
            }
            HeartbeatOutcome::Refreshed => {
                if let Some(member) = self.membership.member(&source) {
                    let library_version = member.status.library_version;
                    self.on_peer_library_version(source, library_version);
                }
            }
            HeartbeatOutcome::Flood => {
                self.stats.gossip_flooded += 1;
                self.penalize(now, source, "heartbeat flood");
            }
            HeartbeatOutcome::Full | HeartbeatOutcome::NotMember => {}
            HeartbeatOutcome::Left(member) => {
                tracing::info!(peer = %member.peer, name = %member.name, "member said goodbye");
                // Accepted, so forwarded: members without a direct link hear it too.
                self.on_member_gone(now, *member);
            }
            HeartbeatOutcome::Malformed(err) => {
                tracing::debug!(peer = %source, %err, "rejected heartbeat");
                self.stats.gossip_rejected += 1;
            }
        }
        acceptance
    }

    /// Forgets a member that left (expired or said goodbye) and tells the node.
    fn on_member_gone(&mut self, now: LocalMicros, member: Member) {
        self.clock.remove_peer(now, &member.peer);
        self.on_member_left_transfer(now, member.peer);
        self.emit(Event::PeerLeft {
            peer: member.peer,
            name: member.name,
        });
    }

    /// Expires silent members and tells the node about each one; closes the
    /// connections of members that went silent while connected (see the
    /// module doc), so the redial opens fresh ones.
    pub(crate) fn expire_members(&mut self, now: LocalMicros) {
        for peer in self.membership.poll_stalled(now) {
            if self.swarm.is_connected(&peer) {
                tracing::info!(%peer, "member silent while connected; closing its connections");
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
        for member in self.membership.handle_timeout(now) {
            tracing::info!(peer = %member.peer, name = %member.name, "member left");
            self.on_member_gone(now, member);
        }
    }
}
