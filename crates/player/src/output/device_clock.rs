//! The sound device's clock, seen from the node's local clock.
//!
//! A device plays frames at its own crystal's rate and tells, every period,
//! when the period's first frame will be heard: the callback instant plus the
//! delay the host reports. Each such stamp is noisy (a host reports delays
//! coarsely, a callback is read a little late) and now and then plainly
//! wrong, but the line through them is not: frame `n` is heard at
//! `a + n / rate`, with `rate` the device's true frame rate against the local
//! clock. [`DeviceClock`] fits that line by least squares over a sliding
//! window of (frames written, heard instant) pairs, so the stamp it gives for
//! a period is the fitted one: jitter averages out, a device whose crystal
//! runs off (or a local clock that does) shows as a slope, and nothing is
//! assumed about the latency.
//!
//! Robustness: a pair far off the line is rejected; a run of rejected pairs
//! that agree with each other is a real discontinuity (an xrun, a restarted
//! stream) and restarts the fit from them, keeping the rate learned so far.
//! A fitted rate more than [`MAX_RATE_ERROR`] off nominal is not a sound card
//! (a device that does not pace itself); the nominal rate is used instead.
//!
//! It is sans-IO: plain numbers in, plain numbers out. It allocates its
//! window once, so feeding it from an audio callback allocates nothing.

/// Pairs kept at most (about 40 s of 10 ms periods, 400 s of 100 ms ones).
const CAPACITY: usize = 4096;
/// Oldest pair kept, in local µs behind the newest.
const WINDOW_MICROS: f64 = 60e6;
/// Pairs needed before the slope is fitted (before that: the nominal rate).
const MIN_FIT_POINTS: usize = 16;
/// Span of frames after which the slope is fitted whatever its scatter, in seconds of audio.
const MIN_FIT_SPAN_SECONDS: f64 = 0.5;
/// Before that, the slope is fitted once its standard error is below this (20 ppm).
const MAX_SLOPE_UNCERTAINTY: f64 = 20e-6;
/// A fitted rate further than this from nominal is refused (0.5 %).
pub(crate) const MAX_RATE_ERROR: f64 = 5e-3;
/// A pair is rejected when its residual exceeds this many typical residuals…
const REJECT_FACTOR: f64 = 8.0;
/// …and at least this many µs.
const REJECT_FLOOR_MICROS: f64 = 500.0;
/// Before a slope is fitted, a pair this far off the pace restarts the fit.
const START_JUMP_MICROS: f64 = 10_000.0;
/// Rejected pairs in a row that agree with each other: a discontinuity.
const RESTART_RUN: usize = 8;
/// Rejected pairs in a row after which the fit restarts regardless.
const GIVE_UP_RUN: usize = 64;

/// What [`DeviceClock::handle_period`] made of a pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pair {
    /// Taken into the fit.
    Accepted,
    /// Too far off the line; ignored.
    Rejected,
    /// The device's timing jumped by this many µs (positive: frames are now
    /// heard later, as after an underrun); the fit restarted.
    Restarted(f64),
}

/// A fitted line: local µs = `at + slope × (frames − origin)`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Line {
    at: f64,
    slope: f64,
}

/// The fit of a device's playback instants; see the module doc.
#[derive(Debug)]
pub(crate) struct DeviceClock {
    /// Nominal µs per frame.
    nominal_slope: f64,
    /// Frame index and local µs that pairs are stored relative to (precision).
    origin: Option<(u64, i64)>,
    /// Ring of (frames − origin, local − origin) pairs.
    points: Box<[(f64, f64)]>,
    head: usize,
    len: usize,
    /// Rejected pairs in a row (ring of at most `RESTART_RUN` kept, for a restart).
    rejected: [(f64, f64); RESTART_RUN],
    rejected_run: usize,
    line: Option<Line>,
    /// Slope kept across restarts once learned.
    learned_slope: Option<f64>,
    /// Mean absolute residual of accepted pairs, µs.
    scale: f64,
    implausible: bool,
    /// Where frames started to be counted at the nominal rate, for a device that does not pace.
    unpaced_anchor: Option<(f64, f64)>,
    /// Start-up restarts in a row.
    start_jumps: usize,
}

impl DeviceClock {
    /// A clock for a device nominally playing `sample_rate` frames per second.
    pub(crate) fn new(sample_rate: u32) -> Self {
        Self {
            nominal_slope: 1e6 / f64::from(sample_rate.max(1)),
            origin: None,
            points: vec![(0.0, 0.0); CAPACITY].into_boxed_slice(),
            head: 0,
            len: 0,
            rejected: [(0.0, 0.0); RESTART_RUN],
            rejected_run: 0,
            line: None,
            learned_slope: None,
            scale: REJECT_FLOOR_MICROS,
            implausible: false,
            unpaced_anchor: None,
            start_jumps: 0,
        }
    }

