//! Library versions and the deltas a peer needs to catch up.
//!
//! Every change to the set of tracks (one added, one removed) appends one
//! entry to the version log and bumps the library version by one. A peer that
//! last saw version `v` asks for [`Changes`] since `v`: the log entries after
//! `v`, compacted by [`net_changes`] so a track added and removed again (or
//! removed and added again) is not mentioned at all. The log keeps the last
//! [`LOG_KEEP`] entries; a peer further behind (or ahead, after a reset) gets
//! the full list instead. Sans-IO: the store feeds the log in.

use crate::id::TrackId;
use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How many log entries are kept before the oldest are dropped.
pub const LOG_KEEP: u64 = 4096;

/// What happened to a track at one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOp {
    /// The track joined the library.
    Added,
    /// The track left the library.
    Removed,
}

/// What a peer at some version needs to reach the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Changes {
    /// The net changes between two versions.
    Delta {
        /// The version the peer had.
        from: u64,
        /// The version this delta reaches.
        to: u64,
        /// Manifests of tracks added since `from` (and still present).
        added: Vec<Manifest>,
        /// Tracks removed since `from` (that were present at `from`).
        removed: Vec<TrackId>,
    },
    /// Every track, because the peer is too far behind (or ahead) for a delta.
    Full {
        /// The version this list is.
        version: u64,
        /// All manifests.
        manifests: Vec<Manifest>,
    },
}

impl Changes {
    /// The version the peer has after applying this.
    pub fn version(&self) -> u64 {
        match self {
            Changes::Delta { to, .. } => *to,
            Changes::Full { version, .. } => *version,
        }
    }
}

/// How to answer "changes since `since`", given the current version and the
/// oldest version the log can still answer from (`floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing changed.
    UpToDate,
    /// Replay the log entries after `since`.
    Delta,
    /// Send the full list.
    Full,
}

/// Decides between a delta and the full list.
///
/// Invariant kept by the store: the log holds every entry with a version in
/// `floor + 1 ..= current`.
pub(crate) fn answer(since: u64, current: u64, floor: u64) -> Answer {
    if since == current {
        Answer::UpToDate
    } else if since > current || since < floor {
        Answer::Full
    } else {
        Answer::Delta
    }
}

/// Net effect of log entries, in order: tracks added (absent before, present
/// after) and tracks removed (present before, absent after). A track whose
/// first and last operations cancel out appears in neither list.
pub fn net_changes(
    entries: impl IntoIterator<Item = (TrackId, LogOp)>,
) -> (Vec<TrackId>, Vec<TrackId>) {
    // For each track: its first op (tells the state before) and last op (after).
    let mut seen: HashMap<TrackId, (LogOp, LogOp)> = HashMap::new();
    let mut order = Vec::new();
    for (track, op) in entries {
        seen.entry(track)
            .and_modify(|(_, last)| *last = op)
            .or_insert_with(|| {
                order.push(track);
                (op, op)
            });
    }
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for track in order {
        let (first, last) = seen[&track];
        let present_before = first == LogOp::Removed;
        let present_after = last == LogOp::Added;
        match (present_before, present_after) {
            (false, true) => added.push(track),
            (true, false) => removed.push(track),
            _ => {}
        }
    }
    (added, removed)
}

/// How many of the oldest entries to drop so at most [`LOG_KEEP`] remain,
/// given the log covers `floor + 1 ..= current`.
pub(crate) fn entries_to_drop(current: u64, floor: u64) -> u64 {
    (current - floor).saturating_sub(LOG_KEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u8) -> TrackId {
        TrackId([n; 32])
    }

    #[test]
    fn added_then_removed_is_compacted_away() {
        use LogOp::*;
        let (added, removed) = net_changes([(t(1), Added), (t(2), Added), (t(1), Removed)]);
        assert_eq!(added, vec![t(2)]);
        assert!(removed.is_empty());
    }

    #[test]
    fn removed_then_added_again_is_no_change() {
        use LogOp::*;
        let (added, removed) = net_changes([(t(1), Removed), (t(1), Added), (t(3), Removed)]);
        assert!(added.is_empty());
        assert_eq!(removed, vec![t(3)]);
    }

    #[test]
    fn repeated_cycles_keep_the_net_effect() {
        use LogOp::*;
        let ops = [(t(1), Added), (t(1), Removed), (t(1), Added)];
        assert_eq!(net_changes(ops), (vec![t(1)], vec![]));
    }

    #[test]
    fn answer_picks_delta_only_inside_the_log() {
        assert_eq!(answer(5, 5, 0), Answer::UpToDate);
        assert_eq!(answer(3, 5, 0), Answer::Delta);
        assert_eq!(answer(3, 5, 3), Answer::Delta);
        assert_eq!(answer(2, 5, 3), Answer::Full);
        assert_eq!(answer(9, 5, 0), Answer::Full);
    }

    #[test]
    fn log_is_trimmed_to_keep() {
        assert_eq!(entries_to_drop(10, 0), 0);
        assert_eq!(entries_to_drop(LOG_KEEP + 7, 0), 7);
        assert_eq!(entries_to_drop(LOG_KEEP + 7, 7), 0);
    }
}
