//! Strikes and bans carried out: the loop side of [`crate::penalty`].
//!
//! The strike table decides; this closes a banned peer's connections,
//! blacklists it in gossipsub and tells the node.

use super::EventLoop;
use firefly_clock::LocalMicros;
use libp2p::PeerId;

impl EventLoop {
    /// Gives `peer` a strike for `reason`; bans it when it has too many.
    pub(crate) fn penalize(&mut self, now: LocalMicros, peer: PeerId, reason: &'static str) {
        if peer == *self.swarm.local_peer_id() || self.penalties.is_banned(&peer) {
            // A banned peer's late messages (already on their way) count no more.
            return;
        }
        self.stats.strikes = self.stats.strikes.saturating_add(1);
        if let Some(count) = self.log_limiter.note(now, peer, reason) {
            tracing::warn!(%peer, reason, count, "bad input from a peer (count: events since the last line)");
        }
        if self.penalties.strike(now, peer) {
            tracing::warn!(%peer, reason, "peer banned for repeated bad input");
            self.stats.peers_banned += 1;
            let behaviour = self.swarm.behaviour_mut();
            behaviour.gossipsub.blacklist_peer(&peer);
            // Closes its connections and refuses new ones until the ban ends.
            behaviour.blocked.block_peer(peer);
            self.emit(crate::Event::PeerBanned { peer, reason });
        }
    }

    /// Lets peers whose ban is over back in.
    pub(crate) fn end_bans(&mut self, now: LocalMicros) {
        for peer in self.penalties.handle_timeout(now) {
            tracing::info!(%peer, "ban over");
            self.log_limiter.forget(&peer);
            let behaviour = self.swarm.behaviour_mut();
            behaviour.gossipsub.remove_blacklisted_peer(&peer);
            behaviour.blocked.unblock_peer(peer);
        }
    }
}
