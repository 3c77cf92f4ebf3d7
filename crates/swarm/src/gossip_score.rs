//! Gossipsub peer scoring, used for one thing: invalid and forged messages.
//!
//! Gossipsub checks every message's signature (strict validation) before
//! this node sees it, and drops a message that is unsigned, signed by
//! another key than its claimed author's, or badly signed — without telling
//! the node who sent it. Only its peer score hears of it: each such
//! message counts as an *invalid delivery* against the peer that passed it
//! on (so do the messages the node's own validators reject). So scoring is
//! on, with every other part of the score switched off (time in mesh,
//! deliveries, IP colocation, behaviour penalties: a small household swarm
//! would trip them without any malice). The score is then zero for every
//! honest peer and negative only after invalid messages; below
//! [`GRAYLIST_THRESHOLD`] gossipsub ignores the peer altogether.
//!
//! [`ScoreWatch`] turns the scores into strikes for the penalty table
//! ([`crate::penalty`]): the event loop reads the connected peers' scores
//! once a heartbeat period, and a peer whose score fell since the last
//! reading (new invalid messages) or that shows more than one recent
//! invalid message (below the gossip threshold) gets a strike, so a peer
//! that keeps forging is banned within about ten seconds like any other
//! sender of bad input (a graylisted peer's messages are not even counted,
//! so its score rises between its bursts: a strike only when it falls would
//! come too seldom). Sans-IO: the scores are a parameter.

use crate::membership::HEARTBEAT_TOPIC;
use crate::playback::PLAYBACK_TOPIC;
use crate::transfer::wire::LIBRARY_TOPIC;
use libp2p::PeerId;
use libp2p::gossipsub::{IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};
use std::collections::HashMap;
use std::time::Duration;

/// Weight of an invalid message (squared count) in a topic's score.
const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// What is left of a peer's count of invalid messages after a second.
const INVALID_MESSAGE_DECAY: f64 = 0.9;
/// Below this score gossipsub sends a peer no gossip, and [`ScoreWatch`]
/// strikes it at every reading (one invalid message: −10; two: −40).
const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this score gossipsub publishes nothing to a peer.
const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this score gossipsub ignores everything a peer sends (three
/// invalid messages in a short while: −90).
pub(crate) const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Most peers whose score [`ScoreWatch`] remembers (the connection limit).
const MAX_WATCHED: usize = 512;

/// The score parameters: invalid messages on Firefly's three topics only.
pub(crate) fn params() -> PeerScoreParams {
    let topic = TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
        ..TopicScoreParams::default()
    };
    let topics = [HEARTBEAT_TOPIC, PLAYBACK_TOPIC, LIBRARY_TOPIC]
        .into_iter()
        .map(|name| (IdentTopic::new(name).hash(), topic.clone()))
        .collect();
    PeerScoreParams {
        topics,
        app_specific_weight: 0.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        slow_peer_weight: 0.0,
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    }
}

/// The thresholds that go with [`params`].
pub(crate) fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..PeerScoreThresholds::default()
    }
}

/// Turns gossipsub scores into strikes; see the module doc.
///
/// Invariant: holds only peers whose latest score was negative, at most
/// [`MAX_WATCHED`].
#[derive(Debug, Default)]
pub(crate) struct ScoreWatch {
    last: HashMap<PeerId, f64>,
}

impl ScoreWatch {
    /// Takes a reading of the connected peers' scores; returns the peers to
    /// strike.
    pub(crate) fn handle_scores(
        &mut self,
        scores: impl IntoIterator<Item = (PeerId, f64)>,
    ) -> Vec<PeerId> {
        let mut strike = Vec::new();
        let mut now = HashMap::new();
        for (peer, score) in scores {
            if score >= 0.0 || now.len() >= MAX_WATCHED {
                continue;
            }
            let fell = self.last.get(&peer).is_none_or(|before| score < *before);
            if fell || score < GOSSIP_THRESHOLD {
                strike.push(peer);
            }
            now.insert(peer, score);
        }
        self.last = now;
        strike
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_are_valid_and_score_only_invalid_messages() {
        assert!(params().validate().is_ok());
        assert!(thresholds().validate().is_ok());
        assert_eq!(params().topics.len(), 3);
        // Three invalid messages graylist; one does not.
        const { assert!(INVALID_MESSAGE_WEIGHT * 9.0 < GRAYLIST_THRESHOLD) };
        const { assert!(INVALID_MESSAGE_WEIGHT > GRAYLIST_THRESHOLD) };
    }

    #[test]
    fn falling_or_graylisted_scores_are_struck_and_honest_ones_never() {
        let mut watch = ScoreWatch::default();
        let (honest, forger) = (PeerId::random(), PeerId::random());
        assert!(watch.handle_scores([(honest, 0.0)]).is_empty());
        // New invalid messages: struck.
        assert_eq!(
            watch.handle_scores([(honest, 0.0), (forger, -40.0)]),
            [forger]
        );
        assert_eq!(
            watch.handle_scores([(honest, 0.0), (forger, -90.0)]),
            [forger]
        );
        // Graylisted, decaying: still struck while it shows more than one
        // recent invalid message.
        assert_eq!(watch.handle_scores([(forger, -85.0)]), [forger]);
        assert_eq!(watch.handle_scores([(forger, -20.0)]), [forger]);
        // Down to one, without new invalid messages: left alone.
        assert!(watch.handle_scores([(forger, -9.0)]).is_empty());
        assert!(watch.handle_scores([(forger, -7.0)]).is_empty());
        // Another forgery: struck again.
        assert_eq!(watch.handle_scores([(forger, -8.0)]), [forger]);
        assert!(watch.handle_scores([(forger, 0.0)]).is_empty());
        assert!(watch.last.is_empty());
    }
}
