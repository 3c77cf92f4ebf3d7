//! Keeps alsa-lib's own messages out of the terminal.
//!
//! alsa-lib prints its errors straight to stderr: eight `ALSA lib
//! confmisc.c:855:(parse_card) cannot find card '0'` lines on a machine
//! without a sound card, before Firefly has said anything, and dozens in a
//! test log. What went wrong already reaches the user as the device error
//! Firefly reports; the raw lines go to the debug log instead.
//!
//! alsa-lib's handler is per thread, so every entry point that makes ALSA
//! evaluate its configuration (listing devices, opening one) calls
//! [`quietly`] on its own thread.

/// Runs `f` with alsa-lib's messages on this thread captured, then writes
/// them (at most [`MAX_LINES`]) to the debug log.
#[cfg(target_os = "linux")]
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let (result, text) = captured(f);
    for line in text.lines().take(MAX_LINES) {
        tracing::debug!(target: "firefly_player::alsa", "{line}");
    }
    result
}

/// Runs `f` and returns what alsa-lib said on this thread meanwhile.
#[cfg(target_os = "linux")]
fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    // A fresh buffer each time: the previous one (with what it caught) is
    // dropped, so the captured text stays bounded by one call's messages.
    let buffer = alsa::Output::local_error_handler().ok();
    let result = f();
    let text = buffer.map(|b| b.borrow().to_string()).unwrap_or_default();
    (result, text)
}

/// Elsewhere there is no alsa-lib to quieten.
#[cfg(not(target_os = "linux"))]
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// At most this many of one call's lines reach the log.
#[cfg(target_os = "linux")]
const MAX_LINES: usize = 32;

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::captured;

    /// Opening a PCM that does not exist makes alsa-lib complain; the
    /// complaint is captured rather than printed, and the call's result
    /// comes through unchanged.
    #[test]
    fn a_failing_open_is_captured_and_its_result_kept() {
        let (failed, text) = captured(|| {
            alsa::PCM::new("firefly_no_such_pcm", alsa::Direction::Playback, false).is_err()
        });
        assert!(failed, "a PCM that does not exist must fail to open");
        assert!(text.contains("firefly_no_such_pcm"), "captured: {text:?}");
        // The next call starts from an empty buffer.
        let ((), text) = captured(|| ());
        assert_eq!(text, "");
    }
}
