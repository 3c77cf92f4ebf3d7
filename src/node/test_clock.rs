//! A deliberately skewed local clock, for testing only.
//!
//! `FIREFLY_TEST_CLOCK=offset_us,ppm` makes a node believe its local monotonic
//! clock reads `real × (1 + ppm·1e-6) + offset_us`, so several nodes on one
//! machine disagree the way machines with different crystals and boot times
//! do. It is a testing aid (the end-to-end tests, `firefly demo` and the sync
//! benchmark use it); a real deployment leaves it unset.
//!
//! The skewed reading is the node's one time source: the swarm event loop
//! takes it as its `now` hook and the player's timeline reads it too. Only
//! the virtual output still stamps flashes with the true [`std::time::Instant`],
//! which is how sync is measured from outside the nodes' beliefs.
//!
//! What it is not: a simulator. Real time still passes at real speed; only
//! the node's reading of it is bent.

use firefly_clock::LocalMicros;
use firefly_swarm::{Now, monotonic_now};
use std::sync::Arc;

/// The environment variable that sets the skew.
pub(crate) const TEST_CLOCK_VAR: &str = "FIREFLY_TEST_CLOCK";
/// Largest accepted rate error, ppm: real crystals are within a few hundred.
pub(crate) const MAX_PPM: f64 = 10_000.0;
/// Largest accepted offset, µs (about 11.6 days).
pub(crate) const MAX_OFFSET_MICROS: i64 = 1_000_000_000_000;

/// A skew applied to the real monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TestClock {
    /// Added to every reading, µs.
    pub(crate) offset_micros: i64,
    /// Rate error, ppm (positive: the clock runs fast).
    pub(crate) ppm: f64,
}

/// Why `FIREFLY_TEST_CLOCK` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{TEST_CLOCK_VAR}={given:?} is not valid: {reason} (expected `offset_us,ppm`, e.g. `-250000,120.5`; \
     offset within ±{MAX_OFFSET_MICROS} µs, ppm within ±{MAX_PPM})"
)]
pub(crate) struct TestClockError {
    given: String,
    reason: &'static str,
}

impl TestClock {
    /// Parses `offset_us,ppm`.
    pub(crate) fn parse(text: &str) -> Result<Self, TestClockError> {
        let fail = |reason| TestClockError {
            given: text.to_string(),
            reason,
        };
        let (offset, ppm) = text
            .split_once(',')
            .ok_or_else(|| fail("there is no comma"))?;
        let offset_micros: i64 = offset
            .trim()
            .parse()
            .map_err(|_| fail("the offset is not a whole number of microseconds"))?;
        let ppm: f64 = ppm
            .trim()
            .parse()
            .map_err(|_| fail("the rate is not a number"))?;
        if offset_micros.abs() > MAX_OFFSET_MICROS {
            return Err(fail("the offset is out of range"));
        }
        if !ppm.is_finite() || ppm.abs() > MAX_PPM {
            return Err(fail("the rate is out of range"));
        }
        Ok(Self { offset_micros, ppm })
    }

    /// Reads `FIREFLY_TEST_CLOCK` once; `None` when it is unset.
    pub(crate) fn from_env() -> Result<Option<Self>, TestClockError> {
        match std::env::var(TEST_CLOCK_VAR) {
            Ok(text) => Self::parse(&text).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(TestClockError {
                given: String::from("<not unicode>"),
                reason: "it is not unicode",
            }),
        }
    }

    /// The skewed reading of the real instant `real`.
    pub(crate) fn apply(&self, real: LocalMicros) -> LocalMicros {
        let scaled = real.as_micros() as f64 * (1.0 + self.ppm * 1e-6);
        // Rounded, `as` saturates; readings stay monotonic since |ppm| < 1e6.
        LocalMicros((scaled.round() as i64).saturating_add(self.offset_micros))
    }
}

/// The environment variable that multiplies the time exchange's probe rate
/// (`firefly bench sync --probe-rate`: the CPU a doubled rate adds is what
/// the exchange costs). Testing only, like [`TEST_CLOCK_VAR`].
pub(crate) const TEST_PROBE_RATE_VAR: &str = "FIREFLY_TEST_PROBE_RATE";

/// Why `FIREFLY_TEST_PROBE_RATE` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{TEST_PROBE_RATE_VAR}={given:?} is not valid: expected a factor between 0.1 and 10")]
pub(crate) struct ProbeRateError {
    given: String,
}

/// Parses a probe-rate factor (0.1–10).
pub(crate) fn parse_probe_rate(text: &str) -> Result<f64, ProbeRateError> {
    match text.trim().parse::<f64>() {
        Ok(factor) if (0.1..=10.0).contains(&factor) => Ok(factor),
        _ => Err(ProbeRateError {
            given: text.to_string(),
        }),
    }
}

/// Reads `FIREFLY_TEST_PROBE_RATE` once; `None` when it is unset.
pub(crate) fn probe_rate_from_env() -> Result<Option<f64>, ProbeRateError> {
    match std::env::var(TEST_PROBE_RATE_VAR) {
        Ok(text) => parse_probe_rate(&text).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ProbeRateError {
            given: String::from("<not unicode>"),
        }),
    }
}

/// The node's local clock: [`monotonic_now`], skewed when `skew` is given.
pub(crate) fn local_clock(skew: Option<TestClock>) -> Now {
    match skew {
        None => Arc::new(monotonic_now),
        Some(skew) => Arc::new(move || skew.apply(monotonic_now())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_rate_factor_is_parsed_within_its_range() {
        assert_eq!(parse_probe_rate("2"), Ok(2.0));
        assert_eq!(parse_probe_rate(" 0.5 "), Ok(0.5));
        for bad in ["0", "11", "-1", "NaN", "inf", "two", ""] {
            let err = parse_probe_rate(bad).unwrap_err().to_string();
            assert!(err.contains(TEST_PROBE_RATE_VAR), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_offset_and_rate() {
        assert_eq!(
            TestClock::parse("-250000,120.5"),
            Ok(TestClock {
                offset_micros: -250_000,
                ppm: 120.5
            })
        );
        assert_eq!(
            TestClock::parse(" 7 , -3 "),
            Ok(TestClock {
                offset_micros: 7,
                ppm: -3.0
            })
        );
    }

    #[test]
    fn bad_values_get_one_clear_error() {
        for bad in [
            "",
            "12",
            "a,1",
            "1,b",
            "1.5,2",
            "1,NaN",
            "1,inf",
            "1,20000",
            "9999999999999999,0",
        ] {
            let err = TestClock::parse(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(
                    |e| e.contains("FIREFLY_TEST_CLOCK") && e.contains("offset_us,ppm")
                ),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn skewed_clock_runs_at_the_given_rate_from_the_given_offset() {
        let skew = TestClock {
            offset_micros: 1_000_000,
            ppm: 200.0,
        };
        assert_eq!(skew.apply(LocalMicros(0)), LocalMicros(1_000_000));
        assert_eq!(skew.apply(LocalMicros(10_000_000)), LocalMicros(11_002_000));
        let now = local_clock(Some(skew));
        let (a, b) = (now(), now());
        assert!(b >= a, "monotonic");
        let real = monotonic_now();
        assert!((now().as_micros() - skew.apply(real).as_micros()).abs() < 10_000);
    }
}