    /// Forgets everything (a new stream).
    pub(crate) fn reset(&mut self) {
        self.origin = None;
        self.len = 0;
        self.head = 0;
        self.rejected_run = 0;
        self.line = None;
        self.learned_slope = None;
        self.scale = REJECT_FLOOR_MICROS;
        self.implausible = false;
        self.unpaced_anchor = None;
        self.start_jumps = 0;
    }

    /// The device's frames per local second over its nominal rate (1.0003:
    /// it plays 300 ppm more frames per local second than nominal), once known.
    pub(crate) fn rate_ratio(&self) -> Option<f64> {
        let slope = self.learned_slope?;
        Some(self.nominal_slope / slope)
    }

    /// Whether the fitted rate was refused as implausible (a device that does not pace).
    pub(crate) fn is_implausible(&self) -> bool {
        self.implausible
    }

    /// Typical residual of the pairs around the line, µs.
    pub(crate) fn jitter_micros(&self) -> f64 {
        self.scale
    }

    /// The local instant (µs) at which frame `frames` is heard, by the fit.
    pub(crate) fn heard_at(&self, frames: u64) -> Option<f64> {
        let (f0, l0) = self.origin?;
        let line = self.line?;
        let x = frames as f64 - f0 as f64;
        Some(l0 as f64 + line.at + line.slope * x)
    }

    /// Feeds one period's pair: its first frame (`frames` written before it)
    /// is heard at local µs `heard`.
    pub(crate) fn handle_period(&mut self, frames: u64, heard: f64) -> Pair {
        if !heard.is_finite() {
            return Pair::Rejected;
        }
        let (f0, l0) = *self.origin.get_or_insert((frames, heard.round() as i64));
        let point = (frames as f64 - f0 as f64, heard - l0 as f64);
        // Rejecting needs a line worth trusting: a learned, plausible slope.
        if let Some(line) = self.line
            && self.learned_slope.is_some()
            && !self.implausible
        {
            let residual = point.1 - (line.at + line.slope * point.0);
            let limit = (REJECT_FACTOR * self.scale).max(REJECT_FLOOR_MICROS);
            if residual.abs() > limit {
                return self.reject(point);
            }
            self.scale += 0.02 * (residual.abs() - self.scale);
            self.scale = self.scale.max(1.0);
        } else if let Some(line) = self.line {
            // Before the slope is known, a pair far off the nominal pace is a
            // start-up artefact (a host priming its buffer reports no delay
            // yet): start over from it.
            let residual = point.1 - (line.at + line.slope * point.0);
            // Jumps on pair after pair are no artefact but a device off any
            // sound card's pace: after a few, the fit sees it as it is.
            if residual.abs() <= START_JUMP_MICROS {
                self.start_jumps = 0;
            } else if self.start_jumps < RESTART_RUN {
                self.start_jumps += 1;
                self.len = 0;
                self.head = 0;
            }
        }
        self.rejected_run = 0;
        self.push(point);
        self.fit();
        Pair::Accepted
    }

