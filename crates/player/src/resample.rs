//! The variable-rate resampler: source rate to output rate, times the
//! drift-correcting playback rate.
//!
//! [`RateResampler`] reads its input at a fractional position that advances
//! by a step of `source_rate / output_rate × rate` input frames per output
//! frame, and interpolates each output frame with the windowed sinc of
//! [`crate::sinc_kernel`] (band-limited, so no aliasing or images beyond the
//! filter's stopband). Drift correction changes the step by a few hundred
//! ppm; the waveform stays continuous because only the speed at which the
//! position advances changes, never its phase. Frames are never dropped or
//! duplicated.
//!
//! The position is fixed-point (32 fractional bits), relative to the oldest
//! frame still kept, so it is exact for any length of stream and the input a
//! chunk needs is known exactly before it is read. Its bookkeeping is
//! therefore exact: after [`RateResampler::reset`] the `j`-th output frame is
//! the source signal at `first_input + LEAD + Σ step`, where the sum runs
//! over the steps of the frames up to and including it, so the renderer
//! always knows which source frame it is emitting.
//!
//! Nothing here allocates once the first chunk has been processed.

use crate::sinc_kernel::{PHASES, SincKernel, TAPS, VECTORS, Weights, dot};
use std::sync::Arc;

/// How far the playback rate may move from 1.0 either way (1%): far beyond the
/// ±500 ppm a slew controller uses, so its requests are never cut short.
pub const MAX_RATE_DEVIATION: f64 = 0.01;

/// The source position (in input frames, relative to the first input frame
/// after a reset) just before the first output frame: output frame `j` then
/// carries position `LEAD + Σ_{i ≤ j} step_i`.
pub(crate) const LEAD: f64 = -1.0;

/// Fractional bits of a position.
const FRACTION_BITS: u32 = 32;
const ONE: u64 = 1 << FRACTION_BITS;
/// Bits of the fraction below the table's phase.
const BLEND_BITS: u32 = FRACTION_BITS - PHASES.trailing_zeros();
/// Input frames kept on each side of the position (half the filter).
const HALF: usize = TAPS / 2;

/// Resamples interleaved `f32` from a source rate to an output rate, with a
/// playback rate applied on top.
pub(crate) struct RateResampler {
    kernel: Arc<SincKernel>,
    channels: usize,
    /// Output frames per [`RateResampler::process`] call.
    chunk: usize,
    /// Source frames per output frame at rate 1.0 (`source_rate / output_rate`).
    base_step: f64,
    rate: f64,
    /// The step in use, fixed-point.
    step: u64,
    /// Input kept, one buffer per channel; `history[c][0]` is the oldest frame
    /// a coming output frame can still need.
    history: Vec<Vec<f32>>,
    /// Position of the last output frame, fixed-point, relative to `history[_][0]`.
    position: u64,
    weights: Weights,
}

impl RateResampler {
    /// A resampler from `source_rate` to `output_rate` producing `chunk` frames per call.
    pub(crate) fn new(
        source_rate: u32,
        output_rate: u32,
        channels: usize,
        chunk: usize,
    ) -> Result<Self, String> {
        if source_rate == 0 || output_rate == 0 || channels == 0 || chunk == 0 {
            return Err(format!(
                "cannot resample {channels} channels from {source_rate} Hz to {output_rate} Hz in chunks of {chunk}"
            ));
        }
        let base_step = f64::from(source_rate) / f64::from(output_rate);
        let mut resampler = Self {
            kernel: SincKernel::shared(base_step * (1.0 + MAX_RATE_DEVIATION)),
            channels,
            chunk,
            base_step,
            rate: 1.0,
            step: 0,
            history: vec![Vec::new(); channels],
            position: 0,
            weights: [wide::f32x8::ZERO; VECTORS],
        };
        resampler.reset();
        Ok(resampler)
    }

    /// Source frames consumed per output frame at the current rate (exactly
    /// the step in use).
    pub(crate) fn step(&self) -> f64 {
        self.step as f64 / ONE as f64
    }

