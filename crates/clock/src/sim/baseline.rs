//! The naive baseline: every node slaved to one reference, Snapcast-style.
//!
//! Snapcast's client keeps the offsets `((t2 − t1) + (t3 − t4)) / 2` of its
//! last exchanges with the server and uses their median as the server-time
//! offset, with no model of drift. Here the reference is the lowest-numbered
//! live member; it serves its own clock (frozen at the offset it last had).
//! When the reference dies the next one takes over and everyone re-syncs to
//! it: exactly the single point of failure firefly coupling avoids.

use crate::estimator::Sample;
use crate::time::{LocalMicros, SwarmMicros};
use std::collections::{BTreeSet, VecDeque};

/// One baseline node.
#[derive(Debug)]
pub(crate) struct MedianClock {
    id: usize,
    members: BTreeSet<usize>,
    /// Current `swarm − local` offset, µs.
    offset: i64,
    /// Offsets of the last exchanges with the current reference.
    window: VecDeque<i64>,
    window_len: usize,
    probe_interval: i64,
    next_probe: i64,
    reference: Option<usize>,
    synced: bool,
}

impl MedianClock {
    pub(crate) fn new(
        id: usize,
        now: LocalMicros,
        initial: SwarmMicros,
        window_len: usize,
        probe_interval: i64,
    ) -> Self {
        Self {
            id,
            members: BTreeSet::new(),
            offset: initial.0.saturating_sub(now.0),
            window: VecDeque::new(),
            window_len: window_len.max(1),
            probe_interval: probe_interval.max(1),
            next_probe: now.0,
            reference: None,
            synced: true,
        }
    }

    fn reelect(&mut self) {
        let lowest = self.members.iter().next().copied().filter(|&m| m < self.id);
        if lowest != self.reference {
            self.reference = lowest;
            self.window.clear();
            self.synced = lowest.is_none();
        }
    }

    pub(crate) fn add_peer(&mut self, peer: usize) {
        self.members.insert(peer);
        self.reelect();
    }

    pub(crate) fn remove_peer(&mut self, peer: usize) {
        self.members.remove(&peer);
        self.reelect();
    }

    pub(crate) fn poll_probe(&mut self, now: LocalMicros) -> Option<usize> {
        let r = self.reference?;
        if self.next_probe > now.0 {
            return None;
        }
        self.next_probe = now.0.saturating_add(self.probe_interval);
        Some(r)
    }

    pub(crate) fn poll_timeout(&self) -> Option<LocalMicros> {
        self.reference.map(|_| LocalMicros(self.next_probe))
    }

    pub(crate) fn handle_sample(&mut self, peer: usize, s: Sample) {
        if Some(peer) != self.reference || s.t4 < s.t1 {
            return;
        }
        self.window.push_back(s.offset_micros());
        while self.window.len() > self.window_len {
            self.window.pop_front();
        }
        let mut sorted: Vec<i64> = self.window.iter().copied().collect();
        sorted.sort_unstable();
        self.offset = sorted[sorted.len() / 2];
        self.synced = true;
    }

    pub(crate) fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
        SwarmMicros(local.0.saturating_add(self.offset))
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced
    }
}
