//! The interpolation filter of the resampler: a Kaiser-windowed sinc,
//! tabulated at evenly spaced fractional delays.
//!
//! A band-limited signal between two samples is the sum of its neighbours
//! weighted by a sinc centred on the wanted instant. [`SincKernel`] holds
//! that weighting, cut to [`TAPS`] neighbours by a Kaiser window, for
//! [`PHASES`] + 1 fractional delays from 0 to 1 inclusive; a delay between
//! two tabulated ones is interpolated linearly ([`SincKernel::weights_at`]),
//! which at this spacing is exact to far below 16-bit noise. It does no
//! streaming: [`crate::resample`] keeps the history and the position.
//!
//! Why not rubato's sinc resampler (used before): it evaluates two 128-tap
//! products per channel and frame, one per neighbouring table entry, and
//! blends them. Blending the *weights* once per frame and taking one product
//! per channel over 64 taps does a third of the arithmetic, and the quality
//! tests in `resample.rs` put the error 93–113 dB under the signal. The
//! price is a narrower passband: flat to about 0.41 of the input rate
//! (19.7 kHz at 48 kHz, 18 kHz at 44.1 kHz), the band above rolling off to
//! the Nyquist frequency.
//!
//! The products are written with `wide`'s SIMD vectors rather than left to
//! LLVM: the release build's whole-program LTO optimizes the whole binary
//! for size, and at that level LLVM vectorizes no loop, so a plain loop
//! stayed one multiply-add at a time (0.6 % of a core in a playing node's
//! profile). With `wide`: 0.11 % of a core for 48 kHz stereo at a slewing
//! rate, at either optimization level (test build; rubato took 0.57–0.64 %
//! there). For mono and stereo, [`SincKernel::blended_dots`] blends each
//! vector of weights and uses it at once for every channel, so the blended
//! weights are never stored and read back (the same sums, bit for bit).

use std::sync::{Arc, Mutex};
use wide::f32x8;

/// Input frames weighted for each output frame (even: half on each side).
pub(crate) const TAPS: usize = 64;

/// Tabulated fractional delays per input frame.
pub(crate) const PHASES: usize = 512;

/// SIMD vectors of weights per row.
pub(crate) const VECTORS: usize = TAPS / 8;

/// The weights of one fractional delay, eight to a SIMD vector.
pub(crate) type Weights = [f32x8; VECTORS];

/// Kaiser window shape: about 90 dB of stopband attenuation.
const KAISER_BETA: f64 = 9.0;

/// Width of the transition band, as a fraction of the input's sample rate,
/// of a `TAPS`-tap Kaiser window with `KAISER_BETA` (Kaiser's estimate,
/// `(A − 7.95) / (14.36 N)` with A ≈ 90 dB).
const TRANSITION: f64 = (90.0 - 7.95) / (14.36 * TAPS as f64);

/// The table of filter weights for one conversion ratio.
pub(crate) struct SincKernel {
    /// Row `p` (of `PHASES + 1`) holds the `TAPS` weights for a fractional
    /// delay of `p / PHASES`, oldest input frame first.
    rows: Vec<Weights>,
}

/// Kernels kept for reuse, newest last (one per conversion ratio in use;
/// a track's opening then costs no table).
static SHARED: Mutex<Vec<(u64, Arc<SincKernel>)>> = Mutex::new(Vec::new());
/// Kernels kept at most (131 KiB each).
const SHARED_KEPT: usize = 8;

