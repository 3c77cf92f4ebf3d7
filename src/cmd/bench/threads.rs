//! Where a node's CPU goes, by thread: the output path (the output's own
//! thread, the decoder's, cpal's), the tokio runtime (swarm, clock, HTTP,
//! the node's tasks) and the rest, read from `/proc/PID/task/*/schedstat`
//! (nanoseconds on the CPU) so the split is measured, not guessed.
//!
//! A thread counts for the time it ran between two [`ThreadCpu::read`]s if
//! it is alive at both; one started in between counts for all its time, and
//! one that ended in between is missed (playing nodes keep their threads).

use std::collections::BTreeMap;

/// A node's threads, grouped by what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ThreadGroup {
    /// Decoding, resampling and feeding the device: the output's thread
    /// (virtual, WAV or device), the decoder's, and cpal's callback thread.
    Output,
    /// The tokio runtime's workers and blocking threads.
    Runtime,
    /// Everything else (file watching, timers of other crates, the main thread).
    Other,
}

impl ThreadGroup {
    /// The group of a thread called `name` (its `comm`, at most 15 bytes).
    pub(crate) fn of(name: &str) -> Self {
        const OUTPUT: [&str; 5] = [
            "firefly-virtual",
            "firefly-wav-out",
            "firefly-device",
            "firefly-decode",
            "cpal_alsa_out",
        ];
        if OUTPUT.iter().any(|prefix| name.starts_with(prefix)) {
            Self::Output
        } else if name.starts_with("tokio-runtime") || name.starts_with("tokio-rt") {
            Self::Runtime
        } else {
            Self::Other
        }
    }

    /// The key this group has in a report.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Output => "output_path",
            Self::Runtime => "runtime",
            Self::Other => "other",
        }
    }
}

/// CPU time of each of a process's threads at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadCpu {
    /// Thread id → (group, seconds on the CPU so far).
    threads: BTreeMap<u32, (ThreadGroup, f64)>,
}

impl ThreadCpu {
    /// Reads the threads of `pid` now (empty if the process is gone).
    pub(crate) fn read(pid: u32) -> Self {
        let mut threads = BTreeMap::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Self { threads };
        };
        for task in tasks.filter_map(Result::ok) {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
                continue;
            };
            let Some(seconds) = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| parse_schedstat(&s))
            else {
                continue;
            };
            threads.insert(tid, (ThreadGroup::of(name.trim()), seconds));
        }
        Self { threads }
    }

    /// Percent of a core each group used from `earlier` to this reading,
    /// over `seconds` of wall time.
    pub(crate) fn percent_since(&self, earlier: &Self, seconds: f64) -> BTreeMap<ThreadGroup, f64> {
        let mut groups = BTreeMap::from([
            (ThreadGroup::Output, 0.0),
            (ThreadGroup::Runtime, 0.0),
            (ThreadGroup::Other, 0.0),
        ]);
        if seconds <= 0.0 {
            return groups;
        }
        for (tid, (group, now)) in &self.threads {
            let before = earlier.threads.get(tid).map_or(0.0, |(_, s)| *s);
            *groups.entry(*group).or_default() += (now - before).max(0.0) / seconds * 100.0;
        }
        groups
    }
}

/// Seconds on the CPU from a `schedstat` line (`run_ns wait_ns slices`).
fn parse_schedstat(line: &str) -> Option<f64> {
    let ns: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn threads_are_grouped_by_their_names() {
        assert_eq!(ThreadGroup::of("firefly-virtual"), ThreadGroup::Output);
        assert_eq!(ThreadGroup::of("firefly-device-"), ThreadGroup::Output);
        assert_eq!(ThreadGroup::of("firefly-decode"), ThreadGroup::Output);
        assert_eq!(ThreadGroup::of("cpal_alsa_out"), ThreadGroup::Output);
        assert_eq!(ThreadGroup::of("tokio-rt-worker"), ThreadGroup::Runtime);
        assert_eq!(ThreadGroup::of("notify-rs inoti"), ThreadGroup::Other);
        assert_eq!(parse_schedstat("1500000000 20 7\n"), Some(1.5));
        assert_eq!(parse_schedstat("garbage"), None);
    }

    #[test]
    fn a_busy_thread_of_this_process_is_measured() {
        let pid = std::process::id();
        let before = ThreadCpu::read(pid);
        assert!(!before.threads.is_empty(), "no threads read for {pid}");
        let started = std::time::Instant::now();
        // Spin this (test) thread for 200 ms: up to 100 % of a core in "other"
        // (less on a loaded machine).
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = ThreadCpu::read(pid);
        let split = after.percent_since(&before, started.elapsed().as_secs_f64());
        let other = split[&ThreadGroup::Other];
        assert!(other > 10.0, "a spinning thread measured at {other:.1} %");
        assert!(split[&ThreadGroup::Output] < 1.0, "{split:?}");
    }
}
