//! The upload limiter: a token bucket that spaces responses so a node sends
//! at most `--max-upload` bytes per second on average.
//!
//! [`UploadLimiter::reserve`] books the bytes of one response and answers
//! when it may be sent. Tokens may go negative: a response larger than the
//! bucket is still served, and the debt delays the ones after it, so over any
//! interval of length `t` starting at `t0` the bytes released are at most
//! `burst + rate × t`. Sans-IO: time is a parameter. It limits what this node
//! sends in chunk responses; it is not a socket-level shaper.

use firefly_clock::LocalMicros;

const MICROS_PER_SEC: u128 = 1_000_000;

/// A token bucket over bytes. See the module docs.
#[derive(Debug, Clone)]
pub struct UploadLimiter {
    /// Bytes per second; `None` means unlimited.
    rate: Option<u64>,
    /// Bucket size in bytes.
    burst: u64,
    /// Tokens in bytes at `updated`; negative while in debt.
    /// Invariant: never above `burst`.
    tokens: i128,
    updated: LocalMicros,
}

impl UploadLimiter {
    /// A limiter that never delays.
    pub fn unlimited() -> Self {
        Self {
            rate: None,
            burst: 0,
            tokens: 0,
            updated: LocalMicros(0),
        }
    }

    /// A limiter of `bytes_per_sec` (at least 1) with a bucket of `burst`
    /// bytes, full at `now`.
    pub fn new(bytes_per_sec: u64, burst: u64, now: LocalMicros) -> Self {
        Self {
            rate: Some(bytes_per_sec.max(1)),
            burst,
            tokens: i128::from(burst),
            updated: now,
        }
    }

    /// The configured rate in bytes per second, if limited.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Books `bytes` at `now` and returns the instant they may be sent
    /// (`now` itself when the bucket covers them). Reservations are served
    /// in the order they are made.
    pub fn reserve(&mut self, now: LocalMicros, bytes: u64) -> LocalMicros {
        let Some(rate) = self.rate else {
            return now;
        };
        self.refill(now, rate);
        self.tokens -= i128::from(bytes);
        if self.tokens >= 0 {
            return now;
        }
        // Time for the refill to bring the bucket back to zero, rounded up.
        let debt = self.tokens.unsigned_abs();
        let wait = debt
            .saturating_mul(MICROS_PER_SEC)
            .div_ceil(u128::from(rate));
        now + i64::try_from(wait).unwrap_or(i64::MAX)
    }

    fn refill(&mut self, now: LocalMicros, rate: u64) {
        let elapsed = now.saturating_micros_since(self.updated);
        if elapsed <= 0 {
            return;
        }
        let gained = u128::try_from(elapsed)
            .unwrap_or(0)
            .saturating_mul(u128::from(rate))
            / MICROS_PER_SEC;
        let gained = i128::try_from(gained).unwrap_or(i128::MAX);
        self.tokens = self
            .tokens
            .saturating_add(gained)
            .min(i128::from(self.burst));
        // Keep the fractional microseconds' worth of tokens: advance `updated`
        // only by the time the whole tokens represent, unless the bucket is full.
        if self.tokens == i128::from(self.burst) {
            self.updated = now;
        } else {
            let used = u128::try_from(gained)
                .unwrap_or(0)
                .saturating_mul(MICROS_PER_SEC)
                / u128::from(rate);
            self.updated = self.updated + i64::try_from(used).unwrap_or(i64::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unlimited_never_waits() {
        let mut l = UploadLimiter::unlimited();
        assert_eq!(l.reserve(LocalMicros(5), u64::MAX), LocalMicros(5));
    }

    #[test]
    fn burst_is_free_then_rate_applies() {
        let mut l = UploadLimiter::new(1_000, 500, LocalMicros(0));
        assert_eq!(l.reserve(LocalMicros(0), 500), LocalMicros(0));
        // 1000 more bytes at 1000 B/s: one second.
        assert_eq!(l.reserve(LocalMicros(0), 1_000), LocalMicros(1_000_000));
        // Queued behind the first: another 0.5 s.
        assert_eq!(l.reserve(LocalMicros(0), 500), LocalMicros(1_500_000));
        // Two seconds later the debt is paid and 500 tokens have accrued.
        assert_eq!(
            l.reserve(LocalMicros(3_500_000), 500),
            LocalMicros(3_500_000)
        );
    }

    #[test]
    fn bucket_does_not_overfill_while_idle() {
        let mut l = UploadLimiter::new(1_000, 100, LocalMicros(0));
        // After an hour idle the bucket holds only `burst`.
        let t = LocalMicros(3_600_000_000);
        assert_eq!(l.reserve(t, 100), t);
        assert_eq!(l.reserve(t, 100), t + 100_000);
    }

    proptest! {
        /// Whatever the reservations, the bytes released by any instant T
        /// never exceed burst + rate × (T − start), and a reservation is
        /// never released before it was made.
        #[test]
        fn never_exceeds_rate(
            rate in 1u64..5_000_000,
            burst in 0u64..1_000_000,
            steps in proptest::collection::vec((0i64..2_000_000, 1u64..300_000), 1..60),
        ) {
            let start = LocalMicros(1_000);
            let mut l = UploadLimiter::new(rate, burst, start);
            let mut now = start;
            let mut releases = Vec::new();
            for (advance, bytes) in steps {
                now = now + advance;
                let at = l.reserve(now, bytes);
                prop_assert!(at >= now);
                releases.push((at, bytes));
            }
            releases.sort();
            let mut sent = 0u128;
            for (at, bytes) in releases {
                sent += u128::from(bytes);
                let elapsed = u128::try_from(at - start).unwrap_or(0);
                // One byte of slack per reservation for rounding.
                let allowed = u128::from(burst) + elapsed * u128::from(rate) / 1_000_000 + 64;
                prop_assert!(sent <= allowed, "sent {sent} > allowed {allowed}");
            }
        }

        /// Steady demand at the rate is never delayed more than one
        /// reservation's worth of time.
        #[test]
        fn demand_within_rate_is_not_delayed(rate in 1_000u64..1_000_000, chunk in 1u64..1_000) {
            let mut l = UploadLimiter::new(rate, chunk, LocalMicros(0));
            let interval = i64::try_from(u128::from(chunk) * 1_000_000 / u128::from(rate)).unwrap_or(i64::MAX) + 1;
            let mut now = LocalMicros(0);
            for _ in 0..100 {
                let at = l.reserve(now, chunk);
                prop_assert!(at - now <= interval, "delayed {} > {}", at - now, interval);
                now = now + interval;
            }
        }
    }
}