    /// Sets the playback rate (1.0003 plays 300 ppm fast), clamped to
    /// ±[`MAX_RATE_DEVIATION`]; takes effect from the next chunk. Returns the rate applied.
    pub(crate) fn set_rate(&mut self, rate: f64) -> f64 {
        let rate = if rate.is_finite() {
            rate.clamp(1.0 - MAX_RATE_DEVIATION, 1.0 + MAX_RATE_DEVIATION)
        } else {
            1.0
        };
        self.rate = rate;
        self.step = (self.base_step * rate * ONE as f64).round() as u64;
        self.rate
    }

    /// Input frames the next [`RateResampler::process`] call consumes.
    pub(crate) fn input_needed(&self) -> usize {
        let last = self.position + self.step * self.chunk as u64;
        // The last output frame reads up to HALF frames past its position's floor.
        let end = (last >> FRACTION_BITS) as usize + HALF + 1;
        end.saturating_sub(self.history[0].len())
    }

    /// Forgets all history (the next input is a fresh start: silence before
    /// it) and returns to rate 1.0.
    pub(crate) fn reset(&mut self) {
        for planar in &mut self.history {
            planar.clear();
            // Input frames −HALF..0 are silence.
            planar.resize(HALF, 0.0);
        }
        // LEAD, relative to the oldest kept frame (input frame −HALF).
        self.position = ((HALF as f64 + LEAD) * ONE as f64) as u64;
        self.set_rate(1.0);
    }

    /// Consumes exactly [`RateResampler::input_needed`] interleaved frames from
    /// `input` and appends one chunk of interleaved output to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        let needed = self.input_needed();
        let ch = self.channels;
        if input.len() < needed * ch {
            return Err(format!(
                "resampler needs {needed} frames, got {}",
                input.len() / ch
            ));
        }
        for (c, planar) in self.history.iter_mut().enumerate() {
            planar.extend(input[..needed * ch].iter().skip(c).step_by(ch));
        }
        let start = out.len();
        out.resize(start + self.chunk * ch, 0.0);
        let out = &mut out[start..];
        // Mono and stereo (nearly every output) take each frame's weights
        // once for all channels; other layouts one channel at a time.
        let position = match ch {
            1 => self.interpolate::<1>(out),
            2 => self.interpolate::<2>(out),
            _ => self.interpolate_any(out),
        };
        // Drop the input no later frame can need: the next position is past
        // this one, so its window starts at or after this one's.
        let keep_from = (position >> FRACTION_BITS) as usize + 1 - HALF;
        for planar in &mut self.history {
            planar.drain(..keep_from);
        }
        self.position = position - ((keep_from as u64) << FRACTION_BITS);
        Ok(())
    }

    /// Fills `out` (interleaved frames of `N` channels) from the history;
    /// returns the position of its last frame.
    fn interpolate<const N: usize>(&self, out: &mut [f32]) -> u64 {
        let history: [&[f32]; N] =
            std::array::from_fn(|c| self.history.get(c).map_or(&[][..], Vec::as_slice));
        let mut position = self.position;
        for frame in out.chunks_exact_mut(N) {
            position += self.step;
            let (phase, blend) = phase_and_blend(position);
            let first = (position >> FRACTION_BITS) as usize + 1 - HALF;
            // The input check of `process` keeps `first + TAPS` within the history.
            let windows = history.map(|planar| {
                planar
                    .get(first..first + TAPS)
                    .and_then(|window| window.try_into().ok())
                    .unwrap_or(&SILENCE)
            });
            frame.copy_from_slice(&self.kernel.blended_dots(phase, blend, windows));
        }
        position
    }

    /// [`RateResampler::interpolate`] for any number of channels: the
    /// frame's weights blended once, then one product per channel.
    fn interpolate_any(&mut self, out: &mut [f32]) -> u64 {
        let mut position = self.position;
        for frame in out.chunks_exact_mut(self.channels) {
            position += self.step;
            let (phase, blend) = phase_and_blend(position);
            self.kernel.weights_at(phase, blend, &mut self.weights);
            let first = (position >> FRACTION_BITS) as usize + 1 - HALF;
            for (sample, planar) in frame.iter_mut().zip(&self.history) {
                if let Some(window) = planar
                    .get(first..first + TAPS)
                    .and_then(|w| w.try_into().ok())
                {
                    *sample = dot(&self.weights, window);
                }
            }
        }
        position
    }
}