    fn reject(&mut self, point: (f64, f64)) -> Pair {
        self.rejected[self.rejected_run % RESTART_RUN] = point;
        self.rejected_run += 1;
        let slope = self.slope();
        let Some(line) = self.line else {
            return Pair::Rejected;
        };
        if self.rejected_run < RESTART_RUN {
            return Pair::Rejected;
        }
        // Do the last rejected pairs agree on a new line with the known slope?
        let offsets = self.rejected.map(|(x, y)| y - slope * x);
        let (lo, hi) = offsets
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &o| (lo.min(o), hi.max(o)));
        let limit = (REJECT_FACTOR * self.scale).max(REJECT_FLOOR_MICROS);
        if hi - lo > limit && self.rejected_run < GIVE_UP_RUN {
            return Pair::Rejected;
        }
        let new_at = offsets.iter().sum::<f64>() / RESTART_RUN as f64;
        let jump = new_at - line.at;
        self.len = 0;
        self.head = 0;
        for point in self.rejected {
            self.push(point);
        }
        self.rejected_run = 0;
        self.line = Some(Line { at: new_at, slope });
        self.fit();
        Pair::Restarted(jump)
    }

    fn slope(&self) -> f64 {
        self.learned_slope.unwrap_or(self.nominal_slope)
    }

    fn push(&mut self, point: (f64, f64)) {
        let tail = (self.head + self.len) % CAPACITY;
        self.points[tail] = point;
        if self.len < CAPACITY {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % CAPACITY;
        }
        // Drop pairs older than the window.
        while self.len > MIN_FIT_POINTS && point.1 - self.points[self.head].1 > WINDOW_MICROS {
            self.head = (self.head + 1) % CAPACITY;
            self.len -= 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        (0..self.len).map(move |i| self.points[(self.head + i) % CAPACITY])
    }

    fn fit(&mut self) {
        if self.len == 0 {
            return;
        }
        let n = self.len as f64;
        let (sx, sy) = self
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy, syy) = self
            .iter()
            .fold((0.0, 0.0, 0.0), |(sxx, sxy, syy), (x, y)| {
                let (dx, dy) = (x - mx, y - my);
                (sxx + dx * dx, sxy + dx * dy, syy + dy * dy)
            });
        let span_seconds = (sxx / n).sqrt() * 2.0 * self.nominal_slope / 1e6;
        // The slope is trusted once its standard error is small, or the span long.
        let trusted = |fitted: f64| {
            let residual = ((syy - fitted * sxy).max(0.0) / (n - 2.0).max(1.0)).sqrt();
            let error = residual / sxx.sqrt() / self.nominal_slope;
            error < MAX_SLOPE_UNCERTAINTY || span_seconds >= MIN_FIT_SPAN_SECONDS
        };
        if self.len >= MIN_FIT_POINTS && sxx > 0.0 && trusted(sxy / sxx) {
            let fitted = sxy / sxx;
            if (fitted / self.nominal_slope - 1.0).abs() <= MAX_RATE_ERROR {
                self.learned_slope = Some(fitted);
                self.implausible = false;
                self.unpaced_anchor = None;
                self.line = Some(Line {
                    at: my - fitted * mx,
                    slope: fitted,
                });
                return;
            }
            // Not a sound card's pace: count frames at the nominal rate from
            // the pair where that became clear.
            let newest = self.points[(self.head + self.len - 1) % CAPACITY];
            let anchor = *self.unpaced_anchor.get_or_insert(newest);
            self.implausible = true;
            self.line = Some(Line {
                at: anchor.1 - self.nominal_slope * anchor.0,
                slope: self.nominal_slope,
            });
            return;
        }
        // Too little to fit a slope (or an implausible one): the known slope
        // through the newest pair, so a clock that runs off does not bend the
        // first stamps.
        let slope = self.slope();
        let newest = self.points[(self.head + self.len - 1) % CAPACITY];
        self.line = Some(Line {
            at: newest.1 - slope * newest.0,
            slope,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic noise source (splitmix64) in ±1.
    fn noise(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    #[test]
    fn finds_the_rate_and_line_through_noisy_pairs() {
        let rate = 48_000.0;
        let ppm = 300.0;
        let mut clock = DeviceClock::new(48_000);
        let mut seed = 7;
        let truth = |n: u64| 5_000_000.0 + n as f64 * 1e6 / (rate * (1.0 + ppm * 1e-6));
        for k in 0..3_000u64 {
            let n = k * 480;
            clock.handle_period(n, truth(n) + 200.0 * noise(&mut seed));
        }
        let ratio = clock.rate_ratio().unwrap_or(0.0);
        assert!((ratio - 1.0 - ppm * 1e-6).abs() < 2e-6, "{ratio}");
        let n = 3_000 * 480;
        let err = clock.heard_at(n).unwrap_or(0.0) - truth(n);
        assert!(err.abs() < 15.0, "{err}");
    }

    #[test]
    fn a_jump_restarts_the_fit_and_outliers_are_ignored() {
        let mut clock = DeviceClock::new(48_000);
        let truth = |n: u64| n as f64 * 1e6 / 48_000.0;
        for k in 0..500u64 {
            clock.handle_period(k * 480, truth(k * 480));
        }
        // Nonsense: huge, negative, backwards.
        for bad in [1e12, -5e9, 0.0] {
            assert_eq!(clock.handle_period(500 * 480, bad), Pair::Rejected);
        }
        assert!((clock.heard_at(500 * 480).unwrap_or(0.0) - truth(500 * 480)).abs() < 1.0);
        // An underrun: from now on every frame is heard 20 ms later.
        let mut restarted = None;
        for k in 501..600u64 {
            if let Pair::Restarted(jump) = clock.handle_period(k * 480, truth(k * 480) + 20_000.0) {
                restarted = Some(jump);
            }
        }
        assert!(
            restarted.is_some_and(|j| (j - 20_000.0).abs() < 1.0),
            "{restarted:?}"
        );
        let err = clock.heard_at(600 * 480).unwrap_or(0.0) - truth(600 * 480) - 20_000.0;
        assert!(err.abs() < 1.0, "{err}");
    }

    #[test]
    fn a_device_that_does_not_pace_is_refused() {
        let mut clock = DeviceClock::new(48_000);
        // Ten times faster than real time.
        for k in 0..400u64 {
            clock.handle_period(k * 4_800, k as f64 * 10_000.0);
        }
        assert!(clock.is_implausible());
    }
}
