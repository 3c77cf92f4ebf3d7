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
//! The priority is modest (10, what cpal's and Firefox's audio threads ask
//! of rtkit), under the kernel's own threads and a typical sound server's
//! data thread. None of these threads spins: each blocks on a poll between
//! periods, and the kernel's real-time throttling stays in force.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
};

/// `SCHED_FIFO` priority asked for (1–99).
const PRIORITY: u8 = 10;

/// Moves the calling thread to `SCHED_FIFO` at [`PRIORITY`]; the threads it
/// starts afterwards inherit it. Returns why not when the system refuses.
pub(crate) fn promote_current_thread() -> Result<(), String> {
    let value = ThreadPriorityValue::try_from(PRIORITY).map_err(|e| e.to_string())?;
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Whether the calling thread runs under a real-time policy.
#[cfg(test)]
pub(crate) fn current_thread_is_realtime() -> bool {
    matches!(
        thread_priority::thread_schedule_policy(),
        Ok(ThreadSchedulePolicy::Realtime(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Promotion works where the system allows it, and a thread started
    /// afterwards inherits it (what the audio stack's threads rely on).
    #[test]
    fn a_promoted_thread_passes_real_time_on_to_the_threads_it_starts() {
        let outcome = std::thread::spawn(|| {
            let promoted = promote_current_thread();
            let child = std::thread::spawn(current_thread_is_realtime)
                .join()
                .unwrap_or(false);
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
                    child,
                    "a thread started by a real-time one is not real-time"
                );
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