/// Input that is not there (never, given the input check): silence.
static SILENCE: [f32; TAPS] = [0.0; TAPS];

/// The fractional bits of `position`, split into the table's phase and the
/// blend between that phase and the next.
fn phase_and_blend(position: u64) -> (usize, f32) {
    let fraction = position & (ONE - 1);
    let phase = (fraction >> BLEND_BITS) as usize;
    let blend = (fraction & ((1 << BLEND_BITS) - 1)) as f32 / (1u64 << BLEND_BITS) as f32;
    (phase, blend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Where (in output frames, fractional) an impulse at input frame `at` comes out.
    fn impulse_position(source_rate: u32, output_rate: u32, at: usize) -> f64 {
        let mut r = RateResampler::new(source_rate, output_rate, 1, 256).unwrap();
        // A Gaussian pulse: smooth enough that the centroid of its samples is its centre.
        let signal: Vec<f32> = (0..20_000)
            .map(|i| (-((i as f64 - at as f64) / 6.0).powi(2) / 2.0).exp() as f32)
            .collect();
        let mut out = Vec::new();
        let mut fed = 0;
        while out.len() < 4_000 {
            let n = r.input_needed();
            r.process(&signal[fed..fed + n], &mut out).unwrap();
            fed += n;
        }
        // Centroid of the main lobe around the peak.
        let (peak, _) = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let (num, den) = (peak - 40..peak + 41)
            .map(|i| (i as f64 * f64::from(out[i]), f64::from(out[i])))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        num / den
    }

    #[test]
    fn output_frame_maps_to_source_position_with_lead() {
        for (src, dst) in [(44_100, 44_100), (48_000, 44_100), (22_050, 44_100)] {
            let at = 1000;
            let pos = impulse_position(src, dst, at);
            let step = f64::from(src) / f64::from(dst);
            // Output frame j carries source position LEAD + (j + 1) * step.
            let expected = (at as f64 - LEAD) / step - 1.0;
            eprintln!("{src}->{dst}: impulse at output {pos}, expected {expected}");
            assert!(
                (pos - expected).abs() < 0.05,
                "{src}->{dst}: {pos} vs {expected}"
            );
        }
    }
}

#[cfg(test)]
mod quality {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Signal-to-noise ratio (dB) of a sine of `freq` Hz resampled from
    /// `source_rate` to `output_rate`, the playback rate changed every chunk
    /// by `rates`, against the exact sine at each output frame's source
    /// position (`LEAD + Σ step`). The first and last filter lengths are left
    /// out (the silence before the input).
    fn snr_db(source_rate: u32, output_rate: u32, freq: f64, rates: &[f64]) -> f64 {
        let chunk = 480;
        let mut r = RateResampler::new(source_rate, output_rate, 2, chunk).unwrap();
        let sine =
            |pos: f64| 0.5 * (std::f64::consts::TAU * freq * pos / f64::from(source_rate)).sin();
        let (mut fed, mut position) = (0usize, LEAD);
        let (mut signal, mut noise) = (0.0, 0.0);
        let mut input = Vec::new();
        let mut out = Vec::new();
        for (n, &rate) in rates.iter().enumerate() {
            r.set_rate(rate);
            let needed = r.input_needed();
            input.clear();
            for i in fed..fed + needed {
                let s = sine(i as f64) as f32;
                // The second channel carries the same sine inverted.
                input.extend([s, -s]);
            }
            fed += needed;
            out.clear();
            r.process(&input, &mut out).unwrap();
            let step = r.step();
            for frame in out.chunks_exact(2) {
                position += step;
                if n < 2 {
                    continue;
                }
                let exact = sine(position);
                signal += 2.0 * exact * exact;
                noise +=
                    (f64::from(frame[0]) - exact).powi(2) + (f64::from(frame[1]) + exact).powi(2);
            }
        }
        10.0 * (signal / noise).log10()
    }

    /// The slew controller's kind of rate: a few hundred ppm, moving every chunk.
    fn wandering_rates(chunks: usize) -> Vec<f64> {
        (0..chunks)
            .map(|i| 1.0 + 300e-6 * (i as f64 * 0.37).sin())
            .collect()
    }

    #[test]
    fn a_resampled_sine_stays_far_under_16_bit_noise() {
        let rates = wandering_rates(200);
        // (source Hz, output Hz, sine Hz, lowest SNR in dB). 16-bit audio's own
        // quantization noise is about 98 dB under a full-scale sine.
        let cases = [
            (48_000, 48_000, 1_000.0, 96.0),
            (48_000, 48_000, 10_000.0, 96.0),
            (48_000, 48_000, 18_000.0, 90.0),
            (44_100, 48_000, 1_000.0, 96.0),
            (44_100, 48_000, 15_000.0, 96.0),
            (48_000, 44_100, 1_000.0, 96.0),
            (48_000, 44_100, 15_000.0, 96.0),
            (96_000, 48_000, 5_000.0, 96.0),
        ];
        for (src, dst, freq, floor) in cases {
            let snr = snr_db(src, dst, freq, &rates);
            eprintln!("{src} -> {dst} Hz, {freq} Hz sine: SNR {snr:.1} dB");
            assert!(
                snr >= floor,
                "{src} -> {dst} Hz, {freq} Hz: SNR {snr:.1} dB < {floor}"
            );
        }
    }

    #[test]
    fn a_tone_above_the_output_band_is_filtered_not_folded() {
        // 30 kHz in a 96 kHz source, played at 44.1 kHz: it would fold to
        // 14.1 kHz; what comes out must be far under the input's level.
        let mut r = RateResampler::new(96_000, 44_100, 1, 441).unwrap();
        let input: Vec<f32> = (0..200_000)
            .map(|i| (0.5 * (std::f64::consts::TAU * 30_000.0 * i as f64 / 96_000.0).sin()) as f32)
            .collect();
        let (mut out, mut fed) = (Vec::new(), 0);
        while out.len() < 40_000 {
            let n = r.input_needed();
            r.process(&input[fed..fed + n], &mut out).unwrap();
            fed += n;
        }
        let tail = &out[4_000..];
        let rms =
            (tail.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        let db = 20.0 * (rms / (0.5 / 2f64.sqrt())).log10();
        eprintln!("30 kHz at 96 -> 44.1 kHz: {db:.1} dB");
        assert!(db < -80.0, "aliased tone at {db:.1} dB");
    }

    #[test]
    fn long_streams_keep_the_exact_position() {
        // A day of output would overflow an absolute fixed-point position;
        // the position is relative to the kept input, so the count of input
        // frames consumed equals the positions summed, whatever the length.
        let mut r = RateResampler::new(48_000, 48_000, 1, 64).unwrap();
        r.set_rate(1.0 + 123e-6);
        let (mut fed, mut out, input) = (0usize, Vec::new(), vec![0.0f32; 4096]);
        for _ in 0..20_000 {
            let n = r.input_needed();
            r.process(&input[..n], &mut out).unwrap();
            fed += n;
            out.clear();
        }
        // Consumed input runs HALF frames past the last position, give or take one.
        let last = LEAD + r.step() * (20_000.0 * 64.0);
        let ahead = fed as f64 - last;
        assert!(
            (ahead - HALF as f64).abs() <= 1.0,
            "input runs {ahead} frames ahead"
        );
    }
}
