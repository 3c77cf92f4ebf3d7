//! Penalties for peers that send bad input: strikes, then a temporary ban.
//!
//! Any module that refuses input from a peer (malformed gossip, floods, and
//! later wrong chunk bytes) has the event loop call its `penalize`. A peer
//! that collects [`STRIKES_TO_BAN`] strikes within [`STRIKE_WINDOW`] is banned
//! for [`BAN_FOR`]: its connections are closed and refused (libp2p's block
//! list) and gossipsub ignores it. `Penalties` is the sans-IO table behind
//! that; it takes `now` and reads no clock (the loop side is
//! `event_loop::penalty`). Memory is bounded: at most
//! [`MAX_TRACKED`] peers are tracked, oldest strikes forgotten first.
//!
//! Logs are bounded too: [`LogLimiter`] lets one line per peer and kind
//! through per [`LOG_EVERY`], carrying the count of the events it stood
//! for, so a flood of bad input writes a line a second, not a line each.

use firefly_clock::LocalMicros;
use libp2p::PeerId;
use std::collections::HashMap;
use std::time::Duration;

/// Strikes within [`STRIKE_WINDOW`] that get a peer banned.
pub const STRIKES_TO_BAN: u32 = 10;
/// How long strikes are remembered.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(10);
/// How long a ban lasts.
pub const BAN_FOR: Duration = Duration::from_secs(60);
/// Most peers with strikes or bans tracked at once.
pub const MAX_TRACKED: usize = 4096;
/// At most one log line per peer and kind this often.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Lets one log line per (peer, kind) through per [`LOG_EVERY`]; see the
/// module doc. Sans-IO; at most [`MAX_TRACKED`] keys.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    /// Per key: when its last line was written, and events since.
    seen: HashMap<(PeerId, &'static str), (LocalMicros, u64)>,
}

impl LogLimiter {
    /// Counts one event; returns `Some(count)` when a line is due, with the
    /// number of events it stands for (this one included).
    pub(crate) fn note(
        &mut self,
        now: LocalMicros,
        peer: PeerId,
        kind: &'static str,
    ) -> Option<u64> {
        let every = micros(LOG_EVERY);
        if !self.seen.contains_key(&(peer, kind)) && self.seen.len() >= MAX_TRACKED {
            self.seen.retain(|_, (at, _)| now - *at < every);
            if self.seen.len() >= MAX_TRACKED {
                return None;
            }
        }
        match self.seen.get_mut(&(peer, kind)) {
            Some((at, count)) if now - *at < every => {
                *count = count.saturating_add(1);
                None
            }
            Some((at, count)) => {
                let total = count.saturating_add(1);
                *at = now;
                *count = 0;
                Some(total)
            }
            None => {
                self.seen.insert((peer, kind), (now, 0));
                Some(1)
            }
        }
    }

    /// Forgets `peer` (it left, or its ban ended).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.seen.retain(|(p, _), _| p != peer);
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    since: LocalMicros,
}

/// The sans-IO strike and ban table.
///
/// Invariant: a peer is in `banned` from the strike that banned it until the
/// first [`Penalties::handle_timeout`] at or after its ban end, and then is in
/// neither map.
#[derive(Debug, Default)]
pub(crate) struct Penalties {
    strikes: HashMap<PeerId, Strikes>,
    banned: HashMap<PeerId, LocalMicros>,
}

impl Penalties {
    /// Records a strike; returns true when this strike bans the peer.
    pub(crate) fn strike(&mut self, now: LocalMicros, peer: PeerId) -> bool {
        if self.banned.contains_key(&peer) {
            return false;
        }
        let window = micros(STRIKE_WINDOW);
        if !self.strikes.contains_key(&peer) && self.strikes.len() >= MAX_TRACKED {
            self.strikes.retain(|_, s| now - s.since <= window);
            if self.strikes.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = self.strikes.entry(peer).or_insert(Strikes {
            count: 0,
            since: now,
        });
        if now - entry.since > window {
            *entry = Strikes {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
        if entry.count >= STRIKES_TO_BAN && self.banned.len() < MAX_TRACKED {
            self.strikes.remove(&peer);
            self.banned.insert(peer, now + micros(BAN_FOR));
            return true;
        }
        false
    }

    /// Whether `peer` is banned now.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains_key(peer)
    }

    /// Ends the bans that are over; returns the peers let back in.
    pub(crate) fn handle_timeout(&mut self, now: LocalMicros) -> Vec<PeerId> {
        let over: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &over {
            self.banned.remove(peer);
        }
        over
    }

    /// When the next ban ends.
    pub(crate) fn poll_timeout(&self) -> Option<LocalMicros> {
        self.banned.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_strikes_in_the_window_ban_and_the_ban_ends() {
        let mut table = Penalties::default();
        let peer = PeerId::random();
        let t0 = LocalMicros(0);
        for i in 0..STRIKES_TO_BAN - 1 {
            assert!(!table.strike(t0 + i64::from(i), peer));
        }
        assert!(table.strike(t0 + 100, peer));
        let until = table.poll_timeout().expect("a ban is pending");
        assert_eq!(until, t0 + 100 + micros(BAN_FOR));
        assert!(table.handle_timeout(until + -1).is_empty());
        assert_eq!(table.handle_timeout(until), vec![peer]);
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn slow_strikes_never_ban() {
        let mut table = Penalties::default();
        let peer = PeerId::random();
        let step = micros(STRIKE_WINDOW) / 2;
        for i in 0..100 {
            assert!(!table.strike(LocalMicros(i * step), peer), "strike {i}");
        }
    }

    #[test]
    fn a_flood_logs_one_line_a_second_with_its_count() {
        let mut logs = LogLimiter::default();
        let peer = PeerId::random();
        let mut lines = Vec::new();
        // 2,000 events over 2.5 s.
        for i in 0..2_000i64 {
            if let Some(count) = logs.note(LocalMicros(i * 1_250), peer, "malformed request") {
                lines.push(count);
            }
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], 1);
        assert_eq!(lines.iter().sum::<u64>(), 1 + 800 + 800);
        // Another kind gets its own line.
        assert_eq!(logs.note(LocalMicros(0), peer, "heartbeat flood"), Some(1));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut table = Penalties::default();
        for _ in 0..MAX_TRACKED + 10 {
            table.strike(LocalMicros(0), PeerId::random());
        }
        assert!(table.strikes.len() <= MAX_TRACKED);
    }
}