impl SincKernel {
    /// The kernel for `max_step` (see [`SincKernel::new`]), built once and
    /// shared: building one takes tens of thousands of Bessel sums, which
    /// delayed a track's start on a loaded machine.
    pub(crate) fn shared(max_step: f64) -> Arc<Self> {
        let key = max_step.to_bits();
        let mut kept = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, kernel)) = kept.iter().find(|(k, _)| *k == key) {
            return Arc::clone(kernel);
        }
        let kernel = Arc::new(Self::new(max_step));
        if kept.len() >= SHARED_KEPT {
            kept.remove(0);
        }
        kept.push((key, Arc::clone(&kernel)));
        kernel
    }

    /// The kernel for reading input at up to `max_step` input frames per
    /// output frame: its cutoff sits low enough that the transition band ends
    /// at the lower of the two Nyquist frequencies (no aliasing when
    /// downsampling, no images when upsampling).
    pub(crate) fn new(max_step: f64) -> Self {
        // In units of the input's Nyquist frequency.
        let nyquist = if max_step > 1.0 { 1.0 / max_step } else { 1.0 };
        let cutoff = (nyquist - TRANSITION).max(0.05);
        let half = (TAPS / 2) as f64;
        let norm = bessel_i0(KAISER_BETA);
        let mut rows = Vec::with_capacity(PHASES + 1);
        for phase in 0..=PHASES {
            let frac = phase as f64 / PHASES as f64;
            let mut row = [0.0f32; TAPS];
            for (tap, weight) in row.iter_mut().enumerate() {
                // Distance from the wanted instant to this tap's input frame.
                let d = frac + half - 1.0 - tap as f64;
                let x = d / half;
                let window = if x.abs() < 1.0 {
                    bessel_i0(KAISER_BETA * (1.0 - x * x).sqrt()) / norm
                } else {
                    0.0
                };
                *weight = (cutoff * sinc(cutoff * d) * window) as f32;
            }
            // Unity gain at DC for every delay, so a delay change never
            // moves the level.
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|w| *w /= sum);
            let (vectors, _) = row.as_chunks::<8>();
            rows.push(std::array::from_fn(|v| f32x8::new(vectors[v])));
        }
        Self { rows }
    }

    /// Writes into `weights` the `TAPS` weights for a fractional delay of
    /// `phase + blend` tabulated steps (`phase < PHASES`, `0 ≤ blend < 1`).
    #[inline]
    pub(crate) fn weights_at(&self, phase: usize, blend: f32, weights: &mut Weights) {
        let (Some(a), Some(b)) = (self.rows.get(phase), self.rows.get(phase + 1)) else {
            return;
        };
        let blend = f32x8::splat(blend);
        for ((w, a), b) in weights.iter_mut().zip(a).zip(b) {
            *w = (*b - *a).mul_add(blend, *a);
        }
    }

    /// For each channel `c`, `Σ weights[i] · windows[c][i]` with the
    /// weights [`SincKernel::weights_at`] gives for `phase + blend`: each
    /// vector of weights is blended and used at once, in registers, by every
    /// channel (the weights are never stored and read back, and never blended
    /// once per channel). The same operations in the same order as
    /// `weights_at` followed by [`dot`] per channel, so the same sums.
    #[inline]
    pub(crate) fn blended_dots<const N: usize>(
        &self,
        phase: usize,
        blend: f32,
        windows: [&[f32; TAPS]; N],
    ) -> [f32; N] {
        let (Some(a), Some(b)) = (self.rows.get(phase), self.rows.get(phase + 1)) else {
            return [0.0; N];
        };
        let blend = f32x8::splat(blend);
        let windows = windows.map(|window| window.as_chunks::<8>().0);
        let mut sums = [f32x8::ZERO; N];
        for (v, (a, b)) in a.iter().zip(b).enumerate() {
            let weight = (*b - *a).mul_add(blend, *a);
            for (sum, window) in sums.iter_mut().zip(&windows) {
                if let Some(x) = window.get(v) {
                    *sum = f32x8::new(*x).mul_add(weight, *sum);
                }
            }
        }
        sums.map(|sum| sum.reduce_add())
    }
}

/// `sin(πx) / (πx)`.
fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The modified Bessel function of the first kind, order 0 (its power series).
fn bessel_i0(x: f64) -> f64 {
    let quarter = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..64 {
        term *= quarter / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// `Σ weights[i] input[i]` over `TAPS` values, eight at a time.
#[inline]
pub(crate) fn dot(weights: &Weights, input: &[f32; TAPS]) -> f32 {
    let (input, _) = input.as_chunks::<8>();
    let mut sum = f32x8::ZERO;
    for (w, x) in weights.iter().zip(input) {
        sum = f32x8::new(*x).mul_add(*w, sum);
    }
    sum.reduce_add()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_unity_gain_and_zero_delay_is_the_sample_itself() {
        let kernel = SincKernel::new(1.0);
        let mut vectors = [f32x8::ZERO; VECTORS];
        for phase in [0, 1, PHASES / 2, PHASES - 1] {
            kernel.weights_at(phase, 0.5, &mut vectors);
            let sum: f32 = vectors.iter().map(|v| v.reduce_add()).sum();
            assert!((sum - 1.0).abs() < 1e-5, "phase {phase}: gain {sum}");
        }
        // A delay of 0 lands on tap TAPS/2 − 1: the weight there dominates and
        // the weights are symmetric about it.
        kernel.weights_at(0, 0.0, &mut vectors);
        let weights: Vec<f32> = vectors.iter().flat_map(|v| v.to_array()).collect();
        let peak = weights
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(peak, Some(TAPS / 2 - 1));
        for k in 1..TAPS / 2 - 1 {
            let (left, right) = (weights[TAPS / 2 - 1 - k], weights[TAPS / 2 - 1 + k]);
            assert!((left - right).abs() < 1e-6, "tap ±{k}: {left} vs {right}");
        }
    }

    #[test]
    fn blended_dots_are_the_blended_weights_dotted_per_channel() {
        let kernel = SincKernel::new(1.01);
        let window = |seed: f32| -> [f32; TAPS] {
            std::array::from_fn(|i| (i as f32 * 0.731 + seed).sin() * 0.9)
        };
        let (left, right) = (window(0.0), window(1.7));
        let mut weights = [f32x8::ZERO; VECTORS];
        for (phase, blend) in [(0, 0.0), (3, 0.25), (PHASES / 2, 0.5), (PHASES - 1, 0.999)] {
            kernel.weights_at(phase, blend, &mut weights);
            let separate = [dot(&weights, &left), dot(&weights, &right)];
            let fused = kernel.blended_dots(phase, blend, [&left, &right]);
            assert_eq!(
                fused.map(f32::to_bits),
                separate.map(f32::to_bits),
                "phase {phase}"
            );
            let [mono] = kernel.blended_dots(phase, blend, [&left]);
            assert_eq!(mono.to_bits(), separate[0].to_bits());
        }
    }

    #[test]
    fn the_bessel_function_matches_known_values() {
        // I0(0) = 1, I0(1) ≈ 1.2660658777520082, I0(9) ≈ 1093.5883545113745.
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_2).abs() < 1e-12);
        assert!((bessel_i0(9.0) - 1_093.588_354_511_374_5).abs() < 1e-8);
    }
}
