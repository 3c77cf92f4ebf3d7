//! Real-time scheduling for the sound output's threads.
//!
//! A period that is not written in time is an underrun, heard as a gap. On
//! a busy machine (a compile on every core) an ordinary thread can wait
//! tens of milliseconds for a core, longer than a device period. The audio
//! threads therefore run under `SCHED_FIFO`, where the system allows it
//! (root, `CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` such as the `audio` group's).
//!
//! cpal's own promotion does not cover us: it promotes only hardware PCMs
//! (never ALSA's `pulse` plugin, the common desktop path), and on Linux only
//! through rtkit over D-Bus. Behind the `pulse` plugin two threads carry the
//! sound: cpal's worker, which runs our callback and hands the frames to the
//! plugin, and libpulse's mainloop thread (`threaded-ml`), which writes them
//! to the server's socket. Both are created while the stream is built, and a
//! new thread inherits its creator's scheduling (glibc's default
//! `PTHREAD_INHERIT_SCHED`), so the thread that builds streams promotes
//! itself first: every thread the audio stack starts then runs at real-time
//! priority too, whatever the host.
//!
//! Priorities are low, and ordered so that no audio thread can starve what
//! it waits for. The control thread asks for [`CONTROL_PRIORITY`], which the
//! mainloop thread inherits; the callback thread drops itself to
//! [`CALLBACK_PRIORITY`] on its first callback. Both stay under a sound
//! server's own real-time thread (PulseAudio's default is 5, PipeWire's 83
//! and up). This order matters: cpal's worker polls the plugin, and a
//! plugin that reports ready without room makes it spin until the mainloop
//! and the server have run; at an equal or higher priority than theirs the
//! spin never ends (seen here: two such workers at `SCHED_FIFO` 10 took both
//! cores from PulseAudio's null sink at 5). As a last guard the control
//! thread watches the callback thread's CPU time and returns it to normal
//! scheduling if it ever runs more than [`SPIN_SHARE`] of a core.

use thread_priority::{
    NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy, ThreadId, ThreadPriority,
    ThreadPriorityValue, ThreadSchedulePolicy,
};

/// `SCHED_FIFO` priority of the control thread and of the threads the audio
/// stack starts from it (libpulse's mainloop).
pub(crate) const CONTROL_PRIORITY: u8 = 3;
/// `SCHED_FIFO` priority of the callback thread (cpal's worker): under the
/// threads it waits for.
pub(crate) const CALLBACK_PRIORITY: u8 = 2;
/// Share of a core the callback thread may take before it is taken for
/// spinning and returned to normal scheduling (rendering takes about 1 %).
pub(crate) const SPIN_SHARE: f64 = 0.5;

/// Moves the calling thread to `SCHED_FIFO` at `priority` (1–99); the
/// threads it starts afterwards inherit it. Returns why not when the
/// system refuses.
pub(crate) fn promote_current_thread(priority: u8) -> Result<(), String> {
    let value = ThreadPriorityValue::try_from(priority).map_err(|e| e.to_string())?;
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Whether the calling thread runs under a real-time policy.
pub(crate) fn current_thread_is_realtime() -> bool {
    matches!(
        thread_priority::thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Realtime(_))
    )
}

/// The calling thread, as [`demote`] takes it.
// `pthread_t` is a `u64` on 64-bit Linux, narrower elsewhere.
#[allow(clippy::useless_conversion)]
pub(crate) fn current_thread() -> u64 {
    u64::from(thread_priority::thread_native_id())
}

/// Returns the thread `thread` (from [`current_thread`], in this process,
/// still running) to normal scheduling.
#[allow(clippy::useless_conversion)]
pub(crate) fn demote(thread: u64) -> Result<(), String> {
    let native = ThreadId::try_from(thread).map_err(|e| e.to_string())?;
    thread_priority::set_thread_priority_and_policy(
        native,
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    )
    .map_err(|e| format!("{e:?}"))
}

/// The calling thread's id in `/proc/self/task` (read once, at a stream's
/// first callback, for [`cpu_seconds`]).
pub(crate) fn current_task() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU seconds (user and system) the task `task` of this process has run.
pub(crate) fn cpu_seconds(task: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{task}/stat")).ok()?;
    // Fields after the command (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on every Linux architecture's user ABI.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Promotion works where the system allows it, and a thread started
    /// afterwards inherits it (what the audio stack's threads rely on).
    #[test]
    fn a_thread_reads_its_own_cpu_time() {
        let task = current_task();
        assert!(task.is_some());
        let before = task.and_then(cpu_seconds).unwrap_or(-1.0);
        assert!(before >= 0.0);
        // Busy until the thread's CPU time shows 50 ms more (on a loaded
        // machine that can take several times as long in wall time).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && start.elapsed() < std::time::Duration::from_secs(20) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            after = task.and_then(cpu_seconds).unwrap_or(before);
        }
        assert!(after - before >= 0.05, "{before} → {after}");
    }

    #[test]
    fn a_promoted_thread_passes_real_time_on_to_the_threads_it_starts() {
        let outcome = std::thread::spawn(|| {
            let promoted = promote_current_thread(CONTROL_PRIORITY);
            let child = std::thread::spawn(|| {
                let inherited = current_thread_is_realtime();
                // A spinning thread is returned to normal scheduling.
                let demoted = demote(current_thread()).is_ok() && !current_thread_is_realtime();
                (inherited, demoted)
            })
            .join()
            .unwrap_or((false, false));
            (promoted, current_thread_is_realtime(), child)
        })
        .join();
        let Ok((promoted, itself, child)) = outcome else {
            panic!("the test thread panicked");
        };
        match promoted {
            Ok(()) => {
                assert!(itself, "promoted, yet not real-time");
                assert!(
                    child.0,
                    "a thread started by a real-time one is not real-time"
                );
                assert!(child.1, "a real-time thread was not demoted");
            }
            Err(why) => {
                // Allowed only where the system refuses (not root, no RLIMIT_RTPRIO).
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI runs as root: real-time priority must be granted ({why})"
                );
                println!("real-time priority not permitted here: {why}");
                assert!(!itself);
            }
        }
    }
}
