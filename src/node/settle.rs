//! When a changed path in the music folder may be read: after it has been
//! quiet for a while *and* its size and mtime stood still across that time.
//!
//! The music folder watcher feeds every change here ([`Settle::handle_change`])
//! and reads a path only once [`Settle::poll_ready`] hands it out, so a file
//! still being copied or written in pieces is not indexed half-written (and
//! not reported as broken on every piece). A file written and then closed
//! (Linux reports the close) needs [`QUIET`]; a file modified and not closed
//! yet — the writer may be stalling — needs [`WRITING_QUIET`]; either way
//! its size and mtime must be unchanged since the last change seen.
//!
//! Sans-IO: time is a parameter (µs of a monotonic clock) and the caller
//! stats paths; a debouncer crate coalesces by silence alone, which is why
//! this small piece is Firefly's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Quiet time before a closed, created, moved or removed path is read, µs.
pub(crate) const QUIET: u64 = 300_000;
/// Quiet time before a file modified and not (yet) closed is read, µs.
pub(crate) const WRITING_QUIET: u64 = 3_000_000;
/// Most paths waiting at once; past it the caller rescans the whole folder.
pub(crate) const MAX_PENDING: usize = 10_000;

/// What a path looks like on disk; `None` when it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) size: u64,
    pub(crate) mtime_ns: u64,
}

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Its data was written; the writer may still hold it open.
    Written,
    /// A writer closed it.
    Closed,
    /// Created, removed, renamed or its metadata changed.
    Other,
}

#[derive(Debug)]
struct Pending {
    /// When the path last changed (or was seen to change), µs.
    since: u64,
    /// Its stat then.
    stat: Option<Stat>,
    /// Written and not closed since.
    writing: bool,
}

/// The paths waiting to settle.
#[derive(Debug, Default)]
pub(crate) struct Settle {
    pending: HashMap<PathBuf, Pending>,
    /// More paths changed than [`MAX_PENDING`]: the whole folder is due.
    overflowed: bool,
}

impl Settle {
    /// `path` changed at `now`; `stat` is how it looks now.
    pub(crate) fn handle_change(
        &mut self,
        now: u64,
        path: &Path,
        change: Change,
        stat: Option<Stat>,
    ) {
        if let Some(p) = self.pending.get_mut(path) {
            p.since = now;
            p.stat = stat;
            match change {
                Change::Written => p.writing = true,
                Change::Closed => p.writing = false,
                Change::Other => {}
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.overflowed = true;
            return;
        }
        self.pending.insert(
            path.to_path_buf(),
            Pending {
                since: now,
                stat,
                writing: change == Change::Written,
            },
        );
    }

    /// Whether too many paths changed to follow one by one (then the caller
    /// rescans everything and calls [`Settle::clear`]).
    pub(crate) fn is_overflowed(&self) -> bool {
        self.overflowed
    }

    /// Forgets every waiting path.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.overflowed = false;
    }

    /// Whether no path waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The paths that have settled by `now`, in path order. `stat_of` tells
    /// how a path looks now: a path whose quiet time is over but whose stat
    /// moved meanwhile waits another quiet time.
    pub(crate) fn poll_ready(
        &mut self,
        now: u64,
        mut stat_of: impl FnMut(&Path) -> Option<Stat>,
    ) -> Vec<PathBuf> {
        let mut ready = Vec::new();
        for (path, p) in &mut self.pending {
            if now < p.since.saturating_add(p.quiet()) {
                continue;
            }
            let stat = stat_of(path);
            if stat == p.stat {
                ready.push(path.clone());
            } else {
                p.since = now;
                p.stat = stat;
            }
        }
        for path in &ready {
            self.pending.remove(path);
        }
        ready.sort();
        ready
    }

    /// When the next path's quiet time ends, µs; `None` when none waits.
    pub(crate) fn poll_timeout(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.since.saturating_add(p.quiet()))
            .min()
    }
}

impl Pending {
    fn quiet(&self) -> u64 {
        if self.writing { WRITING_QUIET } else { QUIET }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stat(size: u64) -> Option<Stat> {
        Some(Stat {
            size,
            mtime_ns: size * 10,
        })
    }

    #[test]
    fn a_copied_file_is_ready_a_quiet_time_after_its_close() {
        let mut s = Settle::default();
        let path = Path::new("/m/a.flac");
        s.handle_change(0, path, Change::Other, stat(0));
        s.handle_change(10, path, Change::Written, stat(100));
        s.handle_change(20, path, Change::Closed, stat(200));
        assert_eq!(s.poll_timeout(), Some(20 + QUIET));
        assert!(s.poll_ready(20 + QUIET - 1, |_| stat(200)).is_empty());
        assert_eq!(s.poll_ready(20 + QUIET, |_| stat(200)), vec![path]);
        assert!(s.is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_file_still_open_for_writing_waits_longer_and_for_a_still_stat() {
        let mut s = Settle::default();
        let path = Path::new("/m/slow.wav");
        s.handle_change(0, path, Change::Written, stat(100));
        // Quiet long enough for a closed file, but never closed.
        assert!(s.poll_ready(QUIET, |_| stat(100)).is_empty());
        // Its size moved without an event seen: wait again from now.
        let later = WRITING_QUIET;
        assert!(s.poll_ready(later, |_| stat(150)).is_empty());
        assert_eq!(s.poll_timeout(), Some(later + WRITING_QUIET));
        assert_eq!(
            s.poll_ready(later + WRITING_QUIET, |_| stat(150)),
            vec![path]
        );
    }

    #[test]
    fn every_change_restarts_the_quiet_time() {
        let mut s = Settle::default();
        let path = Path::new("/m/pieces.mp3");
        for i in 0..10 {
            s.handle_change(i * QUIET / 2, path, Change::Closed, stat(i));
            assert!(s.poll_ready(i * QUIET / 2, |_| stat(i)).is_empty());
        }
        let last = 9 * QUIET / 2;
        assert_eq!(s.poll_ready(last + QUIET, |_| stat(9)), vec![path]);
    }

    #[test]
    fn a_removed_path_is_ready_while_it_stays_gone() {
        let mut s = Settle::default();
        let path = Path::new("/m/gone.ogg");
        s.handle_change(0, path, Change::Other, None);
        assert_eq!(s.poll_ready(QUIET, |_| None), vec![path]);
    }

    #[test]
    fn too_many_paths_overflow_into_a_full_rescan() {
        let mut s = Settle::default();
        for i in 0..=MAX_PENDING {
            s.handle_change(0, Path::new(&format!("/m/{i}")), Change::Other, None);
        }
        assert!(s.is_overflowed());
        s.clear();
        assert!(!s.is_overflowed() && s.is_empty());
    }
}
